"""Rendering for the CLI: one JSON document on stdout for scripts, tables for people, logs on stderr."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import threading
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


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None, human: bool = True
) -> None:
    """A table for people: sizes human-readable, exact timestamps, no exponent notation (human=False: values as
    they are, for query results)."""
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(col), col if human else None) for col in columns))
    stdout.print(table)


def print_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """CSV for scripts: raw numbers, full timestamps (microseconds, with zone), JSON for nested values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _raw(row.get(c)) for c in columns})
    sys.stdout.write(buf.getvalue())


def print_kv(data: dict[str, Any], *, title: str | None = None) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, _cell(value, key))
    stdout.print(table)


_SIZE_NAMES = frozenset({"storage_freed", "storage_to_free", "size", "stored", "original"})


def is_size(key: str | None) -> bool:
    """Columns that hold a byte count (bytes_written, payload_bytes, storage_freed, ...)."""
    if not key:
        return False
    k = key.lower()
    return k in _SIZE_NAMES or k.endswith("bytes") or k.startswith("bytes_") or k.endswith("_bytes_to_free")


def human_bytes(n: int | float) -> str:
    """1536 -> '1.5 KiB'; exact bytes below 1 KiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def plain_number(value: float) -> str:
    """A float without exponent notation or lost digits: 707700000.0 -> '707700000', 0.10234 -> '0.10234'."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value.is_integer():
        return f"{int(value)}"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("0", "-0") else f"{value:.3g}"


def _raw(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=_default)
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _cell(value: Any, key: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=_default)
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float) and is_size(key):
        return human_bytes(value)
    if isinstance(value, float):
        return plain_number(value)
    return str(value)


def shorten(value: Any, chars: int) -> str:
    """Compact JSON of `value`, cut to `chars` characters with an ellipsis (payload columns in tables)."""
    text = value if isinstance(value, str) else json.dumps(value, default=_default, separators=(",", ":"))
    return text if len(text) <= chars else text[: chars - 1] + "…"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"flush": {"jobs": 3}} -> {"flush.jobs": 3}: one CSV row for a nested result."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def emit(data: Any, fmt: Format, *, rows: Sequence[dict[str, Any]] | None = None, columns: Sequence[str] = ()) -> None:
    """Print `data` as JSON, or `rows` as a table/CSV; a dict without rows is key/value for people and one
    flattened CSV row (header = dotted keys) for scripts."""
    if fmt is Format.json:
        print_json(data)
    elif rows is not None and fmt is Format.csv:
        print_csv(rows, columns)
    elif rows is not None:
        print_table(rows, columns)
    elif isinstance(data, dict) and fmt is Format.csv:
        flat = flatten(data)
        print_csv([flat], list(flat))
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
def phase_progress() -> Iterator[tuple[Any, Any, Any]]:
    """(advance(name, n), phase(name), total(name, n)) callbacks driving one bar per counter on a terminal; no-ops
    otherwise. A bar appears at its total or its first advance, whichever comes first (the total can come later)."""
    if not sys.stderr.isatty():
        yield (lambda name, n: None), (lambda name: None), (lambda name, n: None)
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=stderr
    ) as progress:
        tasks: dict[str, Any] = {}
        lock = threading.Lock()  # the run's threads advance and set totals at once

        def advance(name: str, n: int) -> None:
            with lock:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=None)
                progress.advance(tasks[name], n)

        def total(name: str, n: int) -> None:
            with lock:
                if name in tasks:
                    progress.update(tasks[name], total=n)
                else:
                    tasks[name] = progress.add_task(name, total=n)

        def phase(name: str) -> None:
            stderr.print(f"[dim]{datetime.now().astimezone().isoformat(timespec='seconds')}[/dim] {name}...",
                         highlight=False)  # fmt: skip

        yield advance, phase, total


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
