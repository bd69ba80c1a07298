"""Does the bucket hold exactly what the manifest says? Missing objects, orphans, size, checksum, row count,
encryption and index mismatches, and pending rows left behind; `repair` fixes what can be fixed safely."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from tiering import layout
from tiering import parquet as pqio
from tiering.context import Session
from tiering.db import manifest as mdb
from tiering.db import staging
from tiering.db.operations import audited
from tiering.engine.archive import settle_two_places
from tiering.engine.flush import recover_abandoned
from tiering.errors import OperationTimeout
from tiering.store.base import ObjectStore


@dataclass
class Problem:
    kind: str  # missing | orphan | size_mismatch | checksum_mismatch | row_count_mismatch | index_mismatch |
    #            encryption_mismatch | stale_pending | abandoned_pending | unreadable | hot_and_cold | staged_and_cold
    key: str
    detail: str
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "detail": self.detail, "repaired": self.repaired}


@dataclass
class VerifyReport:
    objects_checked: int = 0
    objects_in_store: int = 0
    deep_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    operation_id: int | None = None

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects_checked": self.objects_checked,
            "objects_in_store": self.objects_in_store,
            "deep_checked": self.deep_checked,
            "problems": [p.to_dict() for p in self.problems],
            "operation_id": self.operation_id,
        }


def verify_archive(
    session: Session,
    *,
    queue: str | None = None,
    deep: bool = False,
    repair: bool = False,
    initiated_by: str | None = None,
    deadline: float | None = None,
) -> VerifyReport:
    """Compare manifest and bucket. `deep` (implied by `queue`) reads every object of the scope: checksum,
    footer row count, and that each indexed job is in its object. `deadline` (a time.monotonic() instant: the
    API's request deadline) stops it between objects with OperationTimeout, so a verify the API answered 503
    gives its worker back instead of reading the rest of the bucket for nobody."""
    report = VerifyReport()
    store, settings = session.store, session.settings
    deep = deep or queue is not None
    params = {"queue": queue, "deep": deep, "repair": repair}
    with audited(session, "verify", initiated_by=initiated_by, reason="Maintenance", parameters=params) as op:
        report.operation_id = op.id
        if repair:
            cleaned = recover_abandoned(session)
            if cleaned:
                report.problems.append(
                    Problem("abandoned_pending", "", f"{cleaned} objects of dead flushers removed", True)
                )
        with session.connection() as conn:
            rows = mdb.manifest_rows(conn, states=("committed", "pending"))
            bucket = store.location.bucket
            rows = [r for r in rows if r.bucket == bucket and (queue is None or r.queue_name == queue)]
            committed = {r.key: r for r in rows if r.state == "committed"}
            pending = {r.key: r for r in rows if r.state == "pending"}
            listing_prefix = layout.queue_prefix(store.prefix, layout.queue_slug(queue)) if queue else store.prefix
            derived = layout.analyst_root(store.prefix)  # the analysts' listing, not archive objects
            in_store = {
                info.key: info
                for info in store.list(listing_prefix)
                if info.key.endswith(".parquet") and not info.key.startswith(derived)
            }
            report.objects_in_store = len(in_store)
            grace = timedelta(seconds=settings.pending_grace_seconds)
            now = datetime.now(UTC)
            for key, row in committed.items():
                _check_deadline(deadline, report, len(committed))
                report.objects_checked += 1
                info = in_store.get(key)
                if info is None:
                    report.problems.append(Problem("missing", key, "in the manifest, not in the store"))
                    continue
                if info.size != row.bytes:
                    report.problems.append(
                        Problem("size_mismatch", key, f"manifest {row.bytes} bytes, store {info.size}")
                    )
                if settings.sse and row.encryption != settings.sse:
                    report.problems.append(
                        Problem("encryption_mismatch", key, f"expected {settings.sse}, recorded {row.encryption}")
                    )
                if deep:
                    _deep_check(conn, store, row, report)
            for key, row in pending.items():
                if now - row.created_at > grace:
                    report.problems.append(
                        Problem(
                            "stale_pending", key, f"pending since {row.created_at.isoformat()} (flush {row.flush_id})"
                        )
                    )
            known = set(committed) | set(pending)
            orphans = [key for key in in_store if key not in known and _is_ours(store, key)]
            if queue is None or orphans:
                purged = _purged_keys(conn, orphans)
                for key in orphans:
                    problem = Problem("orphan", key, "in the store, not in the manifest")
                    if key in purged:
                        problem.detail = "purged in the manifest, still in the store"
                    report.problems.append(problem)
                if repair and orphans:
                    result = store.delete_many(orphans)
                    deleted = set(result.deleted)
                    for p in report.problems:
                        if p.kind == "orphan" and p.key in deleted:
                            p.repaired = True
        _check_deadline(deadline, report, len(committed))
        _check_two_places(session, queue, repair, report)
        if settings.iceberg:
            _check_iceberg(session, repair, report)
        op.counts = {"objects_checked": report.objects_checked, "problems": len(report.problems), "ok": report.ok}
        op.outcome = "succeeded" if report.ok else "problems"
    return report


def _check_deadline(deadline: float | None, report: VerifyReport, objects: int) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise OperationTimeout(
            f"verify stopped at its deadline after checking {report.objects_checked} of {objects} objects "
            f"({report.deep_checked} read)"
        )


def _check_two_places(session: Session, queue: str | None, repair: bool, report: VerifyReport) -> None:
    """A job must be in one place: a hot copy Hammerwork marked archived, or a staged row, beside the job's live
    cold copy is reported (one problem per job); `repair` settles them (the cold copy wins)."""
    with session.connection() as conn:
        found = staging.count_two_places(conn, queue)
    problems = [Problem("hot_and_cold", job_id, "Hammerwork marked this hot copy archived; its job is also cold")
                for job_id in found["hot_marked"]]  # fmt: skip
    problems += [Problem("staged_and_cold", job_id, "staged again (Hammerwork's archiver) while already cold")
                 for job_id in found["staged_and_cold"]]  # fmt: skip
    report.problems.extend(problems)
    if repair and problems:
        settle_two_places(session, queue)
        with session.connection() as conn:
            left = staging.count_two_places(conn, queue)
        still = set(left["hot_marked"]) | set(left["staged_and_cold"])
        for p in problems:
            p.repaired = p.key not in still


def _check_iceberg(session: Session, repair: bool, report: VerifyReport) -> None:
    """The Iceberg table's current snapshot must hold exactly the committed objects; `repair` re-publishes."""
    from tiering.engine import iceberg

    try:
        difference = iceberg.check(session)
    except Exception as exc:  # noqa: BLE001 - reported, verify goes on
        report.problems.append(Problem("iceberg_unreadable", iceberg.TABLE_NAME, f"{type(exc).__name__}: {exc}"))
        return
    if difference.in_step:
        return
    problem = Problem(
        "iceberg_behind",
        ".".join(iceberg.IDENTIFIER),
        f"current snapshot lacks {len(difference.missing)} committed objects and holds {len(difference.extra)} "
        "that are not committed",
    )
    report.problems.append(problem)
    if repair:
        iceberg.reconcile(session)
        problem.repaired = iceberg.check(session).in_step


def _is_ours(store: ObjectStore, key: str) -> bool:
    try:
        layout.check_key_under(store.prefix, key)
        return True
    except ValueError:
        return False


def _purged_keys(conn: Any, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = conn.execute("SELECT key FROM tiering_manifest WHERE state = 'purged' AND key = ANY(%s)", (keys,))
    return {r[0] for r in rows}


def _deep_check(conn: Any, store: ObjectStore, row: mdb.ManifestRow, report: VerifyReport) -> None:
    info = store.head(row.key)
    if info is not None and info.archived:
        return  # a GLACIER/DEEP_ARCHIVE object cannot be read without a restore; size was checked
    try:
        data = store.get_bytes(row.key)
    except Exception as exc:  # noqa: BLE001 - reported, verify goes on
        report.problems.append(Problem("unreadable", row.key, str(exc)))
        return
    report.deep_checked += 1
    digest = hashlib.sha256(data).hexdigest()
    if row.checksum_sha256 and digest != row.checksum_sha256:
        report.problems.append(Problem("checksum_mismatch", row.key, f"manifest {row.checksum_sha256}, store {digest}"))
    import pyarrow as pa

    try:
        rows = pqio.footer_rows(pa.BufferReader(data))
        ids = set(pc.cast(pqio.read_columns(pa.BufferReader(data), ["id"]).column("id"), pa.string()).to_pylist())
    except Exception as exc:  # noqa: BLE001
        report.problems.append(Problem("unreadable", row.key, f"not a readable Parquet file: {exc}"))
        return
    if rows != row.row_count:
        report.problems.append(Problem("row_count_mismatch", row.key, f"manifest {row.row_count}, footer {rows}"))
    indexed = {
        str(r[0])
        for r in conn.execute(
            "SELECT job_id FROM tiering_job_index WHERE object_id = %s AND restored_at IS NULL", (row.id,)
        )
    }
    missing = indexed - ids
    if missing:
        report.problems.append(Problem("index_mismatch", row.key, f"{len(missing)} indexed jobs are not in the object"))
