"""Any result (dataclasses, datetimes, UUIDs, Decimals, models with to_dict) as plain JSON values: what the API
answers and what the service records in its tables."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any


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
    model_dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(model_dump):
        return model_dump(mode="json")
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


def render_json(value: Any) -> bytes:
    """`value` as the JSON document the API sends (compact, UTF-8, NaN/Infinity as null): one encoding pass when
    the value holds no NaN (the usual case; to_jsonable and then the response's own dumps took three)."""
    try:
        text = json.dumps(value, default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN or an Infinity somewhere: null instead
        text = json.dumps(to_jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")
