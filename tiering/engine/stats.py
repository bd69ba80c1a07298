"""Archival statistics: per tier (staging; cold per storage class) and per queue, plus a cost estimate.

* jobs: staged rows; in cold, jobs the job index holds as archived (restored jobs are not counted).
* original_bytes: payload JSON bytes before compression; stored_bytes: compressed payload bytes in staging,
  object bytes in cold. compression_ratio = stored / original (lower is better).
* last runs and their durations come from the audit trail (tiering_operations); jobs purged to date from
  finished purge operations, jobs restored to date from the job index (restored_at).
* estimated_monthly_cost: cold stored bytes x settings.prices_per_gb_month, an ESTIMATE at public list prices
  (storage only: no requests, retrievals, minimum durations or minimum object sizes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tiering.context import Session
from tiering.db import retention as rdb
from tiering.db import service as service_sql

GB = 1024**3
RUN_OPERATIONS = ("archive", "flush", "purge", "erase", "restore", "verify", "lifecycle_apply")
COST_LABEL = (
    "ESTIMATE of monthly storage cost at public list prices (USD per GB-month from settings.prices_per_gb_month); "
    "excludes requests, retrievals, transfer, minimum storage durations and minimum billable object sizes"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ratio(stored: int, original: int) -> float | None:
    from tiering.engine.flush import compression_ratio

    return compression_ratio(stored, original)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = sum(r["jobs"] for r in rows)
    original = sum(r["original_bytes"] for r in rows)
    stored = sum(r["stored_bytes"] for r in rows)
    oldest = [r["oldest"] for r in rows if r["oldest"] is not None]
    newest = [r["newest"] for r in rows if r["newest"] is not None]
    out: dict[str, Any] = {
        "jobs": jobs,
        "original_bytes": original,
        "stored_bytes": stored,
        "compression_ratio": _ratio(stored, original),
        "oldest_archived_at": _iso(min(oldest)) if oldest else None,
        "newest_archived_at": _iso(max(newest)) if newest else None,
    }
    if rows and "objects" in rows[0]:
        out["objects"] = sum(r["objects"] for r in rows)
    return out


def get_archival_stats(session: Session, queue: str | None = None) -> dict[str, Any]:
    """JSON-ready statistics of the archive (of one queue when `queue` is given)."""
    settings = session.settings
    with session.connection() as conn:
        staging = rdb.staging_stats(conn, queue)
        cold = rdb.cold_stats(conn, queue)
        restored = rdb.restored_by_queue(conn, queue)
        purged = rdb.purged_by_queue(conn, "purge", queue)
        erased = rdb.purged_by_queue(conn, "erase", queue)
        runs = rdb.last_runs(conn, RUN_OPERATIONS)
        queue_runs = rdb.last_runs_by_queue(conn, ("archive", "flush"), queue)
        conn.rollback()
    prices = settings.prices_per_gb_month
    classes: dict[str, list[dict[str, Any]]] = {}
    for r in cold:
        classes.setdefault(r["storage_class"], []).append(r)
    cold_by_class: dict[str, Any] = {}
    cost_by_class: dict[str, Any] = {}
    total_cost = 0.0
    for cls, rows in sorted(classes.items()):
        summary = _summary(rows)
        cold_by_class[cls] = summary
        price = prices.get(cls)
        cost = None if price is None else round(summary["stored_bytes"] / GB * price, 6)
        cost_by_class[cls] = {"stored_gb": round(summary["stored_bytes"] / GB, 6), "usd_per_gb_month": price,
                              "estimated_usd_per_month": cost}  # fmt: skip
        total_cost += cost or 0.0
    queues = sorted(
        {r["queue"] for r in staging} | {r["queue"] for r in cold} | set(restored) | set(purged) | set(erased)
    )
    per_queue: dict[str, Any] = {}
    for q in queues:
        st = [r for r in staging if r["queue"] == q]
        co = [r for r in cold if r["queue"] == q]
        per_queue[q] = {
            "staging": _summary(st) if st else _summary([]),
            "cold": _summary(co) | {"objects": sum(r["objects"] for r in co)},
            "total": _summary(st + [{k: v for k, v in r.items() if k != "objects"} for r in co]),
            "jobs_purged_to_date": purged.get(q, 0),
            "jobs_erased_to_date": erased.get(q, 0),
            "jobs_restored_to_date": restored.get(q, 0),
            "last_runs": {
                op: {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in run.items()}
                for op, run in queue_runs.get(q, {}).items()
            },
        }
    cold_rows_no_objects = [{k: v for k, v in r.items() if k != "objects"} for r in cold]
    total = _summary(staging + cold_rows_no_objects)
    return {
        "queue": queue,
        "generated_at": datetime.now().astimezone().isoformat(),
        "total": total
        | {
            "jobs_purged_to_date": sum(purged.values()),
            "jobs_erased_to_date": sum(erased.values()),
            "jobs_restored_to_date": sum(restored.values()),
        },  # fmt: skip
        "tiers": {
            "staging": _summary(staging),
            "cold": _summary(cold) if cold else _summary([]) | {"objects": 0},
            "cold_by_storage_class": cold_by_class,
        },
        "queues": per_queue,
        "last_runs": {
            op: {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in run.items()} for op, run in runs.items()
        },
        "estimated_monthly_cost": {
            "label": COST_LABEL,
            "currency": "USD",
            "by_storage_class": cost_by_class,
            "total_estimated_usd_per_month": round(total_cost, 6),
        },
    }


@dataclass(frozen=True)
class ServiceGauges:
    """What a metrics scrape reads, with cheap aggregate queries."""

    staged_jobs: int
    oldest_staged_age_s: float | None
    cold: list[tuple[str, int, int, int, int]]  # storage class, objects, bytes, original payload bytes, rows
    pending_objects: int
    last_operations: list[tuple[str, str, float, float | None]]  # operation, outcome, started epoch, duration


def service_gauges(session: Session) -> ServiceGauges:
    """Staging backlog, cold tier by storage class, pending objects and the latest run of each operation."""
    with session.connection() as conn:
        staged, oldest = service_sql.staging_gauges(conn)
        return ServiceGauges(
            staged, oldest, service_sql.cold_gauges(conn), service_sql.pending_objects(conn),
            service_sql.last_operations(conn),
        )  # fmt: skip
