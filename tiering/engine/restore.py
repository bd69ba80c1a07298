"""Bring archived jobs back into hammerwork_jobs as Pending, the way Hammerwork restores them.

A job is restored from wherever it is: the staging table (the staged row is deleted and the hot row
inserted in one transaction) or a committed object (the job index names the object and row group; only
the footer and that row group are read, then the hot row is inserted and the index row marked
`restored_at` in one transaction). Objects in GLACIER / DEEP_ARCHIVE first need RestoreObject: the first
call starts it and raises RestoreInProgressError (a PendingError: exit code 5, HTTP 202) with the expected
wait; a later call completes once the object is readable.

Hammerwork's restore semantics: status Pending, attempts 0, scheduled_at now, started/completed/failed/
timed_out_at, result and error cleared; id, queue, payload, priority, max_attempts, created_at, timeout,
cron fields, batch_id, depends_on, tracing (and encryption columns) kept.
"""

from __future__ import annotations

import os
import threading
import time as _time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from tiering import codec
from tiering import schema as S
from tiering.context import Session
from tiering.db import locks, staging
from tiering.db import query as qdb
from tiering.db.operations import audited
from tiering.engine import iceberg
from tiering.engine.query import (
    ArchivedJob,
    list_archived_jobs,
    make_filters,
    parse_job_id,
    read_cold_rows,
    search_archived_jobs,
)
from tiering.errors import (
    ConflictError,
    CorruptPayloadError,
    InvalidInputError,
    NotFoundError,
    PendingError,
    StoreError,
)
from tiering.settings import Settings
from tiering.store.base import ARCHIVE_STORAGE_CLASSES, ObjectArchivedError, ObjectNotFoundError, ObjectStore

ProgressFn = Callable[[int], None]
DEFAULT_BATCH = 1000


# What AWS documents for RestoreObject (hours unless stated).
EXPECTED_WAIT: dict[tuple[str, str], str] = {
    ("GLACIER", "Expedited"): "1-5 minutes",
    ("GLACIER", "Standard"): "3-5 hours",
    ("GLACIER", "Bulk"): "5-12 hours",
    ("DEEP_ARCHIVE", "Standard"): "up to 12 hours",
    ("DEEP_ARCHIVE", "Bulk"): "up to 48 hours",
    ("DEEP_ARCHIVE", "Expedited"): "not offered for DEEP_ARCHIVE (use Standard or Bulk)",
}


def expected_wait(storage_class: str, tier: str) -> str:
    return EXPECTED_WAIT.get((storage_class, tier), "several hours")


class RestoreInProgressError(PendingError):
    """The object holding the job is being restored from GLACIER/DEEP_ARCHIVE; call again later."""

    def __init__(self, job_ids: Sequence[str], key: str, storage_class: str, tier: str, started: bool) -> None:
        self.job_ids = list(job_ids)
        self.key = key
        self.storage_class = storage_class
        self.tier = tier
        self.expected_wait = expected_wait(storage_class, tier)
        self.started = started
        what = f"job {job_ids[0]}" if len(job_ids) == 1 else f"{len(job_ids)} jobs"
        verb = "started" if started else "already in progress"
        super().__init__(
            f"{what} lie in {key} ({storage_class}): restore of the object {verb} (tier {tier}), expected wait "
            f"~{self.expected_wait}; run the same restore again once it has finished"
        )
        self.retryable = True


# --- archive row -> hot row -------------------------------------------------------------------------


def hot_values(record: dict[str, Any], payload_text: str) -> dict[str, Any]:
    """The hammerwork_jobs values of a restored job (the column registry's restore mapping)."""
    return S.restore_values(record, payload_text)


def _payload_text(job_id: Any, data: bytes | str, *, stored: bool) -> str:
    """The payload's JSON text, checked to parse (a job with a corrupt payload is refused, not half-restored)."""
    try:
        raw = codec.decode_checked(data) if stored and isinstance(data, bytes) else data
        codec.load_json(raw)
    except codec.UnreadablePayload as exc:
        raise CorruptPayloadError(
            f"job {job_id}: {exc.reason}; it cannot be restored (`tiering archive erase --id {job_id}` removes it)"
        ) from exc
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def _staged_to_hot(row: dict[str, Any]) -> dict[str, Any]:
    return hot_values(row, _payload_text(row["id"], bytes(row["payload"]), stored=True))


def _cold_to_hot(row: dict[str, Any]) -> dict[str, Any]:
    """An archive (Parquet) row, as pyarrow's to_pylist gives it (S.RESTORE_COLUMNS at least), -> hot values."""
    text = _payload_text(row["id"], row["payload"], stored=False)
    record = S.archive_row_to_dict(row)
    return hot_values(record, text)


# --- results ----------------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    job_id: str
    source: str  # 'staging' | 'cold'
    queue_name: str
    status: str  # the archived (final) status
    archived_at: datetime | None
    dry_run: bool
    restored: bool
    object_key: str | None = None
    row_group: int | None = None
    object_requests: int = 0
    operation_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "source": self.source,
            "queue_name": self.queue_name,
            "archived_status": self.status,
            "archived_at": self.archived_at.isoformat() if self.archived_at else None,
            "dry_run": self.dry_run,
            "restored": self.restored,
            "new_status": None if self.dry_run else "Pending",
            "object_key": self.object_key,
            "row_group": self.row_group,
            "object_requests": self.object_requests,
            "operation_id": self.operation_id,
        }


# Threads reading restores' objects, shared by the process: a pool of its own per restore started and joined a
# thread each time (~1 ms of a restore's 20-30). Dropped in a forked child, whose copy has no threads.
READ_THREADS = 8
_READERS: ThreadPoolExecutor | None = None
_READERS_LOCK = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    global _READERS
    with _READERS_LOCK:
        if _READERS is None:
            _READERS = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="tiering-restore-read")
        return _READERS


def _forget_readers() -> None:
    global _READERS, _READERS_LOCK
    _READERS = None
    _READERS_LOCK = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_forget_readers)


def _requests(store: ObjectStore) -> int:
    return store.request_count


def _ensure_readable(
    conn: psycopg.Connection,
    store: ObjectStore,
    settings: Settings,
    object_id: int,
    key: str,
    storage_class: str,
    job_ids: list[str],
) -> None:
    """For GLACIER/DEEP_ARCHIVE objects: start (or wait for) RestoreObject; return once readable."""
    if storage_class not in ARCHIVE_STORAGE_CLASSES:
        return
    info = store.head(key)
    if info is None:
        raise StoreError(f"{key} is in the manifest but missing from {store.describe()} (run `tiering archive verify`)")
    if not info.archived:
        return
    tier = settings.glacier_restore_tier
    started = False
    if not info.restore_in_progress:
        outcome = store.restore_object(key, days=settings.glacier_restore_days, tier=tier)
        started = outcome == "started"
        if outcome in ("already_restored", "not_archived"):
            return
    if started:
        with conn.transaction():
            qdb.set_restore_requested(conn, object_id)
    raise RestoreInProgressError(job_ids, key, storage_class, tier, started)


# --- single restore ---------------------------------------------------------------------------------


def restore_archived_job(
    session: Session,
    job_id: str | uuid.UUID,
    *,
    dry_run: bool = False,
    initiated_by: str | None = None,
) -> RestoreResult:
    """Put one archived job back into hammerwork_jobs as Pending (see the module docstring). The audit rows and
    the restore share one pooled connection."""
    jid = parse_job_id(job_id)
    params = {"job_id": str(jid), "dry_run": dry_run, "bulk": False}
    with (
        session.connection() as conn,
        audited(conn, "restore", initiated_by=initiated_by, reason="Manual", parameters=params) as op,
    ):
        look = _first_look(conn, session.store, jid)
        result = _restore_one(conn, session.store, session.settings, jid, look, dry_run)
        result.operation_id = op.id
        op.counts = {"restored": 0 if dry_run else 1, "would_restore": 1 if dry_run else 0, "source": result.source,
                     "object_requests": result.object_requests}  # fmt: skip
        if dry_run:
            op.outcome = "dry_run"
    if result.restored and result.source == "cold":
        if look.listing_in_use:  # the analysts' views leave the restored job out
            from tiering.engine.analyst import publish_superseded_quietly

            publish_superseded_quietly(session)
        iceberg.reconcile_quietly(session)  # so does the Iceberg table (a position delete), when enabled
    return result


def _conflict_if_hot(
    conn: psycopg.Connection, jid: uuid.UUID, hot: tuple[str, datetime | None] | None, *, settle: bool = False
) -> None:
    """A job still in the hot table (`hot`: its (status, archived_at), qdb.hot_job's) is not restored; a hot copy
    Hammerwork only marked archived is not a live job: it is ignored on a first look and deleted (`settle`, inside
    the restore's transaction, the archive copy locked) so the archived copy comes back, as every step that moves
    jobs settles such copies."""
    if hot is None:
        return
    status, archived_at = hot
    if archived_at is not None:
        if settle:
            staging.settle_marked_hot(conn, [jid])
        return
    raise ConflictError(f"job {jid} is in the hot table (status {status}); nothing restored")


def _read_cold_row(store: ObjectStore, settings: Settings, jid: uuid.UUID, loc: dict[str, Any]) -> dict[str, Any]:
    """The job's row from its object (footer + its row group's restore columns), errors in the restore's terms."""
    try:
        rows_by_id = read_cold_rows(
            store,
            loc["object_key"],
            loc["object_bytes"],
            [(loc["row_group"], loc["row_in_group"])],
            columns=list(S.RESTORE_COLUMNS),
        )
    except ObjectArchivedError as exc:  # archived between the HEAD and the GET (or a store without HEAD info)
        raise RestoreInProgressError(
            [str(jid)], loc["object_key"], loc["storage_class"], settings.glacier_restore_tier, False
        ) from exc
    except ObjectNotFoundError as exc:  # a purge or an erase replaced the object since the first look
        raise ConflictError(
            f"job {jid}: its object {loc['object_key']} was replaced meanwhile (purge or erase); retry"
        ) from exc
    cold_row = rows_by_id.get(str(jid))
    if cold_row is None:
        raise StoreError(
            f"job {jid} is not at row {loc['row_in_group']} of row group {loc['row_group']} of {loc['object_key']}: "
            "the object does not match the job index (run `tiering archive verify`); nothing restored"
        )
    return cold_row


def _first_look(conn: psycopg.Connection, store: ObjectStore, jid: uuid.UUID) -> qdb.FirstLook:
    """A first look without locks, in one statement: where is the job (a hot one, or one neither staged nor in the
    job index, is refused here), and do analysts use the store's listing?"""
    with conn.transaction():
        look = qdb.first_look(conn, jid, store.uri(""))
        _conflict_if_hot(conn, jid, look.hot)
        if not look.staged and look.cold is None:
            restored = qdb.last_restored_at(conn, jid)
            if restored is not None:
                raise ConflictError(f"job {jid} was already restored (at {restored.isoformat()}); nothing restored")
            raise NotFoundError(f"no archived job with id {jid} (neither in staging nor in the job index)")
    return look


def _restore_one(
    conn: psycopg.Connection, store: ObjectStore, settings: Settings, jid: uuid.UUID, look: qdb.FirstLook,
    dry_run: bool,
) -> RestoreResult:
    """The restore from where the first look found the job; a cold object that needs a GLACIER restore first
    raises RestoreInProgressError."""
    before = _requests(store)
    loc = None if look.staged else look.cold
    if look.staged:
        with conn.transaction():
            locks.share_moves(conn)
            rows = qdb.staged_rows(conn, [jid], lock=True)
            if not rows:
                raise ConflictError(f"job {jid} left staging while being restored (flushed or restored); retry")
            _conflict_if_hot(conn, jid, qdb.hot_job(conn, jid), settle=not dry_run)
            row = rows[0]
            values = _staged_to_hot(row)
            if not dry_run:
                qdb.insert_hot(conn, [values])
                qdb.delete_staged(conn, [jid])
        return RestoreResult(str(jid), "staging", row["queue_name"], row["status"].strip('"'), row["archived_at"],
                             dry_run, not dry_run)  # fmt: skip
    assert loc is not None
    if dry_run:
        return RestoreResult(str(jid), "cold", loc["queue_name"], loc["status"], loc["archived_at"], True, False,
                             loc["object_key"], loc["row_group"], _requests(store) - before)  # fmt: skip
    _ensure_readable(conn, store, settings, loc["object_id"], loc["object_key"], loc["storage_class"], [str(jid)])
    # The object is read on another thread while this one locks the index row and checks the hot table: the GET
    # (10-15 ms on SeaweedFS) and those statements overlap. The locks are held until the row is inserted, and the
    # read never outlives its restore, whatever the transaction ended in.
    read = _readers().submit(_read_cold_row, store, settings, jid, loc)
    try:
        # pipeline mode: the statements whose results are not read (the lock, the insert, the mark, the commit) go
        # without waiting for each answer
        with conn.pipeline(), conn.transaction():
            locks.share_moves(conn)
            live = qdb.lock_live_index(conn, [(loc["object_id"], str(jid))])
            if str(jid) not in live:
                raise ConflictError(f"job {jid} was restored by someone else meanwhile; nothing restored")
            # the mark needs no row from the object: it goes with the hot check's round trip, while the read goes on
            qdb.mark_restored(conn, [(loc["object_id"], str(jid))])
            _conflict_if_hot(conn, jid, qdb.hot_job(conn, jid), settle=True)
            values = _cold_to_hot(read.result())
            qdb.insert_hot(conn, [values])
    finally:
        wait([read])
    return RestoreResult(str(jid), "cold", loc["queue_name"], loc["status"], loc["archived_at"], False, True,
                         loc["object_key"], loc["row_group"], _requests(store) - before)  # fmt: skip


# --- bulk restore -----------------------------------------------------------------------------------


@dataclass
class BulkRestoreResult:
    dry_run: bool
    selected: int = 0
    restored: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {job_id, reason}
    pending: list[dict[str, Any]] = field(default_factory=list)  # GLACIER objects being restored
    jobs: list[ArchivedJob] = field(default_factory=list)  # what was (or would be) restored
    object_reads: int = 0
    object_requests: int = 0
    execution_time_s: float = 0.0
    operation_id: int | None = None

    def to_dict(self, *, max_jobs: int = 1000) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "selected": self.selected,
            ("would_restore" if self.dry_run else "restored"): len(self.jobs) if self.dry_run else self.restored,
            "by_queue": dict(sorted(self.by_queue.items())),
            "by_source": dict(sorted(self.by_source.items())),
            "skipped": self.skipped,
            "pending": self.pending,
            "jobs": [j.to_dict() for j in self.jobs[:max_jobs]],
            "jobs_truncated": len(self.jobs) > max_jobs,
            "objects_read": self.object_reads,
            "object_requests": self.object_requests,
            "execution_time_s": round(self.execution_time_s, 3),
            "operation_id": self.operation_id,
        }


def _select(
    session: Session,
    *,
    queue: str | None,
    status: Any,
    archived_after: Any,
    archived_before: Any,
    match: tuple[str, Any] | None,
    count: int | None,
) -> list[ArchivedJob]:
    if match is not None:
        key, value = match
        found = search_archived_jobs(
            session, key, value, queue=queue, limit=count, archived_after=archived_after,
            archived_before=archived_before, status=status,
        )  # fmt: skip
        return found.items
    selected: list[ArchivedJob] = []
    page_size = 10_000
    while count is None or len(selected) < count:
        want = page_size if count is None else min(page_size, count - len(selected))
        page = list_archived_jobs(session, queue=queue, status=status, archived_after=archived_after,
                                  archived_before=archived_before, limit=want, offset=len(selected))  # fmt: skip
        selected.extend(page.items)
        if len(page.items) < want:
            break
    return selected


def restore_archived_jobs(
    session: Session,
    *,
    queue: str | None = None,
    status: str | Sequence[str] | None = None,
    archived_after: Any = None,
    archived_before: Any = None,
    match: tuple[str, Any] | None = None,
    count: int | None = None,
    dry_run: bool = False,
    initiated_by: str | None = None,
    progress: ProgressFn | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> BulkRestoreResult:
    """Restore every archived job matching the filters (newest archived first, at most `count`).

    One transaction per batch; each cold object is read once (footer + the row groups holding selected jobs).
    Jobs in GLACIER/DEEP_ARCHIVE objects are reported in `pending` (their restore is started); jobs that meanwhile
    left the archive or sit in the hot table are reported in `skipped`. A dry run changes nothing.
    """
    make_filters(queue=queue, status=status, archived_after=archived_after, archived_before=archived_before)
    if count is not None and count < 1:
        raise InvalidInputError(f"count must be >= 1, not {count}")
    if match is not None and (not isinstance(match, tuple) or len(match) != 2):
        raise InvalidInputError("match must be a (key, value) pair")
    if batch_size < 1:
        raise InvalidInputError("batch_size must be >= 1")
    started = _time.perf_counter()
    params = {"queue": queue, "status": status, "archived_after": archived_after, "archived_before": archived_before,
              "match": list(match) if match else None, "count": count, "dry_run": dry_run, "bulk": True}  # fmt: skip
    result = BulkRestoreResult(dry_run)
    store, settings = session.store, session.settings
    with (
        session.connection() as conn,
        audited(conn, "restore", initiated_by=initiated_by, reason="Manual", parameters=params) as op,
    ):
        result.operation_id = op.id
        before = _requests(store)
        jobs = _select(session, queue=queue, status=status, archived_after=archived_after,
                       archived_before=archived_before, match=match, count=count)  # fmt: skip
        result.selected = len(jobs)
        if dry_run:
            result.jobs = jobs
            for j in jobs:
                result.by_queue[j.queue_name] = result.by_queue.get(j.queue_name, 0) + 1
                result.by_source[j.tier] = result.by_source.get(j.tier, 0) + 1
            for key, sclass in sorted({(j.object_key, j.storage_class) for j in jobs if j.tier == "cold"}):
                if sclass in ARCHIVE_STORAGE_CLASSES:
                    n = sum(1 for j in jobs if j.object_key == key)
                    note = "needs RestoreObject before these jobs can be restored"
                    result.pending.append({"object_key": key, "storage_class": sclass, "jobs": n, "note": note})
            op.outcome = "dry_run"
        else:
            _bulk_staging(conn, [j for j in jobs if j.tier == "staging"], result, progress, batch_size)
            _bulk_cold(conn, store, settings, [j for j in jobs if j.tier == "cold"], result, progress, batch_size)
        result.object_requests = _requests(store) - before
        result.execution_time_s = _time.perf_counter() - started
        op.counts = {k: v for k, v in result.to_dict(max_jobs=0).items() if k not in ("jobs", "jobs_truncated")}
    if result.restored and not dry_run:
        from tiering.engine.analyst import publish_listing_quietly

        publish_listing_quietly(session)  # the analysts' views leave restored jobs out
        iceberg.reconcile_quietly(session)  # so does the Iceberg table (position deletes), when enabled
    return result


def _record(result: BulkRestoreResult, job: ArchivedJob) -> None:
    result.restored += 1
    result.jobs.append(job)
    result.by_queue[job.queue_name] = result.by_queue.get(job.queue_name, 0) + 1
    result.by_source[job.tier] = result.by_source.get(job.tier, 0) + 1


def _bulk_staging(
    conn: psycopg.Connection,
    jobs: list[ArchivedJob],
    result: BulkRestoreResult,
    progress: ProgressFn | None,
    batch_size: int,
) -> None:
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        ids = [uuid.UUID(j.job_id) for j in batch]
        with conn.transaction():
            locks.share_moves(conn)
            rows = {str(r["id"]): r for r in qdb.staged_rows(conn, ids, lock=True)}
            staging.settle_marked_hot(conn, [uuid.UUID(j) for j in rows])
            hot = qdb.hot_ids(conn, ids)
            todo: list[dict[str, Any]] = []
            done: list[ArchivedJob] = []
            for job in batch:
                if job.job_id in hot:
                    result.skipped.append({"job_id": job.job_id, "reason": "in the hot table"})
                elif job.job_id not in rows:
                    result.skipped.append({"job_id": job.job_id, "reason": "left staging meanwhile"})
                else:
                    try:
                        todo.append(_staged_to_hot(rows[job.job_id]))
                    except CorruptPayloadError as exc:
                        result.skipped.append({"job_id": job.job_id, "reason": str(exc)})
                        continue
                    done.append(job)
            qdb.insert_hot(conn, todo)
            qdb.delete_staged(conn, [v["id"] for v in todo])
        for job in done:
            _record(result, job)
        if progress:
            progress(len(batch))


def _bulk_cold(
    conn: psycopg.Connection,
    store: ObjectStore,
    settings: Settings,
    jobs: list[ArchivedJob],
    result: BulkRestoreResult,
    progress: ProgressFn | None,
    batch_size: int,
) -> None:
    by_object: dict[int, list[ArchivedJob]] = {}
    for job in jobs:
        assert job.object_id is not None
        by_object.setdefault(job.object_id, []).append(job)
    if not by_object:
        return
    with conn.transaction():
        manifests = qdb.manifest_by_ids(conn, list(by_object))
    for object_id, group in by_object.items():
        m = manifests[object_id]
        try:
            _ensure_readable(conn, store, settings, object_id, m.key, m.storage_class, [j.job_id for j in group])
            wants = [(j.row_group or 0, j.row_in_group or 0) for j in group]
            rows = read_cold_rows(store, m.key, m.bytes, wants, columns=list(S.RESTORE_COLUMNS))
        except (RestoreInProgressError, ObjectArchivedError) as exc:
            tier = settings.glacier_restore_tier
            result.pending.append({
                "object_key": m.key, "storage_class": m.storage_class, "jobs": len(group), "tier": tier,
                "expected_wait": expected_wait(m.storage_class, tier),
                "started": isinstance(exc, RestoreInProgressError) and exc.started,
            })  # fmt: skip
            if progress:
                progress(len(group))
            continue
        except ObjectNotFoundError:  # a purge or an erase replaced the object since the jobs were selected
            reason = f"its object {m.key} was replaced meanwhile (purge or erase); retry"
            result.skipped.extend({"job_id": j.job_id, "reason": reason} for j in group)
            if progress:
                progress(len(group))
            continue
        result.object_reads += 1
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            with conn.transaction():
                locks.share_moves(conn)
                live = qdb.lock_live_index(conn, [(object_id, j.job_id) for j in batch])
                staging.settle_marked_hot(conn, [uuid.UUID(j) for j in live])
                hot = qdb.hot_ids(conn, [uuid.UUID(j.job_id) for j in batch])
                todo: list[dict[str, Any]] = []
                done: list[ArchivedJob] = []
                for job in batch:
                    row = rows.get(job.job_id)
                    if job.job_id in hot:
                        result.skipped.append({"job_id": job.job_id, "reason": "in the hot table"})
                    elif job.job_id not in live:
                        result.skipped.append({"job_id": job.job_id, "reason": "restored meanwhile"})
                    elif row is None:
                        result.skipped.append(
                            {"job_id": job.job_id, "reason": f"not found in {m.key} at its indexed row"}
                        )
                    else:
                        try:
                            todo.append(_cold_to_hot(row))
                        except CorruptPayloadError as exc:
                            result.skipped.append({"job_id": job.job_id, "reason": str(exc)})
                            continue
                        done.append(job)
                qdb.insert_hot(conn, todo)
                qdb.mark_restored(conn, [(object_id, j.job_id) for j in done])
            for job in done:
                _record(result, job)
            if progress:
                progress(len(batch))


__all__ = [
    "BulkRestoreResult",
    "RestoreInProgressError",
    "RestoreResult",
    "expected_wait",
    "hot_values",
    "restore_archived_job",
    "restore_archived_jobs",
]
