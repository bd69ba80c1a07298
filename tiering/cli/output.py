"""Rendering for the CLI: one JSON document on stdout for scripts, tables for people, logs on stderr."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# Piped output (less, a file, a script) gets wide tables instead of columns cut at 80 characters.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
stderr = Console(stderr=True, soft_wrap=True)


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_default, indent=2, sort_keys=False)


def print_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    stdout.print(table)


def print_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    sys.stdout.write(buf.getvalue())


def print_kv(data: dict[str, Any], *, title: str | None = None) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, _cell(value))
    stdout.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=_default)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def emit(data: Any, fmt: Format, *, rows: Sequence[dict[str, Any]] | None = None, columns: Sequence[str] = ()) -> None:
    """Print `data` as JSON, or `rows` as a table/CSV (falling back to key/value for a dict)."""
    if fmt is Format.json:
        print_json(data)
    elif rows is not None and fmt is Format.csv:
        print_csv(rows, columns)
    elif rows is not None:
        print_table(rows, columns)
    elif isinstance(data, dict):
        print_kv(data)
    else:
        stdout.print(data)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; a no-op callback otherwise."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def phase_progress(totals: dict[str, int | None]) -> Iterator[tuple[Any, Any]]:
    """(advance(name, n), phase(name)) callbacks driving one bar per counter on a terminal; no-ops otherwise."""
    if not sys.stderr.isatty():
        yield (lambda name, n: None), (lambda name: None)
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=stderr
    ) as progress:
        tasks: dict[str, Any] = {}

        def advance(name: str, n: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=totals.get(name))
            progress.advance(tasks[name], n)

        def phase(name: str) -> None:
            stderr.log(f"{name}...")

        yield advance, phase


_quiet = False
_json_logs = False
_log = logging.getLogger("tiering.cli")


def set_quiet(quiet: bool) -> None:
    """-q: informational lines on stderr are left out; warnings and errors stay."""
    global _quiet
    _quiet = quiet


def set_json_logs(enabled: bool) -> None:
    """--log-format json: messages for people go through logging too, so stderr stays one JSON object a line."""
    global _json_logs
    _json_logs = enabled


def info(message: str) -> None:
    if _json_logs:
        _log.info(message)
    elif not _quiet:
        stderr.print(message, highlight=False)


def warn(message: str) -> None:
    if _json_logs:
        _log.warning(message)
    else:
        stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
