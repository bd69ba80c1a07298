"""One set of input parsers: the CLI and the API read the same ages, dates, ids and matches the same way."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from tiering import inputs
from tiering.cli.query import parse_when as cli_parse_when
from tiering.cli.retention import parse_cutoff as cli_cutoff
from tiering.errors import InvalidInputError
from tiering.service.api import Since, parse_older_than
from tiering.service.models import JobIdValue, When

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
API_WHEN = TypeAdapter(When)
API_SINCE = TypeAdapter(Since)


def outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The value, or the kind of refusal (so two parsers can be compared on good and bad input alike)."""
    try:
        return fn(*args, **kwargs)
    except (InvalidInputError, ValueError):
        return "refused"


units = st.sampled_from(["s", "m", "h", "d", "w", "y", " days", " hours", " minutes", " years", " weeks", "day"])
ages = st.builds(lambda n, u, ago: f"{n}{u}{' ago' if ago else ''}", st.integers(0, 5000), units, st.booleans())
iso_ages = st.builds(lambda n, u: f"P{n}{u}", st.integers(0, 999), st.sampled_from(["Y", "M", "W", "D"])) | st.builds(
    lambda n, u: f"PT{n}{u}", st.integers(0, 999), st.sampled_from(["H", "M", "S"])
)
dates = st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2100, 1, 1).date())
offsets = st.sampled_from(["", "Z", "+02:00", "-0530", "+01", "z"])
date_times = st.builds(
    lambda d, h, mi, sec, sep, off: f"{d.isoformat()}{sep}{h:02d}:{mi:02d}{sec}{off}",
    dates, st.integers(0, 23), st.integers(0, 59), st.sampled_from(["", ":07", ":07.25"]),
    st.sampled_from(["T", " "]), offsets,
)  # fmt: skip
near_misses = st.sampled_from(
    ["2024-13-01", "2024-02-30", "05/01/2024", "2024-05-01T25:00", "yesterday", "", " ", "-5d", "1e9y",
     "99999999999999999d", "100000000y", "P", "PT", "5 fortnights", "2024-05-01T10", "20240501", "nan", "inf"]
)  # fmt: skip
anything = st.one_of(ages, iso_ages, dates.map(str), date_times, near_misses, st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(text=anything)
def test_cli_and_api_agree_on_every_cutoff_that_is_not_a_bare_number(text: str) -> None:
    cli = outcome(cli_cutoff, text, NOW)
    api = outcome(parse_older_than, text, NOW)
    since_api = outcome(lambda t: API_SINCE.validate_python(t), text) if text.strip() else "refused"
    if inputs._BARE_NUMBER.match(inputs._AGO.sub("", text.strip())):
        assert cli == "refused"  # the command line asks for a unit
    else:
        assert cli == api, (text, cli, api)
        # the audit trail's `since` (API) reads what `tiering audit --since` reads (relative to its own now)
        assert (since_api == "refused") == (cli == "refused"), (text, cli, since_api)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(dates.map(str), date_times, near_misses, st.text(max_size=20)))
@example(text="0D")  # an age: both count back from now (it failed once when their two nows differed)
@example(text="7d")
def test_cli_and_api_accept_the_same_date_forms(text: str) -> None:
    with mock.patch.object(inputs, "utc_now", lambda: NOW):  # an age ("0D") counts back from the same instant
        cli = outcome(cli_parse_when, text, name="--archived-after")
        api = outcome(lambda t: API_WHEN.validate_python(t), text)
    assert cli == api, (text, cli, api)
    if cli != "refused":
        assert cli.tzinfo is not None


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 100_000), unit=st.sampled_from(["", " ", " ago"]))
def test_a_bare_number_is_days_only_in_the_api(n: int, unit: str) -> None:
    text = f"{n}{unit}"
    assert parse_older_than(text, NOW) == NOW - timedelta(days=n)
    with pytest.raises(InvalidInputError, match=rf"needs a unit; write {n}d"):
        cli_cutoff(text, NOW)
    assert cli_cutoff(f"{n}d", NOW) == parse_older_than(f"{n}d", NOW) == NOW - timedelta(days=n)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: f"{{{u}}}"),
                      st.uuids().map(lambda u: str(u).upper()), st.text(max_size=40)))  # fmt: skip
def test_cli_and_api_read_the_same_job_ids(text: str) -> None:
    cli = outcome(inputs.parse_job_id, text)
    api = outcome(lambda t: TypeAdapter(JobIdValue).validate_python(t), text)
    assert cli == api, (text, cli, api)


def test_examples() -> None:
    assert inputs.parse_cutoff("365 days", now=NOW) == NOW - timedelta(days=365)
    assert inputs.parse_cutoff("2 years ago", now=NOW) == NOW - timedelta(days=730)
    assert inputs.parse_cutoff("P1Y", now=NOW) == NOW - timedelta(days=365)
    assert inputs.parse_cutoff("2024-01-31", now=NOW) == datetime(2024, 1, 31, tzinfo=UTC)
    assert inputs.parse_when("2024-01-31 10:00+0200") == datetime(2024, 1, 31, 8, tzinfo=UTC)
    minus5 = timezone(-timedelta(hours=5))
    assert inputs.parse_when("2024-01-31T10:00:00-05") == datetime(2024, 1, 31, 10, tzinfo=minus5)
    assert inputs.parse_when("2024-01-31t10:00z") == datetime(2024, 1, 31, 10, tzinfo=UTC)
    for bad in ("20240131", "2024-01-31T10", "2024-01-31Z", "1706659200", "2024-W05-3"):
        with pytest.raises(InvalidInputError, match="ISO date"):
            inputs.parse_when(bad)
    with pytest.raises(InvalidInputError, match="out of range"):
        inputs.parse_cutoff("100000000y", now=NOW)
    with pytest.raises(InvalidInputError, match="negative"):
        inputs.parse_cutoff("-5d", now=NOW)
    with pytest.raises(InvalidInputError, match="before year 1"):
        inputs.parse_cutoff("2500y", now=NOW)


def test_ids_matches_and_pages() -> None:
    u = uuid.uuid4()
    assert inputs.parse_job_id(u.hex) == u and inputs.parse_job_id(f"{{{u}}}") == u
    assert inputs.parse_match("customer.id=42") == ("customer.id", "42")
    assert inputs.parse_match("note=a=b") == ("note", "a=b")
    for bad in ("novalue", "=42", "a..b=1", ".a=1"):
        with pytest.raises(InvalidInputError):
            inputs.parse_match(bad)
    assert inputs.parse_statuses("failed, Dead,") == ["Failed", "Dead"]
    assert inputs.check_offset(inputs.MAX_OFFSET) == inputs.MAX_OFFSET
    for bad_offset in (-1, 10**30):
        with pytest.raises(InvalidInputError, match="offset"):
            inputs.check_offset(bad_offset)
    with pytest.raises(InvalidInputError, match="limit"):
        inputs.check_limit(inputs.MAX_LIMIT + 1)
