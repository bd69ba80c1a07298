"""The archive's Arrow schema, and conversions between staging rows and archive rows.

One Parquet column per column of `hammerwork_jobs_archive` (same names, same order), so a restore
loses nothing. Types are chosen for analysts: UUIDs as canonical text, the payload as decoded JSON
text, JSONB as JSON text, timestamps as microseconds UTC.

Pure: no I/O. `to_archive_batch` takes what the ADBC PostgreSQL driver returns for
`SELECT <STAGING_SELECT_COLUMNS> FROM hammerwork_jobs_archive` (uuid as `arrow.uuid`, jsonb as
`arrow.json`, bytea as binary, ...) and is idempotent on batches already in the archive schema.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
import zlib
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

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


class Column(NamedTuple):
    name: str
    type: pa.DataType
    nullable: bool
    pg_type: str
    description: str


# Order = hammerwork_jobs_archive's column order (schemas/sql/hammerwork/hammerwork_jobs_archive.sql).
COLUMNS: tuple[Column, ...] = (
    Column("id", pa.string(), False, "uuid", "Job id, canonical lower-case UUID text."),
    Column("queue_name", pa.string(), False, "varchar(255)", "Real queue name (the path holds its slug)."),
    Column(
        "payload",
        pa.string(),
        False,
        "bytea",
        "The job's JSON payload as text, decoded from whatever codec staging used (zstd, gzip, raw).",
    ),
    Column(
        "payload_compressed",
        pa.bool_(),
        False,
        "boolean",
        "Whether the payload was stored compressed in staging (the Parquet column is always decoded).",
    ),
    Column("original_payload_size", pa.int32(), True, "integer", "Byte length of the payload JSON."),
    Column("status", pa.string(), False, "varchar(50)", "Final status: Completed, Failed, Dead, TimedOut..."),
    Column("priority", pa.string(), False, "varchar(20)", "background|low|normal|high|critical."),
    Column("priority_weight", pa.int32(), False, "integer", "1|2|5|10|20."),
    Column("attempts", pa.int32(), False, "integer", "Attempts made."),
    Column("max_attempts", pa.int32(), False, "integer", "Attempts allowed."),
    Column("created_at", TS, False, "timestamptz", "When the job was enqueued."),
    Column("scheduled_at", TS, False, "timestamptz", "When the job was due."),
    Column("started_at", TS, True, "timestamptz", "Last start."),
    Column("completed_at", TS, True, "timestamptz", "Completion time (Completed)."),
    Column("failed_at", TS, True, "timestamptz", "Failure time (Failed, Dead)."),
    Column("timed_out_at", TS, True, "timestamptz", "Timeout time (TimedOut)."),
    Column("archived_at", TS, False, "timestamptz", "When the job left the hot table."),
    Column("error_message", pa.string(), True, "text", "Last error."),
    Column("result", pa.string(), True, "jsonb", "Job result as JSON text (from result_data)."),
    Column("result_ttl", TS, True, "timestamptz", "Result expiry (from result_expires_at)."),
    Column("retry_strategy", pa.string(), True, "jsonb", "Retry strategy as JSON text."),
    Column("timeout_seconds", pa.int32(), True, "integer", "Per-job timeout."),
    Column("cron_schedule", pa.string(), True, "varchar(100)", "Cron expression of recurring jobs."),
    Column("next_run_at", TS, True, "timestamptz", "Next run of recurring jobs."),
    Column("recurring", pa.bool_(), False, "boolean", "Recurring job?"),
    Column("timezone", pa.string(), True, "varchar(50)", "Cron time zone."),
    Column("batch_id", pa.string(), True, "uuid", "Batch id, canonical UUID text."),
    Column("depends_on", pa.list_(pa.string()), True, "uuid[]", "Ids of jobs this job depended on."),
    Column("dependency_status", pa.string(), True, "varchar(20)", "none|waiting|satisfied|failed."),
    Column("result_config", pa.string(), True, "jsonb", "Result storage configuration as JSON text."),
    Column("trace_id", pa.string(), True, "varchar(128)", "Tracing: trace id."),
    Column("correlation_id", pa.string(), True, "varchar(128)", "Tracing: correlation id."),
    Column("parent_span_id", pa.string(), True, "varchar(128)", "Tracing: parent span id."),
    Column("span_context", pa.string(), True, "text", "Tracing: serialized span context."),
    Column("archival_reason", pa.string(), False, "varchar(50)", "Automatic|Manual|Compliance|Maintenance."),
    Column("archived_by", pa.string(), True, "varchar(255)", "Who archived the job."),
    Column("original_table", pa.string(), False, "varchar(100)", "Source table, 'hammerwork_jobs'."),
    Column("is_encrypted", pa.bool_(), False, "boolean", "Payload encrypted by Hammerwork?"),
    Column("encryption_key_id", pa.string(), True, "varchar(255)", "Encryption key id."),
    Column("encryption_algorithm", pa.string(), True, "varchar(50)", "Encryption algorithm."),
    Column("encrypted_payload", pa.binary(), True, "bytea", "Encrypted payload bytes."),
    Column("encryption_nonce", pa.binary(), True, "bytea", "Encryption nonce."),
    Column("encryption_tag", pa.binary(), True, "bytea", "Encryption authentication tag."),
    Column("encryption_metadata", pa.string(), True, "jsonb", "Encryption metadata as JSON text."),
    Column("payload_hash", pa.string(), True, "varchar(255)", "Hash of the plaintext payload."),
    Column("pii_fields", pa.list_(pa.string()), True, "text[]", "Names of PII fields in the payload."),
    Column("retention_policy", pa.string(), True, "varchar(50)", "Encryption retention policy."),
    Column("retention_delete_at", TS, True, "timestamptz", "When encrypted data must be deleted."),
    Column("encrypted_at", TS, True, "timestamptz", "When the payload was encrypted."),
)

STAGING_SELECT_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS)
UUID_COLUMNS = frozenset({"id", "batch_id"})
UUID_LIST_COLUMNS = frozenset({"depends_on"})
JSON_COLUMNS = frozenset({"result", "retry_strategy", "result_config", "encryption_metadata"})
TIMESTAMP_COLUMNS = frozenset(c.name for c in COLUMNS if c.type == TS)
# Low-cardinality columns worth dictionary encoding in Parquet.
DICTIONARY_COLUMNS: tuple[str, ...] = (
    "queue_name",
    "status",
    "priority",
    "priority_weight",
    "max_attempts",
    "cron_schedule",
    "timezone",
    "dependency_status",
    "archival_reason",
    "archived_by",
    "original_table",
    "encryption_key_id",
    "encryption_algorithm",
    "retention_policy",
)
# Large or opaque columns whose min/max statistics would only bloat footers.
NO_STATISTICS_COLUMNS = frozenset(
    {
        "payload",
        "error_message",
        "result",
        "retry_strategy",
        "result_config",
        "span_context",
        "encrypted_payload",
        "encryption_nonce",
        "encryption_tag",
        "encryption_metadata",
        "pii_fields",
        "depends_on",
    }
)

ARCHIVE_SCHEMA: pa.Schema = pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in COLUMNS])


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


def schema_json() -> dict[str, Any]:
    return {
        "name": "hammerwork_jobs_archive",
        "schema_version": SCHEMA_VERSION,
        "layout": "<prefix>/queue=<slug>/date=<yyyy-mm-dd>/<part>.parquet",
        "parquet": {
            "compression": "zstd",
            "timestamps": "INT64 microseconds, adjusted to UTC",
            "row_group_rows": "100000..1000000",
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
                "source": f"hammerwork_jobs_archive.{c.name} ({c.pg_type})",
                "description": c.description,
            }
            for c in COLUMNS
        ],
    }


def render_schema_json() -> str:
    return json.dumps(schema_json(), indent=2, ensure_ascii=False) + "\n"


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
    missing = [c for c in STAGING_SELECT_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"staging batch lacks column(s): {', '.join(missing)}")
    ids = uuid_array_to_str(batch.column("id"))
    arrays: list[pa.Array] = []
    for field in ARCHIVE_SCHEMA:
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
    return None if value is None else value.astimezone(UTC)


def archive_rows_to_dicts(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Archive rows -> dicts keyed by staging column name, with the Python values the staging
    table takes: uuid.UUID for ids, list[uuid.UUID] for depends_on, aware UTC datetimes,
    dict/list/... for JSON (a JSON `null` and SQL NULL both come back as None), bytes for bytea.

    `payload` comes back as the raw (uncompressed) JSON bytes; re-encode it with tiering.codec
    before inserting into staging, or use `json.loads` for the hot table's JSONB column.
    """
    rows = table.to_pylist()
    result: list[dict[str, Any]] = []
    for row in rows:
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
                out[name] = value.encode("utf-8")
            elif name in TIMESTAMP_COLUMNS:
                out[name] = _utc(value)
            else:
                out[name] = value
        result.append(out)
    return result


def row_to_staging_dict(table: pa.Table | pa.RecordBatch, i: int) -> dict[str, Any]:
    """One archive row (index `i`) as archive_rows_to_dicts would return it."""
    return archive_rows_to_dicts(table.slice(i, 1))[0]
