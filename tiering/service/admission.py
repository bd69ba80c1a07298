"""Admission control for scans: searches (and deep verifies) run on a small bounded worker pool, off the request
threads, with a bounded queue and a per-request deadline.

A scan reads every object that may hold a match; twenty of them at once would take every core and every
request thread, and the listing and single-job routes (index lookups of milliseconds) would wait behind them.
Scans run in worker processes, so their Python work (JSON parsing) never holds the request threads' GIL.
Here at most `workers` scans run and `queue` wait; one more is refused at once with 429 and Retry-After, and a
scan that outlives `deadline` seconds is stopped (it checks the deadline between row groups) and answered 503.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from tiering.errors import OperationTimeout, TieringError
from tiering.settings import Settings

if TYPE_CHECKING:
    from tiering.context import Session

T = TypeVar("T")


class Overloaded(TieringError):
    """429: the scan pool and its queue are full."""

    http_status = 429
    retryable = True

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(OperationTimeout):
    """503: the scan did not finish within the request deadline."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ScanPool:
    """`run(kind, fn, *args)` calls `fn(stop_at, *args)` on the executor (threads by default; the service uses
    worker processes, so a scan's Python work never holds the request threads' GIL)."""

    def __init__(self, workers: int, queue: int, deadline: float, executor: Executor | None = None) -> None:
        self.workers, self.queue, self.deadline = max(1, workers), max(0, queue), deadline
        self.in_process = executor is None  # tasks then get the caller's context passed in
        self._executor = executor or ThreadPoolExecutor(self.workers, thread_name_prefix="tiering-scan")
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)
        self._lock = threading.Lock()
        self.refused = 0

    def retry_after(self) -> int:
        return max(1, min(30, int(self.deadline // 4) or 1))

    def run(self, kind: str, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(stop_at, *args)` (stop_at: the time.monotonic() instant it must stop at) or refuse at once."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            raise Overloaded(
                f"too many {kind} requests at once ({self.workers} running, {self.queue} waiting): "
                f"retry in {self.retry_after()} s",
                self.retry_after(),
            )
        stop_at = time.monotonic() + self.deadline  # CLOCK_MONOTONIC: the same clock in worker processes
        try:
            future = self._executor.submit(fn, stop_at, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())  # also when cancelled before it started
        try:
            return future.result(timeout=max(0.0, stop_at - time.monotonic()) + 1.0)
        except (FutureTimeout, OperationTimeout) as exc:
            future.cancel()
            raise DeadlineExceeded(
                f"the {kind} did not finish within {self.deadline:g} s (TIERING_REQUEST_DEADLINE) and was stopped: "
                "narrow it (queue, dates), or run it with the CLI",
                self.retry_after(),
            ) from exc

    def shutdown(self) -> None:
        """Cancel what waits and let the workers end (running scans stop at their deadline)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


# --- scans as worker-process tasks (module-level: picklable) ---------------------------------------

_worker: dict[str, Any] = {}


# Scan workers run at this lower CPU priority (nice): a scan is a batch job that may take every core for seconds,
# and the listing and single-job routes, each a few milliseconds of CPU, should not queue behind it for a core.
SCAN_NICENESS = 10


def init_worker(settings: Settings) -> None:
    """Each scan process opens its own context (database URL, store) once, runs at SCAN_NICENESS, and ends when
    the server that started it is gone (a killed server leaves no worker behind)."""
    from tiering.context import Session

    try:
        os.nice(SCAN_NICENESS)
    except OSError:  # not permitted here: the scans run at the server's priority
        pass
    _worker["session"] = Session(settings)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="tiering-scan-parent-watch", daemon=True).start()


def _session(session: Session | None) -> Session:
    return session if session is not None else _worker["session"]


def search_task(
    stop_at: float, key: str, value: str, queue: str | None, limit: int, session: Session | None = None
) -> dict[str, Any]:
    from tiering.engine.query import search_archived_jobs

    if time.monotonic() > stop_at:
        raise OperationTimeout("the request's deadline passed while it waited for a worker")
    c = _session(session)
    return search_archived_jobs(c, key, value, queue=queue, limit=limit, deadline=stop_at).to_dict()


def verify_task(stop_at: float, who: str, queue: str | None, session: Session | None = None) -> dict[str, Any]:
    from tiering.service import jobs

    if time.monotonic() > stop_at:
        raise OperationTimeout("the request's deadline passed while it waited for a worker")
    # the deadline goes into the engine: past it the verify stops between objects and frees this worker
    return dict(jobs.run_verify(_session(session), initiated_by=who, deep=True, queue=queue, deadline=stop_at))


def scan_pool(session: Session) -> ScanPool:
    """The service's pool: worker processes (spawned, each with its own context), except for a memory:// store,
    which lives in this process only (threads then)."""
    settings = session.settings
    workers = max(1, settings.search_workers)
    executor: Executor | None = None
    if not session.settings.resolved_store_url.startswith("memory:"):
        child = settings.with_overrides(database_url=session.database_url)
        executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker, initargs=(child,)
        )
    return ScanPool(workers, settings.search_queue, settings.request_deadline, executor)
