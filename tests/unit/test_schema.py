from __future__ import annotations

import gzip
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import zstandard

import tiering
from tiering import schema as S

ROOT = Path(__file__).resolve().parents[2]
SQL = ROOT / "tiering/sql/hammerwork/hammerwork_jobs_archive.sql"
BASE = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _uuid_ext(values: list[uuid.UUID | None]) -> pa.Array:
    storage = pa.array([None if v is None else v.bytes for v in values], pa.binary(16))
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def _json_ext(values: list[str | None]) -> pa.Array:
    return pa.ExtensionArray.from_storage(pa.json_(), pa.array(values, pa.string()))


def staging_rows(n: int, *, seed: int = 0, codec: str = "zstd") -> list[dict[str, Any]]:
    """Python rows as the staging table holds them (payload stored with `codec`)."""
    cctx = zstandard.ZstdCompressor(write_content_size=True)
    rows = []
    for i in range(n):
        raw = json.dumps({"n": i, "seed": seed, "text": "é" * (i % 7), "pad": "x" * (i % 50)}).encode()
        kind = codec if codec != "mixed" else ("zstd", "gzip", "none")[i % 3]
        stored = cctx.compress(raw) if kind == "zstd" else gzip.compress(raw) if kind == "gzip" else raw
        rows.append(
            {
                "id": uuid.UUID(int=(seed << 64) + i + 1),
                "queue_name": f"Queue {seed}/é" if i % 2 else "emails",
                "payload": stored,
                "payload_compressed": kind != "none",
                "original_payload_size": len(raw) if i % 5 else None,
                "status": ("Completed", "Failed", "Dead", "TimedOut")[i % 4],
                "priority": "normal",
                "priority_weight": 5,
                "attempts": i % 3,
                "max_attempts": 3,
                "created_at": BASE + timedelta(seconds=i),
                "scheduled_at": BASE + timedelta(seconds=i),
                "started_at": None if i % 3 == 0 else BASE + timedelta(seconds=i, microseconds=1),
                "completed_at": BASE + timedelta(seconds=i + 1) if i % 4 == 0 else None,
                "failed_at": None,
                "timed_out_at": None,
                "archived_at": BASE + timedelta(days=1, seconds=i),
                "error_message": "boom" if i % 4 == 1 else None,
                "result": {"ok": True, "i": i} if i % 2 else None,
                "result_ttl": None,
                "retry_strategy": [1, 2, 3] if i % 3 == 1 else None,
                "timeout_seconds": 30 if i % 2 else None,
                "cron_schedule": None,
                "next_run_at": None,
                "recurring": bool(i % 2),
                "timezone": "UTC" if i % 2 else None,
                "batch_id": uuid.UUID(int=i + 77) if i % 3 == 0 else None,
                "depends_on": None if i % 4 == 3 else [uuid.UUID(int=i + 1000 + k) for k in range(i % 3)],
                "dependency_status": "none",
                "result_config": {"storage": "database"} if i % 5 == 0 else None,
                "trace_id": f"trace-{i}",
                "correlation_id": None,
                "parent_span_id": None,
                "span_context": None,
                "archival_reason": "Automatic",
                "archived_by": "tiering",
                "original_table": "hammerwork_jobs",
                "is_encrypted": i % 6 == 0,
                "encryption_key_id": None,
                "encryption_algorithm": None,
                "encrypted_payload": bytes([i % 256, 0, 255]) if i % 6 == 0 else None,
                "encryption_nonce": b"\x00\x01" if i % 6 == 0 else None,
                "encryption_tag": None,
                "encryption_metadata": None,
                "payload_hash": None,
                "pii_fields": ["email"] if i % 2 else None,
                "retention_policy": None,
                "retention_delete_at": None,
                "encrypted_at": None,
                "_raw": raw,
            }
        )
    return rows


def adbc_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """The rows shaped the way the ADBC PostgreSQL driver returns them (checked against a real
    embedded PostgreSQL: uuid -> arrow.uuid, uuid[] -> list<arrow.uuid>, jsonb -> arrow.json)."""
    arrays: dict[str, pa.Array] = {}
    for c in S.COLUMNS:
        values = [r.get(c.name) for r in rows]  # a newly registered column: NULL in these rows
        if c.name in S.UUID_COLUMNS:
            arrays[c.name] = _uuid_ext(values)
        elif c.name in S.UUID_LIST_COLUMNS:
            flat = [u for v in values if v for u in v]
            offsets = [0]
            for v in values:
                offsets.append(offsets[-1] + len(v or []))
            mask = pa.array([v is None for v in values])
            arrays[c.name] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _uuid_ext(flat), mask=mask)
        elif c.name in S.JSON_COLUMNS:
            arrays[c.name] = _json_ext([None if v is None else json.dumps(v) for v in values])
        elif c.name == "payload":
            arrays[c.name] = pa.array(values, pa.binary())
        else:
            arrays[c.name] = pa.array(values, c.type)
    return pa.RecordBatch.from_pydict(arrays)


def _sql_columns() -> list[tuple[str, bool]]:
    cols = []
    for line in SQL.read_text().splitlines():
        m = re.match(r"^\s{4}([a-z_]+)\s+([A-Z]+)", line)
        if m and m.group(1) not in ("ON",):
            cols.append((m.group(1), "NOT NULL" in line or "PRIMARY KEY" in line))
    return cols


def test_schema_matches_staging_table() -> None:
    sql_cols = _sql_columns()
    assert len(sql_cols) == 49
    assert [n for n, _ in sql_cols] == list(S.STAGING_SELECT_COLUMNS) == S.ARCHIVE_SCHEMA.names
    for name, not_null in sql_cols:
        assert S.ARCHIVE_SCHEMA.field(name).nullable is not not_null, name


def test_schema_types() -> None:
    f = S.ARCHIVE_SCHEMA.field
    assert f("id").type == pa.string() and f("batch_id").type == pa.string()
    assert f("payload").type == pa.string()
    assert f("payload_compressed").type == pa.bool_()
    assert f("original_payload_size").type == pa.int32()
    for name in ("created_at", "archived_at", "result_ttl", "encrypted_at"):
        assert f(name).type == pa.timestamp("us", tz="UTC")
    for name in S.JSON_COLUMNS:
        assert f(name).type == pa.string()
    assert f("depends_on").type == pa.list_(pa.string())
    assert f("pii_fields").type == pa.list_(pa.string())
    for name in ("encrypted_payload", "encryption_nonce", "encryption_tag"):
        assert f(name).type == pa.binary()
    for name in ("priority_weight", "attempts", "max_attempts", "timeout_seconds"):
        assert f(name).type == pa.int32()


def test_provenance() -> None:
    fid = uuid.uuid4()
    sch = S.schema_with_provenance(fid)
    assert sch.metadata[b"tiering.schema_version"] == b"1"
    assert sch.metadata[b"tiering.version"] == tiering.__version__.encode()
    assert sch.metadata[b"tiering.flush_id"] == str(fid).encode()
    assert S.schema_matches(sch)


def test_schema_doc_is_generated() -> None:
    path = ROOT / "schemas/archive-schema.md"
    text = path.read_text(encoding="utf-8")
    assert text == S.render_schema_doc(text), "run `make schema-docs`"
    for c in S.COLUMNS:
        assert f"| `{c.name}` |" in text and f"`{c.name}` {S.athena_type(c.type)}" in text


def test_registry_drives_sql_and_restore() -> None:
    """Every staging column with a hot source is in the move; restore writes exactly the hot columns it maps."""
    assert S.move_insert_columns() == [c.name for c in S.COLUMNS if c.name != "retry_strategy"]
    assert len(S.move_select_exprs("p", "c", "s")) == len(S.move_insert_columns())
    hot = dict(S.hot_insert_columns())
    assert hot["scheduled_at"] == "now()" and hot["payload"] == "%(payload)s::jsonb"
    assert {"result_storage_type", "result_ttl_seconds", "result_max_size_bytes"} <= set(hot)
    for dropped in ("archived_at", "archival_reason", "payload_compressed", "priority_weight", "completed_at"):
        assert dropped not in hot
    assert [S.priority_from_archive(w, None) for w, _, _ in S.PRIORITIES] == [0, 1, 2, 3, 4]
    assert [S.priority_from_archive(None, wt) for _, _, wt in S.PRIORITIES] == [0, 1, 2, 3, 4]
    with S.extra_columns(S.Column("tenant", pa.string(), True, "varchar(32)", "test column", "test")):
        assert S.ARCHIVE_SCHEMA.names[-1] == "tenant" and "tenant" in S.move_insert_columns()
        assert dict(S.hot_insert_columns())["tenant"] == "%(tenant)s"
        assert S.restore_values({"tenant": "t1", "id": uuid.UUID(int=1)}, "{}")["tenant"] == "t1"
    assert "tenant" not in S.ARCHIVE_SCHEMA.names


def test_rows_written_before_a_column_existed_read_it_as_null() -> None:
    old = S.to_archive_batch(adbc_batch(staging_rows(4)))  # an object's rows from before the column
    with S.extra_columns(S.Column("tenant", pa.string(), True, "varchar(32)", "test column", "test")):
        again = S.to_archive_batch(old)
        assert again.schema.equals(S.ARCHIVE_SCHEMA) and again.column("tenant").null_count == 4
        assert again.column("id").to_pylist() == old.column("id").to_pylist()
        with pytest.raises(ValueError, match="lacks column"):
            S.to_archive_batch(old.drop_columns(["queue_name"]))


def test_schema_json_file_is_generated() -> None:
    path = ROOT / "schemas/archive.arrow.json"
    assert path.read_text(encoding="utf-8") == S.render_schema_json()
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert [f["name"] for f in doc["fields"]] == list(S.STAGING_SELECT_COLUMNS)


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none", "mixed"])
def test_to_archive_batch_values(codec: str) -> None:
    rows = staging_rows(40, codec=codec)
    out = S.to_archive_batch(adbc_batch(rows))
    assert out.schema.equals(S.ARCHIVE_SCHEMA)
    got = out.to_pylist()
    for r, g in zip(rows, got, strict=True):
        assert g["id"] == str(r["id"])
        assert g["batch_id"] == (None if r["batch_id"] is None else str(r["batch_id"]))
        assert g["depends_on"] == (None if r["depends_on"] is None else [str(u) for u in r["depends_on"]])
        assert g["payload"] == r["_raw"].decode()
        assert g["result"] == (None if r["result"] is None else json.dumps(r["result"]))
        assert g["created_at"] == r["created_at"]
        assert g["encrypted_payload"] == r["encrypted_payload"]
        assert g["payload_compressed"] == r["payload_compressed"]


def test_to_archive_batch_sliced_and_table_input() -> None:
    rows = staging_rows(30)
    batch = adbc_batch(rows)
    sliced = S.to_archive_batch(batch.slice(7, 11))
    assert sliced.column("id").to_pylist() == [str(r["id"]) for r in rows[7:18]]
    assert sliced.column("depends_on").to_pylist() == [
        None if r["depends_on"] is None else [str(u) for u in r["depends_on"]] for r in rows[7:18]
    ]
    table = pa.Table.from_batches([batch.slice(0, 10), batch.slice(10)])
    out = S.to_archive_batch(table)
    assert isinstance(out, pa.Table)
    assert out.column("id").to_pylist() == [str(r["id"]) for r in rows]


def test_to_archive_batch_is_idempotent() -> None:
    once = S.to_archive_batch(adbc_batch(staging_rows(12)))
    assert S.to_archive_batch(once).equals(once)


def test_uuid_conversion_matches_python_large() -> None:
    ids = [uuid.uuid4() for _ in range(5000)] + [None]
    got = S.uuid_array_to_str(_uuid_ext(ids)).to_pylist()
    assert got == [None if u is None else str(u) for u in ids]


def test_uuid_columns_as_plain_binary_convert_like_the_uuid_type() -> None:
    """The 1.8 ADBC driver returns uuid columns as binary (16 bytes each), the 1.13 one as arrow.uuid: the same
    strings from both; binary of another length is refused."""
    ids = [uuid.uuid4() for _ in range(300)] + [None]
    plain = pa.array([None if u is None else u.bytes for u in ids], pa.binary())
    assert S.uuid_array_to_str(plain.slice(1)).to_pylist() == S.uuid_array_to_str(_uuid_ext(ids).slice(1)).to_pylist()
    assert S.uuid_array_to_str(plain).to_pylist() == [None if u is None else str(u) for u in ids]
    with pytest.raises(TypeError, match="UUID"):
        S.uuid_array_to_str(pa.array([b"short"], pa.binary()))


def test_fast_zstd_path_threaded() -> None:
    cctx = zstandard.ZstdCompressor(write_content_size=True)
    raws = [json.dumps({"i": i, "v": "ü" * (i % 13)}).encode() for i in range(50_000)]
    arr = pa.array([cctx.compress(r) for r in raws], pa.binary())
    out = S.decode_payloads(arr.slice(3))
    assert out.to_pylist() == [r.decode() for r in raws[3:]]


def test_zstd_without_content_size() -> None:
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    raws = [b'{"a":1}', b'{"b":[1,2,3]}']
    out = S.decode_payloads(pa.array([cctx.compress(r) for r in raws], pa.binary()))
    assert out.to_pylist() == [r.decode() for r in raws]


def test_corrupt_payloads_named() -> None:
    rows = staging_rows(6)
    rows[2]["payload"] = b"\x28\xb5\x2f\xfd garbage"
    rows[4]["payload"] = b"\xff\xfe not utf8"
    with pytest.raises(S.PayloadDecodeError) as info:
        S.to_archive_batch(adbc_batch(rows))
    assert info.value.bad_ids == [str(rows[2]["id"]), str(rows[4]["id"])]
    assert [b.row for b in info.value.bad] == [2, 4]


def test_missing_column_and_not_null() -> None:
    batch = adbc_batch(staging_rows(3))
    with pytest.raises(ValueError, match="lacks column"):
        S.to_archive_batch(batch.drop_columns(["status"]))
    bad = batch.set_column(batch.schema.get_field_index("status"), "status", pa.array([None, "x", "y"], pa.string()))
    with pytest.raises(ValueError, match="status"):
        S.to_archive_batch(bad)


def test_archive_rows_to_dicts_round_trip() -> None:
    rows = staging_rows(25, codec="mixed")
    out = S.to_archive_batch(adbc_batch(rows))
    dicts = S.archive_rows_to_dicts(out)
    assert list(dicts[0]) == list(S.STAGING_SELECT_COLUMNS)
    for r, d in zip(rows, dicts, strict=True):
        for name in S.STAGING_SELECT_COLUMNS:
            if name == "payload":
                assert d[name] == r["_raw"]
            else:
                assert d[name] == r[name], name
    assert isinstance(dicts[0]["id"], uuid.UUID)
    assert dicts[0]["created_at"].tzinfo == UTC
    assert S.row_to_staging_dict(out, 3) == dicts[3]


def test_one_archive_row_converts_as_the_whole_table_does() -> None:
    """A restore converts the one row it decoded (archive_row_to_dict) without a round trip through Arrow: the
    same dict as archive_rows_to_dicts; a column the object lacks is None, a zone-less timestamp is UTC (as Arrow
    means it, whatever the machine's zone), a payload already in bytes stays as it is."""
    out = S.to_archive_batch(adbc_batch(staging_rows(6, codec="mixed")))
    for i, row in enumerate(out.to_pylist()):
        assert S.archive_row_to_dict(row) == S.archive_rows_to_dicts(out)[i]
    row = out.select(list(S.RESTORE_COLUMNS)).slice(2, 1).to_pylist()[0]
    aware = row["created_at"]
    naive = {**row, "created_at": aware.astimezone(UTC).replace(tzinfo=None), "payload": row["payload"].encode()}
    converted = S.archive_row_to_dict(naive)
    assert converted["created_at"] == aware and converted["created_at"].tzinfo == UTC
    assert converted["payload"] == row["payload"].encode()
    assert converted["archived_at"] is None and converted["status"] is None  # not among the restore columns


def test_restore_reads_only_the_columns_it_writes_back() -> None:
    """A cold restore decodes S.RESTORE_COLUMNS only: the hot values it computes from them equal those computed
    from the whole archived row, and the reset and dropped columns are not among them."""
    batch = S.to_archive_batch(adbc_batch(staging_rows(12, seed=3, codec="mixed")))
    full = S.archive_rows_to_dicts(batch)
    partial = S.archive_rows_to_dicts(batch.select(list(S.RESTORE_COLUMNS)))
    for whole, some in zip(full, partial, strict=True):
        assert S.restore_values(some, "{}") == S.restore_values(whole, "{}")
    assert {"id", "payload", "priority", "priority_weight", "created_at"} <= set(S.RESTORE_COLUMNS)
    skipped = set(S.ARCHIVE_SCHEMA.names) - set(S.RESTORE_COLUMNS)
    assert {"status", "archived_at", "error_message", "result", "archival_reason"} <= skipped
    assert all(S.column(n).restore in (S.Restore.RESET, S.Restore.DROP) for n in skipped)
