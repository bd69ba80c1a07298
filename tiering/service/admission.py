"""Admission control for scans: searches (and deep verifies) run on a small bounded worker pool, off the request
threads, with a bounded queue and a per-request deadline.

A scan reads every object that may hold a match; twenty of them at once would take every core and every
request thread, and the listing and single-job routes (index lookups of milliseconds) would wait behind them.
Here at most `workers` scans run and `queue` wait; one more is refused at once with 429 and Retry-After, and a
scan that outlives `deadline` seconds is stopped (it checks the deadline between row groups) and answered 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from tiering.errors import OperationTimeout, TieringError

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
    def __init__(self, workers: int, queue: int, deadline: float) -> None:
        self.workers, self.queue, self.deadline = max(1, workers), max(0, queue), deadline
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="tiering-scan")
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)
        self._lock = threading.Lock()
        self.running = 0
        self.refused = 0

    def retry_after(self) -> int:
        return max(1, min(30, int(self.deadline // 4) or 1))

    def run(self, kind: str, fn: Callable[[float], T]) -> T:
        """Run `fn(deadline)` (a time.monotonic() instant it must stop at) on the pool, or refuse at once."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            raise Overloaded(
                f"too many {kind} requests at once ({self.workers} running, {self.queue} waiting): "
                f"retry in {self.retry_after()} s",
                self.retry_after(),
            )
        stop_at = time.monotonic() + self.deadline
        try:
            future = self._executor.submit(self._counted, fn, stop_at)
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

    def _counted(self, fn: Callable[[float], T], stop_at: float) -> T:
        with self._lock:
            self.running += 1
        try:
            if time.monotonic() > stop_at:
                raise OperationTimeout("the request's deadline passed while it waited for a worker")
            return fn(stop_at)
        finally:
            with self._lock:
                self.running -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
