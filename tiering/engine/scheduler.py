"""Cron schedules for archive, flush, purge and verify, safe with several instances running.

Each due (task, window) is claimed by inserting a row in tiering_schedule_runs (primary key = the window),
under a PostgreSQL advisory lock per task held while the task runs, so:
- however many schedulers tick at once, a window runs exactly once (the insert decides);
- a task still running (here or elsewhere) is never started twice (the lock);
- a scheduler that was down across several windows claims only the latest one: a missed window runs once;
- a schedule seen for the first time (or whose cron expression changed) does not run for a window that began
  before it existed: that window is recorded as 'baseline' and the task runs from the next window on.
Cron expressions are evaluated in UTC. Schedules come from settings.schedules, overridden per task by the
stored policy's `schedules`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tiering.context import Session
from tiering.cron import cron_valid, next_window, previous_window
from tiering.db import service as sql
from tiering.policy import SCHEDULE_NAMES

log = logging.getLogger(__name__)

TaskFn = Callable[[str], dict[str, Any]]


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ScheduleEntry:
    task: str
    cron: str
    source: str  # settings | policy
    valid: bool


@dataclass
class TickResult:
    task: str
    window: datetime
    outcome: str  # succeeded | failed | baseline | skipped_locked | skipped_done
    result: dict[str, Any] | None = None
    error: str | None = None


class Scheduler:
    def __init__(
        self,
        session: Session,
        schedules: Callable[[], dict[str, tuple[str, str]]],
        run_task: TaskFn,
        *,
        instance: str | None = None,
        poll_seconds: float = 15.0,
        on_result: Callable[[TickResult, float], None] | None = None,
    ) -> None:
        """`schedules()` returns {task: (cron, source)}; `run_task(task)` does the work and returns its result."""
        self.session = session
        self._schedules = schedules
        self.run_task = run_task
        self.instance = instance or default_instance()
        self.poll_seconds = poll_seconds
        self.on_result = on_result
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------ what is scheduled

    def entries(self) -> list[ScheduleEntry]:
        try:
            raw = self._schedules()
        except Exception as exc:  # noqa: BLE001 - a broken stored policy must not stop the scheduler
            self.last_error = f"cannot read the schedules: {exc}"
            log.warning("%s", self.last_error)
            return []
        out = []
        for task in SCHEDULE_NAMES:
            if task in raw:
                cron, source = raw[task]
                out.append(ScheduleEntry(task, cron, source, cron_valid(cron)))
        return out

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        entries = self.entries()
        with self.session.connection() as conn:
            last = sql.last_runs(conn, [e.task for e in entries]) if entries else {}
            history = sql.schedule_history(conn, 20)
        items = []
        for e in entries:
            run = last.get(e.task)
            item: dict[str, Any] = {
                "task": e.task,
                "cron": e.cron,
                "source": e.source,
                "valid": e.valid,
                "next_run": next_window(e.cron, now) if e.valid else None,
                "last_window": previous_window(e.cron, now) if e.valid else None,
                "last_run": None,
            }
            if run:
                item["last_run"] = {k: run[k] for k in ("window_start", "instance", "started_at", "finished_at",
                                                        "outcome", "error")}  # fmt: skip
            items.append(item)
        return {
            "timezone": "UTC",
            "running_here": self.running,
            "instance": self.instance,
            "schedules": items,
            "history": history,
            "error": self.last_error,
        }

    # ------------------------------------------------------------ running

    def tick(self, now: datetime | None = None) -> list[TickResult]:
        """Run every task whose latest window has not run yet (by any instance)."""
        now = now or datetime.now(UTC)
        results = []
        for entry in self.entries():
            if not entry.valid:
                continue
            window = previous_window(entry.cron, now)
            results.append(self._run_window(entry, window))
        return results

    def _run_window(self, entry: ScheduleEntry, window: datetime) -> TickResult:
        with self.session.connection(autocommit=True) as conn:
            if sql.window_recorded(conn, entry.task, window):
                return TickResult(entry.task, window, "skipped_done")
            if not sql.try_task_lock(conn, entry.task):
                return TickResult(entry.task, window, "skipped_locked")
            try:
                first_seen = sql.last_cron(conn, entry.task) != entry.cron
                if not sql.claim_window(conn, entry.task, window, entry.cron, self.instance):
                    return TickResult(entry.task, window, "skipped_done")
                if first_seen:
                    note = {"note": "schedule first seen (or changed): it runs from the next window on"}
                    sql.finish_window(conn, entry.task, window, "baseline", note, None)
                    return TickResult(entry.task, window, "baseline", result=note)
                log.info("scheduler: running %s for window %s", entry.task, window.isoformat())
                started = time.perf_counter()
                try:
                    result = self.run_task(entry.task)
                except Exception as exc:  # noqa: BLE001 - recorded; the next window runs normally
                    log.warning("scheduler: %s failed: %s", entry.task, exc)
                    tick = TickResult(entry.task, window, "failed", error=f"{type(exc).__name__}: {exc}")
                    sql.finish_window(conn, entry.task, window, "failed", {}, tick.error)
                else:
                    tick = TickResult(entry.task, window, "succeeded", result=result)
                    sql.finish_window(conn, entry.task, window, "succeeded", result, None)
                if self.on_result:
                    self.on_result(tick, time.perf_counter() - started)
                return tick
            finally:
                sql.release_task_lock(conn, entry.task)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - e.g. the database restarting: retry next poll
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("scheduler tick failed: %s", self.last_error)
            self._stop.wait(self._sleep_seconds())

    def _sleep_seconds(self) -> float:
        now = datetime.now(UTC)
        waits = [self.poll_seconds]
        for e in self.entries():
            if e.valid:
                waits.append((next_window(e.cron, now) - now).total_seconds() + 0.05)
        return max(0.05, min(waits))

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="tiering-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
