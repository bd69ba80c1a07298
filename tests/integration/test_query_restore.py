"""list / query / search / restore against embedded PostgreSQL and real S3 (moto server; moto in-process for
GLACIER): results checked job for job against DuckDB scans of the same objects plus the staging rows."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers import count, hammerwork_archive_copy, insert_job, session_for
from tiering.engine.analyst import open_duckdb
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.query import (
    get_archived_job,
    list_archived_jobs,
    query_archived_jobs,
    search_archived_jobs,
)
from tiering.engine.restore import RestoreInProgressError, restore_archived_job, restore_archived_jobs
from tiering.errors import ConflictError, InvalidInputError, NotFoundError
from tiering.policy import ArchivalConfig, ArchivalPolicy, StorageClassRule

DAY = timedelta(days=1)
POLICY = ArchivalPolicy(archive_completed_after=DAY, archive_failed_after=DAY, archive_dead_after=DAY,
                        archive_timed_out_after=DAY)  # fmt: skip
CONFIG = ArchivalConfig()
ROOT = Path(__file__).resolve().parents[2]


def _seed(conn: psycopg.Connection, n: int, *, start: int = 0) -> dict[uuid.UUID, Any]:
    """Jobs over two queues with customer ids as numbers, strings, nested, in lists, and metacharacters."""
    jobs: dict[uuid.UUID, Any] = {}
    for i in range(start, start + n):
        queue = "billing" if i % 3 else "email"
        cid: Any = 12345 if i % 7 == 0 else ("12345" if i % 11 == 0 else 1000 + i)
        payload = {"customer": {"id": cid, "name": f"c{i}"}, "n": i, "tags": ["a", f"t{i % 4}"],
                   "note": "a\"b %_ '; DROP TABLE x; --" if i % 5 == 0 else "plain", "amount": i / 4}  # fmt: skip
        status = ("Completed", "Failed", "Dead", '"Completed"')[i % 4]
        jid = insert_job(conn, queue=queue, status=status, payload=payload, priority=i % 5, age=(30 + i % 9) * DAY,
                         max_attempts=5, timeout_seconds=30 + i, trace_id=f"trace-{i}", correlation_id=f"corr-{i}",
                         batch_id=uuid.UUID(int=i + 1), depends_on=[uuid.UUID(int=i + 100)],
                         result_storage_type="database", result_ttl_seconds=3600, result_data=Jsonb({"ok": i}),
                         error_message="boom", attempts=3, cron_schedule="0 * * * *" if i % 2 else None,
                         recurring=bool(i % 2), timezone="UTC" if i % 2 else None)  # fmt: skip
        jobs[jid] = payload
    return jobs


def _archive(db_url: str) -> None:
    archive_jobs(session_for(db_url), None, POLICY, CONFIG, "manual", "tester")


def _flush(db_url: str, target: Any, policy: ArchivalPolicy = POLICY) -> Any:
    return flush_staged(session_for(db_url, target.store, target.settings), policy, CONFIG)


@pytest.fixture
def mixed(db_url: str, s3_settings_factory: Any) -> dict[str, Any]:
    """60 jobs flushed to moto server (cold), 24 more archived to staging only, 1 Hammerwork gzip copy staged."""
    target = s3_settings_factory("moto_server")
    with psycopg.connect(db_url) as conn:
        cold = _seed(conn, 60)
        conn.commit()
    _archive(db_url)
    stats = _flush(db_url, target)
    assert stats.jobs_flushed == 60
    with psycopg.connect(db_url) as conn:
        staged = _seed(conn, 24, start=60)
        conn.commit()
    _archive(db_url)
    with psycopg.connect(db_url) as conn:
        legacy = insert_job(conn, queue="billing", payload={"customer": {"id": 12345}, "legacy": True})
        hammerwork_archive_copy(conn, legacy)
        conn.execute("DELETE FROM hammerwork_jobs WHERE id = %s", (legacy,))
        conn.commit()
    staged[legacy] = {"customer": {"id": 12345}, "legacy": True}
    return {"target": target, "cold": cold, "staged": staged, "all": {**cold, **staged}}


def test_list_total_is_exact_up_to_the_setting_then_a_flagged_estimate(db_url: str, mixed: dict[str, Any]) -> None:
    """Past list_exact_total_up_to matches in a tier the total is the planner's estimate, flagged; has_more, the
    pages and the last page's total stay exact; exact_total counts everything."""
    from tiering.settings import Settings

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE hammerwork_jobs_archive, tiering_job_index")
    full = [i.job_id for i in list_archived_jobs(session_for(db_url), limit=1000).items]
    assert len(full) == 85
    for up_to in (10, 1):  # 10: each tier counted up to 11 rows, then estimated; 1: estimated without counting
        small = session_for(db_url, None, Settings(database_url=db_url, list_exact_total_up_to=up_to))
        first = list_archived_jobs(small, limit=7)
        assert first.total_is_estimate and first.has_more
        assert 42 <= first.total <= 170  # the planner's figure after ANALYZE: 60 index rows + 25 staged
        assert first.to_dict()["total_is_estimate"] is True and first.to_dict()["has_more"] is True
        paged: list[str] = []
        for offset in range(0, 85, 7):
            p = list_archived_jobs(small, limit=7, offset=offset)
            assert p.has_more == (offset + 7 < 85)
            assert p.total >= offset + len(p.items) + p.has_more  # never below what the pages prove
            paged.extend(i.job_id for i in p.items)
        assert paged == full
        last = list_archived_jobs(small, limit=7, offset=84)
        assert (last.total, last.total_is_estimate, last.has_more) == (85, False, False)
        exact = list_archived_jobs(small, limit=7, exact_total=True)
        assert (exact.total, exact.total_is_estimate) == (85, False)
        if up_to == 10:  # tiers under the bound are counted exactly: 5 cold and 2 staged Dead jobs of email
            dead = list_archived_jobs(small, queue="email", status="Dead", limit=1)
            assert (dead.total, dead.total_is_estimate, dead.has_more) == (7, False, True)
        past = list_archived_jobs(small, limit=7, offset=200)  # past the end: no page, the count or estimate
        assert (past.items, past.has_more) == ([], False) and past.total < 200
    # under the bound (the default 10,000) every total is exact
    page = list_archived_jobs(session_for(db_url), limit=7)
    assert (page.total, page.total_is_estimate, page.has_more) == (85, False, True)
    past = list_archived_jobs(session_for(db_url), limit=7, offset=200)
    assert (past.total, past.total_is_estimate, past.items, past.has_more) == (85, False, [], False)
    just_count = list_archived_jobs(session_for(db_url), limit=0)  # `archive list --limit 0`: the total alone
    assert (just_count.total, just_count.has_more, just_count.items) == (85, True, [])
    # keyset paging: the cursors walk the same list; a forged cursor is refused
    walked: list[str] = []
    cursor: str | None = None
    while True:
        p = list_archived_jobs(session_for(db_url), limit=7, after=cursor)
        walked.extend(i.job_id for i in p.items)
        assert p.total == 85 and (p.next_cursor is None) == (not p.has_more)
        if p.next_cursor is None:
            break
        cursor = p.next_cursor
    assert walked == full
    with pytest.raises(InvalidInputError, match="cursor"):
        list_archived_jobs(session_for(db_url), after="bm90LWEtY3Vyc29y")


def _duckdb_rows(db_url: str, target: Any, where: str = "TRUE") -> list[dict[str, Any]]:
    con = open_duckdb(session_for(db_url, target.store, target.settings))
    sql = f"SELECT id, queue_name, status, archived_at, payload, queue FROM archived_jobs WHERE {where}"
    rows: list[dict[str, Any]] = con.execute(sql).to_arrow_table().to_pylist()
    return rows


def _staging_rows(db_url: str) -> list[dict[str, Any]]:
    from tiering import codec

    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT id, queue_name, btrim(status, '\"') AS status, archived_at, payload "
                           "FROM hammerwork_jobs_archive").fetchall()  # fmt: skip
    return [{**r, "id": str(r["id"]), "payload": codec.decode(bytes(r["payload"])).decode()} for r in rows]


def test_list_query_and_search_equal_duckdb_plus_staging(db_url: str, mixed: dict[str, Any]) -> None:
    target = mixed["target"]
    duck = _duckdb_rows(db_url, target)
    staging = _staging_rows(db_url)
    assert len(duck) == 60 and len(staging) == 25
    assert all(r["queue"] == r["queue_name"] for r in duck)  # hive partition read as VARCHAR

    everything = {r["id"]: r for r in duck + staging}
    expected_order = sorted(everything.values(), key=lambda r: (-r["archived_at"].timestamp(), r["id"]))

    page = list_archived_jobs(session_for(db_url), limit=1000)
    assert page.total == 85
    assert [i.job_id for i in page.items] == [r["id"] for r in expected_order]
    assert {i.tier for i in page.items if i.job_id in {str(k) for k in mixed["cold"]}} == {"cold"}
    assert all(i.object_key and i.storage_class == "STANDARD" for i in page.items if i.tier == "cold")
    assert all(i.status == everything[i.job_id]["status"] for i in page.items)
    # stable pagination: pages of 7 concatenate to the whole list
    paged: list[str] = []
    for offset in range(0, 85, 7):
        p = list_archived_jobs(session_for(db_url), limit=7, offset=offset)
        assert p.total == 85
        paged.extend(i.job_id for i in p.items)
    assert paged == [i.job_id for i in page.items]

    # filters: queue + status, archived window
    billing_failed = list_archived_jobs(session_for(db_url), queue="billing", status="Failed", limit=1000)
    want = {k for k, r in everything.items() if r["queue_name"] == "billing" and r["status"] == "Failed"}
    assert {i.job_id for i in billing_failed.items} == want and billing_failed.total == len(want)
    assert list_archived_jobs(session_for(db_url), queue="no-such-queue").total == 0

    # builder with payloads: equal, job for job, to what DuckDB and staging hold
    q = query_archived_jobs(session_for(db_url, target.store)).queue("billing").with_payload().limit(1000).execute()
    want_billing = {k: r for k, r in everything.items() if r["queue_name"] == "billing"}
    assert {i.job_id for i in q.items} == set(want_billing)
    for item in q.items:
        assert item.payload == json.loads(want_billing[item.job_id]["payload"])
    # created window via the builder
    first_created = min(i.created_at for i in page.items)
    later = query_archived_jobs(session_for(db_url, target.store))
    later = later.created_after(first_created + timedelta(seconds=1)).limit(1000)
    assert all(i.created_at > first_created for i in later.execute().items)

    # search: number typed as text matches the number and the string, nested key, one queue
    con = open_duckdb(session_for(db_url, target.store, target.settings))
    duck_hits = {r[0] for r in con.execute(
        "SELECT id FROM archived_jobs WHERE queue_name = 'billing' AND "
        "json_extract_string(payload, '$.customer.id') = '12345'").fetchall()}  # fmt: skip
    stage_hits = {r["id"] for r in staging if r["queue_name"] == "billing"
                  and str(json.loads(r["payload"])["customer"]["id"]) == "12345"}  # fmt: skip
    found = search_archived_jobs(session_for(db_url, target.store), "customer.id", "12345", queue="billing")
    assert {i.job_id for i in found.items} == duck_hits | stage_hits
    assert duck_hits and stage_hits
    assert found.objects_scanned >= 1 and found.rows_prefiltered < found.rows_scanned
    types = {type(i.payload["customer"]["id"]) for i in found.items}
    assert types == {int, str}
    # limit keeps the newest
    top = search_archived_jobs(session_for(db_url, target.store), "customer.id", "12345", limit=2)
    all_hits = search_archived_jobs(session_for(db_url, target.store), "customer.id", "12345")
    assert [i.job_id for i in top.items] == [i.job_id for i in all_hits.items][:2] and top.truncated


def test_search_metacharacters_and_bad_input(db_url: str, mixed: dict[str, Any]) -> None:
    store = mixed["target"].store
    tricky = "a\"b %_ '; DROP TABLE x; --"
    want = {str(k) for k, p in mixed["all"].items() if p.get("note") == tricky}
    assert want
    assert {i.job_id for i in search_archived_jobs(session_for(db_url, store), "note", tricky).items} == want
    for value in ("'; DROP TABLE x; --", 'a"b', "%", "_", "\\", "\x7f", "ü"):
        assert search_archived_jobs(session_for(db_url, store), "note", value).items == []
    assert search_archived_jobs(session_for(db_url, store), "'; DROP TABLE x; --", "1").items == []
    assert search_archived_jobs(session_for(db_url, store), 'a"b', "x").items == []
    assert search_archived_jobs(session_for(db_url, store), "customer.id", "12345", queue="no-such-queue").items == []
    # list elements and decimals
    t3 = {str(k) for k, p in mixed["all"].items() if "t3" in p.get("tags", [])}
    assert {i.job_id for i in search_archived_jobs(session_for(db_url, store), "tags", "t3").items} == t3
    quarter = {str(k) for k, p in mixed["all"].items() if p.get("amount") == 2.5}
    assert {i.job_id for i in search_archived_jobs(session_for(db_url, store), "amount", "2.50").items} == quarter
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs_archive") == 25  # nothing dropped
    for key in ("", ".", "a..b", "customer."):
        with pytest.raises(InvalidInputError):
            search_archived_jobs(session_for(db_url, store), key, "1")
    for bad in ("yesterday", "2024-13-01", "2024-02-30T99:00"):
        with pytest.raises(InvalidInputError, match="ISO date"):
            search_archived_jobs(session_for(db_url, store), "n", "1", archived_after=bad)
        with pytest.raises(InvalidInputError, match="ISO date"):
            list_archived_jobs(session_for(db_url), archived_before=bad)
    with pytest.raises(InvalidInputError, match="status"):
        list_archived_jobs(session_for(db_url), status="Bogus")
    with pytest.raises(InvalidInputError):
        list_archived_jobs(session_for(db_url), archived_after="2024-02-01", archived_before="2024-01-01")
    with pytest.raises(InvalidInputError):
        list_archived_jobs(session_for(db_url), limit=-1)
    for bad_id in ("not-a-uuid", "'; DROP TABLE x; --", "1234", ""):
        with pytest.raises(InvalidInputError):
            restore_archived_job(session_for(db_url, store, mixed["target"].settings), bad_id)
        with pytest.raises(InvalidInputError):
            get_archived_job(session_for(db_url, store), bad_id)
    with pytest.raises(NotFoundError):
        restore_archived_job(session_for(db_url, store, mixed["target"].settings), uuid.uuid4())


def test_search_skips_staging_only_when_no_staged_job_passes_the_filters(db_url: str, mixed: dict[str, Any]) -> None:
    """search_sources answers the objects and "does staging hold a candidate" in one query; a search opens no
    staging cursor when it says no. Over a grid of filters it must agree with the staging stream itself (a "no"
    while the stream has a row would drop staged matches) and list exactly committed_objects' objects."""
    from tiering.db import manifest as mdb
    from tiering.db import query as qdb
    from tiering.engine.query import make_filters

    with psycopg.connect(db_url) as conn:
        times = sorted(r[0] for r in conn.execute("SELECT archived_at FROM hammerwork_jobs_archive"))
    assert times
    windows = [(None, None), (times[0], None), (None, times[0]), (times[-1] + timedelta(seconds=1), None),
               (times[0] - DAY, times[0] + timedelta(microseconds=1))]  # fmt: skip
    seen = set()
    for queue in (None, "billing", "email", "no-such-queue"):
        for status in (None, "Completed", "Dead", ["Failed", "Dead"], "TimedOut"):
            for after, before in windows:
                filters = make_filters(queue=queue, status=status, archived_after=after, archived_before=before)
                with psycopg.connect(db_url) as conn:
                    objects, staged = qdb.search_sources(conn, filters)
                    with conn.transaction():
                        streamed = any(True for _ in qdb.staging_payload_stream(conn, filters, None))
                    assert staged == streamed, (queue, status, after, before)
                    assert objects == mdb.committed_objects(conn, mdb.committed_params(
                        queue=filters.queue, archived_after=filters.archived_after,
                        archived_before=filters.archived_before,
                        statuses=list(filters.statuses) if filters.statuses else None,
                    ))  # fmt: skip
                seen.add((staged, bool(objects)))
    assert seen == {(True, True), (True, False), (False, True), (False, False)}  # every branch was met
    # and a search whose staged jobs are filtered away still finds its cold ones (the staging part is skipped)
    cold_billing = {str(k) for k, p in mixed["cold"].items() if str(p["customer"]["id"]) == "12345"}
    with psycopg.connect(db_url) as conn:
        cold_ids = {str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index WHERE restored_at IS NULL")}
    found = search_archived_jobs(session_for(db_url, mixed["target"].store), "customer.id", "12345",
                                 archived_before=times[0])  # fmt: skip
    assert {i.job_id for i in found.items} == cold_billing & cold_ids and found.staging_rows_checked == 0


def _hot(db_url: str, job_id: Any) -> dict[str, Any]:
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM hammerwork_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def _check_restored(row: dict[str, Any], payload: Any, i: int) -> None:
    assert row["payload"] == payload
    assert row["status"] == "Pending" and row["attempts"] == 0
    assert row["scheduled_at"] > datetime.now(UTC) - timedelta(minutes=5)
    for col in ("started_at", "completed_at", "failed_at", "timed_out_at", "error_message", "result_data",
                "archived_at", "archival_reason"):  # fmt: skip
        assert row[col] is None, col
    assert row["priority"] == i % 5
    assert row["max_attempts"] == 5 and row["timeout_seconds"] == 30 + i
    assert row["trace_id"] == f"trace-{i}" and row["correlation_id"] == f"corr-{i}"
    assert row["batch_id"] == uuid.UUID(int=i + 1) and row["depends_on"] == [uuid.UUID(int=i + 100)]
    assert row["cron_schedule"] == ("0 * * * *" if i % 2 else None) and row["recurring"] is bool(i % 2)
    assert row["result_storage_type"] == "database" and row["result_ttl_seconds"] == 3600
    assert row["dependency_status"] == "none"


def test_restore_from_staging_and_cold_keeps_fields_and_costs_at_most_3_requests(
    db_url: str, mixed: dict[str, Any]
) -> None:
    target = mixed["target"]
    store, settings = target.store, target.settings
    with psycopg.connect(db_url) as conn:
        created = dict(conn.execute("SELECT id, created_at FROM hammerwork_jobs_archive").fetchall())
    cold_id, cold_payload = next((k, p) for k, p in mixed["cold"].items() if p["n"] == 14)
    staged_id, staged_payload = next((k, p) for k, p in mixed["staged"].items() if p.get("n") == 63)

    r = restore_archived_job(session_for(db_url, store, settings), str(staged_id), initiated_by="alice")
    assert r.source == "staging" and r.restored
    _check_restored(_hot(db_url, staged_id), staged_payload, 63)
    assert _hot(db_url, staged_id)["created_at"] == created[staged_id]

    store.request_count = 0
    r = restore_archived_job(session_for(db_url, store, settings), cold_id, initiated_by="alice")
    assert r.source == "cold" and r.restored and r.object_key
    assert store.request_count <= 3 and r.object_requests == store.request_count
    _check_restored(_hot(db_url, cold_id), cold_payload, 14)

    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs_archive", "id = %s", (staged_id,)) == 0
        assert count(conn, "tiering_job_index", "job_id = %s AND restored_at IS NOT NULL", (cold_id,)) == 1
        ops = conn.execute("SELECT initiated_by, outcome, parameters->>'job_id' FROM tiering_operations "
                           "WHERE operation = 'restore' ORDER BY id").fetchall()  # fmt: skip
    assert ops == [("alice", "succeeded", str(staged_id)), ("alice", "succeeded", str(cold_id))]
    # the restored jobs leave the archive's views
    listed = {i.job_id for i in list_archived_jobs(session_for(db_url), limit=1000).items}
    assert str(cold_id) not in listed and str(staged_id) not in listed
    assert list_archived_jobs(session_for(db_url)).total == 83
    hits = search_archived_jobs(session_for(db_url, store), "n", "14")
    assert str(cold_id) not in {i.job_id for i in hits.items}
    # twice, or while in the hot table: clear conflict, nothing changes
    for jid in (cold_id, staged_id):
        with pytest.raises(ConflictError, match="hot table"):
            restore_archived_job(session_for(db_url, store, settings), jid)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM hammerwork_jobs WHERE id = %s", (cold_id,))
        conn.commit()
    with pytest.raises(ConflictError, match="already restored"):
        restore_archived_job(session_for(db_url, store, settings), cold_id)
    # get / show
    other = next(k for k, p in mixed["cold"].items() if p["n"] == 20)
    job = get_archived_job(session_for(db_url, store), other)
    assert job.tier == "cold" and job.payload == mixed["cold"][other] and job.record is not None
    assert job.record["trace_id"] == "trace-20"


def test_bulk_restore_dry_run_then_real(db_url: str, mixed: dict[str, Any]) -> None:
    target = mixed["target"]
    store, settings = target.store, target.settings
    dry = restore_archived_jobs(session_for(db_url, store, settings), queue="billing", status="Failed", dry_run=True)
    want = {str(k) for k, p in mixed["all"].items() if p.get("n", -1) % 3 and p.get("n", -1) % 4 == 1}
    assert {j.job_id for j in dry.jobs} == want and dry.restored == 0
    assert set(dry.by_source) == {"cold", "staging"}
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs") == 0
        assert conn.execute("SELECT outcome FROM tiering_operations WHERE operation='restore'").fetchone() == (
            "dry_run",
        )
    store.request_count = 0
    done = restore_archived_jobs(session_for(db_url, store, settings), queue="billing", status="Failed", batch_size=3)
    assert done.restored == len(want) and not done.skipped
    cold_objects = {j.object_key for j in dry.jobs if j.tier == "cold"}
    assert done.object_reads == len(cold_objects)
    with psycopg.connect(db_url) as conn:
        assert {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs")} == want
        assert count(conn, "hammerwork_jobs", "status <> 'Pending'") == 0
    # match + count: the newest 2 jobs whose customer.id is 12345
    matched = restore_archived_jobs(session_for(db_url, store, settings), match=("customer.id", "12345"), count=2)
    assert matched.restored == 2
    for j in matched.jobs:
        assert str(_hot(db_url, j.job_id)["payload"]["customer"]["id"]) == "12345"


def test_glacier_restore_goes_through_in_progress_to_success(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_inprocess", glacier_restore_tier="Expedited")
    policy = replace(POLICY, storage_classes=(StorageClassRule("GLACIER", queue="cold"),))
    with psycopg.connect(db_url) as conn:
        jid = insert_job(conn, queue="cold", payload={"customer": {"id": 7}})
        conn.commit()
    _archive(db_url)
    _flush(db_url, target, policy)
    store = target.store
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT storage_class FROM tiering_manifest").fetchone() == ("GLACIER",)
    with pytest.raises(RestoreInProgressError, match="1-5 minutes") as info:
        restore_archived_job(session_for(db_url, store, target.settings), jid)
    assert info.value.exit_code == 5 and info.value.started
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT restore_requested_at IS NOT NULL FROM tiering_manifest").fetchone() == (True,)
        assert count(conn, "hammerwork_jobs") == 0
        assert count(conn, "tiering_job_index", "restored_at IS NULL") == 1
    # moto finishes the restore at once: the next call completes it
    result = restore_archived_job(session_for(db_url, store, target.settings), jid)
    assert result.restored and _hot(db_url, jid)["payload"] == {"customer": {"id": 7}}


def _cli(args: list[str], env: dict[str, str], *, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(ROOT / ".venv/bin/tiering"), *args], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def test_cli_list_search_show_restore_json(db_url: str, tmp_path: Path, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("local")
    with psycopg.connect(db_url) as conn:
        jobs = _seed(conn, 12)
        conn.commit()
    _archive(db_url)
    _flush(db_url, target)
    env = {**os.environ, "TIERING_DATABASE_URL": db_url, "TIERING_STORE_URL": target.settings.resolved_store_url,
           "TIERING_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}  # fmt: skip
    listed = json.loads(_cli(["archive", "list", "--format", "json", "--limit", "5"], env).stdout)
    assert listed["total"] == 12 and len(listed["items"]) == 5
    csv_out = _cli(["archive", "list", "--format", "csv", "--queue", "email"], env).stdout.splitlines()
    assert csv_out[0].startswith("job_id,") and len(csv_out) == 1 + sum(1 for p in jobs.values() if p["n"] % 3 == 0)
    found = json.loads(_cli(["archive", "search", "customer.id", "12345", "--format", "json"], env).stdout)
    want = {str(k) for k, p in jobs.items() if str(p["customer"]["id"]) == "12345"}
    assert {i["job_id"] for i in found["items"]} == want
    jid = sorted(want)[0]
    shown = json.loads(_cli(["archive", "show", jid, "--payload", "--format", "json"], env).stdout)
    assert shown["payload"] == jobs[uuid.UUID(jid)]
    dry = json.loads(_cli(["archive", "restore", jid, "--dry-run", "--format", "json"], env).stdout)
    assert dry["dry_run"] is True and dry["restored"] is False
    done = json.loads(_cli(["archive", "restore", jid, "--format", "json"], env).stdout)
    assert done["restored"] is True and done["source"] == "cold"
    again = _cli(["archive", "restore", jid], env, check=4)
    assert "hot table" in again.stderr
    bulk = json.loads(
        _cli(["archive", "restore", "--queue", "email", "--limit", "2", "--yes", "--format", "json"], env).stdout
    )
    assert bulk["restored"] == 2
    # bad input: clear errors with distinct exit codes, nothing on stdout
    bad = _cli(["archive", "list", "--archived-after", "last tuesday"], env, check=2)
    assert "ISO date" in bad.stderr and bad.stdout == ""
    assert "not a job id" in _cli(["archive", "restore", "nope"], env, check=2).stderr
    assert _cli(["archive", "show", str(uuid.uuid4())], env, check=3).stdout == ""
    assert "at least one" in _cli(["archive", "restore"], env, check=2).stderr
    assert json.loads(_cli(["archive", "search", "'; DROP TABLE x; --", "%", "-f", "json"], env).stdout)["items"] == []
