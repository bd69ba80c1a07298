"""Every payload reader takes any bytes and any depth: an unreadable payload is UnreadablePayload, never
EOFError, UnicodeDecodeError, RecursionError or a crash (issue 12.2)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tiering import codec
from tiering.engine.erase import needles, parse_value, payload_matches, value_at
from tiering.engine.query import ValueMatcher, _payload_match, path_matches

GZIP_OR_ZSTD = st.sampled_from([codec.GZIP_MAGIC, codec.ZSTD_MAGIC, b""])


def _deep(levels: int, leaf: Any = 1, kind: str = "list") -> str:
    if kind == "list":
        return "[" * levels + json.dumps(leaf) + "]" * levels
    return '{"a":' * levels + json.dumps(leaf) + "}" * levels


@settings(max_examples=300, deadline=None)
@given(magic=GZIP_OR_ZSTD, body=st.binary(max_size=200))
def test_random_stored_bytes_decode_or_are_reported(magic: bytes, body: bytes) -> None:
    data = magic + body
    try:
        doc = codec.load_json(data, stored=True)
    except codec.UnreadablePayload as exc:
        assert exc.reason
    else:
        assert codec.depth(doc) <= codec.MAX_DEPTH


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300))
def test_truncated_and_damaged_compressed_payloads(body: bytes) -> None:
    good = json.dumps({"k": body.hex()}).encode()
    for packed in (gzip.compress(good), zstandard.ZstdCompressor().compress(good)):
        assert codec.load_json(packed, stored=True) == {"k": body.hex()}
        cut = packed[: max(2, len(packed) // 2)]
        with pytest.raises(codec.UnreadablePayload):
            codec.load_json(cut, stored=True)


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 20_000), kind=st.sampled_from(["list", "dict"]))
def test_any_depth_parses_or_is_refused_by_depth(levels: int, kind: str) -> None:
    text = _deep(levels, 42, kind)
    try:
        doc = codec.load_json(text)
    except codec.UnreadablePayload as exc:
        assert levels > codec.MAX_DEPTH and "deeper" in exc.reason
    else:
        assert levels <= codec.MAX_DEPTH and codec.depth(doc) == levels


@pytest.mark.parametrize("text", ['{"a": NaN}', "[Infinity]", '{"a": -Infinity}', "\ud800", '{"a": 1', ""])
def test_non_json_is_unreadable(text: str) -> None:
    with pytest.raises(codec.UnreadablePayload):
        codec.load_json(text)


def test_invalid_utf8_is_unreadable() -> None:
    with pytest.raises(codec.UnreadablePayload, match="not UTF-8"):
        codec.load_json(b'{"a": "\xff"}')


# JSON values up to a moderate depth (walkers must agree on them), and very deep ones (walkers must not crash)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["42", "x", "a.b"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "a.b", "0"]), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    doc=JSON,
    path=st.lists(st.sampled_from(["a", "b", "0"]), min_size=1, max_size=3),
    value=st.sampled_from(["42", "x", "null", "true"]),
)
def test_walkers_on_random_documents(doc: Any, path: list[str], value: str) -> None:
    matcher = ValueMatcher(value)
    hit = path_matches(doc, path, matcher)
    assert isinstance(hit, bool)
    typed = parse_value(value)
    if hit:
        assert payload_matches(doc, path, typed, value)  # erase never misses what search shows
        text = json.dumps(doc)
        assert all(n in text for n in needles(path, typed, value))  # the prefilter keeps every match
    value_at(doc, path)
    got = _payload_match(json.dumps(doc), path, matcher)
    assert (got is not None) == hit


@pytest.mark.parametrize("levels", [codec.MAX_DEPTH, 5_000, 50_000])
def test_walkers_survive_deep_documents(levels: int) -> None:
    # built directly (not parsed): the walkers themselves must be iterative
    doc: Any = 42
    for _ in range(levels):
        doc = [doc]
    assert path_matches(doc, ["a"], ValueMatcher("42")) is False
    assert path_matches({"a": doc}, ["a"], ValueMatcher("42")) is True
    nested: Any = {"id": 7}
    for _ in range(levels):
        nested = {"a": nested}
    assert path_matches(nested, ["b"], ValueMatcher("7")) is False
    assert codec.depth(nested) == levels + 1
    # a deep payload text is reported unreadable by the search reader, not raised
    from tiering.engine.query import UNREADABLE

    assert _payload_match(_deep(levels), ["a"], ValueMatcher("1")) in (UNREADABLE, None)
    if levels > codec.MAX_DEPTH:
        assert _payload_match(_deep(levels), ["a"], ValueMatcher("1")) is UNREADABLE


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(GZIP_OR_ZSTD, st.binary(max_size=80)), min_size=1, max_size=8))
def test_flush_decoder_names_exactly_the_undecodable_rows(rows: list[tuple[bytes, bytes]]) -> None:
    import pyarrow as pa

    from tiering.schema import PayloadDecodeError, decode_payloads

    good = gzip.compress(b'{"ok": 1}')
    data = [good] + [magic + body for magic, body in rows]
    expected_bad = set()
    for i, d in enumerate(data):
        try:
            codec.decode_checked(d).decode("utf-8")
        except (codec.UnreadablePayload, UnicodeDecodeError):
            expected_bad.add(str(i))
    try:
        out = decode_payloads(pa.array(data, pa.binary()))
    except PayloadDecodeError as exc:
        assert {b.job_id for b in exc.bad} == expected_bad and expected_bad
    else:
        assert not expected_bad and out.to_pylist()[0] == '{"ok": 1}'


@settings(max_examples=150, deadline=None)
@given(magic=GZIP_OR_ZSTD, body=st.binary(max_size=120))
def test_restore_payload_check_refuses_or_returns_text(magic: bytes, body: bytes) -> None:
    from tiering.engine.restore import _payload_text
    from tiering.errors import CorruptPayloadError

    try:
        text = _payload_text("job-1", magic + body, stored=True)
    except CorruptPayloadError as exc:
        assert "job-1" in str(exc)
    else:
        assert isinstance(codec.load_json(text), object)
