"""Hammerwork's own archiver (v1.15, PostgreSQL), restated in Python as the bench's reference.

What CodingAnarchy/hammerwork src/queue/postgres.rs `archive_jobs` does, per call, in ONE transaction:
  1. for each status with an age in the policy (Completed -> completed_at, Failed and Dead -> failed_at,
     TimedOut -> timed_out_at): SELECT * FROM hammerwork_jobs WHERE archived_at IS NULL AND status = $1
     AND <finish column> IS NOT NULL AND <finish column> <= now() - age ORDER BY created_at LIMIT batch_size;
  2. sort the union by created_at, drop duplicate ids, keep batch_size rows;
  3. per job: serialise the payload compactly (serde_json), gzip it (flate2, level 6 by default) and keep the
     gzip only when smaller; one INSERT into hammerwork_jobs_archive (37 columns), then one UPDATE marking the
     hot row (archived_at, archival_reason, archival_policy_applied): the hot row stays;
  4. COMMIT.
Callers repeat the call until it archives nothing. Each statement waits for its answer before the next is sent
(sqlx `.execute(&mut *tx).await`), as here.
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

PRIORITY_WORDS = {0: ("background", 1), 1: ("low", 2), 2: ("normal", 5), 3: ("high", 10), 4: ("critical", 20)}
_FINISH = {"Completed": "completed_at", "Failed": "failed_at", "Dead": "failed_at", "TimedOut": "timed_out_at"}

_INSERT = """
INSERT INTO hammerwork_jobs_archive (
    id, queue_name, payload, payload_compressed, original_payload_size,
    status, priority, attempts, max_attempts, created_at, scheduled_at,
    started_at, completed_at, failed_at, timed_out_at, archived_at,
    error_message, result, result_ttl, retry_strategy, timeout_seconds,
    priority_weight, cron_schedule, next_run_at, recurring, timezone,
    batch_id, depends_on, dependency_status, result_config,
    trace_id, correlation_id, parent_span_id, span_context,
    archival_reason, archived_by, original_table
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
          %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_MARK = "UPDATE hammerwork_jobs SET archived_at = %s, archival_reason = %s, archival_policy_applied = %s WHERE id = %s"


def _select(status: str) -> str:
    col = _FINISH[status]
    return (
        f"SELECT * FROM hammerwork_jobs WHERE archived_at IS NULL AND status = %s AND {col} IS NOT NULL "  # noqa: S608
        f"AND {col} <= %s ORDER BY created_at ASC LIMIT %s"
    )


def _result_config(row: dict[str, Any]) -> str:
    ttl = row.get("result_ttl_seconds")
    storage = {"database": "Database", "memory": "Memory"}.get(str(row.get("result_storage_type") or ""), "None")
    return json.dumps(
        {"storage": storage, "ttl": {"secs": ttl, "nanos": 0} if ttl else None,
         "max_size_bytes": row.get("result_max_size_bytes")}  # fmt: skip
    )


def archive_call(
    conn: psycopg.Connection, age: timedelta, batch_size: int = 1000, level: int = 6, archived_by: str = "bench"
) -> int:
    """One call of Hammerwork's archive_jobs: returns how many jobs it archived."""
    now = datetime.now(UTC)
    with conn.transaction():
        rows: list[dict[str, Any]] = []
        with conn.cursor(row_factory=dict_row) as cur:
            for status in _FINISH:
                rows.extend(cur.execute(_select(status), (status, now - age, batch_size)).fetchall())
        rows.sort(key=lambda r: r["created_at"])
        seen: set[Any] = set()
        jobs = [r for r in rows if not (r["id"] in seen or seen.add(r["id"]))][:batch_size]  # type: ignore[func-returns-value]
        archived_at = datetime.now(UTC)
        for job in jobs:
            raw = json.dumps(job["payload"], separators=(",", ":")).encode()
            packed = gzip.compress(raw, compresslevel=level)
            payload, compressed = (packed, True) if len(packed) < len(raw) else (raw, False)
            word, weight = PRIORITY_WORDS.get(job["priority"], ("normal", 5))
            conn.execute(
                _INSERT,
                (
                    job["id"], job["queue_name"], payload, compressed, len(raw), job["status"], word,
                    job["attempts"], job["max_attempts"], job["created_at"], job["scheduled_at"], job["started_at"],
                    job["completed_at"], job["failed_at"], job["timed_out_at"], archived_at, job["error_message"],
                    Jsonb(job["result_data"]) if job["result_data"] is not None else None,
                    job["result_expires_at"], None, job["timeout_seconds"], weight, job["cron_schedule"],
                    job["next_run_at"], job["recurring"], job["timezone"], job["batch_id"],
                    job["depends_on"] or None, job["dependency_status"], _result_config(job), job["trace_id"],
                    job["correlation_id"], job["parent_span_id"], job["span_context"], "Manual", archived_by,
                    "hammerwork_jobs",
                ),  # fmt: skip
            )
            conn.execute(_MARK, (datetime.now(UTC), "Manual", archived_by, job["id"]))
    return len(jobs)


def run_for(url: str, age: timedelta, seconds: float, batch_size: int = 1000) -> tuple[int, float]:
    """Call archive_jobs until nothing is left or `seconds` have passed; (jobs archived, seconds taken)."""
    total = 0
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        while time.perf_counter() - started < seconds:
            n = archive_call(conn, age, batch_size)
            total += n
            if n == 0:
                break
    return total, time.perf_counter() - started
