"""The staging move's plans cannot degenerate as staging fills (staging.NO_JOIN_IN_CLAIM), and the jobs its
after-claim check refuses stay hot without stopping the run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers import count, hammerwork_archive_copy, insert_job, session_for
from tiering.db import arrow as arrowdb
from tiering.db import staging
from tiering.engine.archive import archive_jobs
from tiering.policy import ArchivalConfig, ArchivalPolicy, eligibility_clauses

DAY = timedelta(days=1)
CHECKED = {"hammerwork_jobs_archive", "tiering_job_index"}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _explain(conn: psycopg.Connection, query: Any, params: dict[str, Any], *, analyze: bool = False) -> list[dict]:
    head = "EXPLAIN (ANALYZE, FORMAT JSON) " if analyze else "EXPLAIN (FORMAT JSON) "
    stmt = sql.Composed([sql.SQL(head), query if isinstance(query, sql.Composable) else sql.SQL(query)])
    doc = conn.execute(stmt, params, prepare=False).fetchone()
    assert doc is not None
    return list(_nodes(doc[0][0]["Plan"]))


@pytest.fixture
def hot_jobs_and_empty_staging(db_url: str) -> str:
    """300 eligible hot jobs, statistics fresh, and staging vacuumed while empty: the planner then takes staging
    for 0 pages and costs a seq scan of it at 0, the state in which the old claim's anti-join rescanned staging
    once per hot row."""
    with psycopg.connect(db_url) as conn:
        for _ in range(300):
            insert_job(conn, age=90 * DAY)
        conn.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE hammerwork_jobs, hammerwork_jobs_archive, tiering_job_index")
        pages = conn.execute("SELECT relpages FROM pg_class WHERE relname = 'hammerwork_jobs_archive'").fetchone()
        assert pages == (0,)
    return db_url


def _subtree(nodes: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    found = [n for n in nodes if n.get("Subplan Name") == name]
    assert len(found) == 1, nodes
    return list(_nodes(found[0]))


def test_claim_reads_the_hot_table_alone(hot_jobs_and_empty_staging: str) -> None:
    pred = staging.eligibility_predicate(eligibility_clauses(ArchivalPolicy(), datetime.now(UTC)), None)
    with psycopg.connect(hot_jobs_and_empty_staging) as conn:
        for skip in ([], [uuid.uuid4()]):
            params = {**pred.params, "limit": 100, "skip": skip, "reason": "Manual", "archived_by": None}
            raw = _subtree(_explain(conn, staging.raw_move_query(pred, skip), params), "CTE claimed")
            packed = _explain(conn, staging._claim_query(pred, "h.id", skip), params)
            for nodes in (raw, packed):
                read = {n["Relation Name"] for n in nodes if "Relation Name" in n}
                assert read == {"hammerwork_jobs"}, nodes
                assert not [n for n in nodes[1:] if n.get("Subplan Name") or "Join" in n["Node Type"]], nodes


def test_counting_eligible_jobs_scans_staging_once(hot_jobs_and_empty_staging: str) -> None:
    """The count (dry runs, progress, the direct path's start) hashes staging once instead of scanning it once per
    hot row, the plan PostgreSQL takes on an empty staging (counted in this transaction's table statistics)."""
    pred = staging.eligibility_predicate(eligibility_clauses(ArchivalPolicy(), datetime.now(UTC)), None)
    scans = "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = %s"
    with psycopg.connect(hot_jobs_and_empty_staging) as conn:
        assert conn.execute(scans, ("hammerwork_jobs_archive",)).fetchone() == (0,)
        counts = staging.count_eligible(conn, pred)
        assert sum(n for _, _, n in counts) == 300
        assert conn.execute(scans, ("hammerwork_jobs_archive",)).fetchone() == (1,)
        assert conn.execute("SELECT current_setting('enable_nestloop')").fetchone() == ("on",)  # restored


@pytest.mark.parametrize("packed", [False, True], ids=["raw", "gzip"])
def test_move_reads_staging_and_the_job_index_once_per_batch(hot_jobs_and_empty_staging: str, packed: bool) -> None:
    """EXPLAIN ANALYZE of a batch of 100 jobs (rolled back): each scan of staging or of the job index runs at most
    once, whatever the batch size (the old anti-join ran its staging scan once per hot row)."""
    url = hot_jobs_and_empty_staging
    pred = staging.eligibility_predicate(eligibility_clauses(ArchivalPolicy(), datetime.now(UTC)), None)
    with psycopg.connect(url) as conn:
        # a few jobs marked archived by Hammerwork (none cold): the job index check runs too, and refuses none
        conn.execute(
            "UPDATE hammerwork_jobs SET archived_at = now() WHERE id IN (SELECT id FROM hammerwork_jobs LIMIT 5)"
        )
        params: dict[str, Any] = {"reason": "Manual", "archived_by": None}
        if packed:
            rows = staging.claim_batch(conn, pred, 100)
            ids = [r[0] for r in rows]
            assert len(ids) == 100
            params |= {"ids": ids, "payloads": [b"{}"] * 100, "compressed": [False] * 100, "sizes": [2] * 100}
            nodes = _explain(conn, staging._packed_move_sql(staging.S.REGISTRY_VERSION), params, analyze=True)
        else:
            params |= {**pred.params, "limit": 100, "skip": []}
            nodes = _explain(conn, staging.raw_move_query(pred, []), params, analyze=True)
            scans = [n for n in nodes if "Relation Name" in n and "Scan" in n["Node Type"]]
            assert all(n["Actual Loops"] <= 1 for n in scans), scans  # the claim's scan and the DELETE's too
        conn.rollback()
    checks = [n for n in nodes if n.get("Relation Name") in CHECKED and "Scan" in n["Node Type"]]
    assert {n["Relation Name"] for n in checks} == CHECKED, nodes
    assert all(n["Actual Loops"] <= 1 for n in checks), checks
    writes = {(n["Operation"], n["Relation Name"]): n["Actual Rows"] for n in nodes if n["Node Type"] == "ModifyTable"}
    assert writes == {("Delete", "hammerwork_jobs"): 100, ("Insert", "hammerwork_jobs_archive"): 100}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("payload_codec", ["none", "gzip"])
def test_jobs_already_staged_stay_hot_and_every_other_job_moves(db_url: str, payload_codec: str) -> None:
    """Hot jobs whose id already sits in staging (more of them than a batch, first in the hot table) are claimed,
    refused, and skipped by the later claims: the two movers still move every other job, exactly once."""
    with psycopg.connect(db_url) as conn:
        staged = [insert_job(conn, age=90 * DAY) for _ in range(7)]
        for job_id in staged:
            hammerwork_archive_copy(conn, job_id)
        conn.execute("UPDATE hammerwork_jobs SET archived_at = NULL, archival_reason = NULL")
        fresh = {insert_job(conn, age=90 * DAY) for _ in range(25)}
        conn.commit()
    config = ArchivalConfig(payload_codec=payload_codec, compression_level=6)
    policy = ArchivalPolicy(batch_size=3, compress_archived_payloads=payload_codec == "gzip")

    stats = archive_jobs(session_for(db_url), None, policy, config, workers=2)

    assert stats.jobs_archived == len(fresh)
    with psycopg.connect(db_url) as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM hammerwork_jobs")} == set(staged)
        rows = conn.execute("SELECT id, archived_by FROM hammerwork_jobs_archive").fetchall()
        assert count(conn, "hammerwork_jobs_archive", "archived_by = 'hammerwork'") == len(staged)
    assert sorted(str(r[0]) for r in rows) == sorted(str(j) for j in [*staged, *fresh])


def test_direct_paths_scan_of_eligible_jobs_scans_staging_once(hot_jobs_and_empty_staging: str) -> None:
    """The direct path's one scan of eligible jobs (arrow.eligible_hot, on its ADBC connection) hashes staging once
    instead of scanning it once per hot row, the plan PostgreSQL takes on an empty staging: with staging filled
    meanwhile (a concurrent staging move, Hammerwork's archiver), each of those rescans grew (counted in this
    transaction's table statistics, read on the same connection before its rollback)."""
    pred = staging.eligibility_predicate(eligibility_clauses(ArchivalPolicy(), datetime.now(UTC)), None)
    scans = (
        "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
        " WHERE relname = 'hammerwork_jobs_archive'"
    )
    conn = arrowdb.connect_arrow(hot_jobs_and_empty_staging)
    try:
        cur = conn.cursor()
        try:
            cur.execute(scans)
            assert cur.fetchall() == [(0,)]
            eligible = arrowdb.eligible_hot(conn, pred)
            assert sum(len(tids) for tids in eligible.tids.values()) == 300
            cur.execute(scans)
            assert cur.fetchall() == [(1,)]
            cur.execute("SELECT current_setting('enable_nestloop')")
            assert cur.fetchall() == [("on",)]  # restored
        finally:
            cur.close()
        conn.rollback()
    finally:
        conn.close()


def test_direct_claim_reads_only_its_tids(hot_jobs_and_empty_staging: str) -> None:
    """The direct path's claim (arrow.stream_claimed_hot) fetches its rows by tid and never scans the hot table
    (nor an index of it): given its tids as an array literal, the planner costed each as a random page read and
    scanned the whole hot table (or its eligible rows by index) instead, once per claim (counted in this
    transaction's table statistics; the claim is rolled back, so every job stays hot). 3,000 pending jobs beside
    the 300 eligible ones make the table big enough that a scan of it costs more than a tid lookup of unknown
    size, as in any real backlog."""
    with psycopg.connect(hot_jobs_and_empty_staging, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hammerwork_jobs SELECT (jsonb_populate_record(NULL::hammerwork_jobs, to_jsonb(h)"
            " || jsonb_build_object('id', gen_random_uuid(), 'status', 'Pending'))).*"
            " FROM hammerwork_jobs h CROSS JOIN generate_series(1, 10)"
        )
        conn.execute("VACUUM ANALYZE hammerwork_jobs")
    pred = staging.eligibility_predicate(eligibility_clauses(ArchivalPolicy(), datetime.now(UTC)), None)
    scans = "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'hammerwork_jobs'"
    conn = arrowdb.connect_arrow(hot_jobs_and_empty_staging)
    try:
        cur = conn.cursor()
        try:
            eligible = arrowdb.eligible_hot(conn, pred)
            cur.execute(scans)
            before = cur.fetchall()[0][0]
            claim, reader = arrowdb.stream_claimed_hot(
                conn, pred, "default", eligible.tids["default"], (), "STANDARD", reason="Manual", archived_by=None
            )
            try:
                assert sum(batch.num_rows for batch in reader) == 300
            finally:
                claim.close()
            cur.execute(scans)
            assert cur.fetchall() == [(before,)]
        finally:
            cur.close()
        conn.rollback()
    finally:
        conn.close()
    with psycopg.connect(hot_jobs_and_empty_staging) as check:
        assert count(check, "hammerwork_jobs", "status = 'Completed'") == 300
