"""Long requests (the API's runs, restores, purges, erases) run in a background thread; their progress is
recorded in tiering_service_tasks, so any instance can answer for them.

task_id = runner.start("run", request, lambda progress: do_work(progress))
runner.wait(task_id, 5.0)        # short runs answer directly
runner.get(task_id)              # GET /api/archive/operations/{id}, from any instance
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from tiering.context import Session
from tiering.db import service as sql
from tiering.errors import TieringError

log = logging.getLogger(__name__)


class Progress:
    """Thread-safe counters a task updates; written to the database at most every `interval` seconds."""

    def __init__(self, db: Session, task_id: uuid.UUID, interval: float = 0.5) -> None:
        self.db = db
        self.task_id = task_id
        self.interval = interval
        self.values: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._written = 0.0

    def set(self, **values: Any) -> None:
        with self._lock:
            self.values.update(values)
        self._maybe_write()

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self.values[name] = int(self.values.get(name, 0)) + n
        self._maybe_write()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.values)

    def _maybe_write(self) -> None:
        now = time.monotonic()
        if now - self._written < self.interval:
            return
        self._written = now
        try:
            sql.update_task_progress(self.db, self.task_id, self.snapshot())
        except Exception:  # noqa: BLE001 - progress is best effort; the final state is written at the end
            log.debug("could not record progress of task %s", self.task_id, exc_info=True)


TaskFn = Callable[[Progress], Any]


class TaskRunner:
    def __init__(
        self,
        db: Session,
        instance: str,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.db = db
        self.instance = instance
        self.on_error = on_error
        self._done: dict[uuid.UUID, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, kind: str, request: Any, fn: TaskFn) -> uuid.UUID:
        task_id = uuid.uuid4()
        sql.insert_task(self.db, task_id, kind, request, self.instance)
        done = threading.Event()
        with self._lock:
            self._done[task_id] = done
        progress = Progress(self.db, task_id)
        thread = threading.Thread(
            target=self._run, args=(task_id, kind, fn, progress, done), name=f"tiering-task-{kind}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return task_id

    def _run(self, task_id: uuid.UUID, kind: str, fn: TaskFn, progress: Progress, done: threading.Event) -> None:
        try:
            result = fn(progress)
        except TieringError as exc:
            self._finish(task_id, "failed", progress, error=str(exc), status=exc.http_status)
            if self.on_error:
                self.on_error(kind, exc)
        except Exception as exc:  # noqa: BLE001 - recorded for the client; the thread must not die silently
            log.exception("background task %s (%s) failed", task_id, kind)
            self._finish(task_id, "failed", progress, error=f"{type(exc).__name__}: {exc}", status=500)
            if self.on_error:
                self.on_error(kind, exc)
        else:
            self._finish(task_id, "succeeded", progress, result=result)
        finally:
            done.set()
            with self._lock:
                self._done.pop(task_id, None)

    def _finish(
        self,
        task_id: uuid.UUID,
        state: str,
        progress: Progress,
        *,
        result: Any = None,
        error: str | None = None,
        status: int | None = None,
    ) -> None:
        try:
            sql.finish_task(
                self.db, task_id, state=state, progress=progress.snapshot(), result=result, error=error,
                error_status=status,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - nothing else can record it
            log.exception("could not record the end of task %s", task_id)

    def wait(self, task_id: uuid.UUID, timeout: float) -> bool:
        with self._lock:
            done = self._done.get(task_id)
        return True if done is None else done.wait(timeout)

    def get(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        return sql.get_task(self.db, task_id)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The latest tasks started through the API (any instance), newest first."""
        return sql.recent_tasks(self.db, limit)

    def join(self, timeout: float = 30.0) -> None:
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
