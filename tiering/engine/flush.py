"""Staging -> cold: staged rows become zstd Parquet objects, committed with a two-phase manifest.

Per round: claim staged rows (FOR UPDATE SKIP LOCKED) and stream them as Arrow, write one or more parts
per (queue, UTC date, storage class), record each part as a *pending* manifest row before uploading it
(create-only, checksummed), optionally read it back, then ONE transaction commits the manifest rows,
writes the job index and deletes the staged rows. A crash at any instant leaves every job in exactly one
place; pending rows whose flusher died (its advisory lock is free) are cleaned by the next flush.
"""

from __future__ import annotations

import functools
import logging
import queue as queue_mod
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import tiering.parquet as pqio
from tiering import layout, lifecycle, memory
from tiering.context import Session
from tiering.db import arrow as arrowdb
from tiering.db import manifest as mdb
from tiering.db import planner, staging
from tiering.db.operations import audited
from tiering.engine import iceberg, publish
from tiering.engine.analyst import publish_listing_quietly
from tiering.engine.archive import analysing, settle_duplicates_of, settle_two_places
from tiering.errors import StoreError, VerificationError
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.schema import (
    SCHEMA_VERSION,
    PayloadDecodeError,
    to_archive_batch,
    uuid_array_to_str,
)
from tiering.settings import Settings
from tiering.store.base import ObjectStore, PutResult

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]
UPLOAD_THREADS = 8


def compression_ratio(stored: int, original: int) -> float | None:
    """THE compression ratio of tiering (run, flush, stats): bytes stored / original payload bytes."""
    return round(stored / original, 4) if original else None


@dataclass
class FlushStats:
    jobs_flushed: int = 0
    objects_written: int = 0
    bytes_written: int = 0
    payload_original_bytes: int = 0  # payload JSON bytes of the flushed jobs before compression
    uncompressed_bytes: int = 0
    rounds: int = 0
    abandoned_cleaned: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)
    by_storage_class: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # summed over worker threads
    quarantined: list[dict[str, str]] = field(default_factory=list)  # staged jobs whose payload is corrupt
    hot_copies_settled: int = 0  # hot rows Hammerwork only marked archived, removed (their copy moved on)
    duplicates_settled: list[dict[str, Any]] = field(default_factory=list)  # staged copies of cold jobs dropped
    execution_time_s: float = 0.0
    # the direct path's scan of the hot table: how many jobs it found eligible, and the finished jobs the policy
    # leaves hot per plain status (None: no direct path ran)
    scanned_eligible: int | None = None
    scanned_not_due: dict[str, int] = field(default_factory=dict)
    operation_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs_flushed": self.jobs_flushed,
            "objects_written": self.objects_written,
            "bytes_written": self.bytes_written,
            "payload_original_bytes": self.payload_original_bytes,
            # the one definition (stats uses it too): bytes stored / original payload bytes, lower is better
            "compression_ratio": compression_ratio(self.bytes_written, self.payload_original_bytes),
            "uncompressed_bytes": self.uncompressed_bytes,
            "cold_bytes_per_job": round(self.bytes_written / self.jobs_flushed, 2) if self.jobs_flushed else None,
            "rounds": self.rounds,
            "abandoned_cleaned": self.abandoned_cleaned,
            "by_queue": dict(sorted(self.by_queue.items())),
            "by_storage_class": dict(sorted(self.by_storage_class.items())),
            "warnings": self.warnings,
            "phase_seconds": {k: round(v, 3) for k, v in sorted(self.phase_seconds.items())},
            "quarantined": len(self.quarantined),
            "quarantined_jobs": self.quarantined[:100],
            "hot_copies_settled": self.hot_copies_settled,
            "duplicates_settled": len(self.duplicates_settled),
            "duplicates": self.duplicates_settled[:100],
            "execution_time_s": round(self.execution_time_s, 3),
            "operation_id": self.operation_id,
        }


def _bucket(store: ObjectStore) -> str:
    return store.location.bucket


def recover_abandoned(session: Session) -> int:
    """Delete objects (and pending rows) left by flushers that died between 'pending' and 'committed'."""
    cleaned = 0
    store = session.store
    with session.connection(autocommit=True) as conn:
        for row in mdb.abandoned_pending(conn):
            if row.bucket != _bucket(store):
                continue  # another store's leftovers: only that store's flusher can clean them
            result = store.delete_many([row.key])
            if result.errors:
                err = result.errors[0]
                raise StoreError(f"cannot remove the orphan object {row.key}: {err.code}: {err.message}")
            mdb.delete_pending(conn, row.id)
            cleaned += 1
            log.info("cleaned abandoned object %s (flush %s)", row.key, row.flush_id)
    return cleaned


def _class_runs(batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Split a batch sorted by storage class into runs of one class each."""
    classes = batch.column("tiering_storage_class")
    n = batch.num_rows
    if n == 0:
        return
    changes = pc.not_equal(classes.slice(1), classes.slice(0, n - 1))
    starts = [0] + [i + 1 for i in pc.indices_nonzero(changes).to_pylist()] + [n]
    for a, b in zip(starts, starts[1:], strict=False):
        yield classes[a].as_py(), batch.slice(a, b - a)


def _by_class(reader: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, Iterator[pa.RecordBatch]]]:
    """(storage class, its batches) from a stream sorted by class, holding one input batch at a time."""
    runs = (run for batch in reader for run in _class_runs(batch))
    lookahead: list[tuple[str, pa.RecordBatch]] = []

    def take(cls: str) -> Iterator[pa.RecordBatch]:
        while True:
            if lookahead:
                if lookahead[0][0] != cls:
                    return
                yield lookahead.pop()[1]
                continue
            nxt = next(runs, None)
            if nxt is None:
                return
            lookahead.append(nxt)

    while True:
        if not lookahead:
            nxt = next(runs, None)
            if nxt is None:
                return
            lookahead.append(nxt)
        cls = lookahead[0][0]
        group = take(cls)
        yield cls, group
        for _ in group:  # drain what the consumer left
            pass


def _to_archive(batches: Iterator[pa.RecordBatch], quarantined: list[tuple[str, str, str]]) -> Iterator[pa.RecordBatch]:
    """Staging rows -> archive rows. Rows whose payload cannot be decoded are left out (they stay staged) and
    added to `quarantined` as (job id, queue, reason): one corrupt payload does not stop a flush."""
    for batch in batches:
        batch = batch.drop_columns(["tiering_storage_class"])
        try:
            converted = to_archive_batch(batch)
        except PayloadDecodeError as exc:
            bad = {b.job_id: b.reason for b in exc.bad}
            ids = uuid_array_to_str(batch.column("id"))
            keep = pc.invert(pc.is_in(ids, pa.array(list(bad), pa.string())))
            queues = batch.column("queue_name")
            for i in pc.indices_nonzero(pc.invert(keep)).to_pylist():
                quarantined.append((ids[i].as_py(), queues[i].as_py(), bad[ids[i].as_py()]))
            converted = to_archive_batch(batch.filter(keep))
        if isinstance(converted, pa.Table):
            yield from converted.to_batches()
        else:
            yield converted


@dataclass
class _Part:
    manifest_id: int
    key: str
    queue: str
    storage_class: str
    written: Any  # tiering.parquet.WrittenPart
    pending: publish.Pending
    upload: Future[PutResult] | None = None


def count_staged_jobs(session: Session, queue: str | None = None) -> int:
    """How many staged jobs a flush would write now (progress totals)."""
    from tiering.db import query as qdb

    with session.connection() as conn:
        return qdb.count_staged(conn, queue)


def flush_staged(
    session: Session,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    *,
    queue: str | None = None,
    initiated_by: str | None = None,
    progress: ProgressFn | None = None,
    claim_rows: int | None = None,
    workers: int | None = None,
    crash_hook: Callable[[str], None] | None = None,
    carried: FlushStats | None = None,
) -> FlushStats:
    """Flush every staged job (of `queue`, or all) to the object store; returns what was written.

    Staged rows are planned as (queue, date) groups and packed into rounds of up to `claim_rows` rows;
    `workers` threads run rounds at once (each its own transaction), and other processes flushing the same
    database take other rows (SKIP LOCKED). `carried`: what this run's direct path (flush_hot) already wrote,
    counted in this flush's totals and audit record.
    """
    started = time.perf_counter()
    stats = carried or FlushStats()
    earlier_s = stats.execution_time_s
    store, settings = session.store, session.settings
    claim_rows = claim_rows or settings.round_rows
    params = {"queue": queue, "store": store.describe(), "compression_level": config.compression_level}
    with audited(session, "flush", initiated_by=initiated_by, reason="Automatic", parameters=params) as op:
        stats.operation_id = op.id
        stats.abandoned_cleaned += recover_abandoned(session)
        stats.warnings.extend(flush_warnings(session))
        carried_jobs = stats.jobs_flushed
        job = _FlushJob(store, settings, policy, config, stats, crash_hook or (lambda point: None), progress)
        workdir = Path(tempfile.mkdtemp(prefix="tiering-flush-", dir=_tmp_root(settings)))
        settled = False
        try:
            with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="tiering-upload") as uploads:
                job.uploads = uploads
                while True:
                    with session.arrow_connection() as arrow_conn:
                        groups = arrowdb.plan_groups(arrow_conn, queue)
                        arrow_conn.rollback()
                    if groups and not settled:
                        # beside Hammerwork's archiver: one place per job before and after the flush of staged rows.
                        # With nothing staged there is nothing to settle around (one hot-table scan each, 0.4-0.6 s
                        # at 300k jobs, at the end of every run): the direct path never leaves a job in two places
                        # (it skips a job that is staged, or marked by Hammerwork and cold), and what Hammerwork's
                        # archiver does meanwhile the next run's settling finds, as it would a moment after this.
                        _settle(session, queue, stats)
                        settled = True
                        continue  # planned again without what settling removed
                    rounds = plan_rounds(session, groups, claim_rows, workers)
                    if not rounds:
                        break
                    claimed = _run_rounds(session, job, rounds, claim_rows, workdir, workers or settings.workers)
                    if not claimed:
                        break  # what is left is held by other flushers
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        changed = []
        if stats.jobs_flushed - carried_jobs + len(stats.duplicates_settled) >= planner.BULK_ROWS:
            changed.append(planner.STAGING)  # (what the direct path carried in never was in staging)
        if stats.jobs_flushed >= planner.BULK_ROWS:
            changed.extend([planner.JOB_INDEX, planner.MANIFEST])
        with analysing(session, changed, vacuum=True):  # each on its own connection, beside the settling
            if settled:
                _settle(session, queue, stats)
        if stats.jobs_flushed:
            stats.warnings.extend(publish_listing_quietly(session))
        stats.warnings.extend(iceberg.reconcile_quietly(session))  # also heals an earlier crash
        stats.execution_time_s = earlier_s + time.perf_counter() - started
        op.counts = stats.to_dict() | {"keys": len(stats.keys)}
    return stats


def flush_hot(
    session: Session,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    pred: staging.Predicate,
    on_moved: Callable[[staging.Totals], None],
    on_scanned: Callable[[int, int], None] = lambda marked, eligible: None,
    *,
    reason: str,
    initiated_by: str | None,
    stats: FlushStats,
    progress: ProgressFn | None = None,
    claim_rows: int | None = None,
    workers: int | None = None,
    crash_hook: Callable[[str], None] | None = None,
) -> bool:
    """The direct path of `archive run` (a store configured, flushing on): eligible hot jobs go straight into
    objects, each round one transaction as a flush's (claim FOR UPDATE SKIP LOCKED, DELETE and stream, write,
    publish, then commit manifest rows + job index), so every job is written once and is hot or cold at every
    instant; the moves lock and the fault points are the flush's. One scan finds every eligible job's tid;
    each round then claims its share of them by tid. Adds what it wrote to
    `stats` and each round's moved jobs to `on_moved` (the archive totals); `on_scanned` gets, right after the scan,
    how many hot rows Hammerwork marked archived and how many eligible jobs it found. Returns False when it left rows to
    the staging path (a corrupt payload, a row refused at commit); the caller's staging move takes whatever
    is left, and the flush after it handles those rows as it does any staged row."""
    started = time.perf_counter()
    store, settings = session.store, session.settings
    claim_rows = claim_rows or settings.round_rows
    stats.abandoned_cleaned += recover_abandoned(session)  # a crashed direct round's objects, before new ones
    memory.prepare_for_bulk_io()  # the scan's and the rounds' big blocks (tiering.memory)
    scanning = time.perf_counter()
    scan = _scan_eligible(session, pred, workers or settings.workers)
    stats.phase_seconds["eligible_scan"] = time.perf_counter() - scanning  # once per run: wall time
    stats.scanned_eligible, stats.scanned_not_due = scan.eligible, dict(scan.not_due)
    on_scanned(scan.marked, scan.eligible)
    chunks = _tid_chunks(scan.tids, claim_rows)
    del scan
    memory.release_free_memory()  # what the scan's drivers freed
    groups = sorted(((q, key, len(tids)) for (q, key), tids in chunks.items()), key=lambda g: (-g[2], g[0], g[1]))
    source = _HotSource(pred, reason, initiated_by, on_moved, chunks)
    job = _FlushJob(store, settings, policy, config, stats, crash_hook or (lambda point: None), progress,
                    source=source)  # fmt: skip
    rounds = plan_rounds(session, groups, claim_rows, workers)
    if rounds:
        workdir = Path(tempfile.mkdtemp(prefix="tiering-direct-", dir=_tmp_root(settings)))
        try:
            with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="tiering-upload") as uploads:
                job.uploads = uploads
                _run_rounds(session, job, rounds, claim_rows, workdir, workers or settings.workers)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    stats.execution_time_s += time.perf_counter() - started
    return not job.stopped


def _scan_eligible(session: Session, pred: staging.Predicate, parts: int) -> arrowdb.HotScan:
    """arrowdb.eligible_hot over the whole hot table, cut into `parts` block ranges scanned at once on as many
    connections: the scan is the run's first step and ran alone on one core (300k jobs: 0.8-0.9 s, growing with
    the table). Each queue's tids come back in table order, as one scan gives them."""
    with session.connection(autocommit=True) as conn:
        total = staging.hot_blocks(conn)
    step = -(-total // max(1, parts))
    ranges = [(i * step, None if i == parts - 1 else (i + 1) * step) for i in range(max(1, parts))]
    if total < parts * MIN_SCAN_BLOCKS:
        ranges = [(0, None)]

    def scan(blocks: tuple[int, int | None]) -> arrowdb.HotScan:
        with session.arrow_connection() as conn:
            found = arrowdb.eligible_hot(conn, pred, blocks)
            conn.rollback()
            return found

    with ThreadPoolExecutor(len(ranges), thread_name_prefix="tiering-scan") as pool:
        return functools.reduce(arrowdb.HotScan.add, pool.map(scan, ranges))


MIN_SCAN_BLOCKS = 1024  # a smaller table is scanned whole, on one connection


def _tid_chunks(eligible: dict[str, pa.Array], size: int) -> dict[tuple[str, str], pa.Array]:
    """Each queue's eligible tids cut into balanced chunks of at most `size` (the most a round holds): (queue,
    chunk number) -> tids, packed into rounds by plan_rounds as the staged path's (queue, date) groups are (a
    queue that fits one round is claimed by one round, as before)."""
    chunks: dict[tuple[str, str], pa.Array] = {}
    for queue_name, mine in eligible.items():
        if not len(mine):
            continue
        pieces = -(-len(mine) // size)
        step = -(-len(mine) // pieces)
        for i in range(pieces):
            chunks[(queue_name, str(i))] = mine.slice(i * step, step)
    return chunks


def _settle(session: Session, queue: str | None, stats: FlushStats) -> None:
    settled = settle_two_places(session, queue)
    stats.hot_copies_settled += settled.hot_copies
    stats.duplicates_settled.extend(settled.cold_duplicates)


@dataclass(frozen=True)
class _HotSource:
    """The direct path's source: eligible hot jobs, archived by `reason`/`archived_by` straight into objects."""

    pred: staging.Predicate
    reason: str
    archived_by: str | None
    on_moved: Callable[[staging.Totals], None]
    chunks: dict[tuple[str, str], pa.Array]  # (queue, chunk) -> the tids its round claims (taken by that round)


@dataclass
class _FlushJob:
    store: ObjectStore
    settings: Settings
    policy: ArchivalPolicy
    config: ArchivalConfig
    stats: FlushStats
    hook: Callable[[str], None]
    progress: ProgressFn | None
    uploads: ThreadPoolExecutor | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    source: _HotSource | None = None  # None: staged rows (a flush); else the direct path's hot rows
    stopped: bool = False  # the direct path met rows it leaves to the staging path (corrupt, refused at commit)


def flush_warnings(session: Session) -> list[str]:
    """What a flush with these settings into this store should tell its user before it starts."""
    store, settings = session.store, session.settings
    if settings.sse and not store.capabilities.encrypts:
        return [
            f"{store.describe()} does not encrypt: sse={settings.sse} has no effect there "
            "(use an S3 store for server-side encryption)"
        ]
    return []


def plan_rounds(
    session: Session, groups: Sequence[tuple[str, str, int]], claim_rows: int, workers: int | None = None
) -> list[list[tuple[str, str]]]:
    """Pack (queue, date, staged rows) groups into rounds of at most `claim_rows` rows (and small enough that
    every one of `workers` (default: settings.workers) gets one); a group never spans two rounds unless it
    alone exceeds `claim_rows`."""
    workers = workers or session.settings.workers
    total = sum(n for _, _, n in groups)
    claim_rows = max(1, min(claim_rows, -(-total // max(1, workers))))
    rounds: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    size = 0
    for q, day, n in groups:
        if n >= claim_rows:
            rounds.append([(q, day)])
            continue
        if size + n > claim_rows and current:
            rounds.append(current)
            current, size = [], 0
        current.append((q, day))
        size += n
    if current:
        rounds.append(current)
    return rounds


def _run_rounds(
    session: Session, job: _FlushJob, rounds: list[list[tuple[str, str]]], claim_rows: int, workdir: Path, workers: int
) -> int:
    """Run the rounds on `workers` threads; a round over a big group repeats until it claims nothing."""
    todo: queue_mod.Queue[list[tuple[str, str]]] = queue_mod.Queue()
    for r in rounds:
        todo.put(r)
    total = 0
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        nonlocal total
        wd = workdir / f"w{n}"
        wd.mkdir(exist_ok=True)
        try:
            # one ADBC connection per worker for all its rounds (each round is its own transaction on it): a new
            # connection per round cost a backend start and the driver's type lookups every time
            with session.connection(autocommit=True) as meta, session.arrow_connection() as conn:
                while not errors:
                    try:
                        groups = todo.get_nowait()
                    except queue_mod.Empty:
                        return
                    while not errors:
                        claimed = _flush_round(conn, job, groups, claim_rows, meta, wd)
                        memory.release_free_memory()  # what the round freed, back before the next (tiering.memory)
                        with job.lock:
                            total += claimed
                        if claimed < claim_rows or job.stopped or job.source is not None:
                            break  # (a direct round claims the tids planned for it: nothing to repeat)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)

    memory.prepare_for_bulk_io()  # rounds' big blocks mapped on their own, not left in malloc's heaps
    threads = [threading.Thread(target=worker, args=(i,), name=f"tiering-flush-{i}") for i in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return total


def _tmp_root(settings: Settings) -> str | None:
    root = settings.tmp_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
        return str(root)
    except OSError:
        return None


def _flush_round(
    conn: Any, job: _FlushJob, groups: list[tuple[str, str]], claim_rows: int, meta: Any, workdir: Path
) -> int:
    while True:
        claimed = _flush_round_on(conn, job, groups, claim_rows, meta, workdir)
        if claimed is not None:
            return claimed  # else the database refused rows: they are quarantined, the round runs again


def _flush_round_on(
    conn: Any, job: _FlushJob, groups: list[tuple[str, str]], claim_rows: int, meta: Any, workdir: Path
) -> int | None:
    store, settings, policy, config = job.store, job.settings, job.policy, job.config
    flush_id = uuid.uuid4()
    parts: list[_Part] = []
    locked = False
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - mark
        mark = now

    claimed = 0
    read = [0]  # rows the claims returned
    retry = False
    quarantined: list[tuple[str, str, str]] = []
    source = job.source
    try:
        arrowdb.share_moves(conn)  # first in the round's transaction: an erase waits for the commit
        mdb.lock_flush(meta, flush_id)
        locked = True
        seq = 0
        today = arrowdb.transaction_day(conn) if source is not None else ""
        for queue_name, group_day in groups:
            if source is None and claimed >= claim_rows:
                break
            slug = layout.queue_slug(queue_name)
            if source is None:
                day = group_day
                cursor, reader = arrowdb.stream_claimed_group(
                    conn,
                    (queue_name, day),
                    claim_rows - claimed,
                    policy.storage_classes,
                    policy.default_storage_class,
                )
            else:
                day = today  # the jobs' archived_at is this transaction's now()
                cursor, reader = arrowdb.stream_claimed_hot(
                    conn,
                    source.pred,
                    queue_name,
                    source.chunks.pop((queue_name, group_day)),
                    policy.storage_classes,
                    policy.default_storage_class,
                    reason=source.reason,
                    archived_by=source.archived_by,
                )
            ahead = _ReadAhead(reader)
            try:
                for storage_class, batches in _by_class(_counted(ahead, read)):
                    group_dir = workdir / f"{flush_id.hex[:8]}-{seq:05d}"
                    group_dir.mkdir()

                    def name_for(i: int, _start: int = seq, _cls: str = storage_class) -> str:
                        return layout.part_name(flush_id, _start + i, _cls)

                    written_parts = pqio.write_parts(
                        _to_archive(batches, quarantined),
                        group_dir,
                        flush_id=flush_id,
                        part_name_fn=name_for,
                        compression_level=max(1, config.compression_level),
                        row_group_rows=settings.row_group_rows,
                        row_group_max_bytes=settings.row_group_max_bytes,
                        target_bytes=settings.object_size_target_bytes,
                        row_group_target_bytes=pqio.DEFAULT_ROW_GROUP_TARGET_BYTES,
                        sort_keys=pqio.FLUSH_SORT_KEYS,
                    )
                    for written in written_parts:
                        seq += 1
                        claimed += written.rows
                        part = _record_pending(meta, store, flush_id, queue_name, slug, day, storage_class, written)
                        warning = lifecycle.storage_class_warning(storage_class, written.bytes)
                        with job.lock:
                            if warning and warning not in job.stats.warnings:
                                job.stats.warnings.append(warning)
                        assert job.uploads is not None
                        part.upload = job.uploads.submit(
                            publish.upload, store, part.pending, read_back=config.verify_compression
                        )
                        parts.append(part)
            finally:
                ahead.close()
                cursor.close()
            job.hook("claimed")
        lap("read_write")
        if source is not None and quarantined:
            # the claim deleted rows this path cannot write: the round is rolled back whole (every row hot again)
            # and left to the staging path, which quarantines the bad rows as it does any staged row
            conn.rollback()
            _discard_parts(meta, store, parts)
            parts = []
            job.stopped = True
            return 0
        if source is not None and read[0] != claimed:
            raise VerificationError(f"direct round read {read[0]} hot rows but wrote {claimed}; nothing committed")
        if not claimed:
            conn.rollback()
            _record_quarantine(meta, job, quarantined)
            return 0
        job.hook("uploading")
        for part in parts:
            assert part.upload is not None
            publish.record_upload(meta, part.pending, part.upload.result())
        lap("upload")
        job.hook("uploaded")
        index = _index_rows(parts)
        if index.num_rows != claimed:
            raise VerificationError(f"flush wrote {index.num_rows} jobs but claimed {claimed}; nothing committed")
        try:
            arrowdb.commit_claimed(
                conn, [p.manifest_id for p in parts], index, claimed, arrowdb.STAGED if source is None else arrowdb.HOT
            )
        except arrowdb.CommitConflict as exc:
            if source is not None:
                # a job live cold is hot again unmarked (not a state tiering makes): the direct path leaves this
                # round to the staging path, whose flush settles or quarantines such rows
                _discard_parts(meta, store, parts)
                parts = []
                job.stopped = True
                return 0

            # refused rows whose job is already live cold (Hammerwork's archiver staged it again meanwhile) are
            # settled, the others quarantined; drop this round's objects; the round runs again without them
            _discard_parts(meta, store, parts)
            parts = []
            settled = settle_duplicates_of(meta, list(exc.bad))
            with job.lock:
                job.stats.duplicates_settled.extend(settled)
            gone = {d["job_id"] for d in settled}
            quarantined.extend((j, q, reason) for j, (q, reason) in exc.bad.items() if j not in gone)
            _record_quarantine(meta, job, quarantined)
            retry = True
        else:
            _record_quarantine(meta, job, quarantined)
            lap("commit")
            job.hook("committed")
    except BaseException:
        # Order matters: no upload of this round may land after its flush lock goes, and the flush lock goes
        # before the rollback releases the moves lock, so an erase waiting on that lock finds this round's
        # pending rows abandoned (and cleans them) instead of live.
        uploads = [part.upload for part in parts if part.upload is not None]
        for upload in uploads:
            upload.cancel()
        futures_wait(uploads)
        if locked:
            mdb.unlock_flush(meta, flush_id)
            locked = False
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back anyway
            pass
        raise
    finally:
        if locked:
            mdb.unlock_flush(meta, flush_id)
        for child in workdir.iterdir():
            shutil.rmtree(child, ignore_errors=True)
    if retry:
        return None
    if source is not None:
        source.on_moved(_moved_totals(index))
    with job.lock:
        stats = job.stats
        stats.rounds += 1
        stats.jobs_flushed += claimed
        for name, seconds in phases.items():
            stats.phase_seconds[name] = stats.phase_seconds.get(name, 0.0) + seconds
        for part in parts:
            stats.objects_written += 1
            stats.bytes_written += part.written.bytes
            stats.payload_original_bytes += part.written.payload_original_bytes
            stats.uncompressed_bytes += part.written.uncompressed_bytes
            stats.by_queue[part.queue] = stats.by_queue.get(part.queue, 0) + part.written.rows
            stats.by_storage_class[part.storage_class] = (
                stats.by_storage_class.get(part.storage_class, 0) + part.written.rows
            )
            stats.keys.append(part.key)
        if job.progress:
            job.progress(claimed)
    return claimed


_END = object()


class _ReadAhead:
    """A claim's batches read on a thread of their own, up to `depth` ahead of the writer: PostgreSQL goes on
    producing rows (and the driver decoding them) while this worker sorts, compresses and writes the ones it has,
    instead of the two taking turns (a stalled COPY waits for its reader). Memory: `depth` batches of
    arrowdb.CLAIM_BATCH_BYTES per worker. close() (always, before the cursor is closed) stops the thread after
    the batch it is reading; an error while reading is raised to the consumer."""

    def __init__(self, reader: Iterable[pa.RecordBatch], depth: int = 2) -> None:
        self._queue: queue_mod.Queue[object] = queue_mod.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(reader,), name="tiering-claim-read", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue_mod.Full:
                continue
        return False

    def _run(self, reader: Iterable[pa.RecordBatch]) -> None:
        try:
            for batch in reader:
                if not self._put(batch):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _counted(reader: Iterable[pa.RecordBatch], read: list[int]) -> Iterator[pa.RecordBatch]:
    """The reader's batches, adding their rows to read[0]."""
    for batch in reader:
        read[0] += batch.num_rows
        yield batch


def _discard_parts(meta: Any, store: ObjectStore, parts: list[_Part]) -> None:
    """Delete a round's uploaded objects and their pending rows (its flush lock is still held: nobody else may)."""
    for part in parts:
        if part.upload is not None:
            part.upload.result()  # finished already (the commit came after every upload)
    if parts:
        result = store.delete_many([p.key for p in parts])
        if result.errors:
            err = result.errors[0]
            raise StoreError(f"cannot remove {err.key} of a refused flush round: {err.code}: {err.message}")
    for part in parts:
        mdb.delete_pending(meta, part.manifest_id)


def _record_quarantine(meta: Any, job: _FlushJob, rows: list[tuple[str, str, str]]) -> None:
    """Remember corrupt staged payloads so later flushes skip them; they are reported, not lost."""
    if not rows:
        return
    mdb.quarantine(meta, rows, job.stats.operation_id)
    with job.lock:
        job.stats.quarantined.extend({"job_id": j, "queue": q, "reason": r} for j, q, r in rows)
    for job_id, _, reason in rows:
        log.warning("quarantined staged job %s: %s", job_id, reason)


def _record_pending(
    meta: Any,
    store: ObjectStore,
    flush_id: uuid.UUID,
    queue_name: str,
    slug: str,
    day: str,
    storage_class: str,
    written: Any,
) -> _Part:
    """Publish step 1 for one part: its pending manifest row, BEFORE the upload."""
    pending = publish.record_pending(
        meta,
        store,
        written,
        flush_id=flush_id,
        key=layout.object_key(store.prefix, slug, date.fromisoformat(day), written.part_name),
        queue_name=queue_name,
        queue_slug=slug,
        partition_date=date.fromisoformat(day),
        storage_class=storage_class,
        schema_version=SCHEMA_VERSION,
    )
    return _Part(pending.manifest_id, pending.key, queue_name, storage_class, written, pending)


def _moved_totals(index: pa.Table) -> staging.Totals:
    """(queue, status, jobs, payload bytes, payload bytes) of a direct round, as the staging move reports its
    batches (payloads are not stored anywhere in between, so stored = original)."""
    if not index.num_rows:
        return []
    grouped = index.group_by(["queue_name", "status"]).aggregate([("job_id", "count"), ("payload_bytes", "sum")])
    return [
        (str(q), str(st), int(n), int(b or 0), int(b or 0))
        for q, st, n, b in zip(
            grouped["queue_name"].to_pylist(), grouped["status"].to_pylist(), grouped["job_id_count"].to_pylist(),
            grouped["payload_bytes_sum"].to_pylist(), strict=True,
        )
    ]  # fmt: skip


def _index_rows(parts: list[_Part]) -> pa.Table:
    tables = []
    for part in parts:
        locs: pa.Table = part.written.job_locations
        tables.append(locs.append_column("object_id", pa.array([part.manifest_id] * locs.num_rows, pa.int64())))
    if not tables:
        return pa.table({"job_id": pa.array([], pa.string())})
    return pa.concat_tables(tables)
