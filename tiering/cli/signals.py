"""`--metrics-file` / TIERING_PUSHGATEWAY_URL for the commands that move or delete data: whatever the
command's outcome, its engine results go to the metrics sinks a cron job uses (tiering.metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from tiering.cli import output

MetricsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        envvar="TIERING_METRICS_FILE",
        help="Write Prometheus metrics of this run to this file (node_exporter textfile collector); "
        "TIERING_PUSHGATEWAY_URL pushes them too.",
    ),
]


class RunReport:
    """The runs one command did: (operation, result document, seconds, ok)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.started = time.monotonic()
        self.outcomes: list[tuple[str, Mapping[str, Any] | None, float | None, bool]] = []

    def done(self, result: Mapping[str, Any], *, ok: bool = True, operation: str | None = None) -> None:
        self.outcomes.append((operation or self.operation, result, time.monotonic() - self.started, ok))


@contextmanager
def run_signals(
    command: str, operation: str, metrics_file: Path | None, pushgateway_url: str | None
) -> Iterator[RunReport]:
    """Report what the block did; a block that raises before `done` is one failed run of `operation`
    (a `typer.Exit(0)` is not a failure)."""
    report = RunReport(operation)
    try:
        yield report
    except typer.Exit as exc:
        if exc.exit_code != 0 and not report.outcomes:
            report.outcomes.append((operation, None, time.monotonic() - report.started, False))
        raise
    except BaseException:
        if not report.outcomes:
            report.outcomes.append((operation, None, time.monotonic() - report.started, False))
        raise
    finally:
        if metrics_file or pushgateway_url:
            from tiering.metrics import report_run

            for problem in report_run(
                command, report.outcomes, metrics_file=metrics_file, pushgateway_url=pushgateway_url
            ):
                output.warn(f"metrics: {problem}")
