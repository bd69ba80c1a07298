"""The column registry of an archived job, the archive's Arrow schema, and conversions between staging rows
and archive rows.

One `Column` per column of `hammerwork_jobs_archive` (same names, same order) says everything tiering needs
to know about it: its Arrow type (Parquet, DuckDB, Athena), the SQL that fills it from a hot row when a job
is archived, the SQL that reads it back out of staging for a flush, what a restore does with it (keep,
reset, map) and its category (for the generated docs). The staging move, the flush's select, the hot
insert of a restore, the Parquet schema and schemas/archive-schema.md are all derived from COLUMNS: adding
a plain Hammerwork column is one line here plus Hammerwork's own DDL.

Adding a column Hammerwork added to both tables:
  1. its DDL in schemas/sql/hammerwork/hammerwork_jobs.sql and hammerwork_jobs_archive.sql (the tables tiering
     creates on a database without Hammerwork's own);
  2. one nullable `Column(...)` line at the end of COLUMNS (by default filled from the hot column of the same
     name and kept on restore; `hot`, `read`, `restore` say otherwise);
  3. bump SCHEMA_VERSION (verify matches an object's columns against the schema of its own version only);
  4. `make schema-docs` (rewrites schemas/archive-schema.md and archive.arrow.json; a unit test checks them).
Objects written before the column existed read it as null; purge/erase rewrites of them add it as null.

Types are chosen for analysts: UUIDs as canonical text, the payload as decoded JSON text, JSONB as JSON
text, timestamps as microseconds UTC.

Pure: no I/O. `to_archive_batch` takes what the ADBC PostgreSQL driver returns for the flush's select
(uuid as `arrow.uuid`, jsonb as `arrow.json`, bytea as binary, ...) and is idempotent on batches already in
the archive schema.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
import zlib
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import zstandard

import tiering
from tiering import codec

SCHEMA_VERSION = 1

META_SCHEMA_VERSION = "tiering.schema_version"
META_TIERING_VERSION = "tiering.version"
META_FLUSH_ID = "tiering.flush_id"
META_PART_NAME = "tiering.part_name"

TS = pa.timestamp("us", tz="UTC")

# --- Hammerwork's value mappings (one place each) -----------------------------------------------------

# (word in the archive table, hot integer, priority_weight): Hammerwork's JobPriority, Display and weight().
PRIORITIES: tuple[tuple[str, int, int], ...] = (
    ("background", 0, 1),
    ("low", 1, 2),
    ("normal", 2, 5),
    ("high", 3, 10),
    ("critical", 4, 20),
)
DEFAULT_PRIORITY = 2
# Hammerwork's ResultStorage: the hot table's lowercase word <-> serde's variant name in result_config.
RESULT_STORAGE: tuple[tuple[str, str], ...] = (("database", "Database"), ("memory", "Memory"), ("none", "None"))
DEPENDENCY_STATUSES: tuple[str, ...] = ("none", "waiting", "satisfied", "failed")


def bare_status_sql(expr: str) -> str:
    """SQL of a status without the literal quotes Hammerwork < 1.7.4 (and v1.7.4's archiver) stored."""
    return f"btrim({expr}, '\"')"


def priority_word_sql(expr: str) -> str:
    whens = " ".join(f"WHEN {n} THEN '{w}'" for w, n, _ in PRIORITIES if n != DEFAULT_PRIORITY)
    return f"CASE {expr} {whens} ELSE 'normal' END"


def priority_weight_sql(expr: str) -> str:
    whens = " ".join(f"WHEN {n} THEN {wt}" for _, n, wt in PRIORITIES if n != DEFAULT_PRIORITY)
    return f"CASE {expr} {whens} ELSE 5 END"


def staged_priority_sql(expr: str) -> str:
    """A staged priority word as analysts read it: lower case, no quotes (migration 010's default is 'Normal')."""
    return f"lower(btrim({expr}, '\"'))"


def staged_weight_sql(weight: str, word: str) -> str:
    """A staged priority_weight, or the weight of its priority word where a Hammerwork row left it NULL."""
    whens = " ".join(f"WHEN '{w}' THEN {wt}" for w, _, wt in PRIORITIES if w != "normal")
    return f"COALESCE({weight}, CASE {staged_priority_sql(word)} {whens} ELSE 5 END)"


# The hot columns result_config is built from (result_config_sql, result_config_arrow), in their arguments' order.
RESULT_CONFIG_HOT: tuple[str, str, str] = ("result_storage_type", "result_ttl_seconds", "result_max_size_bytes")


def result_config_arrow(storage: pa.Array, ttl: pa.Array, max_size: pa.Array) -> pa.Array:
    """result_config_sql's value as the JSON text PostgreSQL gives for it (jsonb: keys by length, then bytes;
    ", " and ": " between), built from Arrow arrays of the same three hot columns (integers for ttl and
    max_size): the direct path's claim reads the three columns and builds the JSON on the client instead of the
    server building and printing a jsonb per row."""
    lowered = pc.utf8_lower(storage.cast(pa.string()))
    conditions = pc.make_struct(*[pc.fill_null(pc.equal(lowered, word), False) for word, _ in RESULT_STORAGE],
                                field_names=[word for word, _ in RESULT_STORAGE])  # fmt: skip
    variant = pc.case_when(conditions, *[variant for _, variant in RESULT_STORAGE], "None")
    secs = pc.binary_join_element_wise('{"secs": ', ttl.cast(pa.string()), ', "nanos": 0}', "")
    return pc.binary_join_element_wise(
        '{"ttl": ', pc.fill_null(secs, "null"), ', "storage": "', variant, '", "max_size_bytes": ',
        pc.fill_null(max_size.cast(pa.string()), "null"), "}", "",
    )  # fmt: skip


def result_config_sql(storage: str, ttl: str, max_size: str) -> str:
    """Hammerwork's `serde_json::to_value(&ResultConfig)` built from the hot row's three result columns:
    {"storage": "Database"|"Memory"|"None", "ttl": {"secs": n, "nanos": 0} | null, "max_size_bytes": n | null}."""
    whens = " ".join(f"WHEN '{word}' THEN '{variant}'" for word, variant in RESULT_STORAGE)
    return (
        f"jsonb_build_object('storage', CASE lower({storage}) {whens} ELSE 'None' END, "
        f"'ttl', CASE WHEN {ttl} IS NULL THEN NULL ELSE jsonb_build_object('secs', {ttl}, 'nanos', 0) END, "
        f"'max_size_bytes', {max_size})"
    )


def priority_from_archive(word: Any, weight: Any) -> int:
    """The hot priority of an archived job: its word (any case, legacy quotes, Hammerwork's FromStr aliases),
    else its weight, else Normal."""
    if isinstance(word, str):
        text = word.strip().strip('"').lower()
        text = {"bg": "background", "l": "low", "n": "normal", "default": "normal", "h": "high"}.get(text, text)
        text = {"crit": "critical", "c": "critical"}.get(text, text)
        for w, n, _ in PRIORITIES:
            if w == text:
                return n
        if text.isdigit() and 0 <= int(text) <= 4:
            return int(text)
    if isinstance(weight, int):
        for _, n, wt in PRIORITIES:
            if wt == weight:
                return n
    return DEFAULT_PRIORITY


def dependency_status_on_restore(value: Any) -> str:
    """What Hammerwork's restore leaves: it parses the stored text as serde JSON of DependencyStatus, so the
    bare words its archiver writes (`failed`, `none`) fall back to the default `none`, and only v1.7.4's quoted
    variant names (`"Waiting"`) keep their meaning. A restored job thus runs unless it really waits."""
    if not isinstance(value, str):
        return "none"
    try:
        parsed = json.loads(value)
    except ValueError:
        return "none"
    if isinstance(parsed, str) and parsed in ("None", "Waiting", "Satisfied", "Failed"):
        return parsed.lower()
    return "none"


def result_config_to_hot(cfg: Any) -> tuple[str, int | None, int | None]:
    """(result_storage_type, result_ttl_seconds, result_max_size_bytes) from a stored result_config, in
    Hammerwork's shape ({"storage", "ttl": {"secs", "nanos"}, "max_size_bytes"}) or tiering's earlier one
    ({"storage_type", "ttl_seconds", "max_size_bytes"}); anything else is Hammerwork's default (none)."""
    if isinstance(cfg, str | bytes):
        try:
            cfg = json.loads(cfg)
        except ValueError:
            cfg = None
    if not isinstance(cfg, dict):
        return "none", None, None
    storage = cfg.get("storage", cfg.get("storage_type"))
    word = str(storage).strip().lower() if isinstance(storage, str) and storage.strip() else "none"
    if word not in {w for w, _ in RESULT_STORAGE}:
        word = "none"
    ttl = cfg.get("ttl", cfg.get("ttl_seconds"))
    if isinstance(ttl, dict):
        ttl = ttl.get("secs")
    elif isinstance(ttl, list | tuple) and ttl:
        ttl = ttl[0]
    size = cfg.get("max_size_bytes", cfg.get("max_size"))
    return word, _int_or_none(ttl), _int_or_none(size)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the registry ---------------------------------------------------------------------------------------


class Restore(StrEnum):
    """What a restore does with an archived column (Hammerwork's restore semantics)."""

    KEEP = "keep"  # the hot column takes the archived value
    RESET = "reset"  # the hot column takes a fixed value (or its default when the value is None)
    MAP = "map"  # a function turns the archived row into one or more hot columns
    DROP = "drop"  # archival metadata: not written back


SAME = "="  # Column.hot: the hot row's column of the same name


@dataclass(frozen=True)
class Column:
    """One column of hammerwork_jobs_archive and of the archive's Parquet files.

    hot: SQL over the hot row `h` that fills this staging column when tiering archives a job (SAME: h.<name>;
      None: NULL). `{payload}`, `{compressed}`, `{size}` stand for the move's payload expressions.
    read: SQL over the staged row `a` that a flush reads (None: a.<name>).
    restore: what a restore does; hot_column names the hot column a KEEP writes (default: the same name),
      reset_value/reset_sql the value a RESET writes; to_hot the MAP function (record -> hot columns), `reads` the
      other archive columns it looks at (a cold restore decodes only KEEP/MAP columns and those: RESTORE_COLUMNS).
    """

    name: str
    type: pa.DataType
    nullable: bool
    pg_type: str
    description: str
    category: str = "job"
    hot: str | None = SAME
    read: str | None = None
    restore: Restore = Restore.KEEP
    hot_column: str | None = None
    reset_value: Any = None
    reset_sql: str | None = None
    to_hot: Callable[[dict[str, Any]], dict[str, Any]] | None = dc_field(default=None, compare=False)
    maps_to: tuple[str, ...] = ()  # MAP: the hot columns to_hot returns (default: the same name)
    hot_cast: str | None = None  # a SQL cast for the hot insert's placeholder (jsonb columns)
    reads: tuple[str, ...] = ()  # MAP: other archive columns to_hot reads besides this one

    def hot_sql(self) -> str:
        if self.hot == SAME:
            return f"h.{self.name}"
        return "NULL" if self.hot is None else self.hot

    def read_sql(self) -> str:
        return f"a.{self.name}" if self.read is None else f"{self.read} AS {self.name}"


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _payload_to_hot(r: dict[str, Any]) -> dict[str, Any]:
    return {"payload": r.get("payload")}  # restore_values puts the decoded JSON text here


def _priority_to_hot(r: dict[str, Any]) -> dict[str, Any]:
    return {"priority": priority_from_archive(r.get("priority"), r.get("priority_weight"))}


def _depends_on_to_hot(r: dict[str, Any]) -> dict[str, Any]:
    return {"depends_on": [_uuid(d) for d in (r.get("depends_on") or []) if d is not None]}


def _dependency_status_to_hot(r: dict[str, Any]) -> dict[str, Any]:
    return {"dependency_status": dependency_status_on_restore(r.get("dependency_status"))}


def _result_config_to_hot(r: dict[str, Any]) -> dict[str, Any]:
    storage, ttl, size = result_config_to_hot(r.get("result_config"))
    return {"result_storage_type": storage, "result_ttl_seconds": ttl, "result_max_size_bytes": size}


def _uuid_to_hot(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: {name: _uuid(r.get(name))}


def _bool_to_hot(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: {name: bool(r.get(name))}


def _default_to_hot(name: str, default: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: {name: r.get(name) if r.get(name) is not None else default}


K, R, M, D = Restore.KEEP, Restore.RESET, Restore.MAP, Restore.DROP
_UUID_LIST_T = pa.list_(pa.string())

# Order = the Parquet column order (tiering/sql/hammerwork/hammerwork_jobs_archive.sql); the names are exactly the
# columns Hammerwork's migrations 010 and 011 give hammerwork_jobs_archive (their order there differs).
COLUMNS: tuple[Column, ...] = (
    Column("id", pa.string(), False, "uuid", "Job id, canonical lower-case UUID text.", "identity",
           restore=M, to_hot=_uuid_to_hot("id")),
    Column("queue_name", pa.string(), False, "varchar(255)", "Real queue name (the path holds its slug).",
           "identity"),
    Column("payload", pa.string(), False, "bytea",
           "The job's JSON payload as text, decoded from whatever codec staging used (raw, gzip, zstd).",
           "payload", hot="{payload}", restore=M, to_hot=_payload_to_hot, hot_cast="jsonb"),
    Column("payload_compressed", pa.bool_(), False, "boolean",
           "Whether the payload was stored compressed in staging (the Parquet column is always decoded).",
           "payload", hot="{compressed}", restore=D),
    Column("original_payload_size", pa.int32(), True, "integer", "Byte length of the payload JSON.", "payload",
           hot="{size}", restore=D),
    Column("status", pa.string(), False, "varchar(50)",
           "Final status: Completed, Failed, Dead, TimedOut... (always bare, legacy quotes removed).", "state",
           hot=bare_status_sql("h.status"), read=bare_status_sql("a.status"), restore=R, reset_value="Pending"),
    Column("priority", pa.string(), False, "varchar(20)", "background|low|normal|high|critical.", "state",
           hot=priority_word_sql("h.priority"), read=staged_priority_sql("a.priority"), restore=M,
           to_hot=_priority_to_hot, reads=("priority_weight",)),
    Column("priority_weight", pa.int32(), False, "integer", "1|2|5|10|20.", "state",
           hot=priority_weight_sql("h.priority"), read=staged_weight_sql("a.priority_weight", "a.priority"),
           restore=D),
    Column("attempts", pa.int32(), False, "integer", "Attempts made.", "state", restore=R, reset_value=0),
    Column("max_attempts", pa.int32(), False, "integer", "Attempts allowed.", "state",
           restore=M, to_hot=_default_to_hot("max_attempts", 3)),
    Column("created_at", TS, False, "timestamptz", "When the job was enqueued.", "timing"),
    Column("scheduled_at", TS, False, "timestamptz", "When the job was due.", "timing",
           restore=R, reset_sql="now()"),
    Column("started_at", TS, True, "timestamptz", "Last start.", "timing", restore=R),
    Column("completed_at", TS, True, "timestamptz", "Completion time (Completed).", "timing", restore=R),
    Column("failed_at", TS, True, "timestamptz", "Failure time (Failed, Dead).", "timing", restore=R),
    Column("timed_out_at", TS, True, "timestamptz", "Timeout time (TimedOut).", "timing", restore=R),
    Column("archived_at", TS, False, "timestamptz", "When the job left the hot table.", "archival",
           hot="now()", restore=D),
    Column("error_message", pa.string(), True, "text", "Last error.", "result", restore=R),
    Column("result", pa.string(), True, "jsonb", "Job result as JSON text (from result_data).", "result",
           hot="h.result_data", restore=R),
    Column("result_ttl", TS, True, "timestamptz", "Result expiry (from result_expires_at).", "result",
           hot="h.result_expires_at", restore=R),
    Column("retry_strategy", pa.string(), True, "varchar (JSON text)", "Retry strategy as JSON text.", "retry",
           hot=None, restore=D),
    Column("timeout_seconds", pa.int32(), True, "integer", "Per-job timeout.", "timing"),
    Column("cron_schedule", pa.string(), True, "varchar(100)", "Cron expression of recurring jobs.", "cron"),
    Column("next_run_at", TS, True, "timestamptz", "Next run of recurring jobs.", "cron"),
    Column("recurring", pa.bool_(), False, "boolean", "Recurring job?", "cron",
           restore=M, to_hot=_bool_to_hot("recurring")),
    Column("timezone", pa.string(), True, "varchar(50)", "Cron time zone.", "cron"),
    Column("batch_id", pa.string(), True, "uuid", "Batch id, canonical UUID text.", "batch",
           restore=M, to_hot=_uuid_to_hot("batch_id")),
    Column("depends_on", _UUID_LIST_T, True, "uuid[]", "Ids of jobs this job depended on.", "dependency",
           hot="COALESCE(h.depends_on, '{}')", restore=M, to_hot=_depends_on_to_hot),
    Column("dependency_status", pa.string(), True, "varchar(20)",
           "none|waiting|satisfied|failed (as archived; a restore leaves none, as Hammerwork's does).",
           "dependency", restore=M, to_hot=_dependency_status_to_hot),
    Column("result_config", pa.string(), True, "jsonb",
           "Result storage configuration, Hammerwork's serde JSON: {storage, ttl: {secs, nanos}, max_size_bytes}.",
           "result", hot=result_config_sql(*(f"h.{c}" for c in RESULT_CONFIG_HOT)),
           restore=M, to_hot=_result_config_to_hot, maps_to=RESULT_CONFIG_HOT),
    Column("trace_id", pa.string(), True, "varchar(128)", "Tracing: trace id.", "tracing"),
    Column("correlation_id", pa.string(), True, "varchar(128)", "Tracing: correlation id.", "tracing"),
    Column("parent_span_id", pa.string(), True, "varchar(128)", "Tracing: parent span id.", "tracing"),
    Column("span_context", pa.string(), True, "text", "Tracing: serialized span context.", "tracing"),
    Column("archival_reason", pa.string(), False, "varchar(50)", "Automatic|Manual|Compliance|Maintenance.",
           "archival", hot="%(reason)s", restore=D),
    Column("archived_by", pa.string(), True, "varchar(255)", "Who archived the job.", "archival",
           hot="%(archived_by)s", restore=D),
    Column("original_table", pa.string(), False, "varchar(100)", "Source table, 'hammerwork_jobs'.", "archival",
           hot="'hammerwork_jobs'", restore=D),
    Column("is_encrypted", pa.bool_(), False, "boolean", "Payload encrypted by Hammerwork?", "encryption",
           restore=M, to_hot=_bool_to_hot("is_encrypted")),
    Column("encryption_key_id", pa.string(), True, "varchar(255)", "Encryption key id.", "encryption"),
    Column("encryption_algorithm", pa.string(), True, "varchar(50)", "Encryption algorithm.", "encryption"),
    Column("encrypted_payload", pa.binary(), True, "bytea", "Encrypted payload bytes.", "encryption"),
    Column("encryption_nonce", pa.binary(), True, "bytea", "Encryption nonce.", "encryption"),
    Column("encryption_tag", pa.binary(), True, "bytea", "Encryption authentication tag.", "encryption"),
    Column("encryption_metadata", pa.string(), True, "jsonb", "Encryption metadata as JSON text.", "encryption",
           hot_cast="jsonb"),
    Column("payload_hash", pa.string(), True, "varchar(255)", "Hash of the plaintext payload.", "encryption"),
    Column("pii_fields", pa.list_(pa.string()), True, "text[]", "Names of PII fields in the payload.",
           "encryption"),
    Column("retention_policy", pa.string(), True, "varchar(50)", "Encryption retention policy.", "encryption"),
    Column("retention_delete_at", TS, True, "timestamptz", "When encrypted data must be deleted.", "encryption"),
    Column("encrypted_at", TS, True, "timestamptz", "When the payload was encrypted.", "encryption"),
)  # fmt: skip


# Low-cardinality columns worth dictionary encoding in Parquet.
_DICTIONARY = ("queue_name", "status", "priority", "priority_weight", "max_attempts", "cron_schedule", "timezone",
               "dependency_status", "archival_reason", "archived_by", "original_table", "encryption_key_id",
               "encryption_algorithm", "retention_policy")  # fmt: skip
# Opaque identifiers and hashes (random hex/UUID text): DELTA_LENGTH_BYTE_ARRAY stores their lengths apart from
# their characters, so zstd sees one stream of hex digits (measured on Hammerwork-shaped jobs: 93.3 -> 90.1 bytes
# per job, and no slower to write). Free-text and JSON columns compress better PLAIN.
_DELTA_LENGTH = ("id", "batch_id", "trace_id", "parent_span_id", "span_context", "payload_hash")
# Random identifiers (those above and depends_on's job ids): their characters are entropy that a higher zstd level
# finds no more matches in, so they are compressed at level 1 whatever the policy's level (measured on 200k
# Hammerwork-shaped jobs at level 6: 81.5 -> 79.8 bytes per job, and 18 % less CPU to write a row group).
_FAST_ZSTD = (*_DELTA_LENGTH, "depends_on")
FAST_ZSTD_LEVEL = 1
# Large or opaque columns whose min/max statistics would only bloat footers.
_NO_STATISTICS = frozenset({"payload", "error_message", "result", "retry_strategy", "result_config", "span_context",
                            "encrypted_payload", "encryption_nonce", "encryption_tag", "encryption_metadata",
                            "pii_fields", "depends_on"})  # fmt: skip

# Derived from COLUMNS by _derive() (again whenever a column is registered); read them as S.<NAME> at call time.
STAGING_SELECT_COLUMNS: tuple[str, ...] = ()
UUID_COLUMNS: frozenset[str] = frozenset()
UUID_LIST_COLUMNS: frozenset[str] = frozenset()
JSON_COLUMNS: frozenset[str] = frozenset()
TIMESTAMP_COLUMNS: frozenset[str] = frozenset()
DICTIONARY_COLUMNS: tuple[str, ...] = ()
DELTA_LENGTH_COLUMNS: tuple[str, ...] = ()
FAST_ZSTD_COLUMNS: tuple[str, ...] = ()
RESTORE_COLUMNS: tuple[str, ...] = ()  # what a restore reads of an archived row (kept and mapped columns)
NO_STATISTICS_COLUMNS: frozenset[str] = frozenset()
ARCHIVE_SCHEMA: pa.Schema = pa.schema([])
REGISTRY_VERSION = 0


def _derive() -> None:
    global STAGING_SELECT_COLUMNS, UUID_COLUMNS, UUID_LIST_COLUMNS, JSON_COLUMNS, TIMESTAMP_COLUMNS
    global DICTIONARY_COLUMNS, DELTA_LENGTH_COLUMNS, NO_STATISTICS_COLUMNS, ARCHIVE_SCHEMA, REGISTRY_VERSION
    global RESTORE_COLUMNS, FAST_ZSTD_COLUMNS
    names = [c.name for c in COLUMNS]
    if len(set(names)) != len(names):
        raise ValueError("column names must be unique")
    STAGING_SELECT_COLUMNS = tuple(names)
    UUID_COLUMNS = frozenset(c.name for c in COLUMNS if c.pg_type == "uuid")
    UUID_LIST_COLUMNS = frozenset(c.name for c in COLUMNS if c.pg_type == "uuid[]")
    JSON_COLUMNS = frozenset(c.name for c in COLUMNS if "json" in c.pg_type.lower() and c.name != "payload")
    TIMESTAMP_COLUMNS = frozenset(c.name for c in COLUMNS if c.type == TS)
    DICTIONARY_COLUMNS = tuple(n for n in _DICTIONARY if n in names)
    DELTA_LENGTH_COLUMNS = tuple(n for n in _DELTA_LENGTH if n in names)
    FAST_ZSTD_COLUMNS = tuple(n for n in _FAST_ZSTD if n in names)
    read = {r for c in COLUMNS if c.restore in (Restore.KEEP, Restore.MAP) for r in (c.name, *c.reads)}
    RESTORE_COLUMNS = tuple(n for n in names if n in read)
    NO_STATISTICS_COLUMNS = frozenset(n for n in _NO_STATISTICS if n in names)
    ARCHIVE_SCHEMA = pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in COLUMNS])
    REGISTRY_VERSION += 1


_derive()


def register_column(column: Column) -> None:
    """Add a column (Hammerwork added one to both tables) at the end of the registry."""
    global COLUMNS
    COLUMNS = (*COLUMNS, column)
    _derive()


def unregister_column(name: str) -> None:
    global COLUMNS
    COLUMNS = tuple(c for c in COLUMNS if c.name != name)
    _derive()


@contextmanager
def extra_columns(*columns: Column) -> Iterator[None]:
    """The registry with `columns` added, for as long as the block runs (tests of new Hammerwork columns)."""
    for c in columns:
        register_column(c)
    try:
        yield
    finally:
        for c in reversed(columns):
            unregister_column(c.name)


def column(name: str) -> Column:
    for c in COLUMNS:
        if c.name == name:
            return c
    raise KeyError(name)


# --- SQL fragments derived from the registry (composed into statements under tiering/db) ----------------


def move_insert_columns() -> list[str]:
    """The staging columns the hot -> staging move writes (every column with a hot source)."""
    return [c.name for c in COLUMNS if c.hot is not None]


def move_select_exprs(payload: str, compressed: str, size: str) -> list[str]:
    """The move's SELECT list over the hot row `h`, matching move_insert_columns()."""
    fill = {"{payload}": payload, "{compressed}": compressed, "{size}": size}
    return [fill.get(c.hot_sql(), c.hot_sql()) for c in COLUMNS if c.hot is not None]


def staging_read_exprs() -> list[str]:
    """A flush's SELECT list over the staged row `a` (statuses bare), one per archive column, same names."""
    return [c.read_sql() for c in COLUMNS]


def hot_insert_columns() -> list[tuple[str, str]]:
    """(hammerwork_jobs column, SQL value) of a restore's insert; values are %(column)s placeholders."""
    out: list[tuple[str, str]] = []
    for c in COLUMNS:
        if c.restore is Restore.DROP:
            continue
        if c.restore is Restore.RESET:
            if c.reset_sql is not None:
                out.append((c.hot_column or c.name, c.reset_sql))
            elif c.reset_value is not None:
                out.append((c.hot_column or c.name, f"%({c.hot_column or c.name})s"))
            continue
        targets = c.maps_to if c.restore is Restore.MAP and c.maps_to else (c.hot_column or c.name,)
        for t in targets:
            cast = f"::{c.hot_cast}" if c.hot_cast else ""
            out.append((t, f"%({t})s{cast}"))
    return out


def restore_values(record: dict[str, Any], payload_text: str) -> dict[str, Any]:
    """The hammerwork_jobs values of a restored job, keyed as hot_insert_columns(): Hammerwork's restore (status
    Pending, attempts 0, scheduled now, timestamps/result/error cleared, dependency status as its restore leaves
    it) with every kept column equal to the archived one. `record` is a staging row (or an archive row as
    archive_rows_to_dicts gives it); `payload_text` the decoded JSON payload."""
    out: dict[str, Any] = {}
    for c in COLUMNS:
        target = c.hot_column or c.name
        if c.restore is Restore.KEEP:
            out[target] = record.get(c.name)
        elif c.restore is Restore.RESET:
            if c.reset_sql is None and c.reset_value is not None:
                out[target] = c.reset_value
        elif c.restore is Restore.MAP:
            assert c.to_hot is not None, c.name
            out.update(c.to_hot(record))
    out["payload"] = payload_text
    return out


def provenance(flush_id: uuid.UUID | str, **extra: str) -> dict[str, str]:
    meta = {
        META_SCHEMA_VERSION: str(SCHEMA_VERSION),
        META_TIERING_VERSION: tiering.__version__,
        META_FLUSH_ID: str(flush_id),
    }
    meta.update(extra)
    return meta


def schema_with_provenance(flush_id: uuid.UUID | str, **extra: str) -> pa.Schema:
    """ARCHIVE_SCHEMA with the provenance key-value metadata every written file carries."""
    return ARCHIVE_SCHEMA.with_metadata(provenance(flush_id, **extra))


def schema_matches(schema: pa.Schema) -> bool:
    """Same field names, types and nullability as ARCHIVE_SCHEMA (metadata ignored)."""
    return schema.remove_metadata().equals(ARCHIVE_SCHEMA, check_metadata=False)


# --- JSON description of the schema (schemas/archive.arrow.json) ---------------------------------


def _restore_text(c: Column) -> str:
    if c.restore is Restore.RESET:
        value = c.reset_sql or (repr(c.reset_value) if c.reset_value is not None else "NULL")
        return f"reset to {value}"
    if c.restore is Restore.MAP:
        return "map -> " + ", ".join(c.maps_to or (c.hot_column or c.name,))
    if c.restore is Restore.KEEP:
        return f"keep -> {c.hot_column or c.name}"
    return "drop"


def _hot_text(c: Column) -> str:
    if c.hot is None:
        return "NULL"
    described = {
        "{payload}": "payload as JSON text (raw; gzip when configured)",
        "{compressed}": "false (true when gzipped)",
        "{size}": "byte length of the payload JSON",
    }
    return described.get(c.hot_sql(), c.hot_sql())


# Arrow type -> (DuckDB, Athena) column type; a list is rendered around its value type.
_SQL_TYPES: tuple[tuple[Callable[[pa.DataType], bool], str, str], ...] = (
    (pa.types.is_string, "VARCHAR", "string"),
    (pa.types.is_boolean, "BOOLEAN", "boolean"),
    (pa.types.is_int32, "INTEGER", "int"),
    (pa.types.is_int64, "BIGINT", "bigint"),
    (pa.types.is_timestamp, "TIMESTAMP WITH TIME ZONE", "timestamp"),
    (pa.types.is_binary, "BLOB", "binary"),
)


def sql_type(t: pa.DataType, dialect: Literal["duckdb", "athena"]) -> str:
    """The column type DuckDB or Athena declares for an archive column of Arrow type `t`."""
    if pa.types.is_list(t):
        inner = sql_type(t.value_type, dialect)
        return f"{inner}[]" if dialect == "duckdb" else f"array<{inner}>"
    for matches, duckdb, athena in _SQL_TYPES:
        if matches(t):
            return duckdb if dialect == "duckdb" else athena
    raise TypeError(f"no {'DuckDB' if dialect == 'duckdb' else 'Athena'} type for {t}")


def duckdb_type(t: pa.DataType) -> str:
    return sql_type(t, "duckdb")


def athena_type(t: pa.DataType) -> str:
    return sql_type(t, "athena")


def schema_json() -> dict[str, Any]:
    return {
        "name": "hammerwork_jobs_archive",
        "schema_version": SCHEMA_VERSION,
        "layout": "<prefix>/queue=<slug>/date=<yyyy-mm-dd>/<part>.parquet",
        "parquet": {
            "compression": "zstd",
            "zstd_level_1": list(FAST_ZSTD_COLUMNS),
            "timestamps": "INT64 microseconds, adjusted to UTC",
            "row_group_rows": "100000..1000000",
            "encodings": {
                "DELTA_BINARY_PACKED": sorted(TIMESTAMP_COLUMNS),
                "DELTA_LENGTH_BYTE_ARRAY": list(DELTA_LENGTH_COLUMNS),
                "dictionary": list(DICTIONARY_COLUMNS),
            },
        },
        "metadata_keys": {
            META_SCHEMA_VERSION: "archive schema version (this file's schema_version)",
            META_TIERING_VERSION: "tiering version that wrote the file",
            META_FLUSH_ID: "UUID of the flush that wrote the file",
            META_PART_NAME: "the part's name (the object key's last segment without .parquet)",
        },
        "fields": [
            {
                "name": c.name,
                "type": str(c.type),
                "nullable": c.nullable,
                "category": c.category,
                "source": f"hammerwork_jobs_archive.{c.name} ({c.pg_type})",
                "from_hot": _hot_text(c),
                "on_restore": _restore_text(c),
                "duckdb_type": duckdb_type(c.type),
                "athena_type": athena_type(c.type),
                "description": c.description,
            }
            for c in COLUMNS
        ],
    }


def render_schema_json() -> str:
    return json.dumps(schema_json(), indent=2, ensure_ascii=False) + "\n"


COLUMNS_BEGIN = "<!-- generated from tiering/schema.py COLUMNS: columns -->"
COLUMNS_END = "<!-- end of generated columns -->"
ATHENA_BEGIN = "<!-- generated from tiering/schema.py COLUMNS: athena -->"
ATHENA_END = "<!-- end of generated athena -->"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_columns_markdown() -> str:
    lines = [
        "| column | Arrow type | nullable | category | from the hot row | on restore | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in COLUMNS:
        lines.append(
            f"| `{c.name}` | `{c.type}` | {'yes' if c.nullable else 'no'} | {c.category} | `{_md(_hot_text(c))}` "
            f"| {_md(_restore_text(c))} | {_md(c.description)} |"
        )
    return "\n".join(lines)


def render_athena_columns() -> str:
    return "  " + ",\n  ".join(f"`{c.name}` {athena_type(c.type)}" for c in COLUMNS)


def render_schema_doc(text: str) -> str:
    """schemas/archive-schema.md with its generated regions (column table, Athena columns) rewritten."""
    for begin, end, body in (
        (COLUMNS_BEGIN, COLUMNS_END, render_columns_markdown()),
        (ATHENA_BEGIN, ATHENA_END, render_athena_columns()),
    ):
        head, sep, rest = text.partition(begin)
        if not sep:
            raise ValueError(f"the document lacks the marker {begin}")
        _, sep2, tail = rest.partition(end)
        if not sep2:
            raise ValueError(f"the document lacks the marker {end}")
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text


# --- staging -> archive ------------------------------------------------------------------------


@dataclass(frozen=True)
class BadPayload:
    row: int
    job_id: str
    reason: str


class PayloadDecodeError(ValueError):
    """Some payloads could not be decoded into UTF-8 JSON text; `bad` lists them (quarantine them)."""

    def __init__(self, bad: list[BadPayload]) -> None:
        self.bad = bad
        shown = ", ".join(f"{b.job_id} ({b.reason})" for b in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        super().__init__(f"{len(bad)} payload(s) could not be decoded: {shown}{more}")

    @property
    def bad_ids(self) -> list[str]:
        return [b.job_id for b in self.bad]


_HEX_POSITIONS = [i for i in range(36) if i not in (8, 13, 18, 23)]


def _offsets_buffer(count: int, width: int) -> pa.Buffer:
    return pa.py_buffer(array("i", range(0, width * (count + 1), width)))


def uuid_array_to_str(arr: pa.Array) -> pa.Array:
    """arrow.uuid / fixed_size_binary(16) -> canonical UUID strings, vectorised (no per-row Python)."""
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if pa.types.is_binary(arr.type) and pc.all(pc.equal(pc.binary_length(arr), 16)).as_py() in (True, None):
        arr = arr.cast(pa.binary(16))  # a driver that returns uuid columns as plain binary
    if not (pa.types.is_fixed_size_binary(arr.type) and arr.type.byte_width == 16):
        raise TypeError(f"expected a UUID array, got {arr.type}")
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    buf = arr.buffers()[1]
    assert buf is not None
    raw = memoryview(buf)[arr.offset * 16 : (arr.offset + n) * 16]
    hexed = raw.hex().encode("ascii")
    out = bytearray(b"-" * (36 * n))
    for j, pos in enumerate(_HEX_POSITIONS):
        out[pos::36] = hexed[j::32]
    result = pa.StringArray.from_buffers(n, _offsets_buffer(n, 36), pa.py_buffer(out))
    if arr.null_count:
        result = pc.if_else(arr.is_valid(), result, pa.scalar(None, pa.string()))
    return result


def _uuid_list_to_str(arr: pa.Array) -> pa.Array:
    value_type = arr.type.value_type
    if pa.types.is_string(value_type):
        return arr
    if isinstance(arr, pa.LargeListArray):
        arr = arr.cast(pa.list_(value_type))
    values = uuid_array_to_str(arr.values)  # the whole child; the list's buffers index into it
    validity, offsets = arr.buffers()[:2]
    return pa.Array.from_buffers(
        pa.list_(pa.string()), len(arr), [validity, offsets], arr.null_count, arr.offset, [values]
    )


_DECODE_THREADS = max(1, min(2, os.cpu_count() or 1))
_PARALLEL_MIN_ROWS = 20_000
_pool: ThreadPoolExecutor | None = None


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="tiering-decode")
    return _pool


def _offsets(arr: pa.Array) -> memoryview:
    buf = arr.buffers()[1]
    assert buf is not None
    return memoryview(buf).cast("q" if pa.types.is_large_binary(arr.type) else "i")


def _decode_zstd_fast(arr: pa.Array) -> pa.Array | None:
    """All-zstd payloads with known content sizes, decoded as concatenated frames into one buffer."""
    n = len(arr)
    fcs = zstandard.frame_content_size
    sizes = [fcs(v) for v in arr.to_pylist()]
    if min(sizes) < 0:
        return None
    out_offs = array("q" if sum(sizes) >= 2**31 else "i", [0])
    out_offs.extend(itertools.accumulate(sizes))
    if out_offs.typecode == "q":
        return None  # a single batch above 2 GiB of JSON: let the slow path build a large array
    src_offs = _offsets(arr)
    data_buf = arr.buffers()[2]
    assert data_buf is not None
    data = memoryview(data_buf)
    out = pa.allocate_buffer(out_offs[-1])  # pool memory: reused across batches, no zero-fill
    omv = memoryview(out).cast("B")
    base = arr.offset

    def work(a: int, b: int) -> bool:
        want = out_offs[b] - out_offs[a]
        if want == 0:
            return True
        reader = zstandard.ZstdDecompressor().stream_reader(
            data[src_offs[base + a] : src_offs[base + b]], read_across_frames=True
        )
        got = 0
        target = omv[out_offs[a] : out_offs[b]]
        while got < want:
            k = reader.readinto(target[got:])
            if k == 0:
                break
            got += k
        return got == want and reader.read(1) == b""

    try:
        if n >= _PARALLEL_MIN_ROWS and _DECODE_THREADS > 1:
            step = -(-n // _DECODE_THREADS)
            futures = [_get_pool().submit(work, a, min(a + step, n)) for a in range(0, n, step)]
            ok = all(f.result() for f in futures)
        else:
            ok = work(0, n)
    except zstandard.ZstdError:
        return None
    if not ok:
        return None
    result = pa.StringArray.from_buffers(n, pa.py_buffer(out_offs), out)
    try:
        result.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return result


def _decode_one(data: bytes) -> bytes:
    kind = codec.detect(data)
    if kind is codec.Codec.ZSTD:
        if zstandard.frame_content_size(data) < 0:
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return codec.decode(data)
    if kind is codec.Codec.GZIP:
        try:
            return zlib.decompress(data, 31)
        except zlib.error:
            return codec.decode(data)
    return data


def _decode_slow(arr: pa.Array, ids: pa.Array) -> pa.Array:
    out: list[str | None] = []
    bad: list[BadPayload] = []
    for i, data in enumerate(arr.to_pylist()):
        if data is None:
            out.append(None)
            continue
        try:
            out.append(_decode_one(data).decode("utf-8"))
        except Exception as exc:  # any codec or UTF-8 failure marks the row as corrupt
            out.append(None)
            bad.append(BadPayload(i, str(ids[i].as_py()), f"{type(exc).__name__}: {exc}"[:200]))
    if bad:
        raise PayloadDecodeError(bad)
    return pa.array(out, pa.string())


def decode_payloads(arr: pa.Array, ids: pa.Array | None = None) -> pa.Array:
    """Stored payload bytes (zstd / gzip / raw JSON, by magic bytes) -> JSON text.

    Raises PayloadDecodeError naming every row that is not valid compressed or raw UTF-8 text.
    """
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    if ids is None:
        ids = pa.array([str(i) for i in range(len(arr))], pa.string())
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    head4 = pc.binary_slice(arr, 0, 4)
    n_zstd = pc.sum(pc.equal(head4, pa.scalar(codec.ZSTD_MAGIC, pa.binary()))).as_py() or 0
    n_gzip = pc.sum(pc.equal(pc.binary_slice(arr, 0, 2), pa.scalar(codec.GZIP_MAGIC, pa.binary()))).as_py()
    if n_zstd == n and arr.null_count == 0:
        fast = _decode_zstd_fast(arr)
        if fast is not None:
            return fast
    elif n_zstd == 0 and not n_gzip:
        try:
            return arr.cast(pa.large_binary() if pa.types.is_large_binary(arr.type) else pa.binary()).cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            pass  # invalid UTF-8 somewhere (or too large): the slow path names the rows
    return _decode_slow(arr, ids)


def _json_to_str(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    return arr.cast(pa.string())


def _convert_column(name: str, arr: pa.Array, ids: pa.Array) -> pa.Array:
    target = ARCHIVE_SCHEMA.field(name).type
    if name in UUID_COLUMNS:
        return uuid_array_to_str(arr)
    if name in UUID_LIST_COLUMNS:
        return _uuid_list_to_str(arr)
    if name == "payload":
        return decode_payloads(arr, ids)
    if name in JSON_COLUMNS:
        return _json_to_str(arr)
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if arr.type.equals(target):
        return arr
    return arr.cast(target)


def _to_archive_record_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    names = set(batch.schema.names)
    # A nullable column registered after an object was written is absent from its rows: null there (a rewrite of
    # an older object by purge or erase); a missing NOT NULL column is an error.
    missing = [f.name for f in ARCHIVE_SCHEMA if f.name not in names and not f.nullable]
    if missing:
        raise ValueError(f"staging batch lacks column(s): {', '.join(missing)}")
    ids = uuid_array_to_str(batch.column("id"))
    arrays: list[pa.Array] = []
    for field in ARCHIVE_SCHEMA:
        if field.name not in names:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        arr = ids if field.name == "id" else _convert_column(field.name, batch.column(field.name), ids)
        if not field.nullable and arr.null_count:
            raise ValueError(f"column {field.name} holds NULLs but is NOT NULL in the archive schema")
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=ARCHIVE_SCHEMA)


T = TypeVar("T", pa.RecordBatch, pa.Table)


def to_archive_batch(batch: T) -> T:
    """Staging rows (as the ADBC driver returns them, or already converted) -> ARCHIVE_SCHEMA.

    UUIDs become canonical strings, payloads decoded JSON text, JSONB JSON text, timestamps
    microseconds UTC. Raises PayloadDecodeError (listing job ids) for undecodable payloads, and
    ValueError when a column is missing or a NOT NULL column holds NULLs.
    """
    if isinstance(batch, pa.Table):
        converted = [_to_archive_record_batch(b) for b in batch.to_batches()]
        return pa.Table.from_batches(converted, schema=ARCHIVE_SCHEMA)
    return _to_archive_record_batch(batch)


# --- archive -> Python values (restore) ---------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    """An Arrow timestamp as an aware UTC datetime (a timestamp without a zone is UTC in Arrow, not local time)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def archive_rows_to_dicts(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Archive rows -> dicts keyed by staging column name, with the Python values the staging
    table takes: uuid.UUID for ids, list[uuid.UUID] for depends_on, aware UTC datetimes,
    dict/list/... for JSON (a JSON `null` and SQL NULL both come back as None), bytes for bytea.

    `payload` comes back as the raw (uncompressed) JSON bytes; re-encode it with tiering.codec
    before inserting into staging, or use `json.loads` for the hot table's JSONB column.
    """
    return [archive_row_to_dict(row) for row in table.to_pylist()]


def archive_row_to_dict(row: dict[str, Any]) -> dict[str, Any]:
    """One archive row as Arrow's to_pylist gives it (a column it lacks is NULL) -> archive_rows_to_dicts's dict."""
    out: dict[str, Any] = {}
    for name in STAGING_SELECT_COLUMNS:
        value = row.get(name)
        if value is None:
            out[name] = None
        elif name in UUID_COLUMNS:
            out[name] = uuid.UUID(value)
        elif name in UUID_LIST_COLUMNS:
            out[name] = [None if v is None else uuid.UUID(v) for v in value]
        elif name in JSON_COLUMNS:
            out[name] = json.loads(value)
        elif name == "payload":
            out[name] = value if isinstance(value, bytes) else value.encode("utf-8")
        elif name in TIMESTAMP_COLUMNS:
            out[name] = _utc(value)
        else:
            out[name] = value
    return out


def row_to_staging_dict(table: pa.Table | pa.RecordBatch, i: int) -> dict[str, Any]:
    """One archive row (index `i`) as archive_rows_to_dicts would return it."""
    return archive_rows_to_dicts(table.slice(i, 1))[0]
