"""Hammerwork's response envelope `{success, data, error, timestamp}`, for answers and errors alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tiering.jsonable import render_json


class Envelope(BaseModel):
    """Every response of /api/archive (errors too) has this shape."""

    success: bool = Field(description="true when the request did what it asked")
    data: Any = Field(default=None, description="the result; null on errors")
    error: str | None = Field(default=None, description="what went wrong and how to fix it; null on success")
    timestamp: datetime = Field(description="when the server answered (UTC, ISO 8601)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class EnvelopeResponse(JSONResponse):
    """A JSONResponse whose body is rendered once by tiering.jsonable (datetimes, UUIDs, ... and NaN as null)."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


def ok(data: Any = None, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"success": True, "data": data, "error": None, "timestamp": now_iso()}
    return EnvelopeResponse(body, status_code=status_code, headers=headers)


def fail(status_code: int, message: str, headers: dict[str, str] | None = None, data: Any = None) -> JSONResponse:
    body = {"success": False, "data": data, "error": message, "timestamp": now_iso()}
    return EnvelopeResponse(body, status_code=status_code, headers=headers)
