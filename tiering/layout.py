"""Object keys of the cold tier: `<prefix>/queue=<slug>/date=<yyyy-mm-dd>/<part>.parquet`.

Pure: no I/O. Every formatter has a parser, and both validate, so no key built or accepted here can
leave its prefix (no `..`, no empty segment, no leading slash, no backslash).

Queue names can hold anything (`/`, `=`, `..`, spaces, unicode, 300 characters). The path holds a
*slug* instead: lower-case `[a-z0-9._-]`, at most 64 characters. A name that is already a valid slug
is used as it is; any other name gets `-` + the first 8 hex digits of sha256(name) appended, so two
different names never share a slug (a name that is itself slug-shaped but ends like a hash suffix
is always hashed too, which keeps the two families apart). The real name lives in the `queue_name`
column and in the manifest.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import date
from typing import NamedTuple

SLUG_MAX_LEN = 64
HASH_LEN = 8
PARQUET_SUFFIX = ".parquet"

_SLUG_RE = re.compile(r"^[a-z0-9._-]{1,64}$")
_HASH_SUFFIX_RE = re.compile(r"-[0-9a-f]{8}$")
_BAD_CHARS_RE = re.compile(r"[^a-z0-9._-]+")
_DASH_RUN_RE = re.compile(r"-{2,}")
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._=+@,-]+$")
_STORAGE_CLASS_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_PART_NAME_RE = re.compile(
    r"^part-(?P<flush>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"-(?P<seq>\d{5,})-(?P<cls>[a-z0-9_]+)$"
)


class ParsedKey(NamedTuple):
    prefix: str
    queue_slug: str
    date: date
    part: str


class ParsedPartName(NamedTuple):
    flush_id: uuid.UUID
    seq: int
    storage_class: str


# --- queue slugs -------------------------------------------------------------------------------


def _name_hash(queue_name: str) -> str:
    return hashlib.sha256(queue_name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LEN]


def is_valid_slug(slug: str) -> bool:
    return bool(_SLUG_RE.match(slug)) and slug not in (".", "..")


def queue_slug(queue_name: str) -> str:
    """The path-safe slug of a queue name (see the module docstring for the rules)."""
    if is_valid_slug(queue_name) and not _HASH_SUFFIX_RE.search(queue_name) and not queue_name.startswith(("-", ".")):
        return queue_name
    base = _BAD_CHARS_RE.sub("-", queue_name.lower())
    base = _DASH_RUN_RE.sub("-", base).strip("-.")
    base = base[: SLUG_MAX_LEN - HASH_LEN - 1].rstrip("-.")
    if not base:
        base = "q"
    return f"{base}-{_name_hash(queue_name)}"


def validate_slug(slug: str) -> str:
    if not is_valid_slug(slug):
        raise ValueError(f"invalid queue slug {slug!r}: expected 1-64 characters of [a-z0-9._-]")
    return slug


# --- prefixes ----------------------------------------------------------------------------------


def normalize_prefix(prefix: str) -> str:
    """`prefix` without surrounding slashes, validated: segments of safe characters, no `.`/`..`."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if segment in ("", ".", "..") or not _PREFIX_SEGMENT_RE.match(segment):
            raise ValueError(
                f"invalid key prefix {prefix!r}: segment {segment!r} is empty, '.', '..' or holds "
                "characters outside [A-Za-z0-9._=+@,-]"
            )
    return stripped


def _join(prefix: str, rest: str) -> str:
    p = normalize_prefix(prefix)
    return f"{p}/{rest}" if p else rest


def format_date(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def parse_date(text: str) -> date:
    m = _DATE_RE.match(text)
    if not m:
        raise ValueError(f"invalid partition date {text!r}: expected yyyy-mm-dd")
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _as_date(d: date | str) -> date:
    if isinstance(d, str):
        return parse_date(d)
    if not isinstance(d, date):
        raise ValueError(f"invalid partition date {d!r}")
    return date(d.year, d.month, d.day)  # a datetime becomes its date


def validate_part(part: str) -> str:
    if not _PART_RE.match(part) or part.endswith(PARQUET_SUFFIX):
        raise ValueError(
            f"invalid part name {part!r}: expected [A-Za-z0-9._-], starting with a letter or digit, "
            "without the .parquet suffix"
        )
    return part


def queue_prefix(prefix: str, slug: str) -> str:
    """`<prefix>/queue=<slug>/` (trailing slash so `queue=a/` never matches `queue=ab/`)."""
    return _join(prefix, f"queue={validate_slug(slug)}/")


def date_prefix(prefix: str, slug: str, d: date | str) -> str:
    """`<prefix>/queue=<slug>/date=<yyyy-mm-dd>/`."""
    return _join(prefix, f"queue={validate_slug(slug)}/date={format_date(_as_date(d))}/")


def object_key(prefix: str, queue_slug: str, date: date | str, part_name: str) -> str:
    """`<prefix>/queue=<slug>/date=<yyyy-mm-dd>/<part>.parquet`; no leading slash when prefix is ''."""
    return date_prefix(prefix, queue_slug, date) + validate_part(part_name) + PARQUET_SUFFIX


def parse_key(key: str) -> ParsedKey:
    """Inverse of object_key; ValueError for anything object_key could not have produced."""
    if key.startswith("/") or "\\" in key:
        raise ValueError(f"not an archive object key: {key!r}")
    parts = key.split("/")
    if len(parts) < 3:
        raise ValueError(f"not an archive object key: {key!r}")
    queue_seg, date_seg, file_seg = parts[-3:]
    if not queue_seg.startswith("queue=") or not date_seg.startswith("date="):
        raise ValueError(f"not an archive object key (expected queue=/date= segments): {key!r}")
    if not file_seg.endswith(PARQUET_SUFFIX):
        raise ValueError(f"not an archive object key (expected .parquet): {key!r}")
    prefix = "/".join(parts[:-3])
    if prefix != normalize_prefix(prefix):
        raise ValueError(f"not an archive object key (bad prefix): {key!r}")
    slug = validate_slug(queue_seg[len("queue=") :])
    d = parse_date(date_seg[len("date=") :])
    part = validate_part(file_seg[: -len(PARQUET_SUFFIX)])
    return ParsedKey(prefix, slug, d, part)


def check_key_under(prefix: str, key: str) -> ParsedKey:
    """Parse `key` and make sure it lives under `prefix`; ValueError otherwise."""
    parsed = parse_key(key)
    if parsed.prefix != normalize_prefix(prefix):
        raise ValueError(f"key {key!r} is outside the prefix {prefix!r}")
    return parsed


# --- part names --------------------------------------------------------------------------------


def part_name(flush_id: uuid.UUID, seq: int, storage_class: str) -> str:
    """Deterministic part name: `part-<flush uuid>-<seq:05d>-<storage class, lower case>`."""
    if seq < 0:
        raise ValueError(f"part sequence must be >= 0, got {seq}")
    if not _STORAGE_CLASS_RE.match(storage_class):
        raise ValueError(f"invalid storage class {storage_class!r}")
    return f"part-{uuid.UUID(str(flush_id))}-{seq:05d}-{storage_class.lower()}"


def parse_part_name(name: str) -> ParsedPartName:
    m = _PART_NAME_RE.match(name)
    if not m:
        raise ValueError(f"not a tiering part name: {name!r}")
    return ParsedPartName(uuid.UUID(m.group("flush")), int(m.group("seq")), m.group("cls"))


# Derived objects for analysts (file list, superseded rows, an empty schema file) live here, beside the archive
# objects but outside the queue=/date= tree: verify ignores them, Athena's projection never reaches them.
ANALYST_DIR = "_tiering/analyst"


def analyst_root(prefix: str) -> str:
    """`<prefix>/_tiering/analyst/`."""
    return _join(prefix, ANALYST_DIR + "/")


# The Iceberg table's metadata (its data files are the archive objects themselves), also outside queue=/date=.
ICEBERG_DIR = "_tiering/iceberg"


def iceberg_root(prefix: str) -> str:
    """`<prefix>/_tiering/iceberg`: the warehouse of the Iceberg catalog (metadata JSON and Avro manifests only)."""
    return _join(prefix, ICEBERG_DIR)
