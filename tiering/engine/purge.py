"""Purge: permanently remove archived jobs by age (archived_at cutoff), queue and status, across staging and cold.

The plan (`preview_purge_operation`) and the purge use the same code, so the preview's numbers are what the
purge then does:

* staging rows are deleted with SQL;
* an object whose every archived job qualifies is deleted (DeleteObjects, PIPELINE_BATCH keys a call, per-key
  errors checked: an object that could not be deleted stays committed in the manifest and is reported), and
  only then marked purged, the marks of earlier calls running while later calls are sent; when every object
  under a `queue=/date=` prefix goes, the prefix is reported as purged (still deleted by key list);
* an object that only partly qualifies is rewritten without the purged rows into a new object (new key, new
  flush id), which is uploaded and swapped in ONE transaction (new manifest row committed with replaces_id,
  index rows moved, old row purged) before the old object is deleted;
* objects under S3 Object Lock (retention in the future, or a legal hold) are reported, never silently skipped.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from tiering import layout
from tiering import parquet as pqio
from tiering.context import Session
from tiering.db import manifest as mdb
from tiering.db import planner
from tiering.db import retention as rdb
from tiering.db.manifest import ManifestRow
from tiering.db.operations import audited
from tiering.engine import publish
from tiering.errors import InvalidInputError, SafetyAbort
from tiering.policy import ArchivalPolicy, normalize_status
from tiering.settings import Settings
from tiering.store.base import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)

DELETE_BATCH = 1000
# Whole objects are deleted in calls of this many keys, the next call running while the database marks the
# last one's objects: SeaweedFS spends the same time per key in calls of 250 as of 1000, and smaller calls let
# more of the two overlap.
PIPELINE_BATCH = 250
MARK_THREADS = 2
T = TypeVar("T")
HEAD_THREADS = 8
# Partial objects rewritten at a time: a rewrite mostly waits (reads, uploads, read-back, commits), so more
# threads than cores; each holds two pooled connections (the pool has 8 besides the workers').
REWRITE_THREADS = 4
REWRITE_BATCH = 64  # objects whose dropped jobs are read in one statement
REWRITE_COMPRESSION_LEVEL = 3


# --- shared with erase ---------------------------------------------------------------------------


def bucket_of(store: ObjectStore) -> str:
    return store.location.bucket


def utc_cutoff(older_than: datetime | timedelta, now: datetime | None = None) -> datetime:
    if isinstance(older_than, timedelta):
        return (now or datetime.now(UTC)) - older_than
    if older_than.tzinfo is None:
        return older_than.replace(tzinfo=UTC)
    return older_than


def clean_status(status: str | None) -> str | None:
    if status is None:
        return None
    try:
        return normalize_status(status)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc


@dataclass(frozen=True)
class LockedObject:
    key: str
    object_id: int
    jobs: int
    mode: str | None
    retain_until: datetime | None
    legal_hold: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "object_id": self.object_id,
            "jobs": self.jobs,
            "mode": self.mode,
            "retain_until": self.retain_until.isoformat() if self.retain_until else None,
            "legal_hold": self.legal_hold,
            "reason": "S3 Object Lock: the object cannot be deleted or replaced until its retention ends "
            "(or its legal hold is lifted); nothing in it was removed",
        }


def lock_of(info: ObjectInfo | None, now: datetime) -> tuple[bool, str | None, datetime | None, bool]:
    """(locked, mode, retain_until, legal_hold) of an object from its HEAD."""
    if info is None:
        return False, None, None, False
    hold = bool(info.object_lock_legal_hold)
    until = info.object_lock_retain_until
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    retained = until is not None and until > now
    return hold or retained, info.object_lock_mode, until, hold


def head_all(store: ObjectStore, keys: Sequence[str]) -> dict[str, ObjectInfo | None]:
    if not keys:
        return {}
    with ThreadPoolExecutor(min(HEAD_THREADS, len(keys))) as pool:
        return dict(zip(keys, pool.map(store.head, keys), strict=True))


def tmp_dir(settings: Settings) -> Path:
    root = settings.tmp_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="tiering-rewrite-", dir=str(root)))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="tiering-rewrite-"))


@dataclass
class DeleteOutcome:
    deleted: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0


def delete_keys(store: ObjectStore, keys: Sequence[str]) -> DeleteOutcome:
    """DeleteObjects in calls of at most 1000 keys; every per-key error is kept."""
    out = DeleteOutcome()
    for i in range(0, len(keys), DELETE_BATCH):
        batch = list(keys[i : i + DELETE_BATCH])
        result = store.delete_many(batch)
        out.calls += 1
        out.deleted.extend(result.deleted)
        out.errors.extend({"key": e.key, "code": e.code, "message": e.message} for e in result.errors)
    return out


def delete_whole_objects(
    session: Session,
    items: Sequence[T],
    row_of: Callable[[T], ManifestRow],
    also: Callable[[Any, list[T]], None] | None = None,
    phase: Callable[[str], AbstractContextManager[None]] | None = None,
    mark_threads: int = 1,
    wait_for_marks: bool = True,
) -> Iterator[tuple[DeleteOutcome, list[T]]]:
    """Delete whole objects, PIPELINE_BATCH keys a call; after each call mark the objects that went as purged
    (with `also`'s work in the same transaction) and yield (outcome, items gone), in batch order. Objects go
    before their manifest rows, so one that could not be deleted keeps its committed row and the manifest stays
    true.

    A large purge is a pipeline: one side thread sends the DeleteObjects calls back to back while `mark_threads`
    connections mark the batches already deleted (purge passes MARK_THREADS: the database's per-row DELETE of
    index rows is the larger part at 1M jobs, and then runs on both cores; `also` must be thread-safe for more
    than one). At most mark_threads + 1 batches are deleted and not yet marked, so a failure (or a crash) leaves
    at most those gone from the bucket but still committed: the state a crash between a delete and its mark
    always left, which the next purge settles (a missing key deletes fine). On a failure the calls not yet sent
    are cancelled. `phase` times the waits for the store ("delete_objects") and
    for the marks ("mark_purged"). With `wait_for_marks` False a mark's commit does not wait for its WAL to be
    flushed (purge): a crash may then lose marks already reported, which leaves the same state (objects gone,
    rows still committed) and the next purge settles it; the caller's next durable commit (its audit row) flushes
    them all."""
    timed = phase or (lambda _name: nullcontext())
    by_key = {row_of(item).key: item for item in items}
    keys = list(by_key)
    batches = [keys[i : i + PIPELINE_BATCH] for i in range(0, len(keys), PIPELINE_BATCH)]
    if not batches:
        return

    def mark(gone: DeleteOutcome) -> list[T]:
        done = [by_key[k] for k in gone.deleted]
        with session.connection() as conn:
            if not wait_for_marks:
                rdb.commit_without_waiting(conn)
            rdb.mark_objects_purged(conn, [row_of(item).id for item in done])
            if also is not None:
                also(conn, done)
            conn.commit()
        return done

    deleting: deque[Future[DeleteOutcome]] = deque()
    marking: deque[tuple[DeleteOutcome, Future[list[T]]]] = deque()
    sent = 0
    with (
        ThreadPoolExecutor(1, thread_name_prefix="tiering-delete") as store_side,
        ThreadPoolExecutor(max(1, min(mark_threads, len(batches))), thread_name_prefix="tiering-mark") as db_side,
    ):
        try:
            while True:
                while sent < len(batches) and len(deleting) + len(marking) <= mark_threads:
                    deleting.append(store_side.submit(delete_keys, session.store, batches[sent]))
                    sent += 1
                if deleting and len(marking) < mark_threads:
                    with timed("delete_objects"):
                        gone = deleting.popleft().result()
                    marking.append((gone, db_side.submit(mark, gone)))
                elif marking:
                    gone, marked = marking.popleft()
                    with timed("mark_purged"):
                        done = marked.result()
                    yield gone, done
                else:
                    return
        except BaseException:
            for pending in deleting:
                pending.cancel()
            raise


@dataclass
class RewriteOutcome:
    old: ManifestRow
    new_key: str | None = None
    new_id: int | None = None
    new_bytes: int = 0
    kept: int = 0
    old_deleted: bool = False
    delete_calls: int = 0
    error: dict[str, str] | None = None


def rewrite_object(
    session: Session,
    row: ManifestRow,
    drop_live: Sequence[str],
    drop_stale: Sequence[str],
    *,
    in_swap: Callable[[psycopg.Connection], None] | None = None,
    delete_old: bool = True,
) -> RewriteOutcome:
    """Replace `row`'s object by a copy without the `drop_live` jobs (and stale copies of restored jobs).

    The new object goes through the publish step like a flush's (pending manifest row under its flush lock,
    create-only checksummed upload with provenance, read-back), then ONE transaction swaps it in (swap_object +
    `in_swap`) and the old object is deleted (unless `delete_old` is False: the caller then deletes replaced
    objects in batches with `delete_replaced`; until then each is a leftover `retry_leftovers` finds). Errors are
    returned, not raised, and leave the old object committed unless the swap happened. Thread-safe: it takes its
    own pooled connections.
    """
    out = RewriteOutcome(row)
    flush_id = uuid.uuid4()
    work = tmp_dir(session.settings)
    try:
        with session.connection(autocommit=True) as meta:
            mdb.lock_flush(meta, flush_id)
            try:
                swapped = _rewrite_and_swap(session, meta, out, flush_id, work, drop_live, drop_stale, in_swap)
            finally:
                mdb.unlock_flush(meta, flush_id)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if swapped and delete_old:  # the new object is committed: now the old one goes
        delete_replaced(session, [out])
    return out


def delete_replaced(session: Session, outcomes: Sequence[RewriteOutcome]) -> None:
    """Delete the objects swapped out by these rewrites (DELETE_BATCH keys a call) and record them as gone; one
    that could not be deleted gets its outcome's error and stays a leftover (retried by the next purge)."""
    swapped = [o for o in outcomes if o.new_id is not None and not o.old_deleted]
    if not swapped:
        return
    gone = delete_keys(session.store, [o.old.key for o in swapped])
    swapped[0].delete_calls += gone.calls
    failed = {e["key"]: e for e in gone.errors}
    for o in swapped:
        err = failed.get(o.old.key)
        if err is not None:
            o.error = {"key": o.old.key, "stage": "delete_replaced", "code": err["code"], "message": err["message"]}
        else:
            o.old_deleted = True
    with session.connection() as conn:
        rdb.mark_deleted(conn, [o.old.id for o in swapped if o.old_deleted])
        conn.commit()


def _rewrite_and_swap(
    session: Session,
    meta: psycopg.Connection,
    out: RewriteOutcome,
    flush_id: uuid.UUID,
    work: Path,
    drop_live: Sequence[str],
    drop_stale: Sequence[str],
    in_swap: Callable[[psycopg.Connection], None] | None,
) -> bool:
    """Write the copy, publish it and swap it in; False (with out.error) when the old object stays committed."""
    row, store = out.old, session.store
    name = layout.part_name(flush_id, 0, row.storage_class)
    key = layout.object_key(layout.parse_key(row.key).prefix, row.queue_slug, row.partition_date, name)
    pending: publish.Pending | None = None
    uploaded = False
    stage = "read"
    try:
        drop = {j.lower() for j in drop_live} | {j.lower() for j in drop_stale}
        with store.open_input(row.key, size=row.bytes, readahead=8 * 1024 * 1024) as src:
            written = pqio.rewrite_without(
                src, work / f"{name}.parquet", drop, part_name=name, compression_level=REWRITE_COMPRESSION_LEVEL
            )
        if written is None:
            raise RuntimeError("no rows left after the rewrite: the object should have been deleted whole")
        locations = written.job_locations
        moves = list(
            zip(
                locations["job_id"].to_pylist(),
                locations["row_group"].to_pylist(),
                locations["row_in_group"].to_pylist(),
                strict=True,
            )
        )
        stage = "pending"
        pending = publish.record_pending(
            meta, store, written, flush_id=flush_id, key=key, queue_name=row.queue_name, queue_slug=row.queue_slug,
            partition_date=row.partition_date, storage_class=row.storage_class, schema_version=row.schema_version,
            replaces_id=row.id, replaces_key=row.key, bucket=row.bucket,
        )  # fmt: skip
        stage = "upload"
        put = publish.put(store, pending)
        uploaded = True
        stage = "read_back"
        publish.check_uploaded(store, pending)
        stage = "swap"
        with session.connection() as conn:
            with conn.transaction():  # the upload's etag goes on the pending row in the swap's commit (one less)
                publish.record_upload(conn, pending, put)
                rdb.swap_object(conn, row.id, pending.manifest_id, list(drop_live), moves)
                if in_swap is not None:
                    in_swap(conn)
        out.new_id, out.new_key, out.new_bytes, out.kept = pending.manifest_id, key, written.bytes, written.rows
        return True
    except Exception as exc:  # noqa: BLE001 - reported per object; the old object stays committed
        out.error = {"key": row.key, "stage": stage, "code": type(exc).__name__, "message": str(exc)}
        log.warning("rewrite of %s failed at %s: %s", row.key, stage, exc)
        if pending is not None:
            out.delete_calls += publish.discard(meta, store, pending, uploaded=uploaded)
        return False


def retry_leftovers(session: Session) -> tuple[int, int, list[dict[str, str]]]:
    """Delete replaced objects whose deletion failed earlier; (deleted, DeleteObjects calls, errors)."""
    store = session.store
    with session.connection() as conn:
        rows = rdb.leftover_objects(conn, bucket_of(store))
    if not rows:
        return 0, 0, []
    gone = delete_keys(store, [r.key for r in rows])
    ok = set(gone.deleted)
    with session.connection() as conn:
        rdb.mark_deleted(conn, [r.id for r in rows if r.key in ok])
        conn.commit()
    return len(ok), gone.calls, gone.errors


# --- plan / preview ------------------------------------------------------------------------------


@dataclass
class PurgePreview:
    jobs_to_purge: int
    objects_to_delete: int
    objects_to_rewrite: int
    storage_to_free: int
    affected_queues: list[str]
    oldest_affected: datetime | None
    newest_affected: datetime | None
    staging_jobs: int = 0
    cold_jobs: int = 0
    prefixes_to_purge: list[str] = field(default_factory=list)
    locked_objects: list[LockedObject] = field(default_factory=list)
    unreadable_objects: list[dict[str, str]] = field(default_factory=list)
    storage_estimated: bool = False
    jobs_by_queue: dict[str, int] = field(default_factory=dict)
    cutoff: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs_to_purge": self.jobs_to_purge,
            "staging_jobs": self.staging_jobs,
            "cold_jobs": self.cold_jobs,
            "objects_to_delete": self.objects_to_delete,
            "objects_to_rewrite": self.objects_to_rewrite,
            "storage_to_free": self.storage_to_free,
            "storage_to_free_is_estimate": self.storage_estimated,
            "affected_queues": self.affected_queues,
            "oldest_affected": self.oldest_affected.isoformat() if self.oldest_affected else None,
            "newest_affected": self.newest_affected.isoformat() if self.newest_affected else None,
            "jobs_by_queue": dict(sorted(self.jobs_by_queue.items())),
            "prefixes_to_purge": self.prefixes_to_purge,
            "locked_objects": [lo.to_dict() for lo in self.locked_objects],
            "unreadable_objects": self.unreadable_objects,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
        }


@dataclass
class _Plan:
    cutoff: datetime
    queue: str | None
    status: str | None
    staging: list[rdb.QueueSlice]
    deletes: list[rdb.ObjectCandidate]
    rewrites: list[rdb.ObjectCandidate]
    locked: list[LockedObject]
    unreadable: list[dict[str, str]]
    prefixes: list[str]

    def preview(self) -> PurgePreview:
        by_queue: dict[str, int] = {}
        times: list[datetime] = []
        storage = 0
        for s in self.staging:
            by_queue[s.queue_name] = by_queue.get(s.queue_name, 0) + s.jobs
            storage += s.bytes
            times += [t for t in (s.oldest, s.newest) if t is not None]
        for c in self.deletes + self.rewrites:
            if c.hits:
                by_queue[c.row.queue_name] = by_queue.get(c.row.queue_name, 0) + c.hits
            times += [t for t in (c.hit_oldest, c.hit_newest) if t is not None]
        for c in self.deletes:
            storage += c.row.bytes
        for c in self.rewrites:
            storage += estimated_saving(c.row, c.hits)
        staging_jobs = sum(s.jobs for s in self.staging)
        cold_jobs = sum(c.hits for c in self.deletes + self.rewrites)
        return PurgePreview(
            jobs_to_purge=staging_jobs + cold_jobs,
            objects_to_delete=len(self.deletes),
            objects_to_rewrite=len(self.rewrites),
            storage_to_free=storage,
            affected_queues=sorted(q for q, n in by_queue.items() if n)
            or sorted({c.row.queue_name for c in self.deletes}),
            oldest_affected=min(times) if times else None,
            newest_affected=max(times) if times else None,
            staging_jobs=staging_jobs,
            cold_jobs=cold_jobs,
            prefixes_to_purge=list(self.prefixes),
            locked_objects=list(self.locked),
            unreadable_objects=list(self.unreadable),
            storage_estimated=bool(self.rewrites),
            jobs_by_queue=by_queue,
            cutoff=self.cutoff,
        )


def estimated_saving(row: ManifestRow, dropped: int) -> int:
    """What rewriting `row` without `dropped` of its rows frees, estimated pro rata (exact only after it)."""
    return round(row.bytes * dropped / row.row_count) if row.row_count else 0


def _plan(session: Session, cutoff: datetime, queue: str | None, status: str | None, now: datetime) -> _Plan:
    store = session.store
    with session.connection() as conn:
        staging = rdb.staging_purge_summary(conn, cutoff, queue, status)
        candidates = rdb.purge_candidates(conn, cutoff, queue, status)
        conn.rollback()
    lock_possible = bool(candidates) and store.object_lock_possible()
    deletes, rewrites, locked, unreadable = classify_candidates(session, candidates, now, lock_possible=lock_possible)
    under: list[tuple[int, str, Any]] = []
    if deletes:
        with session.connection() as conn:
            under = rdb.manifest_ids_under(conn, bucket_of(store), [c.row.queue_slug for c in deletes])
    prefixes = purged_prefixes(deletes, under)
    return _Plan(cutoff, queue, status, staging, deletes, rewrites, locked, unreadable, prefixes)


def classify_candidates(
    session: Session, candidates: Sequence[rdb.ObjectCandidate], now: datetime, *, lock_possible: bool = True
) -> tuple[list[rdb.ObjectCandidate], list[rdb.ObjectCandidate], list[LockedObject], list[dict[str, str]]]:
    """The purge's rule per object, from its HEAD in the session's store: (deletes, rewrites, locked, unreadable).

    Object Lock wins over everything (reported, never touched); an object all of whose jobs qualify is deleted
    whole (even when archived in GLACIER: deleting needs no read); a partial one is rewritten only when it can
    be read (present, not archived). When the store says no object can be locked (`lock_possible` False: the
    bucket has no Object Lock), objects deleted whole need no HEAD; partial ones are still HEADed (readable?)."""
    infos = head_all(session.store, [c.row.key for c in candidates if lock_possible or not c.whole])
    deletes: list[rdb.ObjectCandidate] = []
    rewrites: list[rdb.ObjectCandidate] = []
    locked: list[LockedObject] = []
    unreadable: list[dict[str, str]] = []
    for c in candidates:
        info = infos.get(c.row.key)
        is_locked, mode, until, hold = lock_of(info, now)
        if is_locked:
            locked.append(LockedObject(c.row.key, c.row.id, c.hits, mode, until, hold))
        elif c.whole:
            deletes.append(c)
        elif info is None:
            unreadable.append({"key": c.row.key, "reason": "missing from the bucket (run `tiering archive verify`)"})
        elif info.archived:
            unreadable.append(
                {"key": c.row.key, "reason": f"in {info.storage_class}: request a restore before it can be rewritten"}
            )
        else:
            rewrites.append(c)
    return deletes, rewrites, locked, unreadable


def purged_prefixes(deletes: Sequence[rdb.ObjectCandidate], under: Sequence[tuple[int, str, Any]]) -> list[str]:
    """queue=/date= prefixes (and whole queue= prefixes) all of whose objects are deleted; `under` is every
    committed (object id, queue slug, date) under the slugs of `deletes`."""
    if not deletes:
        return []
    going = {c.row.id for c in deletes}
    by_slug: dict[str, dict[Any, set[int]]] = {}  # slug -> date -> object ids
    for object_id, slug, day in under:
        by_slug.setdefault(slug, {}).setdefault(day, set()).add(object_id)
    prefix_of: dict[str, str] = {}
    for c in deletes:
        if c.row.queue_slug not in prefix_of:
            prefix_of[c.row.queue_slug] = layout.parse_key(c.row.key).prefix
    out: list[str] = []
    for slug, dates in sorted(by_slug.items()):
        if all(ids <= going for ids in dates.values()):
            out.append(layout.queue_prefix(prefix_of[slug], slug))
            continue
        out.extend(layout.date_prefix(prefix_of[slug], slug, day) for day, ids in sorted(dates.items()) if ids <= going)
    return out


def preview_purge_operation(
    session: Session,
    older_than: datetime | timedelta,
    *,
    queue: str | None = None,
    status: str | None = None,
) -> PurgePreview:
    """What purge_archived_jobs with the same filters would do (nothing is changed)."""
    now = datetime.now(UTC)
    return _plan(session, utc_cutoff(older_than, now), queue, clean_status(status), now).preview()


# --- purge ---------------------------------------------------------------------------------------


@dataclass
class PurgeResult:
    dry_run: bool = False
    cutoff: datetime | None = None
    queue: str | None = None
    status: str | None = None
    jobs_purged: int = 0
    staging_jobs_purged: int = 0
    cold_jobs_purged: int = 0
    objects_deleted: int = 0
    objects_rewritten: int = 0
    storage_freed: int = 0
    delete_calls: int = 0
    jobs_by_queue: dict[str, int] = field(default_factory=dict)
    prefixes_purged: list[str] = field(default_factory=list)
    deleted_keys: list[str] = field(default_factory=list)
    rewritten: list[dict[str, Any]] = field(default_factory=list)
    locked_objects: list[LockedObject] = field(default_factory=list)
    unreadable_objects: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    leftovers_deleted: int = 0
    preview: PurgePreview | None = None
    skipped_reason: str | None = None
    execution_time_s: float = 0.0
    operation_id: int | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)  # where the time went (wall, in order)

    @property
    def ok(self) -> bool:
        return not self.errors

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to phase `name` (`make bench` prints them: what bounds a purge)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def affected_queues(self) -> list[str]:
        return sorted(q for q, n in self.jobs_by_queue.items() if n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "queue": self.queue,
            "status": self.status,
            "jobs_purged": self.jobs_purged,
            "staging_jobs_purged": self.staging_jobs_purged,
            "cold_jobs_purged": self.cold_jobs_purged,
            "objects_deleted": self.objects_deleted,
            "objects_rewritten": self.objects_rewritten,
            "storage_freed": self.storage_freed,
            "delete_calls": self.delete_calls,
            "affected_queues": self.affected_queues,
            "jobs_by_queue": dict(sorted(self.jobs_by_queue.items())),
            "prefixes_purged": self.prefixes_purged,
            "rewritten": self.rewritten,
            "locked_objects": [lo.to_dict() for lo in self.locked_objects],
            "unreadable_objects": self.unreadable_objects,
            "errors": self.errors,
            "leftovers_deleted": self.leftovers_deleted,
            "preview": self.preview.to_dict() if self.preview else None,
            "skipped_reason": self.skipped_reason,
            "execution_time_s": round(self.execution_time_s, 3),
            "operation_id": self.operation_id,
            "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
        }

    def audit_counts(self) -> dict[str, Any]:
        d = self.to_dict()
        d.pop("preview")
        d["locked_objects"] = len(self.locked_objects)
        d["rewritten"] = len(self.rewritten)
        return d


def _add(counter: dict[str, int], key: str, n: int) -> None:
    if n:
        counter[key] = counter.get(key, 0) + n


def purge_archived_jobs(
    session: Session,
    older_than: datetime | timedelta,
    *,
    queue: str | None = None,
    status: str | None = None,
    dry_run: bool = False,
    max_jobs: int | None = None,
    initiated_by: str | None = None,
    reason: str = "Manual",
) -> PurgeResult:
    """Permanently remove archived jobs with archived_at < older_than (of `queue`, with `status`) from staging
    and the cold tier. `max_jobs` aborts (SafetyAbort) before anything is deleted when more would go."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    cutoff = utc_cutoff(older_than, now)
    status = clean_status(status)
    store = session.store
    result = PurgeResult(dry_run=dry_run, cutoff=cutoff, queue=queue, status=status)
    params = {"older_than": cutoff, "queue": queue, "status": status, "dry_run": dry_run, "max_jobs": max_jobs,
              "store": store.describe()}  # fmt: skip
    with audited(session, "purge", initiated_by=initiated_by, reason=reason, parameters=params) as op:
        result.operation_id = op.id
        with session.connection(autocommit=True) as lock:
            rdb.lock_retention(lock)
            try:
                with result.phase("plan"):
                    plan = _plan(session, cutoff, queue, status, now)
                preview = plan.preview()
                result.preview = preview
                result.locked_objects = list(plan.locked)
                result.unreadable_objects = list(plan.unreadable)
                if max_jobs is not None and preview.jobs_to_purge > max_jobs:
                    raise SafetyAbort(
                        f"purge would remove {preview.jobs_to_purge} jobs, more than --max-jobs {max_jobs}; "
                        "nothing was deleted"
                    )
                if not dry_run:
                    _execute(session, plan, result)
                    if result.jobs_purged >= planner.BULK_ROWS:
                        with result.phase("statistics"):
                            _refresh_statistics(session, result)
            finally:
                rdb.unlock_retention(lock)
        result.execution_time_s = time.perf_counter() - started
        op.counts = result.audit_counts()
        if result.errors or result.locked_objects or result.unreadable_objects:
            op.outcome = "partial"
    if not dry_run and (result.objects_deleted or result.objects_rewritten):
        from tiering.engine.analyst import publish_listing_quietly

        with result.phase("listing"):
            publish_listing_quietly(session)  # the analysts' file list must not name deleted objects
    if not dry_run:
        from tiering.engine.iceberg import reconcile_quietly

        with result.phase("iceberg"):
            reconcile_quietly(session, expire=True)  # drops deleted/rewritten objects, one snapshot
    return result


def _refresh_statistics(session: Session, result: PurgeResult) -> None:
    """ANALYZE what the purge changed in bulk, each table on its own connection at once (archive.refresh_apart):
    the job index and the manifest; staging only when staged rows went (an unchanged staging keeps its)."""
    from tiering.engine.archive import refresh_apart

    tables = [planner.JOB_INDEX, planner.MANIFEST] if result.cold_jobs_purged else []
    if result.staging_jobs_purged:
        tables.append(planner.STAGING)
    refresh_apart(session, tables)


def _execute(session: Session, plan: _Plan, result: PurgeResult) -> None:
    with result.phase("leftovers"):
        result.leftovers_deleted, calls, errors = retry_leftovers(session)
    result.delete_calls += calls
    result.errors.extend({**e, "stage": "delete_replaced"} for e in errors)
    # 1. staging, when the plan found staged rows to purge (the preview's numbers are what the purge does): the
    #    DELETE scans what its filter's index finds, and a staging left full of dead rows by a flush (until it is
    #    vacuumed) costs each scan 0.13-0.3 s at 1M
    staged: dict[str, int] = {}
    if plan.staging:
        with result.phase("staging"), session.connection() as conn:
            staged = rdb.delete_staging(conn, plan.cutoff, plan.queue, plan.status)
            conn.commit()
    for q, n in staged.items():
        _add(result.jobs_by_queue, q, n)
    result.staging_jobs_purged = sum(staged.values())
    result.storage_freed += sum(s.bytes for s in plan.staging)  # stored payload bytes of the staged rows
    # 2. whole objects: delete first, then the manifest (an object that could not be deleted stays committed).
    #    In manifest id order: objects flushed together are neighbours, and so are their index rows in the heap,
    #    so each mark's DELETE dirties (and logs whole after a checkpoint) a run of pages of its own instead of
    #    most of the table's pages, as batches of one queue's objects over many days did
    by_id = sorted(plan.deletes, key=lambda c: c.row.id)
    for gone, done in delete_whole_objects(
        session, by_id, lambda c: c.row, phase=result.phase, mark_threads=MARK_THREADS, wait_for_marks=False
    ):
        result.delete_calls += gone.calls
        result.errors.extend({**e, "stage": "delete"} for e in gone.errors)
        for c in done:
            result.objects_deleted += 1
            result.cold_jobs_purged += c.hits
            result.storage_freed += c.row.bytes
            _add(result.jobs_by_queue, c.row.queue_name, c.hits)
            result.deleted_keys.append(c.row.key)
    failed = {e["key"] for e in result.errors}
    result.prefixes_purged = [p for p in plan.prefixes if not any(k.startswith(p) for k in failed)]
    # 3. partial objects: rewritten and swapped in, REWRITE_THREADS at a time (each its own publish and swap
    #    transaction); then the replaced objects are deleted in DeleteObjects batches. The jobs each drops are read
    #    for REWRITE_BATCH objects at once, the next batch's while this one's are rewritten (memory stays bounded);
    #    each swap checks that its object's jobs are still these (under the retention lock no purge or erase
    #    changes them)
    rewritten: list[tuple[rdb.ObjectCandidate, int, RewriteOutcome]] = []
    if plan.rewrites:
        with result.phase("rewrite"), ThreadPoolExecutor(min(REWRITE_THREADS, len(plan.rewrites))) as pool:
            running: deque[tuple[rdb.ObjectCandidate, int, Future[RewriteOutcome]]] = deque()
            for i in range(0, len(plan.rewrites), REWRITE_BATCH):
                batch = plan.rewrites[i : i + REWRITE_BATCH]
                with session.connection() as conn:
                    ids = rdb.rewrite_ids(conn, [c.row.id for c in batch], plan.cutoff, plan.status)
                    conn.rollback()
                for c in batch:
                    hits, stale = ids[c.row.id]
                    future = pool.submit(rewrite_object, session, c.row, hits, stale, delete_old=False)
                    running.append((c, len(hits), future))
                while len(running) > REWRITE_BATCH:
                    c, n, future = running.popleft()
                    rewritten.append((c, n, future.result()))
            rewritten.extend((c, n, future.result()) for c, n, future in running)
    with result.phase("delete_replaced"):
        delete_replaced(session, [outcome for _, _, outcome in rewritten])
    for c, dropped, outcome in rewritten:  # dropped: how many jobs the rewrite removed
        result.delete_calls += outcome.delete_calls
        if outcome.new_id is None:
            if outcome.error:
                result.errors.append(outcome.error)
            continue
        if outcome.error:  # swapped, but the old object is still in the bucket (retried next time)
            result.errors.append(outcome.error)
        result.objects_rewritten += 1
        result.cold_jobs_purged += dropped
        _add(result.jobs_by_queue, c.row.queue_name, dropped)
        if outcome.old_deleted:
            result.storage_freed += c.row.bytes - outcome.new_bytes
        result.rewritten.append(
            {"old_key": c.row.key, "new_key": outcome.new_key, "jobs_removed": dropped, "jobs_kept": outcome.kept,
             "old_bytes": c.row.bytes, "new_bytes": outcome.new_bytes}
        )  # fmt: skip
    result.jobs_purged = result.staging_jobs_purged + result.cold_jobs_purged


def purge_archived_jobs_by_queue(
    session: Session, queue: str, older_than: datetime | timedelta, **kwargs: Any
) -> PurgeResult:
    return purge_archived_jobs(session, older_than, queue=queue, **kwargs)


def purge_archived_jobs_by_status(
    session: Session, status: str, older_than: datetime | timedelta, **kwargs: Any
) -> PurgeResult:
    return purge_archived_jobs(session, older_than, status=status, **kwargs)


def auto_purge(session: Session, policy: ArchivalPolicy, initiated_by: str | None = None) -> PurgeResult:
    """The purge `tiering archive run` does: everything archived longer ago than policy.purge_archived_after."""
    if policy.purge_archived_after is None or not policy.auto_purge:
        return PurgeResult(skipped_reason="the policy sets no purge_archived_after (or auto_purge is off)")
    return purge_archived_jobs(session, policy.purge_archived_after, initiated_by=initiated_by, reason="Automatic")
