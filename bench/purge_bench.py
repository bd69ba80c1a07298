"""Benchmark: purge every cold job by age (the lead seeds the cold tier, e.g. 1,000,000 jobs, and calls this)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tiering.engine.purge import purge_archived_jobs
from tiering.settings import Settings
from tiering.store.base import ObjectStore


def run_purge_bench(url: str, store: ObjectStore, settings: Settings) -> dict[str, Any]:
    """Purge everything archived before now; seconds taken and DeleteObjects calls made."""
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    started = time.perf_counter()
    result = purge_archived_jobs(url, store, settings, cutoff, initiated_by="bench")
    seconds = time.perf_counter() - started
    return {
        "purge_seconds": round(seconds, 3),
        "jobs_purged": result.jobs_purged,
        "cold_jobs_purged": result.cold_jobs_purged,
        "objects_deleted": result.objects_deleted,
        "objects_rewritten": result.objects_rewritten,
        "delete_objects_calls": result.delete_calls,
        "jobs_per_second": round(result.jobs_purged / seconds) if seconds else None,
        "errors": len(result.errors),
    }
