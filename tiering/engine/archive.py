"""Hot -> staging: move every eligible job out of hammerwork_jobs, batch by batch, until none is left."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg

from tiering import codec
from tiering.context import Session
from tiering.db import locks, planner, staging
from tiering.db.operations import audited
from tiering.errors import ConfigError
from tiering.policy import REASONS, ArchivalConfig, ArchivalPolicy, eligibility_clauses, normalize_status

ProgressFn = Callable[[int], None]
# The direct path (tiering.engine.flush.flush_hot, bound by the pipeline): given the eligibility predicate, where
# to add each round's moved jobs, and what to call once its scan of the hot table is done (with how many hot rows
# Hammerwork marked archived, and how many eligible jobs it found), it writes eligible hot jobs straight into objects;
# False when it left some to the staging move.
DirectFn = Callable[[staging.Predicate, Callable[[staging.Totals], None], Callable[[int, int], None]], bool]
log = logging.getLogger(__name__)


@dataclass
class ArchivalStats:
    jobs_archived: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    by_queue_status: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_original: int = 0
    bytes_stored: int = 0
    execution_time_s: float = 0.0
    dry_run: bool = False
    jobs_that_would_be_archived: int = 0
    hot_copies_settled: int = 0
    duplicates_settled: list[dict[str, Any]] = field(default_factory=list)  # staged copies of cold jobs dropped
    batches: int = 0
    operation_id: int | None = None
    skipped_reason: str | None = None
    # what this run bulk-changed (planner.BULK_ROWS rows or more) and so needs fresh statistics; analysed before
    # archive_jobs returns unless the caller asked to do it beside its own next steps (analyse=False)
    changed_tables: list[str] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float:
        """Stored / original bytes (the reference's "% compression"); 1.0 when nothing was stored."""
        return round(self.bytes_stored / self.bytes_original, 4) if self.bytes_original else 1.0

    @property
    def bytes_saved(self) -> int:
        return self.bytes_original - self.bytes_stored

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "jobs_archived": self.jobs_archived,
            "by_queue": dict(sorted(self.by_queue.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "by_queue_status": {q: dict(sorted(s.items())) for q, s in sorted(self.by_queue_status.items())},
            "bytes_original": self.bytes_original,
            "bytes_stored": self.bytes_stored,
            "bytes_saved": self.bytes_saved,
            "compression_ratio": self.compression_ratio,
            "execution_time_s": round(self.execution_time_s, 3),
            "hot_copies_settled": self.hot_copies_settled,
            "duplicates_settled": len(self.duplicates_settled),
            "duplicates": self.duplicates_settled[:100],
            "batches": self.batches,
            "dry_run": self.dry_run,
            "operation_id": self.operation_id,
        }
        if self.dry_run:
            doc["jobs_that_would_be_archived"] = self.jobs_that_would_be_archived
        if self.skipped_reason:
            doc["skipped_reason"] = self.skipped_reason
        return doc


@dataclass
class Settled:
    """What settle_two_places removed: Hammerwork-marked hot copies, and staged duplicates of cold jobs."""

    hot_copies: int = 0
    cold_duplicates: list[dict[str, Any]] = field(default_factory=list)


def settle_duplicates_of(conn: psycopg.Connection, job_ids: list[str]) -> list[dict[str, Any]]:
    """Settle these staged jobs if they are already live cold (a flush whose commit they refused); returns the
    settled ones, to be recorded. `conn` is in autocommit mode."""
    with conn.transaction():
        locks.share_moves(conn)
        dups = staging.settle_cold_duplicates(conn, None, max(1, len(job_ids)), job_ids)
    for dup in dups:
        log.warning("job %s was staged again after going cold (kept %s, dropped the staged copy)", dup["job_id"],
                    dup["kept"])  # fmt: skip
    return dups


def settle_two_places(
    session: Session, queue: str | None, batch_size: int = 1000, *, hot: bool = True, staged: bool = True
) -> Settled:
    """Every job in one place, beside Hammerwork's own archiver: a hot row Hammerwork only marked archived goes
    when its archive copy exists (staged or cold), and a staged row whose job is already live in the cold tier
    goes (the cold copy wins; each is returned so the caller records both copies). Batched transactions. `hot`
    / `staged`: settle that side (the hot side is a scan of the whole hot table)."""
    settled = Settled()
    with session.connection() as conn:
        while staged:
            with conn.transaction():
                locks.share_moves(conn)
                dups = staging.settle_cold_duplicates(conn, queue, batch_size)
            settled.cold_duplicates.extend(dups)
            if len(dups) < batch_size:
                break
        while hot:
            with conn.transaction():
                locks.share_moves(conn)
                n = staging.settle_hammerwork_hot_copies(conn, queue, batch_size)
            settled.hot_copies += n
            if n < batch_size:
                break
    for dup in settled.cold_duplicates:
        log.warning("job %s was staged again after going cold (kept %s, dropped the staged copy)", dup["job_id"],
                    dup["kept"])  # fmt: skip
    return settled


def normalize_reason(reason: str) -> str:
    for known in REASONS:
        if known.lower() == reason.strip().lower():
            return known
    raise ConfigError(f"reason: must be one of {', '.join(r.lower() for r in REASONS)} (got {reason!r})")


class _Accumulator:
    """Thread-safe totals shared by the worker connections of one run."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.bytes_original = 0
        self.bytes_stored = 0
        self.batches = 0
        self.staged = 0  # jobs moved into staging (the rest went straight into objects)
        self.progress = progress

    def add(self, totals: staging.Totals, *, staged: bool = True) -> None:
        with self.lock:
            moved = 0
            for queue_name, status, n, original, stored in totals:
                self.counts[(queue_name, _plain_status(status))] += n
                self.bytes_original += original
                self.bytes_stored += stored
                moved += n
            self.batches += 1
            if staged:
                self.staged += moved
            if self.progress:
                self.progress(moved)

    def add_direct(self, totals: staging.Totals) -> None:
        self.add(totals, staged=False)


def _plain_status(value: str) -> str:
    try:
        return normalize_status(value)
    except ValueError:
        return value


def _worker(
    session: Session,
    pred: staging.Predicate,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    reason: str,
    initiated_by: str | None,
    acc: _Accumulator,
    errors: list[BaseException],
) -> None:
    gzip = staging_codec(policy, config) is codec.Codec.GZIP
    refused: list[Any] = []  # claimed jobs a move left hot (already staged, ...): not claimed again by this mover
    try:
        with session.connection() as conn:
            while not errors:
                with conn.transaction():
                    locks.share_moves(conn)  # first in the transaction: an erase waits for the commit
                    if not gzip:
                        claimed, totals = _move_raw(conn, pred, policy, reason, initiated_by, refused)
                    else:
                        claimed, totals = _move_gzipped(conn, pred, policy, config, reason, initiated_by, refused)
                if not claimed:
                    return
                if totals:
                    acc.add(totals)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller thread, which re-raises
        errors.append(exc)


def staging_codec(policy: ArchivalPolicy, config: ArchivalConfig) -> codec.Codec:
    """gzip (Hammerwork's own codec) when asked for, else payloads copied as they are: staging stays readable
    by Hammerwork's restore, and zstd is applied inside Parquet, never in staging."""
    if config.payload_codec == "gzip" and policy.compress_archived_payloads and config.compression_level > 0:
        return codec.Codec.GZIP
    return codec.Codec.NONE


def _settle_claim(conn: psycopg.Connection, ids: list[Any], totals: staging.Totals, refused: list[Any]) -> None:
    """Every claimed job is moved or refused (and then skipped by the next claims); anything else rolls back."""
    moved = sum(t[2] for t in totals)
    if moved == len(ids):
        return
    left = staging.still_hot(conn, ids)
    if moved + len(left) != len(ids):
        raise RuntimeError(f"moved {moved} of {len(ids)} locked jobs; batch rolled back")
    refused.extend(left)


def _move_raw(
    conn: psycopg.Connection,
    pred: staging.Predicate,
    policy: ArchivalPolicy,
    reason: str,
    initiated_by: str | None,
    refused: list[Any],
) -> tuple[int, staging.Totals]:
    """One batch, claimed and moved in one statement, payloads as they are; (jobs claimed, totals)."""
    batch = staging.move_raw_batch(
        conn, pred, policy.batch_size, refused, reason=reason, archived_by=initiated_by
    )  # fmt: skip
    moved = sum(t[2] for t in batch.totals)
    if moved + len(batch.refused) != batch.claimed:
        raise RuntimeError(f"moved {moved} of {batch.claimed} locked jobs; batch rolled back")
    refused.extend(batch.refused)
    return batch.claimed, batch.totals


def _move_gzipped(
    conn: psycopg.Connection,
    pred: staging.Predicate,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    reason: str,
    initiated_by: str | None,
    refused: list[Any],
) -> tuple[int, staging.Totals]:
    rows = staging.claim_batch(conn, pred, policy.batch_size, refused)
    if not rows:
        return 0, []
    raws = [bytes(r[3]) for r in rows]
    stored, flags = codec.encode_many(
        raws, codec.Codec.GZIP, config.compression_level, config.min_payload_size_for_compression
    )
    if config.verify_compression:
        for raw, data, packed in zip(raws, stored, flags, strict=True):
            if packed and codec.decode(data) != raw:
                raise RuntimeError("payload compression verification failed")
    totals = staging.move_batch(
        conn,
        ids=[r[0] for r in rows],
        payloads=stored,
        compressed=flags,
        sizes=[len(r) for r in raws],
        reason=reason,
        archived_by=initiated_by,
    )
    _settle_claim(conn, [r[0] for r in rows], totals, refused)
    return len(rows), totals


def archive_jobs(
    session: Session,
    queue: str | None,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    reason: str = "Manual",
    initiated_by: str | None = None,
    *,
    workers: int = 2,
    progress: ProgressFn | None = None,
    now: datetime | None = None,
    direct: DirectFn | None = None,
    analyse: bool = True,
    total: ProgressFn | None = None,
) -> ArchivalStats:
    """Move every eligible job from hammerwork_jobs into hammerwork_jobs_archive (or, with `direct`, straight
    into objects first; the staging move then takes only what the direct path left).

    Each batch is one transaction; workers on separate connections divide the work with SKIP LOCKED,
    so concurrent runs (here or on other machines) never archive a job twice. The tables the run bulk-changed
    (stats.changed_tables) are analysed before returning, or, with analyse=False, left to the caller (see
    analysing: a run that flushes next analyses them beside the flush). `total` (a progress bar's), when given,
    is called once with how many jobs the run found to move, before the first is moved: the direct path's own scan
    counts them; the staging path has no scan of its own and counts them first (one more scan of the hot table,
    made only when asked).
    """
    reason = normalize_reason(reason)
    started = time.perf_counter()
    stats = ArchivalStats(dry_run=policy.dry_run)
    now = now or datetime.now(UTC)
    pred = staging.eligibility_predicate(eligibility_clauses(policy, now), queue)
    params = {"queue": queue, "dry_run": policy.dry_run, "batch_size": policy.batch_size,
              "compression_level": config.compression_level, "payload_codec": config.payload_codec,
              "direct": direct is not None}  # fmt: skip
    with audited(session, "archive", initiated_by=initiated_by, reason=reason, parameters=params) as op:
        stats.operation_id = op.id
        if not policy.enabled and reason == "Automatic":
            stats.skipped_reason = "the archival policy is disabled (enabled: false)"
            op.outcome = "skipped"
        elif policy.dry_run:
            with session.connection() as conn:
                _dry_run(conn, pred, queue, stats)
        else:
            acc = _Accumulator(progress)
            errors: list[BaseException] = []
            complete = False
            if direct is None:
                settled = settle_two_places(session, queue, policy.batch_size)
            else:
                # Settling runs beside the direct path: the two touch different rows. The eligibility predicate
                # already leaves out a hot row whose job is staged or cold (what settling deletes), and the direct
                # path never writes staging (whose cold duplicates settling deletes). Its hot side, a scan of the
                # whole hot table (1M jobs: 0.7-1.2 s of a core while the direct path's own scan holds both), runs
                # only when that scan saw a row Hammerwork marked archived; one marked after it, the next run's
                # settling finds, as it would a moment after this run.
                settling = [
                    Background(lambda: settle_two_places(session, queue, policy.batch_size, hot=False), "settle")
                ]

                def scanned(marked: int, eligible: int) -> None:
                    if total is not None:
                        total(eligible)
                    if marked:
                        settling.append(Background(
                            lambda: settle_two_places(session, queue, policy.batch_size, staged=False), "settle-hot"
                        ))  # fmt: skip

                try:
                    complete = direct(pred, acc.add_direct, scanned)
                except BaseException:
                    for s in settling:
                        s.join(reraise=False)
                    _fill(stats, acc.counts)  # the rounds that committed before the failure are recorded
                    stats.bytes_original, stats.bytes_stored = acc.bytes_original, acc.bytes_stored
                    op.counts = stats.to_dict()
                    raise
                settled = Settled()
                for part in [s.join() for s in settling]:
                    settled.hot_copies += part.hot_copies
                    settled.cold_duplicates.extend(part.cold_duplicates)
            stats.hot_copies_settled += settled.hot_copies
            stats.duplicates_settled.extend(settled.cold_duplicates)
            # after a complete direct pass the staging move would only rescan the hot table: what it could find
            # now became eligible during the run (the next run takes it) or is another run's (SKIP LOCKED).
            # Movers claim by the hot table alone, so one filling staging never slows another's claim
            # (staging.NO_JOIN_IN_CLAIM).
            if total is not None and direct is None:
                with session.connection() as conn:
                    total(sum(n for _, _, n in staging.count_eligible(conn, pred)))
            movers = max(1, workers)
            threads = [
                threading.Thread(
                    target=_worker,
                    args=(session, pred, policy, config, reason, initiated_by, acc, errors),
                    name=f"tiering-archive-{i}",
                    daemon=True,
                )
                for i in range(0 if complete else movers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            _fill(stats, acc.counts)
            stats.bytes_original, stats.bytes_stored, stats.batches = acc.bytes_original, acc.bytes_stored, acc.batches
            if errors:
                op.counts = stats.to_dict()
                raise errors[0]
            if stats.jobs_archived + stats.hot_copies_settled >= planner.BULK_ROWS:
                stats.changed_tables.append(planner.HOT)
            if acc.staged + len(stats.duplicates_settled) >= planner.BULK_ROWS:
                stats.changed_tables.append(planner.STAGING)  # (the direct path never writes staging)
        if analyse:
            refresh_apart(session, stats.changed_tables)
        stats.execution_time_s = time.perf_counter() - started
        op.counts = stats.to_dict()
    return stats


class Background:
    """fn() on a thread of its own; join() waits for it and returns its result or raises its error."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"tiering-{name}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the joining thread, which re-raises
            self._error = exc

    def join(self, *, reraise: bool = True) -> Any:
        self._thread.join()
        if self._error is not None and reraise:
            raise self._error
        return self._result


@contextmanager
def analysing(session: Session, tables: list[str], *, vacuum: bool = False) -> Iterator[None]:
    """Refresh the statistics of `tables` (refresh_apart) while the block runs; the block's end waits for it. A
    run that flushes next analyses the hot table beside the flush's own work instead of before it (1-3 s alone
    at the end of every run: one sort of a 30k-row sample per column, 48 columns)."""
    background = Background(lambda: refresh_apart(session, tables, vacuum=vacuum), "analyse")
    try:
        yield
    finally:
        background.join(reraise=sys.exc_info()[0] is None)


def refresh_apart(session: Session, tables: list[str], *, vacuum: bool = False) -> None:
    """ANALYZE (or VACUUM ANALYZE) each table on its own connection, all at once: each takes 1-3 s (one sort of a
    30k-row sample per column), which as one statement ran one after the other on one core."""
    if not tables:
        return

    def refresh(table: str) -> None:
        with session.connection(autocommit=True) as conn:
            planner.refresh_statistics(conn, [table], vacuum=vacuum)

    running = [Background(partial(refresh, t), f"analyse-{t}") for t in tables]
    errors: list[BaseException] = []
    for r in running:
        try:
            r.join()
        except BaseException as exc:  # noqa: BLE001 - the first is raised once all have finished
            errors.append(exc)
    if errors:
        raise errors[0]


def _fill(stats: ArchivalStats, counts: Counter[tuple[str, str]]) -> None:
    for (queue_name, status), n in counts.items():
        stats.by_queue[queue_name] = stats.by_queue.get(queue_name, 0) + n
        stats.by_status[status] = stats.by_status.get(status, 0) + n
        stats.by_queue_status.setdefault(queue_name, {})[status] = n
    stats.jobs_archived = sum(counts.values())


def _dry_run(conn: psycopg.Connection, pred: staging.Predicate, queue: str | None, stats: ArchivalStats) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    for queue_name, status, n in staging.count_eligible(conn, pred):
        counts[(queue_name, _plain_status(status))] += n
    _fill(stats, counts)
    stats.jobs_that_would_be_archived = stats.jobs_archived
    stats.jobs_archived = 0
    stats.hot_copies_settled = staging.count_hammerwork_hot_copies(conn, queue)


def left_behind(session: Session, queue: str | None, policy: ArchivalPolicy) -> dict[str, dict[str, Any]]:
    """Finished jobs still hot after a run, per status, with the reason (explain_left_behind)."""
    from tiering.db import query as qdb

    with session.connection() as conn:
        return explain_left_behind(policy, qdb.finished_hot_counts(conn, queue))


def explain_left_behind(policy: ArchivalPolicy, counts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Finished jobs the run left hot, per status, with the reason: not yet due (the policy's age for that status,
    or a queue's override) or a status the policy never archives."""
    from tiering.policy import format_duration

    out: dict[str, dict[str, Any]] = {}
    for status, n in sorted(counts.items()):
        after = policy.threshold_for(status)
        if after is None:
            reason = "the policy never archives this status"
        else:
            reason = f"not yet due: archived {format_duration(after)} after finishing"
            if policy.queue_policies:
                reason += " (or its queue's override in queue_policies)"
        out[status] = {"jobs": n, "reason": reason}
    return out
