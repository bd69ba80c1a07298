"""Hammerwork's response envelope `{success, data, error, timestamp}`, for answers and errors alike."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class Envelope(BaseModel):
    """Every response of /api/archive (errors too) has this shape."""

    success: bool = Field(description="true when the request did what it asked")
    data: Any = Field(default=None, description="the result; null on errors")
    error: str | None = Field(default=None, description="what went wrong and how to fix it; null on success")
    timestamp: datetime = Field(description="when the server answered (UTC, ISO 8601)")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: send null instead of an invalid document."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_jsonable(value: Any) -> Any:
    return _finite(json.loads(json.dumps(value, default=_default)))


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def ok(data: Any = None, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"success": True, "data": to_jsonable(data), "error": None, "timestamp": now_iso()}
    return JSONResponse(body, status_code=status_code, headers=headers)


def fail(status_code: int, message: str, headers: dict[str, str] | None = None, data: Any = None) -> JSONResponse:
    body = {"success": False, "data": to_jsonable(data), "error": message, "timestamp": now_iso()}
    return JSONResponse(body, status_code=status_code, headers=headers)
