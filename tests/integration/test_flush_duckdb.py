"""DuckDB, as an analyst would use it, reads the flushed archive straight from SeaweedFS over S3.

DuckDB cannot download extensions here: httpfs and json are LOADed by the path of the `.duckdb_extension` files
the duckdb-extension-httpfs / duckdb-extension-json wheels install.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.helpers import insert_job
from tests.integration.test_flush import archive_all, flush, hot_payloads, seed, snapshot, spread_archived_at
from tiering import layout

duckdb = pytest.importorskip("duckdb")


def extension_file(name: str) -> str:
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    assert spec and spec.submodule_search_locations, f"the duckdb-extension-{name} wheel is not installed"
    for root in spec.submodule_search_locations:
        found = sorted(Path(root).rglob(f"{name}.duckdb_extension"))
        if found:
            return str(found[-1])
    raise AssertionError(f"no {name}.duckdb_extension inside duckdb_extension_{name}")


def duck_on(server: Any) -> Any:
    con = duckdb.connect()
    for name in ("httpfs", "json"):
        con.execute(f"LOAD '{extension_file(name)}'")
    endpoint = urlsplit(server.endpoint).netloc
    con.execute(
        f"""CREATE SECRET tiering_test (TYPE s3, KEY_ID '{server.access_key}', SECRET '{server.secret_key}',
            REGION '{server.region}', ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"""
    )
    return con


@pytest.mark.seaweedfs
def test_duckdb_reads_the_flushed_archive_from_seaweedfs(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("seaweedfs")
    seed(db_url, 500)  # six queues, one of them "reports/monthly"
    with psycopg.connect(db_url) as conn:
        for i in range(4):  # a numeric-looking slug: DuckDB would make it a number without hive_types
            insert_job(conn, queue="2024", payload={"customer": {"tier": "numeric"}, "order_id": i})
        conn.commit()
    originals = hot_payloads(db_url)
    archived = archive_all(db_url)
    spread_archived_at(db_url, 3)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT id, queue_name, archived_at FROM hammerwork_jobs_archive").fetchall()
    staged = {str(r[0]): (r[1], r[2]) for r in rows}
    flush(db_url, target)
    snap = snapshot(db_url, target.store)
    assert snap.committed and not snap.staged

    con = duck_on(target.server)
    files = [f"s3://{target.bucket}/{r.key}" for r in snap.committed]  # from the manifest: no bucket listing
    source = "read_parquet($files, hive_partitioning = true, hive_types = {'queue': VARCHAR, 'date': DATE})"

    (rows, distinct) = con.execute(f"SELECT count(*), count(DISTINCT id) FROM {source}", {"files": files}).fetchone()
    assert rows == distinct == archived
    # the same through a glob over the Hive layout
    glob = f"s3://{target.bucket}/{target.store.prefix}/queue=*/date=*/*.parquet"
    (globbed,) = con.execute(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true, "
        "hive_types = {'queue': VARCHAR, 'date': DATE})"
    ).fetchone()
    assert globbed == archived

    # partition columns: types and values
    types = con.execute(f"SELECT DISTINCT typeof(queue), typeof(date) FROM {source}", {"files": files}).fetchall()
    assert types == [("VARCHAR", "DATE")]
    result = con.execute(
        f"""SELECT id, queue, date, queue_name, epoch_us(archived_at),
                   json_extract_string(payload, '$.customer.tier'), json_extract(payload, '$.order_id')::BIGINT,
                   payload ->> '$.currency', json_valid(payload)
              FROM {source}""",
        {"files": files},
    ).fetchall()
    assert len(result) == archived
    for job_id, queue, day, queue_name, archived_us, tier, order_id, currency, valid in result:
        real_queue, archived_at = staged[job_id]
        assert queue_name == real_queue == originals[job_id][0]
        assert queue == layout.queue_slug(queue_name)
        assert day == archived_at.astimezone(UTC).date()
        assert datetime.fromtimestamp(archived_us / 1e6, UTC) == archived_at
        payload = originals[job_id][1]
        assert valid is True
        assert tier == payload["customer"]["tier"]
        assert order_id == payload["order_id"]
        assert currency == payload.get("currency")
    assert {r[1] for r in result if r[3] == "2024"} == {"2024"}  # a string, not the number 2024
    assert {r[1] for r in result if r[3] == "reports/monthly"} == {layout.queue_slug("reports/monthly")}

    # partition pruning by the typed columns, and aggregates an analyst would run
    by_queue = dict(
        con.execute(
            f"SELECT queue_name, count(*) FROM {source} WHERE date >= DATE '2000-01-01' GROUP BY ALL",
            {"files": files},
        ).fetchall()
    )
    expected: dict[str, int] = {}
    for q, _ in staged.values():
        expected[q] = expected.get(q, 0) + 1
    assert by_queue == expected
    one_day = min(r.partition_date for r in snap.committed)
    (n_day,) = con.execute(f"SELECT count(*) FROM {source} WHERE date = $d", {"files": files, "d": one_day}).fetchone()
    assert n_day == sum(1 for _, at in staged.values() if at.astimezone(UTC).date() == one_day)
    tiers = dict(
        con.execute(
            f"SELECT json_extract_string(payload, '$.customer.tier') AS tier, count(*) FROM {source} GROUP BY ALL",
            {"files": files},
        ).fetchall()
    )
    want: dict[str, int] = {}
    for job_id in staged:
        t = originals[job_id][1]["customer"]["tier"]
        want[t] = want.get(t, 0) + 1
    assert tiers == want
    assert json.loads(con.execute(f"SELECT payload FROM {source} LIMIT 1", {"files": files}).fetchone()[0])
