from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiering import layout
from tiering.layout import ParsedKey

SLUG_RE = re.compile(r"^[a-z0-9._-]{1,64}$")

NASTY_NAMES = [
    "",
    " ",
    ".",
    "..",
    "...",
    "/",
    "a/b",
    "../../etc/passwd",
    "queue=x",
    "date=2024-01-01",
    "a b",
    "Émails",
    "émails",
    "emails",
    "Emails",
    "EMAILS",
    "日本語",
    "🚀",
    "x" * 300,
    "X" * 300,
    "-lead",
    "trail-",
    ".hidden",
    "a\\b",
    "a\x00b",
    "emails-12345678",
    "\ud800",
]

queue_names = st.one_of(st.sampled_from(NASTY_NAMES), st.text(max_size=300))
prefixes = st.lists(st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9._=+@,-]{0,10}$", fullmatch=True), max_size=3).map("/".join)
dates = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))


@given(queue_names)
def test_slug_is_path_safe(name: str) -> None:
    slug = layout.queue_slug(name)
    assert SLUG_RE.match(slug), slug
    assert slug not in (".", "..")
    assert not slug.startswith(("-", "."))
    assert layout.queue_slug(name) == slug  # deterministic


@given(queue_names)
def test_slug_unchanged_only_for_safe_names(name: str) -> None:
    slug = layout.queue_slug(name)
    if slug == name:
        assert SLUG_RE.match(name) and not re.search(r"-[0-9a-f]{8}$", name)
    else:
        assert re.search(r"-[0-9a-f]{8}$", slug), "a changed name must carry a hash"


@given(st.sets(queue_names, min_size=2, max_size=30))
def test_distinct_names_distinct_slugs(names: set[str]) -> None:
    slugs = {layout.queue_slug(n) for n in names}
    assert len(slugs) == len(names)


def test_examples() -> None:
    assert layout.queue_slug("emails") == "emails"
    assert layout.queue_slug("my.queue_1-x") == "my.queue_1-x"
    assert layout.queue_slug("Emails").startswith("emails-")
    assert layout.queue_slug("Emails") != layout.queue_slug("EMAILS") != layout.queue_slug("emails")
    assert layout.queue_slug("a/b").startswith("a-b-")
    assert layout.queue_slug("").startswith("q-")
    assert layout.queue_slug("..").startswith("q-")
    assert len(layout.queue_slug("x" * 300)) == 64
    # a safe-looking name that ends like a hash suffix is hashed too, so it cannot collide
    spoof = layout.queue_slug("Emails")
    assert layout.queue_slug(spoof) != spoof


@given(prefixes, queue_names, dates, st.uuids(), st.integers(0, 10**6), st.sampled_from(["STANDARD", "GLACIER_IR"]))
@settings(max_examples=200)
def test_key_round_trip(prefix: str, name: str, d: date, flush: uuid.UUID, seq: int, cls: str) -> None:
    slug = layout.queue_slug(name)
    part = layout.part_name(flush, seq, cls)
    key = layout.object_key(prefix, slug, d, part)
    assert not key.startswith("/")
    assert "//" not in key and "\\" not in key
    assert ".." not in key.split("/")
    parsed = layout.parse_key(key)
    assert parsed == ParsedKey(prefix, slug, d, part)
    assert layout.object_key(*parsed) == key
    assert key.startswith(layout.date_prefix(prefix, slug, d))
    assert key.startswith(layout.queue_prefix(prefix, slug))
    assert layout.check_key_under(prefix, key) == parsed
    assert layout.parse_part_name(part) == (flush, seq, cls.lower())


def test_key_format() -> None:
    fid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    part = layout.part_name(fid, 3, "STANDARD_IA")
    assert part == "part-12345678-1234-5678-1234-567812345678-00003-standard_ia"
    assert layout.object_key("", "emails", date(2024, 1, 2), part) == (f"queue=emails/date=2024-01-02/{part}.parquet")
    assert layout.object_key("/archive/v1/", "emails", "2024-01-02", "p") == (
        "archive/v1/queue=emails/date=2024-01-02/p.parquet"
    )
    dt = datetime(2024, 1, 2, 23, 59, tzinfo=UTC)
    assert layout.date_prefix("a", "emails", dt) == "a/queue=emails/date=2024-01-02/"
    assert layout.queue_prefix("", "emails") == "queue=emails/"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x.parquet",
        "/queue=a/date=2024-01-01/p.parquet",
        "queue=a/date=2024-01-01/p.csv",
        "queue=A/date=2024-01-01/p.parquet",
        "queue=../date=2024-01-01/p.parquet",
        "queue=a/date=2024-1-1/p.parquet",
        "queue=a/date=2024-02-30/p.parquet",
        "queue=a/day=2024-01-01/p.parquet",
        "../queue=a/date=2024-01-01/p.parquet",
        "pre//queue=a/date=2024-01-01/p.parquet",
        "pre\\x/queue=a/date=2024-01-01/p.parquet",
        "queue=a/date=2024-01-01/.hidden.parquet",
        "queue=a/date=2024-01-01/_SUCCESS.parquet",
        "queue=a/date=2024-01-01/a/b.parquet",
        "queue=/date=2024-01-01/p.parquet",
    ],
)
def test_parse_rejects(key: str) -> None:
    with pytest.raises(ValueError):
        layout.parse_key(key)


@pytest.mark.parametrize("prefix", ["..", "a/../b", "a//b", "a/./b", "a b", "ü"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(ValueError):
        layout.object_key(prefix, "emails", date(2024, 1, 1), "p")


def test_bad_inputs_rejected() -> None:
    with pytest.raises(ValueError):
        layout.object_key("", "Emails", date(2024, 1, 1), "p")
    with pytest.raises(ValueError):
        layout.object_key("", "..", date(2024, 1, 1), "p")
    with pytest.raises(ValueError):
        layout.object_key("", "emails", date(2024, 1, 1), "../p")
    with pytest.raises(ValueError):
        layout.object_key("", "emails", date(2024, 1, 1), "p.parquet")
    with pytest.raises(ValueError):
        layout.part_name(uuid.uuid4(), -1, "STANDARD")
    with pytest.raises(ValueError):
        layout.part_name(uuid.uuid4(), 0, "STANDARD/../x")
    with pytest.raises(ValueError):
        layout.parse_part_name("part-xyz")


def test_check_key_under_other_prefix() -> None:
    key = layout.object_key("a/b", "emails", date(2024, 1, 1), "p")
    with pytest.raises(ValueError):
        layout.check_key_under("a", key)
    with pytest.raises(ValueError):
        layout.check_key_under("a/b/c", key)
