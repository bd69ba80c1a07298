"""Prometheus metrics: counters of what this process did, gauges read from the database at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tiering.context import Session
from tiering.engine.stats import service_gauges
from tiering.metrics import RunSignals, operation_name

log = logging.getLogger(__name__)

disable_created_metrics()  # the *_created series only add noise here
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _DatabaseCollector(Collector):
    """Cheap aggregate queries: staging backlog, oldest staged job, cold tier by storage class."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tiering_database_up", "1 when the scrape could read the database")
        try:
            gauges = service_gauges(self.session)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database is down
            log.warning("metrics: cannot read the database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("tiering_staging_backlog_jobs", "Jobs in the staging table waiting for a flush",
                                value=gauges.staged_jobs)  # fmt: skip
        yield GaugeMetricFamily(
            "tiering_oldest_staged_job_age_seconds", "Age of the oldest staged job (0 when staging is empty)",
            value=gauges.oldest_staged_age_s or 0.0,
        )  # fmt: skip
        objects = GaugeMetricFamily("tiering_cold_objects", "Committed objects", labels=["storage_class"])
        nbytes = GaugeMetricFamily("tiering_cold_bytes", "Bytes of committed objects", labels=["storage_class"])
        jobs = GaugeMetricFamily("tiering_cold_jobs", "Jobs in committed objects", labels=["storage_class"])
        total_bytes = total_original = 0
        for storage_class, n_objects, n_bytes, n_original, n_rows in gauges.cold:
            objects.add_metric([storage_class], n_objects)
            nbytes.add_metric([storage_class], n_bytes)
            jobs.add_metric([storage_class], n_rows)
            total_bytes += n_bytes
            total_original += n_original
        yield objects
        yield nbytes
        yield jobs
        yield GaugeMetricFamily(
            "tiering_compression_ratio",
            "Cold tier: stored object bytes / original payload bytes (as in the stats; 1 when empty)",
            value=(total_bytes / total_original) if total_original else 1.0,
        )
        yield GaugeMetricFamily("tiering_pending_objects", "Manifest rows still pending (uploads in flight)",
                                value=gauges.pending_objects)  # fmt: skip
        started = GaugeMetricFamily(
            "tiering_last_operation_start_timestamp_seconds", "Start of the latest operation of each kind",
            labels=["operation", "outcome"],
        )  # fmt: skip
        duration = GaugeMetricFamily(
            "tiering_last_operation_duration_seconds", "Duration of the latest finished operation of each kind",
            labels=["operation"],
        )  # fmt: skip
        for operation, outcome, at, took in gauges.last_operations:
            started.add_metric([operation, outcome], at)
            if took is not None:
                duration.add_metric([operation], took)
        yield started
        yield duration


class Metrics:
    """One registry per app (tests build several apps in one process). The run series (tiering_jobs_total,
    tiering_last_success_timestamp_seconds, ...) are tiering.metrics' RunSignals: the same names a cron run
    writes to its textfile or Pushgateway."""

    def __init__(self, session: Session) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = RunSignals()
        r.register(self.runs)
        self.durations = Histogram(
            "tiering_run_duration_seconds", "Duration of runs started by this process", ["operation"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600), registry=r,
        )  # fmt: skip
        self.errors = Counter("tiering_errors", "Failed runs and requests by operation", ["operation"], registry=r)
        self.requests = Counter("tiering_http_requests", "API requests by route and status",
                                ["method", "route", "status"], registry=r)  # fmt: skip
        r.register(_DatabaseCollector(session))

    def record(
        self, operation: str, result: dict[str, Any] | None, seconds: float | None = None, *, ok: bool = True
    ) -> None:
        """Count what an engine result says it did (archive/flush/purge/restore/erase/verify results)."""
        if seconds is not None:
            self.durations.labels(operation_name(operation)).observe(seconds)
        self.runs.record(operation, result, seconds, ok=ok)

    def error(self, operation: str) -> None:
        self.errors.labels(operation).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
