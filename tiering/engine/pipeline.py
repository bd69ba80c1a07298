"""One archival run as every entry point runs it (CLI `archive run`, the API's `POST run`, the scheduler):
archive hot -> staging, flush staging -> objects, then the automatic purge."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tiering.context import Session
from tiering.policy import ArchivalConfig, ArchivalPolicy

Counter = Callable[[str, int], None]


def _noop(name: str, n: int) -> None:
    return None


def run_archival(
    session: Session,
    *,
    queue: str | None,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    reason: str,
    initiated_by: str,
    dry_run: bool = False,
    flush: bool = True,
    purge: bool = True,
    progress: Counter = _noop,
    phase: Callable[[str], None] | None = None,
    crash_hook: Callable[[str], None] | None = None,
    total: Counter | None = None,
) -> dict[str, Any]:
    """`progress(counter, n)`: n more jobs archived or flushed. `total(counter, n)`, when given: how many jobs the
    run found to archive ("archived"), before the first moves (progress bars; see archive_jobs)."""
    from tiering.engine.archive import archive_jobs, normalize_reason

    if dry_run:
        policy = replace(policy, dry_run=True)
    if not policy.dry_run and (flush or purge):
        # Before any job moves: a store that cannot take the objects stops the run here, with nothing moved.
        if phase:
            phase("preflight")
        session.store.preflight()
    if phase:
        phase("archive")
    direct = None
    carried = None
    if flush and not policy.dry_run:
        # The direct path: eligible hot jobs go straight into objects (written once), the staging move then takes
        # only what it left, and the flush below writes what was staged before (by Hammerwork or earlier runs).
        from functools import partial

        from tiering.engine.flush import FlushStats, flush_hot

        carried = FlushStats()
        direct = partial(
            flush_hot, session, policy, config, reason=normalize_reason(reason), initiated_by=initiated_by,
            stats=carried, progress=lambda n: progress("flushed", n), crash_hook=crash_hook,
        )  # fmt: skip
    flushing = flush and not policy.dry_run
    stats = archive_jobs(
        session, queue, policy, config, reason, initiated_by, workers=session.settings.workers,
        progress=lambda n: progress("archived", n), direct=direct, analyse=not flushing,
        total=None if total is None else (lambda n: total("archived", n)),
    )  # fmt: skip
    result: dict[str, Any] = stats.to_dict()
    from tiering.engine.archive import Background, analysing, explain_left_behind, left_behind

    if not flushing:
        result["left_behind"] = left_behind(session, queue, policy)  # why finished jobs stayed in hammerwork_jobs
    else:
        if phase:
            phase("flush")
        # what the move bulk-changed (the hot table) is analysed, and what it left behind counted, beside the flush
        # instead of before it
        with analysing(session, stats.changed_tables):
            behind = None
            if carried is not None and carried.scanned_eligible == stats.jobs_archived:
                # every job the direct path's scan found eligible moved: what stays hot is what that scan counted
                # beside them (as of the scan: a job finishing during the run shows in the next run's count)
                result["left_behind"] = explain_left_behind(policy, carried.scanned_not_due)
            else:  # some eligible job stayed (another run held it, it changed, it was refused): count them all
                behind = Background(lambda: left_behind(session, queue, policy), "left-behind")
            try:
                result["flush"] = run_flush(
                    session, policy, config, queue=queue, initiated_by=initiated_by, progress=progress,
                    crash_hook=crash_hook, carried=carried,
                )  # fmt: skip
            finally:
                if behind is not None:
                    result["left_behind"] = behind.join(reraise=sys.exc_info()[0] is None)
        if result["flush"].get("compression_ratio") is not None:
            # one definition with `stats`: the flushed objects' bytes / their original payload bytes
            result["staging_compression_ratio"] = result["compression_ratio"]
            result["compression_ratio"] = result["flush"]["compression_ratio"]
    if purge and not policy.dry_run and policy.auto_purge and policy.purge_archived_after is not None:
        if phase:
            phase("purge")
        result["purge"] = run_auto_purge(session, policy, initiated_by=initiated_by)
    return result


def run_flush(
    session: Session,
    policy: ArchivalPolicy,
    config: ArchivalConfig,
    *,
    queue: str | None = None,
    initiated_by: str,
    progress: Counter = _noop,
    crash_hook: Callable[[str], None] | None = None,
    carried: Any = None,
) -> dict[str, Any]:
    from tiering.engine.flush import flush_staged

    stats = flush_staged(
        session, policy, config, queue=queue, initiated_by=initiated_by,
        progress=lambda n: progress("flushed", n), crash_hook=crash_hook, carried=carried,
    )  # fmt: skip
    return stats.to_dict()


def run_auto_purge(session: Session, policy: ArchivalPolicy, *, initiated_by: str) -> dict[str, Any]:
    from tiering.engine.purge import auto_purge

    result = auto_purge(session, policy, initiated_by=initiated_by)
    return dict(result.to_dict())


def run_verify(
    session: Session,
    *,
    initiated_by: str,
    deep: bool = False,
    queue: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    from tiering.engine.verify import verify_archive

    report = verify_archive(session, queue=queue, deep=deep, initiated_by=initiated_by, deadline=deadline)
    return report.to_dict()
