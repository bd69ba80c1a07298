"""Crash safety and scale-out of flush, with real processes and real S3 servers.

A `tiering archive run` subprocess is SIGKILLed at each fault point of a flush (TIERING_FAULT_INJECT) and at
random instants from outside; after a plain rerun every job is in exactly one place (hot, staging, or one
committed object, counted by reading every committed object), the bucket holds nothing but committed
objects, and `tiering archive verify` is clean. Several flushers at once (threads and CLI processes) on one
database and bucket flush each job exactly once.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import count, session_for
from tests.integration.test_flush import (
    CONFIG,
    TIERING_BIN,
    all_job_ids,
    archive_all,
    assert_exactly_once,
    cli_env,
    seed,
    snapshot,
    spread_archived_at,
)
from tiering.engine.flush import FlushStats, flush_staged
from tiering.policy import ArchivalPolicy

POLICY_DOC = {
    "archive_completed_after": "0s",
    "archive_failed_after": "0s",
    "archive_dead_after": "0s",
    "archive_timed_out_after": "0s",
    "purge_archived_after": None,
}
TERMINAL = ("Completed", "Failed", "Dead", "TimedOut")


@pytest.fixture
def world(db_url: str, s3_settings_factory: Any, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A database with a staged backlog over 3 dates and more finished jobs still hot, a fresh bucket, and the
    environment a `tiering` process needs to work on both."""
    backend = getattr(request, "param", "moto_server")
    target = s3_settings_factory(backend)
    seed(db_url, 600, start=1)
    archive_all(db_url)
    spread_archived_at(db_url, 3)  # 6 queues x 3 dates staged
    seed(db_url, 600, start=601)  # and more finished jobs in the hot table
    return cli_world(db_url, target, tmp_path)


def cli_world(db_url: str, target: Any, tmp_path: Path) -> dict[str, Any]:
    """The environment a `tiering` process needs (POLICY_DOC in a file, a home) and every job id seeded so far."""
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY_DOC))
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(target, db_url, home, TIERING_POLICY=str(policy_file))
    return {"url": db_url, "target": target, "env": env, "expected": all_job_ids(db_url)}


def run_cli(
    env: dict[str, str], *args: str, fault: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(env)
    if fault:
        env["TIERING_FAULT_INJECT"] = fault
    t0 = time.monotonic()
    done = subprocess.run([TIERING_BIN, *args], env=env, capture_output=True, text=True, timeout=timeout)
    print(f"{args} fault={fault}: rc={done.returncode} in {time.monotonic() - t0:.1f}s")
    return done


def assert_settled(world: dict[str, Any]) -> None:
    """After a clean run: nothing staged, nothing finished left hot, exactly once everywhere, verify clean."""
    url, target = world["url"], world["target"]
    snap = assert_exactly_once(url, target.store, world["expected"])
    assert not snap.staged
    with psycopg.connect(url) as conn:
        assert count(conn, "hammerwork_jobs", "status = ANY(%s)", (list(TERMINAL),)) == 0
    assert sum(r.row_count for r in snap.committed) == len(world["expected"]) - len(snap.hot)
    verify = run_cli(world["env"], "archive", "verify", "--deep", "--format", "json")
    assert verify.returncode == 0, verify.stderr
    doc = json.loads(verify.stdout)
    assert doc["ok"] is True and doc["problems"] == [], doc
    assert doc["objects_checked"] == len(snap.committed)


@pytest.mark.parametrize("point", ["claimed", "uploading", "uploaded", "committed"])
def test_sigkill_at_each_fault_point_then_rerun_is_exactly_once(point: str, world: dict[str, Any]) -> None:
    url, store = world["url"], world["target"].store

    killed = run_cli(world["env"], "archive", "run", "--format", "json", fault=point)

    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert killed.stdout == ""  # died before printing anything
    crashed = assert_exactly_once(url, store, world["expected"], settled=False)
    if point in ("claimed", "uploading"):
        assert not crashed.committed
    if point == "uploaded":
        # the dead flush's objects are in the bucket, recorded as pending: orphans for the rerun to clean
        # (another worker's round may still have been uploading when the process died)
        assert crashed.pending and not crashed.committed
        assert crashed.listed and crashed.listed <= {r.key for r in crashed.pending}
    if point == "committed":
        assert crashed.committed  # a round committed; other workers' rounds may have been in flight
    orphans = crashed.listed - {r.key for r in crashed.committed}

    rerun = run_cli(world["env"], "archive", "run", "--format", "json")

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads(rerun.stdout)
    assert result["flush"]["abandoned_cleaned"] == len(crashed.pending)
    assert result["flush"]["jobs_flushed"] == len(crashed.staged) + result["jobs_archived"]
    assert not orphans & {i.key for i in store.list(store.prefix)}
    assert_settled(world)


@pytest.mark.parametrize("world", [pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)], indirect=True)
def test_sigkill_at_random_instants_then_rerun_is_exactly_once(world: dict[str, Any]) -> None:
    url, store = world["url"], world["target"].store
    rng = random.Random(20240607)
    kills = []
    for i in range(5):
        seed(url, 300, start=10_000 + 1000 * i)  # fresh work for every run
        world["expected"] = all_job_ids(url) | world["expected"]
        proc = subprocess.Popen(
            [TIERING_BIN, "archive", "run", "--format", "json"],
            env=world["env"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        t0 = time.monotonic()
        if i < 2:
            delay = rng.uniform(0.1, 2.0)  # blind: anywhere from start-up to the end
        else:
            delay = _flush_started(url, proc, t0) + rng.uniform(0.0, 0.6)  # somewhere inside the flush
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        # whatever instant it died at, no job is lost or duplicated (orphan objects may be left)
        snap = assert_exactly_once(url, store, world["expected"], settled=False)
        kills.append((round(delay, 2), proc.returncode, len(snap.staged), len(snap.pending), len(snap.committed)))
    print("kills (delay, rc, staged, pending, committed):", kills)
    assert any(rc == -signal.SIGKILL for _, rc, *_ in kills), kills

    rerun = run_cli(world["env"], "archive", "run", "--format", "json")

    assert rerun.returncode == 0, (kills, rerun.stderr[-3000:])
    assert_settled(world)


def _flush_started(url: str, proc: subprocess.Popen[bytes], t0: float) -> float:
    """Seconds from spawn (at t0) until this process's flush began (its 'flush' operation row appears)."""
    with psycopg.connect(url, autocommit=True) as conn:
        (before,) = conn.execute("SELECT coalesce(max(id), 0) FROM tiering_operations").fetchone()
        while proc.poll() is None and time.monotonic() - t0 < 30:
            row = conn.execute(
                "SELECT 1 FROM tiering_operations WHERE operation = 'flush' AND id > %s", (before,)
            ).fetchone()
            if row:
                break
            time.sleep(0.01)
    return time.monotonic() - t0


# --- several flushers at once ---------------------------------------------------------------------
@pytest.mark.parametrize("world", [pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)], indirect=True)
def test_three_concurrent_flusher_threads_share_the_work(world: dict[str, Any]) -> None:
    url, target = world["url"], world["target"]
    archive_all(url)
    spread_archived_at(url, 3)
    with psycopg.connect(url) as conn:
        staged = count(conn, "hammerwork_jobs_archive")
    policy = ArchivalPolicy()
    barrier = threading.Barrier(3)
    results: list[FlushStats] = []
    errors: list[BaseException] = []

    def flusher() -> None:
        store = target.open_store()  # each worker its own client, as separate machines would have
        barrier.wait()
        try:
            results.append(
                flush_staged(
                    session_for(url, store, target.settings), policy, CONFIG, claim_rows=40, workers=1, initiated_by="w"
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flusher) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert not errors, errors
    flushed = [r.jobs_flushed for r in results]
    assert sum(flushed) == staged
    assert all(n > 0 for n in flushed), f"a flusher took no part: {flushed}"
    assert not set.intersection(*(set(r.keys) for r in results))
    assert_settled(world)


def test_two_concurrent_cli_flushes(world: dict[str, Any]) -> None:
    url = world["url"]
    with psycopg.connect(url) as conn:
        staged = count(conn, "hammerwork_jobs_archive")
    procs = [
        subprocess.Popen(
            [TIERING_BIN, "archive", "flush", "--format", "json"],
            env=world["env"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    docs = [json.loads(o) for o, _ in outs]
    assert sum(d["jobs_flushed"] for d in docs) == staged
    snap = snapshot(url, world["target"].store)
    assert not snap.staged
    # the finished jobs still hot go through a normal run afterwards
    assert run_cli(world["env"], "archive", "run", "--format", "json").returncode == 0
    assert_settled(world)
