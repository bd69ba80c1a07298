"""What each schedule entry and each API-started run does: the same pipeline as `tiering archive run`."""

from __future__ import annotations

from typing import Any

from tiering.context import Session
from tiering.engine.pipeline import run_archival, run_auto_purge, run_flush, run_verify

__all__ = ["run_archival", "run_auto_purge", "run_flush", "run_verify", "scheduled_task"]


def scheduled_task(session: Session, task: str) -> dict[str, Any]:
    """What each schedule entry does (initiated_by 'scheduler', reason Automatic)."""
    policy, config, _ = session.load_policy()
    who = "scheduler"
    if task == "archive":
        return run_archival(
            session, queue=None, policy=policy, config=config, reason="Automatic", initiated_by=who, purge=False
        )
    if task == "flush":
        return run_flush(session, policy, config, initiated_by=who)
    if task == "purge":
        if policy.purge_archived_after is None or not policy.auto_purge:
            return {"skipped_reason": "the policy has no purge_archived_after or auto_purge is false"}
        return run_auto_purge(session, policy, initiated_by=who)
    if task == "verify":
        return run_verify(session, initiated_by=who)
    raise ValueError(f"unknown scheduled task {task!r}")
