"""A cold restore reads its object on another thread while its transaction locks the job's index row and checks
the hot table (engine/restore.py). Whatever the read ends in, the transaction ends with it: a read that fails
leaves the job archived and unlocked, and two restores of one job at once bring it back exactly once."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from tests.helpers import count, session_for
from tests.integration.test_purge import BASE, Spec, make_jobs
from tiering.engine.restore import restore_archived_job
from tiering.errors import ConflictError, StoreError
from tiering.store.base import ObjectStore


@pytest.fixture
def flushed(s3_settings_factory: Any, db_url: str) -> tuple[Any, list[str]]:
    target = s3_settings_factory("moto_server")
    target.settings = target.settings.with_overrides(database_url=db_url)
    ids = make_jobs(db_url, [Spec("mail", "Completed", BASE) for _ in range(12)], flush=(target.store, target.settings))
    return target, ids


def _state(db_url: str, job_id: str) -> tuple[int, int, int]:
    """(hot rows, live index rows, restored index rows) of the job."""
    with psycopg.connect(db_url) as conn:
        return (
            count(conn, "hammerwork_jobs", "id = %s", (job_id,)),
            count(conn, "tiering_job_index", "job_id = %s AND restored_at IS NULL", (job_id,)),
            count(conn, "tiering_job_index", "job_id = %s AND restored_at IS NOT NULL", (job_id,)),
        )


def _not_locked(db_url: str, job_id: str) -> bool:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT 1 FROM tiering_job_index WHERE job_id = %s AND restored_at IS NULL FOR UPDATE NOWAIT", (job_id,)
        ).fetchall()
        return len(rows) == 1


def test_an_object_gone_during_the_read_leaves_the_job_archived_and_unlocked(
    flushed: tuple[Any, list[str]], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, ids = flushed
    store: ObjectStore = target.store
    (key,) = {o.key for o in store.list(store.prefix) if o.key.endswith(".parquet")}
    real_get = type(store).get_bytes

    def get_after_a_purge(self: ObjectStore, k: str, byte_range: Any = None) -> bytes:
        self.delete(k)  # replaced between the first look and the read
        return real_get(self, k, byte_range)

    monkeypatch.setattr(type(store), "get_bytes", get_after_a_purge)
    with pytest.raises(ConflictError, match="replaced meanwhile"):
        restore_archived_job(session_for(db_url, store, target.settings), ids[4], initiated_by="t")
    assert key not in {o.key for o in store.list(store.prefix)}
    assert _state(db_url, ids[4]) == (0, 1, 0)
    assert _not_locked(db_url, ids[4])
    with psycopg.connect(db_url) as conn:
        outcome = conn.execute("SELECT outcome FROM tiering_operations WHERE operation = 'restore'").fetchall()
    assert outcome == [("failed",)]


def test_an_index_that_does_not_match_the_object_restores_nothing(
    flushed: tuple[Any, list[str]], db_url: str
) -> None:
    target, ids = flushed
    with psycopg.connect(db_url) as conn:  # point the job at its neighbour's row
        conn.execute(
            "UPDATE tiering_job_index SET row_in_group = (row_in_group + 1) %% 12 WHERE job_id = %s", (ids[2],)
        )
    with pytest.raises(StoreError, match="does not match the job index"):
        restore_archived_job(session_for(db_url, target.store, target.settings), ids[2])
    assert _state(db_url, ids[2]) == (0, 1, 0)
    assert _not_locked(db_url, ids[2])


def test_two_restores_of_one_job_at_once_bring_it_back_once(flushed: tuple[Any, list[str]], db_url: str) -> None:
    target, ids = flushed
    for job_id in ids[:6]:
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def restore(jid: str = job_id, barrier: threading.Barrier = start, outcomes: list[str] = outcomes) -> None:
            session = session_for(db_url, target.store, target.settings)
            barrier.wait()
            try:
                outcomes.append("restored" if restore_archived_job(session, jid).restored else "no")
            except ConflictError as exc:
                outcomes.append(f"conflict: {exc}")

        threads = [threading.Thread(target=restore) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "restored"], outcomes
        assert _state(db_url, job_id) == (1, 0, 1)
