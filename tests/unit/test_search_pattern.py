"""The key/value regex that prefilters cold search must never drop a true match (a superset of the exact check)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiering.engine.query import ValueMatcher, _candidate_rows, literal_regex, path_matches

CASES = [
    ("customer.id", "1237", {"customer": {"id": "1237", "tier": "pro"}}, True),
    ("customer.id", "1237", {"customer": {"id": 1237}}, True),
    ("customer.id", "1237", {"customer": {"id": 1237.0}}, True),
    ("customer.id", "1237", {"customer": {"id": 12370}}, False),
    ("customer.id", "1237", {"customer": {"id": [5, 1237]}}, True),
    ("customer.id", "1237", {"customer.id": 1237}, True),
    ("customer.id", "1237", {"order_id": 1237, "customer": {"id": 5}}, False),
    ("customer.id", "1237", {"customer": [{"id": 9}, {"id": 1237}]}, True),
    ("id", "5", {"id": [[1, 2], 5]}, True),
    ("flag", "true", {"flag": True}, True),
    ("flag", "true", {"flag": "true"}, True),
    ("flag", "true", {"flag": False}, False),
    ("amount", "12.5", {"amount": 12.5}, True),
    ("k", "-5", {"k": -5}, True),
    ("k", "a b", {"k": "a b"}, True),
]


def _regex_hit(pattern: str, text: str) -> bool:
    return bool(pc.match_substring_regex(pa.array([text]), pattern)[0].as_py())


@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":"), (",\n  ", " : ")])
@pytest.mark.parametrize(("key", "value", "doc", "expected"), CASES)
def test_regex_agrees_with_the_exact_check(
    key: str, value: str, doc: object, expected: bool, separators: tuple[str, str]
) -> None:
    matcher = ValueMatcher(value)
    path = key.split(".")
    text = json.dumps(doc, separators=separators)
    assert path_matches(json.loads(text), path, matcher) is expected
    pattern = matcher.key_pattern(path)
    assert pattern is not None
    if expected:
        assert _regex_hit(pattern, text)
    elif key == "customer.id" and "12370" in text:
        assert not _regex_hit(pattern, text)  # and it does prune near misses


def test_unsafe_keys_and_values_get_no_regex() -> None:
    assert ValueMatcher('a"b').key_pattern(["k"]) is None
    assert ValueMatcher("x").key_pattern(["items", "0"]) is None
    assert ValueMatcher("x").key_pattern(["ключ"]) is None
    assert ValueMatcher("1e20").key_pattern(["k"]) is None


scalars = st.one_of(
    st.integers(-10_000, 10_000),
    st.sampled_from(["1237", "pro", "a b", "x.y", "true", "null"]),
    st.booleans(),
    st.none(),
)
docs = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["id", "customer", "k", "v"]), children, max_size=3),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    doc=docs,
    key=st.sampled_from(["id", "customer.id", "k", "customer.k"]),
    value=st.sampled_from(["1237", "5", "-3", "pro", "true", "null", "a b"]),
)
def test_regex_never_drops_a_match(doc: object, key: str, value: str) -> None:
    matcher = ValueMatcher(value)
    path = key.split(".")
    pattern = matcher.key_pattern(path)
    assert pattern is not None
    for separators in ((", ", ": "), (",", ":")):
        text = json.dumps(doc, separators=separators)
        if path_matches(json.loads(text), path, matcher):
            assert _regex_hit(pattern, text), (text, pattern)


def test_literal_regex_matches_needles_literally() -> None:
    pattern = literal_regex(["a.b", "x+y", "(1)", "$5^", "a b"])
    texts = ["a.b", "aXb", "x+y", "xxy", "(1)", "1", "$5^", "a b", "ab"]
    hits = pc.match_substring_regex(pa.array(texts), pattern).to_pylist()
    assert hits == [True, False, True, False, True, False, True, True, False]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(docs, min_size=1, max_size=8),
    key=st.sampled_from(["id", "customer.id", "k"]),
    value=st.sampled_from(["1237", "5", "-3", "pro", "true", "null", "a b", "x.y"]),
)
def test_candidate_rows_keep_every_match(rows: list[object], key: str, value: str) -> None:
    """The two RE2 stages (needles, then the key/value regex) keep every row that matches, and only rows the
    key/value regex alone keeps."""
    matcher = ValueMatcher(value)
    path = key.split(".")
    pattern = matcher.key_pattern(path)
    texts = [json.dumps(doc) for doc in rows]
    kept = set(_candidate_rows(pa.array(texts), matcher, pattern).to_pylist())
    for i, text in enumerate(texts):
        if path_matches(json.loads(text), path, matcher):
            assert i in kept, (text, pattern)
    if pattern is not None:
        assert kept <= {i for i, text in enumerate(texts) if _regex_hit(pattern, text)}
