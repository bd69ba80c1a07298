"""Analyst access: the DuckDB session over exactly the committed objects (moto server over HTTP, and a local
folder through the CLI), and the Athena DDL."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from tests.helpers import insert_job, session_for
from tiering import layout
from tiering.engine.analyst import athena_ddl, duckdb_sql, open_duckdb
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.errors import InvalidInputError
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.schema import ARCHIVE_SCHEMA

DAY = timedelta(days=1)
POLICY = ArchivalPolicy(archive_completed_after=DAY, archive_failed_after=DAY)
ROOT = Path(__file__).resolve().parents[2]
ODD_QUEUE = "Billing/EU=1 ü"


def _fill(db_url: str, target: Any) -> dict[str, int]:
    per_queue = {"email": 0, ODD_QUEUE: 0}
    with psycopg.connect(db_url) as conn:
        for i in range(30):
            q = "email" if i % 2 else ODD_QUEUE
            per_queue[q] += 1
            insert_job(conn, queue=q, status="Completed" if i % 3 else "Failed", age=(10 + i % 3) * DAY,
                       payload={"customer": {"id": 500 + i % 5}, "i": i})  # fmt: skip
        conn.commit()
    archive_jobs(session_for(db_url), None, POLICY, ArchivalConfig())
    flush_staged(session_for(db_url, target.store, target.settings), POLICY, ArchivalConfig())
    return per_queue


def _arrow(con: Any, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = con.execute(sql).to_arrow_table().to_pylist()
    return rows


def test_duckdb_session_reads_exactly_the_committed_objects(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    per_queue = _fill(db_url, target)
    # an orphan object under the same prefix (no committed manifest row) must stay invisible
    stray = target.store.key(f"queue={layout.queue_slug('email')}/date=2020-01-01/part-stray.parquet")
    target.store.put_bytes(stray, b"not parquet")
    con = open_duckdb(session_for(db_url, target.store, target.settings))
    counts = {r["queue_name"]: r["n"] for r in _arrow(con, "SELECT queue_name, count(*) AS n FROM archived_jobs "
                                                           "GROUP BY 1")}  # fmt: skip
    assert counts == per_queue
    types = _arrow(con, 'SELECT typeof(queue) AS q, typeof("date") AS d FROM archived_jobs LIMIT 1')[0]
    assert types == {"q": "VARCHAR", "d": "DATE"}
    slugs = {r["queue"] for r in _arrow(con, "SELECT DISTINCT queue FROM archived_jobs")}
    assert slugs == {"email", layout.queue_slug(ODD_QUEUE)}
    per_day = _arrow(con, 'SELECT "date", status, count(*) AS n FROM archived_jobs GROUP BY ALL ORDER BY ALL')
    assert sum(r["n"] for r in per_day) == 30 and {r["status"] for r in per_day} == {"Completed", "Failed"}
    hits = _arrow(con, "SELECT id FROM archived_jobs WHERE json_extract(payload, '$.customer.id')::INT = 502")
    assert len(hits) == 6
    # the printed SQL sets up the same session; the secret key is masked unless asked for
    masked = duckdb_sql(session_for(db_url, target.store, target.settings), show_secrets=False)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in masked and "<AWS_SECRET_ACCESS_KEY>" in masked
    assert "URL_STYLE 'path'" in masked and "USE_SSL false" in masked and "part-stray" not in masked
    con2 = duckdb.connect()
    con2.execute(duckdb_sql(session_for(db_url, target.store, target.settings), show_secrets=True))
    assert _arrow(con2, "SELECT count(*) AS n FROM archived_jobs") == [{"n": 30}]


def test_duckdb_session_on_an_empty_archive(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("local")
    con = open_duckdb(session_for(db_url, target.store, target.settings))
    assert _arrow(con, "SELECT count(*) AS n FROM archived_jobs") == [{"n": 0}]
    cols = [r["column_name"] for r in _arrow(con, "SELECT column_name FROM (DESCRIBE archived_jobs)")]
    assert cols == [*ARCHIVE_SCHEMA.names, "queue", "date"]


def test_athena_ddl_has_projection_and_every_column(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    _fill(db_url, target)
    ddl = athena_ddl(session_for(db_url, target.store, target.settings), database="analytics")
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `analytics`.`archived_jobs_all`" in ddl  # the raw rows
    assert 'CREATE OR REPLACE VIEW "analytics"."archived_jobs" AS' in ddl  # each job once
    assert "PARTITIONED BY (`queue` string, `date` date)" in ddl
    assert f"LOCATION 's3://{target.bucket}/archive/'" in ddl
    assert f"'projection.queue.values'='{','.join(sorted(['email', layout.queue_slug(ODD_QUEUE)]))}'" in ddl
    assert "'projection.date.range'=" in ddl and ",NOW'" in ddl
    assert "queue=${queue}/date=${date}/" in ddl
    for field in ARCHIVE_SCHEMA:
        assert f"`{field.name}` " in ddl
    assert "`depends_on` array<string>" in ddl and "`created_at` timestamp" in ddl
    injected = athena_ddl(session_for(db_url, target.store, target.settings), queue_projection="injected")
    assert "'projection.queue.type'='injected'" in injected and "projection.queue.values" not in injected
    with pytest.raises(InvalidInputError):
        athena_ddl(session_for(db_url, target.store, target.settings), table="x; DROP TABLE y")
    local = s3_settings_factory("local")
    with pytest.raises(InvalidInputError, match="S3"):
        athena_ddl(session_for(db_url, local.store, local.settings))


def test_cli_analyst_duckdb_and_athena(db_url: str, tmp_path: Path, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("local")
    _fill(db_url, target)
    env = {**os.environ, "TIERING_DATABASE_URL": db_url, "TIERING_STORE_URL": target.settings.resolved_store_url,
           "TIERING_HOME": str(tmp_path / "home")}  # fmt: skip
    tiering = str(ROOT / ".venv/bin/tiering")
    out = subprocess.run([tiering, "analyst", "duckdb", "-c", "SELECT count(*) AS n FROM archived_jobs", "-f", "json"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == [{"n": 30}]
    printed = subprocess.run([tiering, "analyst", "duckdb", "--print-sql"], env=env, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert printed.returncode == 0 and "httpfs.duckdb_extension" in printed.stdout
    assert str(target.store.root) in printed.stdout  # type: ignore[attr-defined]
    bad = subprocess.run([tiering, "analyst", "duckdb", "-c", "SELECT nope FROM archived_jobs"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "DuckDB" in bad.stderr
    ddl = subprocess.run([tiering, "analyst", "athena-ddl"], env=env, capture_output=True, text=True, timeout=60)
    assert ddl.returncode == 2 and "S3" in ddl.stderr


def test_views_show_each_archived_job_once_as_it_is_now(db_url: str, s3_settings_factory: Any) -> None:
    """Issue 10 item 6: a restored job leaves the views, a job restored and archived again appears once (its newest
    copy); the raw rows stay reachable for audits in archived_jobs_all. Same answers from the printed SQL."""
    from tiering.engine.restore import restore_archived_job

    target = s3_settings_factory("moto_server")
    _fill(db_url, target)
    with psycopg.connect(db_url) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index ORDER BY job_id LIMIT 2")]
    restored, rearchived = ids
    for jid in ids:
        assert restore_archived_job(session_for(db_url, target.store, target.settings), jid).restored
    with psycopg.connect(db_url) as conn:  # the job ran again and finished: archived a second time
        conn.execute(
            "UPDATE hammerwork_jobs SET status = 'Completed', completed_at = now() - interval '3 days' WHERE id = %s",
            (rearchived,),
        )
        conn.commit()
    archive_jobs(session_for(db_url), None, POLICY, ArchivalConfig())
    flush_staged(session_for(db_url, target.store, target.settings), POLICY, ArchivalConfig())

    con = open_duckdb(session_for(db_url, target.store, target.settings))
    assert _arrow(con, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM archived_jobs") == [{"n": 29, "d": 29}]
    assert _arrow(con, f"SELECT count(*) AS n FROM archived_jobs WHERE id = '{restored}'") == [{"n": 0}]
    newest = _arrow(con, f"SELECT archived_at FROM archived_jobs_all WHERE id = '{rearchived}' ORDER BY 1 DESC")
    assert len(newest) == 2  # both copies are still there for audits
    shown = _arrow(con, f"SELECT archived_at FROM archived_jobs WHERE id = '{rearchived}'")
    assert shown == newest[:1]
    assert _arrow(con, "SELECT count(*) AS n FROM archived_jobs_all") == [{"n": 31}]
    # the printed SQL reads the listing at query time: the same view after another restore and a flush
    con2 = duckdb.connect()
    con2.execute(duckdb_sql(session_for(db_url, target.store, target.settings), show_secrets=True))
    assert _arrow(con2, "SELECT count(*) AS n FROM archived_jobs") == [{"n": 29}]
    with psycopg.connect(db_url) as conn:
        more = [str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index WHERE restored_at IS NULL "
                                                 "ORDER BY job_id DESC LIMIT 3")]  # fmt: skip
    from tiering.engine.restore import restore_archived_jobs

    bulk = restore_archived_jobs(session_for(db_url, target.store, target.settings), queue="email", count=3)
    assert bulk.restored == 3 and more
    files = target.store.analyst_path(target.store.key("_tiering/analyst/files/files.parquet"))
    con2.execute(f"SET VARIABLE tiering_files = (SELECT list(location) FROM read_parquet('{files}'))")
    assert _arrow(con2, "SELECT count(*) AS n FROM archived_jobs") == [{"n": 26}]
    # a single restore (the dashboard's row button) leaves the view at once: the superseded rows are read per query
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT job_id::text FROM tiering_job_index WHERE restored_at IS NULL LIMIT 1").fetchone()
    assert row is not None
    assert restore_archived_job(session_for(db_url, target.store, target.settings), row[0]).restored
    assert _arrow(con2, "SELECT count(*) AS n FROM archived_jobs") == [{"n": 25}]
    assert _arrow(con2, f"SELECT count(*) AS n FROM archived_jobs WHERE id = '{row[0]}'") == [{"n": 0}]
    # and the Athena view does the same with "$path"
    ddl = athena_ddl(session_for(db_url, target.store, target.settings))
    assert 'CREATE OR REPLACE VIEW "archived_jobs" AS' in ddl and 's.location = a."$path"' in ddl
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `archived_jobs_superseded`" in ddl
    assert f"LOCATION 's3://{target.bucket}/archive/_tiering/analyst/superseded/'" in ddl
