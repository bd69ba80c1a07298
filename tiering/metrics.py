"""Prometheus signals of what tiering did, with one set of names wherever they go: `serve`'s /metrics, a
cron job's textfile (node_exporter's textfile collector) and a Pushgateway.

Built from the engine's result documents (their `to_dict()`), never from inside the engine: an entry point
runs an engine call, then hands its result here. No database or store access in this module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import pushadd_to_gateway
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

# The operations of the audit trail that move or delete data (label `operation`).
OPERATIONS = ("archive", "flush", "purge", "erase", "restore", "verify")
# Aliases entry points use for the same operation (the API's POST run, scheduler task names).
_ALIASES = {"run": "archive"}

# (result key holding the job count, result key holding the byte count) per operation; first int found wins.
_JOBS_KEYS: dict[str, tuple[str, ...]] = {
    "archive": ("jobs_archived",),
    "flush": ("jobs_flushed",),
    "purge": ("jobs_purged",),
    "erase": ("jobs_erased",),
    "restore": ("jobs_restored", "restored"),
    "verify": (),
}
_BYTES_KEYS: dict[str, tuple[str, ...]] = {
    "archive": ("bytes_original",),  # payload bytes taken out of the hot table
    "flush": ("bytes_written",),  # Parquet bytes written to the store
    "purge": ("storage_freed",),  # object and staging bytes freed
}

_HELP = {
    "tiering_jobs_total": "Jobs moved or deleted, by operation",
    "tiering_bytes_total": "Bytes moved or freed, by operation (archive: payload bytes taken from the hot table; "
    "flush: Parquet bytes written; purge: bytes freed)",
    "tiering_runs_total": "Finished runs by operation and outcome (success | failure)",
    "tiering_last_success_timestamp_seconds": "When the latest successful run of the operation finished",
    "tiering_last_failure_timestamp_seconds": "When the latest failed run of the operation finished",
    "tiering_last_run_duration_seconds": "Duration of the latest run of the operation",
    "tiering_last_run_jobs": "Jobs moved or deleted by the latest successful run of the operation",
}
NAMES = tuple(_HELP)


def _int(result: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = result.get(key)
        if isinstance(value, int):  # a single restore says `restored: true`: one job
            return max(0, int(value))
    return None


def operation_name(name: str) -> str:
    """`run` (the API) and scheduler task names map to the audit trail's operation names."""
    return _ALIASES.get(name, name)


def split_result(operation: str, result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """An archive run's document nests its flush and automatic purge: one (operation, document) each."""
    parts: list[tuple[str, Mapping[str, Any]]] = [(operation, result)]
    for nested in ("flush", "purge"):
        doc = result.get(nested)
        if isinstance(doc, Mapping):
            parts.append((nested, doc))
    return parts


class RunSignals(Collector):
    """What this process (or, loaded from a textfile, earlier runs) did. Thread-safe; a prometheus Collector,
    so `serve` registers it in its registry and a cron run renders it into a textfile or a push."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, float] = {}
        self._bytes: dict[str, float] = {}
        self._runs: dict[tuple[str, str], float] = {}
        self._last_success: dict[str, float] = {}
        self._last_failure: dict[str, float] = {}
        self._last_duration: dict[str, float] = {}
        self._last_jobs: dict[str, float] = {}

    def record(
        self,
        operation: str,
        result: Mapping[str, Any] | None,
        seconds: float | None = None,
        *,
        ok: bool = True,
        now: float | None = None,
    ) -> None:
        """Count one finished run from its result document. A dry run changes nothing and counts nothing;
        a failed run (ok=False, result possibly None) only moves the failure series."""
        operation = operation_name(operation)
        at = time.time() if now is None else now
        if result is not None and (result.get("dry_run") or result.get("skipped_reason")):
            return  # a preview, or a run that did nothing on purpose (policy disabled, no purge age)
        with self._lock:
            if not ok:
                self._runs[(operation, "failure")] = self._runs.get((operation, "failure"), 0) + 1
                self._last_failure[operation] = at
                if seconds is not None:
                    self._last_duration[operation] = seconds
                return
            for op, doc in split_result(operation, result or {}):
                took = seconds if op == operation else doc.get("execution_time_s")
                if doc.get("skipped_reason") and op != operation:
                    continue  # e.g. an automatic purge that did not run
                jobs = _int(doc, _JOBS_KEYS.get(op, ())) or 0
                self._jobs[op] = self._jobs.get(op, 0) + jobs
                nbytes = _int(doc, _BYTES_KEYS.get(op, ()))
                if nbytes is not None:
                    self._bytes[op] = self._bytes.get(op, 0) + nbytes
                self._runs[(op, "success")] = self._runs.get((op, "success"), 0) + 1
                self._last_success[op] = at
                self._last_jobs[op] = jobs
                if isinstance(took, int | float) and not isinstance(took, bool):
                    self._last_duration[op] = float(took)

    def load_textfile(self, text: str) -> None:
        """Continue from an earlier run's textfile: counters go on from their values, last-run series are kept
        for operations this run does not touch (so a failed run never erases the last success)."""
        by_name = {
            "tiering_jobs_total": self._jobs,
            "tiering_bytes_total": self._bytes,
            "tiering_last_success_timestamp_seconds": self._last_success,
            "tiering_last_failure_timestamp_seconds": self._last_failure,
            "tiering_last_run_duration_seconds": self._last_duration,
            "tiering_last_run_jobs": self._last_jobs,
        }
        with self._lock:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    op = sample.labels.get("operation")
                    if not op:
                        continue
                    if sample.name == "tiering_runs_total":
                        outcome = sample.labels.get("outcome", "")
                        self._runs[(op, outcome)] = self._runs.get((op, outcome), 0) + sample.value
                    elif sample.name in by_name:
                        target = by_name[sample.name]
                        if sample.name.endswith("_total"):
                            target[op] = target.get(op, 0) + sample.value
                        else:
                            target.setdefault(op, sample.value)

    def collect(self) -> Iterator[Metric]:
        """Only families with samples: a Pushgateway POST replaces every family it receives, so an absent
        `tiering_last_success_timestamp_seconds` (a failed run) keeps the gateway's earlier value."""
        with self._lock:
            counters = {
                "tiering_jobs_total": self._jobs,
                "tiering_bytes_total": self._bytes,
            }
            gauges = {
                "tiering_last_success_timestamp_seconds": self._last_success,
                "tiering_last_failure_timestamp_seconds": self._last_failure,
                "tiering_last_run_duration_seconds": self._last_duration,
                "tiering_last_run_jobs": self._last_jobs,
            }
            for name, values in counters.items():
                if values:
                    c = CounterMetricFamily(name.removesuffix("_total"), _HELP[name], labels=["operation"])
                    for op, v in sorted(values.items()):
                        c.add_metric([op], v)
                    yield c
            if self._runs:
                runs = CounterMetricFamily("tiering_runs", _HELP["tiering_runs_total"], labels=["operation", "outcome"])
                for (op, outcome), v in sorted(self._runs.items()):
                    runs.add_metric([op, outcome], v)
                yield runs
            for name, values in gauges.items():
                if values:
                    g = GaugeMetricFamily(name, _HELP[name], labels=["operation"])
                    for op, v in sorted(values.items()):
                        g.add_metric([op], v)
                    yield g

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return bytes(generate_latest(registry))

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """Atomically (temp file + rename in the same folder), as node_exporter's textfile collector needs."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(self.render())
        os.replace(tmp, target)

    def push(self, gateway: str, *, command: str, job: str = "tiering", timeout: float = 10.0) -> None:
        """POST to a Pushgateway (replaces only the families sent) under {job, command}."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        pushadd_to_gateway(gateway, job=job, grouping_key={"command": command}, registry=registry, timeout=timeout)


def report_run(
    command: str,
    outcomes: list[tuple[str, Mapping[str, Any] | None, float | None, bool]],
    *,
    metrics_file: str | os.PathLike[str] | None = None,
    pushgateway_url: str | None = None,
    now: float | None = None,
) -> list[str]:
    """Write one command's runs (operation, result, seconds, ok) to a textfile and/or a Pushgateway.
    Returns the problems met (the caller warns; a metrics sink that is down must not fail the data work)."""
    problems: list[str] = []
    now = time.time() if now is None else now  # one timestamp for every sink
    if metrics_file:
        signals = RunSignals()
        try:
            previous = Path(metrics_file).read_text()
        except FileNotFoundError:
            previous = ""
        except OSError as exc:
            previous = ""
            problems.append(f"cannot read {metrics_file}: {exc}")
        try:
            signals.load_textfile(previous)
        except ValueError as exc:
            problems.append(f"{metrics_file} is not Prometheus text ({exc}); starting it afresh")
            signals = RunSignals()
        for operation, result, seconds, ok in outcomes:
            signals.record(operation, result, seconds, ok=ok, now=now)
        try:
            signals.write_textfile(metrics_file)
        except OSError as exc:
            problems.append(f"cannot write metrics file {metrics_file}: {exc}")
    if pushgateway_url:
        signals = RunSignals()
        for operation, result, seconds, ok in outcomes:
            signals.record(operation, result, seconds, ok=ok, now=now)
        try:
            signals.push(pushgateway_url, command=command)
        except Exception as exc:  # noqa: BLE001 - urllib raises many kinds; report, never fail the run for it
            problems.append(f"cannot push metrics to {pushgateway_url}: {exc}")
    return problems
