from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.unit.test_schema import adbc_batch, staging_rows
from tiering import layout, parquet
from tiering import schema as S

FLUSH = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _name(seq: int) -> str:
    return layout.part_name(FLUSH, seq, "STANDARD")


def _archive(n: int, seed: int = 0) -> pa.RecordBatch:
    return S.to_archive_batch(adbc_batch(staging_rows(n, seed=seed, codec="mixed")))


def test_small_input_one_file(tmp_path: Path) -> None:
    batches = [_archive(30, seed=s) for s in range(3)]
    parts = parquet.write_parts(batches, tmp_path, flush_id=FLUSH, part_name_fn=_name)
    assert len(parts) == 1
    part = parts[0]
    assert part.path == tmp_path / f"{_name(0)}.parquet"
    assert list(tmp_path.iterdir()) == [part.path]
    assert part.rows == 90 and part.row_groups == 1
    assert part.bytes == part.path.stat().st_size
    assert part.sha256 == hashlib.sha256(part.path.read_bytes()).hexdigest()
    assert part.uncompressed_bytes > 0
    assert part.statuses == ["Completed", "Dead", "Failed", "TimedOut"]
    table = pa.Table.from_batches(batches)
    assert part.min_created_at == min(table["created_at"].to_pylist())
    assert part.max_archived_at == max(table["archived_at"].to_pylist())
    expected_payload = sum(
        r["original_payload_size"] if r["original_payload_size"] is not None else len(r["payload"].encode())
        for r in table.to_pylist()
    )
    assert part.payload_original_bytes == expected_payload

    meta = parquet.file_metadata(part.path)
    assert meta["tiering.flush_id"] == str(FLUSH)
    assert meta["tiering.schema_version"] == "1"
    assert meta["tiering.part_name"] == _name(0)

    back = pq.read_table(part.path)
    assert back.schema.equals(S.ARCHIVE_SCHEMA, check_metadata=False)
    assert back.to_pylist() == table.to_pylist()
    footer = parquet.read_footer(part.path)
    col = footer.row_group(0).column(S.ARCHIVE_SCHEMA.get_field_index("payload"))
    assert col.compression == "ZSTD"
    ts_col = footer.schema.column(S.ARCHIVE_SCHEMA.get_field_index("created_at"))
    assert "timeUnit=microseconds" in str(ts_col.logical_type) and "isAdjustedToUTC=true" in str(ts_col.logical_type)


def test_job_locations_point_at_rows(tmp_path: Path) -> None:
    parts = parquet.write_parts([_archive(50)], tmp_path, flush_id=FLUSH, part_name_fn=_name)
    loc = parts[0].job_locations
    assert loc.schema.equals(parquet.JOB_LOCATION_SCHEMA)
    assert loc.num_rows == 50
    for row in loc.slice(10, 5).to_pylist():
        rg = parquet.read_row_group(parts[0].path, row["row_group"])
        assert rg["id"][row["row_in_group"]].as_py() == row["job_id"]
        assert rg["status"][row["row_in_group"]].as_py() == row["status"]


def test_empty_input_writes_nothing(tmp_path: Path) -> None:
    assert parquet.write_parts([], tmp_path, flush_id=FLUSH, part_name_fn=_name) == []
    assert list(tmp_path.iterdir()) == []


def test_staging_batches_are_converted(tmp_path: Path) -> None:
    rows = staging_rows(20)
    parts = parquet.write_parts([adbc_batch(rows)], tmp_path, flush_id=FLUSH, part_name_fn=_name)
    back = pq.read_table(parts[0].path)
    assert back["id"].to_pylist() == [str(r["id"]) for r in rows]
    assert back["payload"].to_pylist() == [r["_raw"].decode() for r in rows]


def test_row_group_clamped(tmp_path: Path) -> None:
    parts = parquet.write_parts([_archive(300)], tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=10)
    assert parts[0].row_groups == 1  # clamped up to 100k, and fewer rows than that


def test_row_groups_and_rollover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    batches = [_archive(45, seed=s) for s in range(6)]  # 270 rows
    parts = parquet.write_parts(
        batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=40, target_bytes=20_000
    )
    assert len(parts) > 1
    assert [p.part_name for p in parts] == [_name(i) for i in range(len(parts))]
    assert sum(p.rows for p in parts) == 270
    for p in parts[:-1]:
        assert p.bytes >= 20_000
    for p in parts:
        footer = parquet.read_footer(p.path)
        sizes = [footer.row_group(i).num_rows for i in range(footer.num_row_groups)]
        assert all(s <= 40 for s in sizes)
        assert p.row_groups == footer.num_row_groups
        assert p.job_locations.num_rows == p.rows
    ids = [i for p in parts for i in pq.read_table(p.path)["id"].to_pylist()]
    assert ids == [i for b in batches for i in b["id"].to_pylist()]


def test_row_group_byte_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    batches = [_archive(20, seed=s) for s in range(5)]
    parts = parquet.write_parts(
        batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=1000, row_group_max_bytes=1
    )
    assert parts[0].row_groups == 5


def test_row_groups_cut_at_the_byte_cap_inside_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cap smaller than one input batch cuts row groups of about cap bytes, not one row group per batch: what a
    writer holds while it sorts and encodes a row group is bounded whatever the rows compress to."""
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    monkeypatch.setattr(parquet, "MIN_TARGETED_ROW_GROUP_ROWS", 5)
    batches = [_archive(200, seed=s) for s in range(3)]  # 600 rows
    cap = batches[0].nbytes // 8  # about 25 rows' bytes
    (part,) = parquet.write_parts(
        batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=1000, row_group_max_bytes=cap,
        sort_keys=("status", "created_at"),
    )  # fmt: skip
    meta = pq.read_metadata(part.path)
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sum(sizes) == part.rows == 600
    assert len(sizes) >= 16, sizes
    assert max(sizes) <= 60, sizes  # within about twice the cap's rows (rows differ in size), never a whole batch
    written = pq.read_table(part.path)
    assert sorted(written["id"].to_pylist()) == sorted(i for b in batches for i in b["id"].to_pylist())
    ids = written["id"].to_pylist()
    offsets = [sum(sizes[:g]) for g in range(len(sizes))]
    for loc in part.job_locations.to_pylist():
        assert ids[offsets[loc["row_group"]] + loc["row_in_group"]] == loc["job_id"]


def test_sorted_row_groups_keep_locations_true(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    batches = [_archive(40, seed=s) for s in range(3)]
    (part,) = parquet.write_parts(
        batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=50, sort_keys=("status", "created_at")
    )
    pf = pq.ParquetFile(part.path)
    assert pf.metadata.num_row_groups == 3
    for rg in range(pf.metadata.num_row_groups):
        t = pf.read_row_group(rg, columns=["status", "created_at"])
        keys = list(zip(t["status"].to_pylist(), t["created_at"].to_pylist(), strict=True))
        assert keys == sorted(keys)  # ordered inside each row group
    written = pq.read_table(part.path)
    assert sorted(written["id"].to_pylist()) == sorted(i for b in batches for i in b["id"].to_pylist())
    # every job location (row group, row in group) points at that job's row after sorting
    offsets = [0]
    for rg in range(pf.metadata.num_row_groups):
        offsets.append(offsets[-1] + pf.metadata.row_group(rg).num_rows)
    ids = written["id"].to_pylist()
    for loc in part.job_locations.to_pylist():
        assert ids[offsets[loc["row_group"]] + loc["row_in_group"]] == loc["job_id"]


def test_row_groups_capped_by_compressed_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "FIRST_ROW_GROUP_ROWS", 20)
    monkeypatch.setattr(parquet, "MIN_TARGETED_ROW_GROUP_ROWS", 5)
    batches = [_archive(50, seed=s) for s in range(8)]  # 400 rows
    (plain,) = parquet.write_parts(batches, tmp_path / "plain", flush_id=FLUSH, part_name_fn=_name)
    target = 8 * 1024
    (capped,) = parquet.write_parts(
        batches, tmp_path / "capped", flush_id=FLUSH, part_name_fn=_name, row_group_target_bytes=target
    )
    assert plain.row_groups == 1 and plain.rows == capped.rows == 400
    meta = pq.read_metadata(capped.path)
    assert meta.num_row_groups == capped.row_groups > 1
    assert meta.row_group(0).num_rows == 20  # the first row group measures the bytes per row
    sizes = [
        sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.num_columns))
        for g in range(1, meta.num_row_groups - 1)
    ]
    assert sizes and max(sizes) <= target


def test_writer_abort_removes_open_part(tmp_path: Path) -> None:
    def boom() -> object:
        yield _archive(10)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        parquet.write_parts(boom(), tmp_path, flush_id=FLUSH, part_name_fn=_name)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def part_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> parquet.WrittenPart:
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    batches = [_archive(30, seed=s) for s in range(3)]
    (part,) = parquet.write_parts(batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=25)
    assert part.row_groups == 4
    return part


def test_find_job(part_file: parquet.WrittenPart) -> None:
    loc = part_file.job_locations.to_pylist()
    target = loc[60]
    found = parquet.find_job(part_file.path, target["job_id"], row_group=target["row_group"])
    assert found is not None and found.num_rows == 1
    assert found["id"][0].as_py() == target["job_id"]
    assert found.schema.equals(S.ARCHIVE_SCHEMA, check_metadata=False)
    assert parquet.find_job(part_file.path, target["job_id"]) == found
    assert parquet.find_job(part_file.path, uuid.UUID(target["job_id"])) == found
    assert parquet.find_job(part_file.path, target["job_id"], row_group=0) is None
    assert parquet.find_job(part_file.path, str(uuid.uuid4())) is None
    with open(part_file.path, "rb") as fh:
        assert parquet.find_job(fh, target["job_id"]) == found
    buf = pa.BufferReader(part_file.path.read_bytes())
    assert parquet.find_job(buf, target["job_id"], row_group=target["row_group"]) == found


def test_read_row_group_columns(part_file: parquet.WrittenPart) -> None:
    t = parquet.read_row_group(io.BytesIO(part_file.path.read_bytes()), 1, columns=["id", "status"])
    assert t.column_names == ["id", "status"] and t.num_rows == 25


def test_scan(part_file: parquet.WrittenPart) -> None:
    expr = ds.field("status") == "Failed"
    batches = list(parquet.scan(part_file.path, expr, columns=["id", "status"]))
    table = pa.Table.from_batches(batches)
    assert set(table["status"].to_pylist()) == {"Failed"}
    everything = pq.read_table(part_file.path)
    assert table.num_rows == sum(1 for s in everything["status"].to_pylist() if s == "Failed")
    with open(part_file.path, "rb") as fh:
        assert sum(b.num_rows for b in parquet.scan(fh)) == 90


def test_rewrite_without(part_file: parquet.WrittenPart, tmp_path: Path) -> None:
    ids = part_file.job_locations["job_id"].to_pylist()
    drop = {ids[0], ids[26], ids[-1], str(uuid.uuid4())}
    dst = tmp_path / "rewritten.parquet"
    new = parquet.rewrite_without(part_file.path, dst, drop)
    assert new is not None
    assert new.rows == 87 and new.path == dst
    back = pq.read_table(dst)
    assert back["id"].to_pylist() == [i for i in ids if i not in drop]
    assert parquet.file_metadata(dst) == parquet.file_metadata(part_file.path)
    assert new.sha256 == hashlib.sha256(dst.read_bytes()).hexdigest()
    assert parquet.verify_part(dst, 87, new.sha256) == []
    renamed = parquet.rewrite_without(part_file.path, tmp_path / "x.parquet", {ids[1]}, part_name="p2")
    assert renamed is not None and parquet.file_metadata(renamed.path)["tiering.part_name"] == "p2"


def test_rewrite_without_everything(part_file: parquet.WrittenPart, tmp_path: Path) -> None:
    dst = tmp_path / "empty.parquet"
    all_ids = set(part_file.job_locations["job_id"].to_pylist())
    assert parquet.rewrite_without(part_file.path, dst, all_ids) is None
    assert not dst.exists()


def test_verify_part(part_file: parquet.WrittenPart, tmp_path: Path) -> None:
    path = part_file.path
    assert parquet.verify_part(path, 90, part_file.sha256, deep=True) == []
    with open(path, "rb") as fh:
        assert parquet.verify_part(fh, 90, part_file.sha256) == []
    assert any("row count" in p for p in parquet.verify_part(path, 91))
    assert any("sha256" in p for p in parquet.verify_part(path, 90, "0" * 64))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[:-100])
    assert any("footer" in p for p in parquet.verify_part(broken, 90))
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1]}), plain)
    problems = parquet.verify_part(plain, 1)
    assert any("tiering.flush_id" in p for p in problems)


def test_encodings_follow_the_registry(tmp_path: Path) -> None:
    """Opaque ids and hashes are written DELTA_LENGTH_BYTE_ARRAY, timestamps DELTA_BINARY_PACKED, low-cardinality
    columns with a dictionary; a part written before (PLAIN ids) and one written now read back the same rows."""
    batch = _archive(40)
    (part,) = parquet.write_parts([batch], tmp_path / "new", flush_id=FLUSH, part_name_fn=_name)
    footer = parquet.read_footer(part.path)
    encodings = {footer.row_group(0).column(i).path_in_schema: footer.row_group(0).column(i).encodings
                 for i in range(footer.num_columns)}  # fmt: skip
    assert S.DELTA_LENGTH_COLUMNS and set(S.DELTA_LENGTH_COLUMNS) <= set(S.ARCHIVE_SCHEMA.names)
    for name in S.DELTA_LENGTH_COLUMNS:
        assert "DELTA_LENGTH_BYTE_ARRAY" in encodings[name], (name, encodings[name])
    assert "DELTA_BINARY_PACKED" in encodings["created_at"]
    assert any("DICTIONARY" in e for e in encodings["status"])
    assert not any("DELTA" in e for e in encodings["payload"])
    old = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_batches([batch]), old, compression="zstd")  # what earlier versions wrote for ids
    assert "PLAIN" in parquet.read_footer(old).row_group(0).column(0).encodings
    assert pq.read_table(part.path).to_pylist() == pq.read_table(old).to_pylist() == batch.to_pylist()
    rows = parquet.read_rows_at(part.path, [(0, 3), (0, 17)])
    assert rows["id"].to_pylist() == [batch["id"][3].as_py(), batch["id"][17].as_py()]


def test_random_identifiers_are_compressed_at_a_low_level(tmp_path: Path) -> None:
    """Random identifiers (ids, trace ids, hashes, depends_on) get zstd level 1 whatever the policy's level; every
    other column the policy's level; a part written so reads back the same rows."""
    names = S.ARCHIVE_SCHEMA.names
    assert {"id", "trace_id", "depends_on"} <= set(S.FAST_ZSTD_COLUMNS) <= set(names)
    assert "payload" not in S.FAST_ZSTD_COLUMNS and "result_config" not in S.FAST_ZSTD_COLUMNS
    levels = parquet.writer_options(6, names)["compression_level"]
    assert set(levels) == set(names)
    assert {c: levels[c] for c in S.FAST_ZSTD_COLUMNS} == dict.fromkeys(S.FAST_ZSTD_COLUMNS, S.FAST_ZSTD_LEVEL)
    assert {levels[c] for c in names if c not in S.FAST_ZSTD_COLUMNS} == {6}
    assert set(parquet.writer_options(1, names)["compression_level"].values()) == {1}
    batch = _archive(60)
    (part,) = parquet.write_parts([batch], tmp_path, flush_id=FLUSH, part_name_fn=_name, compression_level=9)
    assert pq.read_table(part.path).to_pylist() == batch.to_pylist()


def test_coalesce_merges_near_ranges_within_a_size_cap() -> None:
    assert parquet.coalesce([], max_gap=10, max_size=100) == []
    assert parquet.coalesce([(50, 60), (0, 10), (15, 20)], max_gap=5, max_size=100) == [(0, 20), (50, 60)]
    assert parquet.coalesce([(0, 10), (10, 20), (20, 30)], max_gap=0, max_size=25) == [(0, 20), (20, 30)]
    assert parquet.coalesce([(0, 500), (501, 502)], max_gap=10, max_size=100) == [(0, 500), (501, 502)]
    assert parquet.coalesce([(0, 10), (5, 8)], max_gap=0, max_size=100) == [(0, 10)]  # contained


def test_segment_reads_decode_only_what_was_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row group's byte range (all columns, or some) is enough to decode its rows with the footer known; the
    ranges are what a footer says, and a read outside the fetched bytes fails instead of fetching."""
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    batches = [_archive(30, seed=s) for s in range(3)]
    (part,) = parquet.write_parts(batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=25)
    data, meta = part.path.read_bytes(), parquet.read_footer(part.path)
    table = pa.Table.from_batches(batches)
    assert meta.num_row_groups == 4
    for rg in range(meta.num_row_groups):
        start, end = parquet.row_group_range(meta, rg)
        assert (start, end) == (
            min(parquet.chunk_range(meta, rg, i)[0] for i in range(meta.num_columns)),
            max(parquet.chunk_range(meta, rg, i)[1] for i in range(meta.num_columns)),
        )
        got = parquet.rows_from_segment(meta, len(data), (start, data[start:end]), [(rg, 3), (rg, 0)])
        assert got.to_pylist() == [table.slice(25 * rg, 1).to_pylist()[0], table.slice(25 * rg + 3, 1).to_pylist()[0]]
        a, b = parquet.row_group_range(meta, rg, ["id", "payload"])
        assert start <= a < b <= end and b - a < end - start
        few = parquet.rows_from_segment(meta, len(data), (a, data[a:b]), [(rg, 1)], ["id", "payload"])
        assert few.to_pylist() == table.slice(25 * rg + 1, 1).select(["id", "payload"]).to_pylist()
        batches_back = parquet.batches_from_segment(meta, len(data), (a, data[a:b]), rg, ["payload"], 7)
        payloads = [p for bt in batches_back for p in bt.column(0).to_pylist()]
        assert payloads == table.slice(25 * rg, meta.row_group(rg).num_rows)["payload"].to_pylist()
    start, end = parquet.row_group_range(meta, 1)
    with pytest.raises(OSError):
        parquet.rows_from_segment(meta, len(data), (start, data[start:end]), [(0, 0)])
    assert parquet.present_columns(meta, ["id", "no_such_column", "payload"]) == ["id", "payload"]


def test_rows_of_one_row_group_are_decoded_only_up_to_the_last_wanted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows wanted in one row group: batches are decoded until the one holding the last wanted row, then the rows
    are taken in row order; rows in several row groups: those groups whole. Same rows either way."""
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    monkeypatch.setattr(parquet, "POSITION_BATCH_ROWS", 4)
    batches = [_archive(30, seed=s) for s in range(2)]
    (part,) = parquet.write_parts(batches, tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=25)
    data, meta = part.path.read_bytes(), parquet.read_footer(part.path)
    table = pa.Table.from_batches(batches)
    decoded: list[int] = []
    real_iter = pq.ParquetFile.iter_batches

    def counting_iter(self: pq.ParquetFile, *args: object, **kwargs: object) -> object:
        for batch in real_iter(self, *args, **kwargs):  # type: ignore[arg-type]
            decoded.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting_iter)
    whole = (0, data)
    for wants, batches_read in (([(1, 0)], 1), ([(1, 9), (1, 2)], 3), ([(1, 24)], 7), ([(1, 3), (1, 4)], 2)):
        decoded.clear()
        got = parquet.rows_from_segment(meta, len(data), whole, wants)
        assert got.to_pylist() == [table.slice(25 + r, 1).to_pylist()[0] for _, r in sorted(wants)]
        assert len(decoded) == batches_read and sum(decoded) <= 25
    decoded.clear()
    both = parquet.rows_from_segment(meta, len(data), whole, [(2, 1), (0, 24)])
    assert both.to_pylist() == [table.slice(24, 1).to_pylist()[0], table.slice(51, 1).to_pylist()[0]]
    assert decoded == []  # two row groups: read whole
    with pytest.raises(IndexError):
        parquet.rows_from_segment(meta, len(data), whole, [(1, 25)])  # past the group's rows


def test_footer_cache_loads_each_object_once() -> None:
    loads: list[str] = []

    def loader(name: str) -> Any:
        def load() -> Any:
            loads.append(name)
            return name

        return load

    key = (f"memory://cache-test/{uuid.uuid4()}", 10)
    assert parquet.cached_footer(key, loader("a")) == "a"
    assert parquet.cached_footer(key, loader("b")) == "a"
    assert parquet.cached_footer((key[0], 11), loader("c")) == "c"  # another size: another object
    assert loads == ["a", "c"]


def _with_columns(table: pa.Table, **columns: pa.Array) -> pa.Table:
    for name, values in columns.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), values)
    return table


def test_columns_the_footer_gives_are_filled_in_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of one row group: a column all null there, or without nulls and min == max there (integers, booleans,
    timestamps), takes its value from the footer's statistics; strings, lists, columns with some nulls and
    varying ones are decoded. The rows equal a full decode's, in any row group, at any position."""
    monkeypatch.setattr(parquet, "MIN_ROW_GROUP_ROWS", 10)
    n = 50
    table = pa.Table.from_batches([_archive(n, seed=3)])
    when = table["created_at"][0].as_py()
    table = _with_columns(
        table,
        priority_weight=pa.array([7] * n, pa.int32()),  # constant int
        recurring=pa.array([False] * 25 + [True] * 25),  # constant per row group
        next_run_at=pa.array([when] * n, table.schema.field("next_run_at").type),  # constant timestamp
        timeout_seconds=pa.array([None] * 25 + [30] * 24 + [None], pa.int32()),  # null, then constant with a null
        timezone=pa.array(["UTC"] * n),  # a constant string: decoded (string statistics may be truncated)
        max_attempts=pa.array(list(range(n)), pa.int32()),  # varies
        encryption_key_id=pa.array([None] * n, pa.string()),  # all null
    )
    (part,) = parquet.write_parts(table.to_batches(), tmp_path, flush_id=FLUSH, part_name_fn=_name, row_group_rows=25)
    data, meta = part.path.read_bytes(), parquet.read_footer(part.path)
    assert meta.num_row_groups == 2
    columns = parquet.present_columns(meta, S.RESTORE_COLUMNS)
    known = [parquet.statistics_values(meta, rg, columns) for rg in range(2)]
    assert known[0]["priority_weight"] == known[1]["priority_weight"] == 7
    assert (known[0]["recurring"], known[1]["recurring"]) == (False, True)
    assert known[0]["next_run_at"] == known[1]["next_run_at"] == when
    assert known[0]["timeout_seconds"] is None and "timeout_seconds" not in known[1]  # 24 of 30, one null
    assert known[0]["encryption_key_id"] is None and known[1]["encryption_key_id"] is None  # all null, any type
    for rg in range(2):
        assert not {"timezone", "max_attempts", "id", "payload", "depends_on", "pii_fields"} & set(known[rg])
    decoded: list[list[str] | None] = []
    real_take = parquet._take_positions

    def spy(pf: pq.ParquetFile, positions: Any, cols: list[str] | None) -> pa.Table:
        decoded.append(cols)
        return real_take(pf, positions, cols)

    monkeypatch.setattr(parquet, "_take_positions", spy)
    for rg, row in ((0, 0), (0, 24), (1, 0), (1, 13), (1, 24)):
        start, end = parquet.row_group_range(meta, rg, columns)
        got = parquet.rows_from_segment(meta, len(data), (start, data[start:end]), [(rg, row)], columns)
        assert got.column_names == columns
        assert got.to_pylist() == table.slice(25 * rg + row, 1).select(columns).to_pylist()
        assert decoded[-1] == [c for c in columns if c not in known[rg]]
    both = parquet.rows_from_segment(meta, len(data), (0, data), [(0, 1), (1, 1)], columns)
    assert both.to_pylist() == table.take([1, 26]).select(columns).to_pylist()
    assert decoded[-1] == columns  # two row groups: every column decoded
    constant = parquet.statistics_values(meta, 0, ["priority_weight", "recurring"])
    assert set(constant) == {"priority_weight", "recurring"}  # all of them known: one is decoded anyway
    got = parquet.rows_from_segment(meta, len(data), (0, data), [(0, 5)], ["priority_weight", "recurring"])
    assert got.to_pylist() == [{"priority_weight": 7, "recurring": False}]
    assert decoded[-1] == ["priority_weight"]  # the first of them
