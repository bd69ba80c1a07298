"""Pure parts of query/search/restore: input parsing, the value matcher and its prefilter, restore mapping."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from tiering.engine.query import ValueMatcher, _loads, parse_job_id, parse_key_path, parse_when, path_matches
from tiering.engine.restore import expected_wait, hot_values
from tiering.errors import InvalidInputError


def test_parse_job_id() -> None:
    u = uuid.uuid4()
    assert parse_job_id(str(u)) == u and parse_job_id(str(u).upper()) == u and parse_job_id(u) == u
    for bad in ("", "x", "1234", "'; DROP TABLE x; --", str(u) + "0", "{" + str(u)):
        with pytest.raises(InvalidInputError, match="not a job id"):
            parse_job_id(bad)


def test_parse_when() -> None:
    assert parse_when("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("2024-05-01T13:30:00Z") == datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
    assert parse_when("2024-05-01T15:30:00+02:00") == datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
    assert parse_when("2024-05-01 13:30") == datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
    assert parse_when(None) is None
    for bad in ("yesterday", "2024-13-01", "2024-02-30", "05/01/2024", "2024-05-01T25:00"):
        with pytest.raises(InvalidInputError, match="ISO date"):
            parse_when(bad)


def test_key_paths() -> None:
    assert parse_key_path("customer.id") == ["customer", "id"]
    assert parse_key_path("'; DROP TABLE x; --") == ["'; DROP TABLE x; --"]
    for bad in ("", " ", ".", "a.", ".a", "a..b"):
        with pytest.raises(InvalidInputError):
            parse_key_path(bad)


@pytest.mark.parametrize(
    ("typed", "stored", "hit"),
    [
        ("12345", 12345, True),
        ("12345", "12345", True),
        ("12345", 12345.0, True),
        ("12345", 123456, False),
        ("12345", "012345", False),
        ("1.5", 1.50, True),
        ("1.50", 1.5, True),
        ("0.1", 0.1, True),
        ("true", True, True),
        ("true", "true", True),
        ("1", True, False),
        ("null", None, True),
        ("abc", "ABC", False),
        ('a"b', 'a"b', True),
        ("%", "%", True),
        ("_", "x", False),
        ("ü", "ü", True),
        ("1e20", 1e20, True),
    ],
)
def test_matcher_and_prefilter_agree(typed: str, stored: object, hit: bool) -> None:
    m = ValueMatcher(typed)
    doc = {"k": {"v": stored}}
    assert path_matches(_loads(json.dumps(doc)), ["k", "v"], m) is hit
    if hit and m.needles:
        # what PostgreSQL (jsonb::text), serde_json and Python write must all pass the text prefilter
        for text in (json.dumps(doc), json.dumps(doc, ensure_ascii=False), json.dumps(doc, separators=(",", ":"))):
            assert any(n in text for n in m.needles), (text, m.needles)


def test_paths_fan_out_over_lists_and_dotted_keys() -> None:
    m = ValueMatcher("x")
    assert path_matches({"items": [{"sku": "y"}, {"sku": "x"}]}, ["items", "sku"], m)
    assert path_matches({"tags": ["a", "x"]}, ["tags"], m)
    assert path_matches({"tags": ["a", "x"]}, ["tags", "1"], m)
    assert not path_matches({"tags": ["a", "x"]}, ["tags", "0"], m)
    assert path_matches({"a.b": "x"}, ["a", "b"], m)
    assert not path_matches({"a": "x"}, ["a", "b"], m)


def test_hot_values_map_archive_fields_back() -> None:
    rec = {"id": str(uuid.UUID(int=1)), "queue_name": "q", "priority": "critical", "priority_weight": 20,
           "max_attempts": 7, "created_at": datetime(2024, 1, 1, tzinfo=UTC), "dependency_status": '"Waiting"',
           "result_config": {"storage_type": "Memory", "ttl_seconds": 60, "max_size_bytes": 1024},
           "depends_on": [str(uuid.UUID(int=2))], "recurring": None}  # fmt: skip
    v = hot_values(rec, '{"a": 1}')
    assert v["priority"] == 4 and v["status"] == "Pending" and v["attempts"] == 0
    assert v["dependency_status"] == "waiting" and v["recurring"] is False
    assert (v["result_storage_type"], v["result_ttl_seconds"], v["result_max_size_bytes"]) == ("memory", 60, 1024)
    assert v["depends_on"] == [uuid.UUID(int=2)] and v["id"] == uuid.UUID(int=1)
    assert hot_values({**rec, "priority": "bogus", "priority_weight": 2}, "{}")["priority"] == 1
    assert hot_values({**rec, "priority": "background"}, "{}")["priority"] == 0
    # No result config at all is Hammerwork's default ResultConfig (storage None), as its own restore reads it.
    bare = hot_values({**rec, "result_config": None, "dependency_status": None}, "{}")
    assert bare["result_storage_type"] == "none" and bare["dependency_status"] == "none"
    # Hammerwork's own shape (serde of ResultConfig), TTL as a serde Duration.
    hw = hot_values({**rec, "result_config": {"storage": "Database", "ttl": {"secs": 3600, "nanos": 0},
                                              "max_size_bytes": 1048576}}, "{}")  # fmt: skip
    assert (hw["result_storage_type"], hw["result_ttl_seconds"], hw["result_max_size_bytes"]) == (
        "database", 3600, 1048576)  # fmt: skip
    # Hammerwork's restore parses dependency_status as serde JSON: the bare words its archiver writes fall back to
    # none (so a restored Dead job whose dependencies failed is picked up again); quoted variants keep their meaning.
    for stored in ("failed", "waiting", "satisfied", "none", '"None"', "garbage"):
        assert hot_values({**rec, "dependency_status": stored}, "{}")["dependency_status"] == "none", stored
    assert hot_values({**rec, "dependency_status": '"Satisfied"'}, "{}")["dependency_status"] == "satisfied"


def test_expected_wait() -> None:
    assert expected_wait("GLACIER", "Expedited") == "1-5 minutes"
    assert "48" in expected_wait("DEEP_ARCHIVE", "Bulk")
