"""The scan pool: bounded running + waiting, refusal with Retry-After, a deadline that stops the scan."""

from __future__ import annotations

import threading
import time

import pytest

from tiering.errors import OperationTimeout
from tiering.service.admission import DeadlineExceeded, Overloaded, ScanPool


def test_full_pool_refuses_at_once_and_frees_its_slots() -> None:
    pool = ScanPool(workers=1, queue=1, deadline=10)
    release = threading.Event()
    started = threading.Event()

    def slow(stop: float) -> str:
        started.set()
        release.wait(10)
        return "done"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(pool.run("search", slow))) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait(5)
    time.sleep(0.1)  # the second one is queued
    t0 = time.monotonic()
    with pytest.raises(Overloaded) as exc:
        pool.run("search", slow)
    assert time.monotonic() - t0 < 0.5  # refused at once, not after waiting
    assert exc.value.http_status == 429 and exc.value.retry_after >= 1
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["done", "done"]
    assert pool.run("search", lambda stop: "again") == "again"  # slots came back
    assert pool.refused == 1
    pool.shutdown()


def test_deadline_stops_a_cooperative_scan_and_answers_503() -> None:
    pool = ScanPool(workers=1, queue=0, deadline=0.3)
    seen: list[float] = []

    def scan(stop: float) -> None:
        while True:
            if time.monotonic() > stop:
                seen.append(time.monotonic())
                raise OperationTimeout("stopped")
            time.sleep(0.01)

    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded) as exc:
        pool.run("search", scan)
    assert exc.value.http_status == 503 and exc.value.retry_after >= 1
    assert time.monotonic() - t0 < 2.0 and seen
    assert pool.run("search", lambda stop: 1) == 1  # the worker is free again
    pool.shutdown()


def test_deadline_answers_even_when_the_scan_ignores_it() -> None:
    pool = ScanPool(workers=1, queue=0, deadline=0.2)
    gate = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        pool.run("verify", lambda stop: gate.wait(5))
    assert time.monotonic() - t0 < 2.5
    with pytest.raises(Overloaded):  # still running: its slot stays taken until it ends
        pool.run("verify", lambda stop: 1)
    gate.set()
    time.sleep(0.2)
    assert pool.run("verify", lambda stop: 2) == 2
    pool.shutdown()
