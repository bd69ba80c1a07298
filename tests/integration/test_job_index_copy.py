"""A round's job index rows go into tiering_job_index by binary COPY (db/arrow.py index_copy_rows): job ids as
16-byte uuids, sorted as PostgreSQL orders uuids, every other column as the round wrote it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pytest

from tiering.db import arrow as arrowdb
from tiering.parquet import JOB_LOCATION_SCHEMA


def _rows(n: int, object_id: int) -> pa.Table:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    ids[0] = "00000000-0000-0000-0000-000000000001"  # same first 8 bytes as the next: a tie of the sort's prefix
    ids[1] = "00000000-0000-0000-0000-000000000000"
    ids[2] = "ffffffff-ffff-ffff-ffff-ffffffffffff"
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    table = pa.table(
        {
            "job_id": ids,
            "row_group": pa.array([i // 7 for i in range(n)], pa.int32()),
            "row_in_group": pa.array([i % 7 for i in range(n)], pa.int32()),
            "queue_name": ["q"] * n,
            "status": ["Completed" if i % 3 else "Dead" for i in range(n)],
            "created_at": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
            "archived_at": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
            "payload_bytes": pa.array(range(n), pa.int32()),
            "error_message": [None if i % 2 else f"boom {i}" for i in range(n)],
        },
        schema=JOB_LOCATION_SCHEMA,
    )
    return table.append_column("object_id", pa.array([object_id] * n, pa.int64()))


def test_index_rows_are_copied_as_written_in_postgresqls_uuid_order(db_url: str) -> None:
    # two chunks, the second a slice: what a round of several objects hands over
    first, second = _rows(40, 7), _rows(60, 8).slice(5)
    rows = pa.concat_tables([first, second])
    load = arrowdb.index_copy_rows(rows)

    conn = arrowdb.connect_arrow(db_url)
    try:
        cur = conn.cursor()
        cur.adbc_ingest("tiering_job_index", load, mode="append")
        conn.commit()
        cur.close()
    finally:
        conn.close()

    sent = [str(uuid.UUID(bytes=b)) for b in load.column("job_id").combine_chunks().storage.to_pylist()]
    columns = "job_id::text, object_id, row_group, row_in_group, queue_name, status, created_at, archived_at, " \
              "payload_bytes, error_message"  # fmt: skip
    with psycopg.connect(db_url) as pg:
        in_uuid_order = [r[0] for r in pg.execute("SELECT job_id::text FROM tiering_job_index ORDER BY job_id")]
        stored = {r[0]: r[1:] for r in pg.execute(f"SELECT {columns} FROM tiering_job_index")}  # noqa: S608
    assert sent == in_uuid_order  # the order PostgreSQL's uuid index takes them in, ties included
    expected = {
        r["job_id"]: (r["object_id"], r["row_group"], r["row_in_group"], r["queue_name"], r["status"],
                      r["created_at"], r["archived_at"], r["payload_bytes"], r["error_message"])
        for r in rows.to_pylist()
    }  # fmt: skip
    assert stored == expected and len(stored) == 95


def test_a_job_id_that_is_not_a_canonical_uuid_is_refused() -> None:
    rows = _rows(3, 1)
    bad = rows.set_column(0, "job_id", pa.array(["not-a-uuid", *rows.column("job_id").to_pylist()[1:]]))
    with pytest.raises(ValueError, match="not a uuid"):
        arrowdb.index_copy_rows(bad)
    assert arrowdb.index_copy_rows(rows.slice(0, 0)).num_rows == 0
