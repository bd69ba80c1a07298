"""A deep verify asked through the API stops at the request's deadline (issue 12's leftover): the API answered
503 at the deadline, and the worker kept reading the whole bucket for nobody, holding one of the few scan slots.
Now the deadline goes into the engine call, which stops between objects."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.helpers import insert_job, session_for
from tiering.context import Session
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.verify import verify_archive
from tiering.errors import OperationTimeout
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.service.admission import ScanPool
from tiering.service.app import create_app
from tiering.settings import Settings
from tiering.store import open_store

OBJECTS = 6  # one queue each


class SlowReads:
    """The store, with each whole-object read (what a deep verify does per object) taking `delay` seconds."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner, self.delay, self.whole_reads = inner, delay, 0
        self._lock = threading.Lock()

    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        if byte_range is None:
            time.sleep(self.delay)
            with self._lock:
                self.whole_reads += 1
        return bytes(self._inner.get_bytes(key, byte_range))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def archive(db_url: str, tmp_path: Path) -> dict[str, Any]:
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri(), api_token="t0ken")
    store = open_store(settings)
    with psycopg.connect(db_url) as conn:
        for i in range(OBJECTS * 3):
            insert_job(conn, queue=f"v{i % OBJECTS}", payload={"n": i})
        conn.commit()
    archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig())
    flushed = flush_staged(session_for(db_url, store, settings), ArchivalPolicy(), ArchivalConfig())
    assert flushed.objects_written == OBJECTS
    return {"settings": settings, "store": store}


def _last_verify(db_url: str) -> tuple[str, str | None]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT outcome, error FROM tiering_operations WHERE operation = 'verify' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_deep_verify_stops_between_objects_at_its_deadline(db_url: str, archive: dict[str, Any]) -> None:
    slow = SlowReads(archive["store"], 0.3)
    session = session_for(db_url, slow, archive["settings"])
    with pytest.raises(OperationTimeout, match="deadline"):
        verify_archive(session, deep=True, deadline=time.monotonic() + 0.4)
    assert 1 <= slow.whole_reads < OBJECTS  # it stopped before reading the rest
    assert _last_verify(db_url)[0] == "failed"  # and the audit trail says so
    report = verify_archive(session, deep=True)  # without a deadline: every object, as before
    assert report.ok and report.deep_checked == OBJECTS


def test_the_api_answers_503_and_the_worker_is_given_back(db_url: str, archive: dict[str, Any]) -> None:
    slow = SlowReads(archive["store"], 0.5)  # a whole pass takes 3 s; the deadline is 1 s
    session = Session(archive["settings"], database_url=db_url, store=slow)
    app = create_app(session)
    auth = {"Authorization": "Bearer t0ken"}
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            app.state.scans.shutdown()
            # one scan slot, no queue, a 1 s deadline; threads, so that the scans use this process's slow store
            app.state.scans = ScanPool(workers=1, queue=0, deadline=1.0)
            r = client.get("/api/archive/verify", params={"deep": "true"}, headers=auth)
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
            given_up = time.monotonic() + 60
            while True:  # the slot frees once the verify stops (429 while it still runs)
                r = client.get("/api/archive/search", params={"key": "n", "value": "1"}, headers=auth)
                if r.status_code != 429:
                    break
                assert time.monotonic() < given_up, "the verify kept its worker"
                time.sleep(0.05)
            assert r.status_code == 200 and r.json()["data"]["count"] == 1
            assert slow.whole_reads < OBJECTS  # it stopped early instead of reading every object for nobody
            assert _last_verify(db_url)[0] == "failed"
    finally:
        session.close()
