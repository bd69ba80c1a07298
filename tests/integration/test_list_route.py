"""The list route reads what its page needs (issue 12's load goal, issue 13's "list route right after a flush"):
each tier is read in its index order and stops after the page, whatever the archive's size, right after a bulk
archive/flush (nothing analysed by anyone but tiering) as after VACUUM ANALYZE; the total is counted only up to
a bound and estimated past it, flagged as such."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import session_for
from tiering.db import query as qdb
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.query import list_archived_jobs, parse_cursor
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store import open_store

COLD, STAGED = 6_000, 6_000
UP_TO = 1_000  # list_exact_total_up_to here: each tier holds more
BATCH = 1000  # the archive batch: staged rows of one batch share archived_at (one transaction's now())


def _seed(url: str, n: int, start: int) -> None:
    """n finished jobs over 4 queues, finished 60 days ago (one second apart), in one statement."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """INSERT INTO hammerwork_jobs (id, queue_name, payload, status, created_at, scheduled_at, started_at,
                                            completed_at)
               SELECT gen_random_uuid(), 'q' || (i %% 4), jsonb_build_object('n', i), 'Completed',
                      now() - interval '61 days' - i * interval '1 second',
                      now() - interval '61 days' - i * interval '1 second',
                      now() - interval '60 days' - i * interval '1 second',
                      now() - interval '60 days' - i * interval '1 second'
                 FROM generate_series(%s::int, %s::int) AS i""",
            (start, start + n - 1),
        )


@pytest.fixture
def archive(db_url: str, tmp_path: Path) -> dict[str, Any]:
    """COLD jobs flushed to a local store, then STAGED more archived to staging only: tiering's own runs, with
    no ANALYZE by anyone else (the runs analyse what they bulk-changed)."""
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri())
    store = open_store(settings)
    policy = ArchivalPolicy().with_batch_size(BATCH)
    _seed(db_url, COLD, 0)
    archive_jobs(session_for(db_url), None, policy, ArchivalConfig())
    stats = flush_staged(session_for(db_url, store, settings), policy, ArchivalConfig())
    assert stats.jobs_flushed == COLD
    _seed(db_url, STAGED, COLD)
    archived = archive_jobs(session_for(db_url), None, policy, ArchivalConfig())
    assert archived.jobs_archived == STAGED
    return {"settings": settings, "store": store}


def _rows_read(url: str, query: str, params: dict[str, Any], filters: qdb.Filters) -> dict[str, int]:
    """Rows each table's scans returned in EXPLAIN ANALYZE of `query` (summed over loops)."""
    with psycopg.connect(url) as conn:
        if qdb.index_order_forced(filters, None):
            conn.execute(qdb.PAGE_PLANNER[0])  # as list_page runs it
        plan = conn.execute(("EXPLAIN (ANALYZE, FORMAT JSON) " + query).encode(), params).fetchone()[0]  # type: ignore[index]
    read: dict[str, int] = {}

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            name = node["Relation Name"]
            read[name] = read.get(name, 0) + int(node["Actual Rows"]) * int(node["Actual Loops"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return read


def _page_reads(url: str, filters: qdb.Filters, limit: int, offset: int, after: Any = None) -> dict[str, int]:
    query = qdb._page_query(filters, limit, offset, None, True, True, after)
    assert query is not None
    params = qdb._params(filters, None) | ({"after_at": after[0], "after_id": after[1]} if after else {})
    return _rows_read(url, query, params, filters)


def test_a_page_reads_the_page_not_the_archive(db_url: str, archive: dict[str, Any]) -> None:
    for when in ("right after the runs", "after VACUUM ANALYZE"):
        if when == "after VACUUM ANALYZE":
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        for limit, offset in ((51, 0), (51, 500)):
            read = _page_reads(db_url, qdb.Filters(), limit, offset)
            # the job index: exactly the page's depth; staging: the page's depth, at most one archive batch more
            # (rows of a batch tie on archived_at and are ordered by id within it)
            assert read["tiering_job_index"] <= offset + limit, (when, read)
            assert read["hammerwork_jobs_archive"] <= offset + limit + BATCH, (when, read)
            assert read.get("tiering_manifest", 0) <= offset + limit, (when, read)
        # a queue filter is planned freely: at most that queue's rows; a queue without jobs reads no index row
        read = _page_reads(db_url, qdb.Filters(queue="q1"), 51, 0)
        assert read["tiering_job_index"] <= COLD // 4 and read["hammerwork_jobs_archive"] <= STAGED // 4 + BATCH, read
        assert _page_reads(db_url, qdb.Filters(queue="nothing here"), 51, 0).get("tiering_job_index", 0) == 0

    # a cursor deep in the archive reads a page, where an offset reads everything before it
    deep = list_archived_jobs(session_for(db_url), limit=50, offset=STAGED + COLD // 2)
    key = parse_cursor(deep.next_cursor)
    assert key is not None
    read = _page_reads(db_url, qdb.Filters(), 51, 0, key)
    assert read["tiering_job_index"] <= 51 and read["hammerwork_jobs_archive"] <= 51 + BATCH, read
    after = list_archived_jobs(session_for(db_url), limit=50, after=deep.next_cursor)
    following = list_archived_jobs(session_for(db_url), limit=50, offset=STAGED + COLD // 2 + 50)
    assert [i.job_id for i in after.items] == [i.job_id for i in following.items] and len(after.items) == 50

    session = session_for(db_url, None, Settings(database_url=db_url, list_exact_total_up_to=UP_TO))
    page = list_archived_jobs(session, limit=50)
    assert len(page.items) == 50 and page.has_more
    assert [i.tier for i in page.items] == ["staging"] * 50  # the newest archived: the second run's
    assert page.total_is_estimate  # each tier holds more than UP_TO
    assert 0.5 * (COLD + STAGED) <= page.total <= 2 * (COLD + STAGED)
    exact = list_archived_jobs(session, limit=50, exact_total=True)
    assert exact.total == COLD + STAGED and not exact.total_is_estimate
    last = list_archived_jobs(session, limit=50, offset=COLD + STAGED - 10)
    assert len(last.items) == 10 and not last.has_more
    assert last.total == COLD + STAGED and not last.total_is_estimate  # the last page knows the total
    assert [i.tier for i in last.items] == ["cold"] * 10
    default = list_archived_jobs(session_for(db_url), limit=50)  # up to 10,000 a tier: counted
    assert (default.total, default.total_is_estimate) == (COLD + STAGED, False)
