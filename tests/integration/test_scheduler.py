"""The scheduler against embedded PostgreSQL: several instances run a due window exactly once, a missed
window runs once, and the real scheduled tasks (archive + flush) run through the engine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import count, insert_job, session_for
from tiering.db.policies import put_policy_document
from tiering.engine.scheduler import Scheduler, TickResult, next_window, previous_window
from tiering.service.app import build_scheduler
from tiering.settings import Settings

T0 = datetime(2030, 1, 1, 10, 7, 30, tzinfo=UTC)


class Recorder:
    def __init__(self, seconds: float = 0.3) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.seconds = seconds

    def __call__(self, task: str) -> dict[str, Any]:
        with self.lock:
            self.calls.append(task)
        time.sleep(self.seconds)
        return {"ran": task}


def _schedules(**entries: str) -> Any:
    return lambda: {task: (cron, "settings") for task, cron in entries.items()}


def _tick_together(schedulers: list[Scheduler], now: datetime) -> list[TickResult]:
    barrier = threading.Barrier(len(schedulers))
    results: list[TickResult] = []
    lock = threading.Lock()

    def go(s: Scheduler) -> None:
        barrier.wait()
        out = s.tick(now)
        with lock:
            results.extend(out)

    threads = [threading.Thread(target=go, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _runs(url: str) -> list[tuple[str, datetime, str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (r[0], r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT task, window_start, instance, outcome FROM tiering_schedule_runs ORDER BY window_start"
            )
        ]


def test_windows() -> None:
    assert previous_window("*/5 * * * *", T0) == datetime(2030, 1, 1, 10, 5, tzinfo=UTC)
    assert previous_window("*/5 * * * *", datetime(2030, 1, 1, 10, 5, tzinfo=UTC)) == datetime(
        2030, 1, 1, 10, 5, tzinfo=UTC
    )
    assert next_window("0 2 * * *", T0) == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)


def test_two_schedulers_run_a_due_window_exactly_once(db_url: str) -> None:
    work = Recorder()
    sched = _schedules(verify="*/5 * * * *", flush="0 * * * *")
    a = Scheduler(session_for(db_url), sched, work, instance="a")
    b = Scheduler(session_for(db_url), sched, work, instance="b")
    first = _tick_together([a, b], T0 - timedelta(hours=1))  # schedules first seen: baseline, nothing runs
    assert sorted(r.outcome for r in first if r.outcome == "baseline") == ["baseline", "baseline"]
    assert work.calls == []
    results = _tick_together([a, b], T0)
    assert sorted(work.calls) == ["flush", "verify"]
    by_task: dict[str, list[str]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r.outcome)
    for task in ("flush", "verify"):
        outcomes = sorted(by_task[task])
        assert outcomes.count("succeeded") == 1, outcomes
        assert set(outcomes) - {"succeeded"} <= {"skipped_locked", "skipped_done"}
    runs = [r for r in _runs(db_url) if r[3] != "baseline"]
    assert sorted((r[0], r[1], r[3]) for r in runs) == [
        ("flush", datetime(2030, 1, 1, 10, 0, tzinfo=UTC), "succeeded"),
        ("verify", datetime(2030, 1, 1, 10, 5, tzinfo=UTC), "succeeded"),
    ]
    # the same window again, from either instance, a minute later: nothing runs
    later = [*a.tick(T0 + timedelta(minutes=1)), *b.tick(T0 + timedelta(minutes=1))]
    assert {r.outcome for r in later} == {"skipped_done"}
    assert len(work.calls) == 2


def test_many_schedulers_one_run(db_url: str) -> None:
    work = Recorder(0.2)
    sched = _schedules(archive="* * * * *")
    schedulers = [Scheduler(session_for(db_url), sched, work, instance=f"i{i}") for i in range(5)]
    assert [r.outcome for r in _tick_together(schedulers, T0 - timedelta(minutes=3))].count("baseline") == 1
    results = _tick_together(schedulers, T0)
    assert work.calls == ["archive"]
    assert [r.outcome for r in results].count("succeeded") == 1
    assert len(_runs(db_url)) == 2


def test_missed_window_runs_once(db_url: str) -> None:
    work = Recorder(0)
    s = Scheduler(session_for(db_url), _schedules(purge="*/5 * * * *"), work, instance="solo")
    assert [r.outcome for r in s.tick(T0 - timedelta(minutes=5))] == ["baseline"]
    assert [r.outcome for r in s.tick(T0)] == ["succeeded"]
    # down for hours: 30 windows were missed; the next tick runs the latest one once
    back = T0 + timedelta(hours=2, minutes=26)
    assert [(r.outcome, r.window) for r in s.tick(back)] == [("succeeded", datetime(2030, 1, 1, 12, 30, tzinfo=UTC))]
    assert [r.outcome for r in s.tick(back + timedelta(seconds=50))] == ["skipped_done"]
    assert work.calls == ["purge", "purge"]
    assert len(_runs(db_url)) == 3


def test_a_new_or_changed_schedule_starts_with_the_next_window(db_url: str) -> None:
    work = Recorder(0)
    crons = {"flush": "0 2 * * *"}
    s = Scheduler(session_for(db_url), lambda: {t: (c, "policy") for t, c in crons.items()}, work)
    # configured at 10:07: today's 02:00 window began before the schedule existed, so it does not run now
    assert [r.outcome for r in s.tick(T0)] == ["baseline"]
    assert [r.outcome for r in s.tick(T0 + timedelta(hours=16))] == ["succeeded"]  # 02:00 next day
    crons["flush"] = "30 * * * *"  # changed: baseline again instead of an immediate surprise run
    assert [r.outcome for r in s.tick(T0 + timedelta(hours=16, minutes=40))] == ["baseline"]
    assert [r.outcome for r in s.tick(T0 + timedelta(hours=17, minutes=31))] == ["succeeded"]
    assert work.calls == ["flush", "flush"]


def test_a_failing_task_is_recorded_and_the_next_window_runs(db_url: str) -> None:
    calls: list[str] = []

    def boom(task: str) -> dict[str, Any]:
        calls.append(task)
        if len(calls) == 1:
            raise RuntimeError("bucket unreachable")
        return {}

    s = Scheduler(session_for(db_url), _schedules(verify="*/5 * * * *"), boom, instance="x")
    s.tick(T0 - timedelta(minutes=5))
    (first,) = s.tick(T0)
    assert first.outcome == "failed" and "bucket unreachable" in (first.error or "")
    assert [r.outcome for r in s.tick(T0)] == ["skipped_done"]  # a failed window is not retried in a loop
    assert [r.outcome for r in s.tick(T0 + timedelta(minutes=5))] == ["succeeded"]
    status = s.status(T0 + timedelta(minutes=6))
    (entry,) = status["schedules"]
    assert entry["last_run"]["outcome"] == "succeeded"
    assert entry["next_run"] == datetime(2030, 1, 1, 10, 15, tzinfo=UTC)


def test_invalid_cron_is_reported_not_run(db_url: str) -> None:
    work = Recorder(0)
    s = Scheduler(session_for(db_url), _schedules(flush="every day"), work)
    assert s.tick(T0) == []
    (entry,) = s.status(T0)["schedules"]
    assert entry["valid"] is False and entry["next_run"] is None
    assert work.calls == []


def _ctx(db_url: str, tmp_path: Path, **settings: Any) -> Any:
    return session_for(db_url, settings=Settings(database_url=db_url, home=tmp_path, workers=1,
                                                 store_url=(tmp_path / "objects").as_uri(), **settings))  # fmt: skip


def test_real_archive_schedule_from_the_stored_policy_runs_once(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        for _ in range(4):
            insert_job(conn, queue="sched")
        put_policy_document(conn, {"schedules": {"archive": "* * * * *"}}, updated_by="test")
        conn.commit()
    ctx = _ctx(db_url, tmp_path, schedules={"verify": "0 3 * * *"})
    a = build_scheduler(ctx, instance="a")
    b = build_scheduler(ctx, instance="b")
    assert {e.task: e.source for e in a.entries()} == {"archive": "policy", "verify": "settings"}
    now = datetime.now(UTC)
    baseline = _tick_together([a, b], now - timedelta(minutes=1))
    assert {r.outcome for r in baseline} <= {"baseline", "skipped_done", "skipped_locked"}
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs") == 4  # nothing ran for windows before the schedule was seen
    results = _tick_together([a, b], now)
    archive = [r for r in results if r.task == "archive" and r.outcome == "succeeded"]
    assert len(archive) == 1, [(r.task, r.window, r.outcome, r.error) for r in results + baseline]
    assert archive[0].result is not None and archive[0].result["jobs_archived"] == 4
    assert archive[0].result["flush"]["jobs_flushed"] == 4
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs") == 0
        assert count(conn, "tiering_job_index") == 4
        assert count(conn, "tiering_operations", "operation = 'archive'") == 1
        assert count(conn, "tiering_operations", "operation = 'archive' AND initiated_by = 'scheduler'") == 1


def test_schedule_command_once(db_url: str, tmp_path: Path) -> None:
    env = {
        "TIERING_DATABASE_URL": db_url,
        "TIERING_HOME": str(tmp_path),
        "TIERING_STORE_URL": (tmp_path / "objects").as_uri(),
        "TIERING_SETTINGS_FILE": str(tmp_path / "settings.json"),
        "PATH": "/usr/bin:/bin",
    }
    (tmp_path / "settings.json").write_text(json.dumps({"schedules": {"verify": "* * * * *"}}))
    with psycopg.connect(db_url) as conn:  # the schedule has run before (yesterday): the current window is due
        conn.execute(
            """INSERT INTO tiering_schedule_runs (task, window_start, cron, instance, outcome)
               VALUES ('verify', now() - interval '1 day', '* * * * *', 'earlier', 'succeeded')"""
        )
    cmd = [sys.executable, "-c", "from tiering.cli import main; main()", "schedule", "--once"]
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)
    assert result["task"] == "verify" and result["outcome"] == "succeeded"
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    if datetime.now(UTC).replace(second=0, microsecond=0) == before:  # still the same window
        assert json.loads(again.stdout)[0]["outcome"] == "skipped_done"


@pytest.mark.parametrize("expr", ["0 2 * * *", "*/15 * * * *", "0 0 * * 0", "30 3 1 * *"])
def test_previous_window_is_not_after_now(expr: str) -> None:
    now = datetime.now(UTC)
    prev = previous_window(expr, now)
    assert prev <= now < next_window(expr, now)
