"""What users type, parsed once for every entry point: the CLI and the REST API call these same functions,
so an age, a date, a job id or a KEY=VALUE means the same thing in both. Pure: no I/O, no clock unless `now`
is left out.

Grammar (shared):
- date: `2024-01-31` (UTC midnight) or `2024-01-31T12:00[:00[.ffffff]]` with `T` or a space, optional `Z` or
  `+02:00` / `+0200` / `+02`; naive times are UTC.
- age: a number with a unit (`365d`, `365 days`, `12h`, `2 years`, `90 minutes`) or ISO 8601 (`P1Y`, `PT12H`),
  optionally followed by `ago`. A bare number has no unit: the CLI refuses it (ask for `365d`); only
  Hammerwork's REST API (`DELETE /api/archive/purge?older_than=365`) defines it as days.
- cutoff (`--older-than`, `older_than`, `--since`, `since`): a date, or an age back from now.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from tiering.errors import InvalidInputError
from tiering.policy import duration_text_seconds, normalize_status

MAX_LIMIT = 100_000
MAX_OFFSET = 10_000_000  # past any archive page a person or a script asks for; far inside PostgreSQL's bigint

BareNumber = Literal["refuse", "days"]

_DATE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_LOOKS_LIKE_DATE = re.compile(r"^\d{4}-\d")
_BARE_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
_AGO = re.compile(r"\s+ago$", re.IGNORECASE)
DATE_EXAMPLES = "2024-05-01 or 2024-05-01T13:30:00Z"
AGE_EXAMPLES = "365d, 12h, 2 years, P1Y"


def utc_now() -> datetime:
    """The clock ages are counted back from (one name, so a test can hold it still)."""
    return datetime.now(UTC)


def parse_when(value: str | date | datetime | None, *, name: str = "date") -> datetime | None:
    """An ISO date (UTC midnight) or date-time (naive = UTC) -> an aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    text = str(value).strip()
    m = _DATE.match(text)
    try:
        if m is None:
            raise ValueError
        if m["time"] is None:
            return datetime.combine(date.fromisoformat(m["date"]), time(0), tzinfo=UTC)
        tz = m["tz"]
        if tz is None:
            offset = ""
        elif tz in ("Z", "z"):
            offset = "+00:00"
        else:
            digits = tz[1:].replace(":", "")
            offset = f"{tz[0]}{digits[:2]}:{digits[2:] or '00'}"
        parsed = datetime.fromisoformat(f"{m['date']}T{m['time']}{offset}")
    except ValueError:
        raise InvalidInputError(f"{name} {value!r} is not an ISO date or datetime: use e.g. {DATE_EXAMPLES}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_age(text: str, *, name: str = "age", bare_number: BareNumber = "refuse") -> timedelta:
    """`365d`, `365 days`, `P1Y`, `2 years ago` -> a non-negative timedelta. A bare number is refused unless
    the caller's interface defines it as days (`bare_number="days"`, Hammerwork's REST API)."""
    value = _AGO.sub("", str(text).strip())
    if not value:
        raise InvalidInputError(f"{name}: empty; give an age such as {AGE_EXAMPLES}")
    if _BARE_NUMBER.match(value):
        if bare_number == "refuse":
            raise InvalidInputError(
                f"{name} {text!r}: a number needs a unit; write {value}d for {value} days (or {AGE_EXAMPLES})"
            )
        try:
            return timedelta(days=float(value))
        except OverflowError:
            raise InvalidInputError(f"{name} {text!r} is out of range (too large)") from None
    try:
        seconds = duration_text_seconds(value)
        return timedelta(seconds=seconds)
    except ValueError as exc:
        raise InvalidInputError(
            f"{name} {text!r}: {exc}; use e.g. {AGE_EXAMPLES}, or a date ({DATE_EXAMPLES})"
        ) from None
    except OverflowError:
        raise InvalidInputError(f"{name} {text!r} is out of range (too large)") from None


def parse_cutoff(
    text: str, *, name: str = "cutoff", now: datetime | None = None, bare_number: BareNumber = "refuse"
) -> datetime:
    """A date (`2024-01-31`) or an age back from now (`365d`, `P1Y`, `2 years ago`) -> an aware datetime."""
    value = str(text).strip()
    if _LOOKS_LIKE_DATE.match(value):
        when = parse_when(value, name=name)
        assert when is not None
        return when
    age = parse_age(value, name=name, bare_number=bare_number)
    try:
        return (now or utc_now()) - age
    except OverflowError:
        raise InvalidInputError(f"{name} {text!r} reaches before year 1") from None


def parse_moment(value: str | date | datetime | None, *, name: str = "date") -> datetime | None:
    """Filters on archived_at (CLI --archived-after/--archived-before, the API's archived_after/archived_before):
    the forms --since takes, a date, a date-time, or an age back from now (7d); None stays None."""
    if value is None or isinstance(value, date | datetime):
        return parse_when(value, name=name)
    try:
        return parse_cutoff(value, name=name, bare_number="refuse")
    except InvalidInputError:
        raise InvalidInputError(
            f"{name} {value!r} is neither an ISO date nor an age: use e.g. {DATE_EXAMPLES}, or 7d"
        ) from None


def parse_job_id(value: str | uuid.UUID) -> uuid.UUID:
    """A job id as a UUID (with or without dashes or braces)."""
    if isinstance(value, uuid.UUID):
        return value
    text = str(value).strip()
    try:
        if len(text) not in (32, 36, 38):
            raise ValueError
        return uuid.UUID(text)
    except ValueError:
        raise InvalidInputError(
            f"{value!r} is not a job id: expected a UUID like 3f2b8c1e-9a4d-4c7e-8f00-1234567890ab"
        ) from None


def parse_statuses(status: str | Sequence[str] | None) -> list[str] | None:
    """`failed,Dead` or ["Failed", "dead"] -> ["Failed", "Dead"]; None when nothing is asked."""
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    out: list[str] = []
    for v in values:
        for part in str(v).split(","):
            if not part.strip():
                continue
            try:
                out.append(normalize_status(part))
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from None
    return out or None


def parse_key_path(key: str) -> list[str]:
    """`customer.id` -> ["customer", "id"]."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidInputError("payload key is empty: give a key such as customer_id or customer.id")
    if "\x00" in key:
        raise InvalidInputError("payload key holds a NUL character")
    parts = key.split(".")
    if any(p == "" for p in parts):
        raise InvalidInputError(f"payload key {key!r} has an empty segment: use dotted paths like customer.id")
    return parts


def parse_match(text: str, *, name: str = "--match") -> tuple[str, str]:
    """`customer.id=42` -> ("customer.id", "42"); the key is checked as a dotted path, the value kept as typed."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise InvalidInputError(f"{name} {text!r}: expected KEY=VALUE, e.g. customer.id=42")
    parse_key_path(key)
    return key, value


def check_limit(limit: int | None, *, name: str = "limit", maximum: int = MAX_LIMIT) -> int | None:
    if limit is not None and not 0 <= limit <= maximum:
        raise InvalidInputError(f"{name} must be between 0 and {maximum}, not {limit}")
    return limit


def check_offset(offset: int, *, name: str = "offset", maximum: int = MAX_OFFSET) -> int:
    if not 0 <= offset <= maximum:
        raise InvalidInputError(f"{name} must be between 0 and {maximum}, not {offset}")
    return offset


def as_value_error(parser: Any, **kwargs: Any) -> Any:
    """`parser` raising ValueError instead of InvalidInputError, for pydantic/FastAPI validators (-> 422)."""

    def validate(value: Any) -> Any:
        if value is None:
            return None
        try:
            return parser(value, **kwargs)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    return validate
