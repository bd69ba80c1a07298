"""Admission control under overload (issue 12.5), functional (timings are measured in `make bench` only).

A server with one scan worker and one queue slot gets a burst of concurrent searches while clients list jobs:
searches beyond the pool are refused at once with 429 and Retry-After (never another error), every listing
request answers 200, and once the burst is over a search succeeds again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_api import ApiServer, archive_queue, fresh_database, start_api_server
from tests.helpers import insert_job


@pytest.fixture(scope="module")
def busy(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    env = {"TIERING_SEARCH_WORKERS": "1", "TIERING_SEARCH_QUEUE": "1", "TIERING_REQUEST_DEADLINE": "60"}
    with fresh_database(pg_server_url) as url:
        with psycopg.connect(url) as conn:
            for i in range(3000):
                insert_job(conn, queue=f"adm{i % 3}", payload={"user": {"id": f"u{i}"}, "pad": "x" * 300, "n": i})
            conn.commit()
        with start_api_server(url, tmp_path_factory.mktemp("admission"), env) as srv:
            with srv.client() as api:
                for q in ("adm0", "adm1", "adm2"):
                    archive_queue(api, q)
            yield srv


def test_searches_beyond_the_pool_get_429_and_listing_still_answers(busy: ApiServer) -> None:
    search_codes: list[tuple[int, str | None]] = []
    list_codes: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(20)

    def searcher(i: int) -> None:
        with busy.client() as api:
            go.wait()
            for _ in range(2):
                r = api.get("/api/archive/search", params={"key": "user.id", "value": f"u{i}"})
                with lock:
                    search_codes.append((r.status_code, r.headers.get("retry-after")))

    def lister() -> None:
        with busy.client() as api:
            go.wait()
            for _ in range(10):
                r = api.get("/api/archive/jobs", params={"limit": 20})
                with lock:
                    list_codes.append(r.status_code)

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(16)]
    threads += [threading.Thread(target=lister) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert list_codes == [200] * 40  # listing is never refused nor failed
    codes = [c for c, _ in search_codes]
    assert set(codes) <= {200, 429, 503}, search_codes
    refused = [ra for c, ra in search_codes if c == 429]
    assert refused, search_codes  # 16 concurrent searches, 2 admitted at a time
    assert all(ra is not None and int(ra) >= 1 for ra in refused)
    assert 200 in codes
    with busy.client() as api:
        r = api.get("/api/archive/search", params={"key": "user.id", "value": "u7"})
        assert r.status_code == 200 and r.json()["data"]["count"] == 1


def _scan_workers(parent: int) -> set[int]:
    """Pids of the spawned scan workers whose parent is `parent`."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            out.add(int(stat.parent.name))
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_scan_workers_end_with_the_server(pg_server_url: str, tmp_path: Path, how: str) -> None:
    with fresh_database(pg_server_url) as url:
        with start_api_server(url, tmp_path) as srv:
            with srv.client() as api:
                assert api.get("/api/archive/search", params={"key": "a", "value": "1"}).status_code == 200
            workers = _scan_workers(srv.proc.pid)
            assert workers, "the search ran in a worker process"
            (srv.proc.terminate if how == "terminate" else srv.proc.kill)()
            srv.proc.wait(30)
            deadline = time.monotonic() + 15
            while _alive(workers) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _alive(workers), f"scan workers outlived the server ({how})"
