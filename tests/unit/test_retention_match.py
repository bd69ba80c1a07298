"""Pure parts of retention: payload matching, prefilter needles, object-lock reading, estimates, cutoffs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from tiering.cli.retention import parse_cutoff
from tiering.db.manifest import ManifestRow
from tiering.engine.erase import needles, parse_match, payload_matches
from tiering.engine.purge import estimated_saving, lock_of, utc_cutoff
from tiering.errors import ConfigError, InvalidInputError
from tiering.store.base import ObjectInfo

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("doc", "expr", "hit"),
    [
        ({"customer": {"id": 42}}, "customer.id=42", True),
        ({"customer": {"id": "42"}}, "customer.id=42", True),
        ({"customer": {"id": 42.0}}, "customer.id=42", True),
        ({"customer": {"id": 420}}, "customer.id=42", False),
        ({"customer": {"id": True}}, "customer.id=1", False),
        ({"customer": 42}, "customer.id=42", False),
        ({"flag": True}, "flag=true", True),
        ({"flag": "true"}, "flag=true", True),
        ({"v": None}, "v=null", True),
        ({"email": "a@b.c"}, "email=a@b.c", True),
        ({"email": "a@b.c"}, 'email="a@b.c"', True),
        ({"a": [{"b": "x y"}]}, "a.0.b=x y", True),
        ({"a": {"b": 1}}, 'a={"b": 1}', True),
        ({"a": {"b": 1}}, "a.b=1", True),
        # what `archive search` finds, erase finds too: lists fan out, top-level dotted keys
        ({"customer": [{"id": 7}, {"id": 42}]}, "customer.id=42", True),
        ({"customer": {"id": [1, 42]}}, "customer.id=42", True),
        ({"customer.id": "42"}, "customer.id=42", True),
        ({"customer": [{"id": 7}]}, "customer.id=42", False),
    ],
)
def test_payload_matches(doc: object, expr: str, hit: bool) -> None:
    path, value, raw = parse_match(expr)
    assert payload_matches(doc, path, value, raw) is hit
    if hit:  # the prefilter never drops a real match
        import json

        text = json.dumps(doc, ensure_ascii=False)
        assert all(n in text for n in needles(path, value, raw))


def test_bad_match_refused() -> None:
    for bad in ("novalue", "=1", "a..b=1"):
        with pytest.raises(InvalidInputError):
            parse_match(bad)


def test_lock_of() -> None:
    assert lock_of(None, NOW)[0] is False
    free = ObjectInfo("k", 1)
    assert lock_of(free, NOW)[0] is False
    held = ObjectInfo("k", 1, object_lock_legal_hold=True)
    assert lock_of(held, NOW) == (True, None, None, True)
    retained = ObjectInfo("k", 1, object_lock_mode="COMPLIANCE", object_lock_retain_until=NOW + timedelta(days=1))
    assert lock_of(retained, NOW)[:2] == (True, "COMPLIANCE")
    expired = ObjectInfo("k", 1, object_lock_mode="GOVERNANCE", object_lock_retain_until=NOW - timedelta(days=1))
    assert lock_of(expired, NOW)[0] is False


def test_estimated_saving_and_cutoffs() -> None:
    nones = (None,) * 4
    row = ManifestRow(1, uuid.uuid4(), "b", "k", "q", "q", date(2024, 1, 1), 10, 1, 1000, 0, 0, *nones, [],
                      "STANDARD", *nones, 1, "committed", None, NOW, NOW, None, None)  # fmt: skip
    assert estimated_saving(row, 3) == 300 and estimated_saving(row, 0) == 0
    assert utc_cutoff(timedelta(days=1), NOW) == NOW - timedelta(days=1)
    assert utc_cutoff(datetime(2024, 1, 1)).tzinfo is UTC
    assert parse_cutoff("2 years", NOW) == NOW - timedelta(days=730)
    assert parse_cutoff("P1D", NOW) == NOW - timedelta(days=1)
    with pytest.raises(ConfigError):
        parse_cutoff("soon", NOW)
    with pytest.raises(InvalidInputError):
        parse_cutoff("2024-13-45", NOW)


def test_erase_matches_everything_search_matches() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tiering.engine.query import ValueMatcher, path_matches

    scalars = st.one_of(st.integers(-50, 50), st.sampled_from(["42", "x y", "true"]), st.booleans(), st.none())
    docs = st.recursive(
        scalars,
        lambda c: st.one_of(
            st.lists(c, max_size=3), st.dictionaries(st.sampled_from(["id", "customer"]), c, max_size=3)
        ),
        max_leaves=8,
    )

    @settings(max_examples=300, deadline=None)
    @given(
        doc=docs, key=st.sampled_from(["id", "customer.id"]), raw=st.sampled_from(["42", "7", "x y", "true", "null"])
    )
    def check(doc: object, key: str, raw: str) -> None:
        import json

        path, value, raw_value = parse_match(f"{key}={raw}")
        if path_matches(doc, path, ValueMatcher(raw)):
            assert payload_matches(doc, path, value, raw_value)
            text = json.dumps(doc, ensure_ascii=False)
            assert all(n in text for n in needles(path, value, raw_value)), (text, needles(path, value, raw_value))

    check()
