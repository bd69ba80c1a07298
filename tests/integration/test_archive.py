"""archive_jobs against embedded PostgreSQL: eligibility, overrides, legacy data, concurrency, dry runs."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import timedelta

import psycopg
import pytest

from tests.helpers import count, hammerwork_archive_copy, insert_job, session_for
from tiering import codec
from tiering.demo import seed_demo_jobs
from tiering.engine.archive import archive_jobs
from tiering.errors import ConfigError
from tiering.policy import ArchivalConfig, ArchivalPolicy

DAY = timedelta(days=1)


def test_moves_only_terminal_jobs_older_than_their_status_threshold(db_url: str) -> None:
    policy = ArchivalPolicy(
        archive_completed_after=7 * DAY,
        archive_failed_after=30 * DAY,
        archive_dead_after=14 * DAY,
        archive_timed_out_after=21 * DAY,
    )
    with psycopg.connect(db_url) as conn:
        old = {s: insert_job(conn, status=s, age=40 * DAY) for s in ("Completed", "Failed", "Dead", "TimedOut")}
        young = {
            "Completed": insert_job(conn, status="Completed", age=6 * DAY),
            "Failed": insert_job(conn, status="Failed", age=29 * DAY),
            "Dead": insert_job(conn, status="Dead", age=13 * DAY),
            "TimedOut": insert_job(conn, status="TimedOut", age=20 * DAY),
        }
        live = [insert_job(conn, status=s, age=400 * DAY) for s in ("Pending", "Running", "Retrying")]
        conn.commit()

    stats = archive_jobs(session_for(db_url), None, policy, ArchivalConfig(), "manual", "tester")

    assert stats.jobs_archived == 4
    assert stats.by_status == {"Completed": 1, "Failed": 1, "Dead": 1, "TimedOut": 1}
    with psycopg.connect(db_url) as conn:
        archived = {r[0] for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
        hot = {r[0] for r in conn.execute("SELECT id FROM hammerwork_jobs")}
    assert archived == set(old.values())
    assert hot == set(young.values()) | set(live)


def test_finish_timestamp_follows_status(db_url: str) -> None:
    """A Failed job is aged by failed_at, even when completed_at is old."""
    with psycopg.connect(db_url) as conn:
        job = insert_job(conn, status="Failed", age=DAY)
        conn.execute("UPDATE hammerwork_jobs SET completed_at = now() - interval '400 days' WHERE id = %s", (job,))
        conn.commit()
    stats = archive_jobs(session_for(db_url), None, ArchivalPolicy(archive_failed_after=7 * DAY), ArchivalConfig())
    assert stats.jobs_archived == 0


def test_queue_override_keeps_that_queue_whatever_the_status(db_url: str) -> None:
    policy = ArchivalPolicy(archive_completed_after=7 * DAY, archive_failed_after=7 * DAY).with_queue_specific_policy(
        "critical_queue", 180 * DAY
    )
    with psycopg.connect(db_url) as conn:
        kept = [insert_job(conn, queue="critical_queue", status=s, age=100 * DAY) for s in ("Completed", "Failed")]
        moved = [insert_job(conn, queue="critical_queue", status=s, age=200 * DAY) for s in ("Completed", "Dead")]
        other = insert_job(conn, queue="email_queue", status="Completed", age=10 * DAY)
        conn.commit()
    stats = archive_jobs(session_for(db_url), None, policy, ArchivalConfig())
    assert stats.jobs_archived == 3
    assert stats.by_queue == {"critical_queue": 2, "email_queue": 1}
    with psycopg.connect(db_url) as conn:
        archived = {r[0] for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
    assert archived == set(moved) | {other}
    assert not archived & set(kept)


def test_queue_filter_limits_the_run(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        insert_job(conn, queue="a")
        insert_job(conn, queue="b")
        conn.commit()
    stats = archive_jobs(session_for(db_url), "a", ArchivalPolicy(), ArchivalConfig())
    assert stats.by_queue == {"a": 1}
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs", "queue_name = 'b'") == 1


def test_legacy_quoted_statuses_are_archived_like_plain_ones(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        ids = [insert_job(conn, status=f'"{s}"', age=90 * DAY) for s in ("Completed", "Failed", "Dead", "TimedOut")]
        pending = insert_job(conn, status='"Pending"', age=90 * DAY)
        conn.commit()
    stats = archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig())
    assert stats.jobs_archived == 4
    assert stats.by_status == {"Completed": 1, "Failed": 1, "Dead": 1, "TimedOut": 1}
    with psycopg.connect(db_url) as conn:
        statuses = dict(conn.execute("SELECT id, status FROM hammerwork_jobs_archive").fetchall())
        assert count(conn, "hammerwork_jobs", "id = %s", (pending,)) == 1
    assert set(statuses) == set(ids)
    assert set(statuses.values()) == {"Completed", "Failed", "Dead", "TimedOut"}


def test_hammerwork_archived_database_is_settled(db_url: str) -> None:
    """Hammerwork copied rows into the archive (gzip) and only marked the hot copies: the copy wins."""
    payload = {"customer": {"id": "c-1"}, "text": "x" * 500}
    with psycopg.connect(db_url) as conn:
        marked = [insert_job(conn, payload=payload, age=90 * DAY) for _ in range(5)]
        compact = [hammerwork_archive_copy(conn, j) for j in marked]
        fresh = insert_job(conn, age=90 * DAY)
        conn.commit()
    dry = archive_jobs(session_for(db_url), None, ArchivalPolicy(dry_run=True), ArchivalConfig())
    assert dry.hot_copies_settled == 5
    assert dry.jobs_that_would_be_archived == 1

    stats = archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig())

    assert stats.hot_copies_settled == 5
    assert stats.jobs_archived == 1
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs") == 0
        rows = dict(conn.execute("SELECT id, payload FROM hammerwork_jobs_archive").fetchall())
    assert set(rows) == set(marked) | {fresh}
    for job_id, raw in zip(marked, compact, strict=True):
        stored = bytes(rows[job_id])
        assert stored[:2] == codec.GZIP_MAGIC  # Hammerwork's copy is kept as it was
        assert codec.decode(stored) == raw
        assert json.loads(codec.decode(stored)) == payload


def test_payloads_stored_raw_by_default_and_gzip_when_configured_never_zstd(db_url: str) -> None:
    """Staging is Hammerwork's table: payloads raw (copied as they are) or gzip, both readable by Hammerwork's
    restore; a policy that still says zstd (earlier tiering builds) stages raw payloads (zstd lives in Parquet)."""
    big = {"text": "hello world " * 200}
    small = {"a": 1}
    with psycopg.connect(db_url) as conn:
        z_big, z_small = insert_job(conn, queue="z", payload=big), insert_job(conn, queue="z", payload=small)
        old_big = insert_job(conn, queue="old", payload=big)
        g_big = insert_job(conn, queue="g", payload=big)
        conn.commit()
    archive_jobs(session_for(db_url), "z", ArchivalPolicy(), ArchivalConfig(min_payload_size_for_compression=64))
    archive_jobs(session_for(db_url), "old", ArchivalPolicy(), ArchivalConfig(payload_codec="zstd"))
    archive_jobs(session_for(db_url), "g", ArchivalPolicy(), ArchivalConfig(payload_codec="gzip", compression_level=6))
    with psycopg.connect(db_url) as conn:
        rows = {
            r[0]: (bytes(r[1]), r[2], r[3])
            for r in conn.execute(
                "SELECT id, payload, payload_compressed, original_payload_size FROM hammerwork_jobs_archive"
            )
        }
    for job, payload in ((z_big, big), (z_small, small), (old_big, big)):
        data, flag, size = rows[job]
        assert flag is False and json.loads(data) == payload and size == len(data)
        assert data[:4] != codec.ZSTD_MAGIC
    data, flag, _ = rows[g_big]
    assert data[:2] == codec.GZIP_MAGIC and flag is True
    assert json.loads(gzip.decompress(data)) == big  # readable by Hammerwork's own gzip reader


def test_hammerwork_columns_are_filled(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        job = insert_job(
            conn,
            priority=4,
            result_data=psycopg.types.json.Jsonb({"ok": True}),
            result_storage_type="database",
            result_ttl_seconds=60,
            trace_id="trace-1",
            depends_on=[],
        )
        conn.commit()
    archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig(), "compliance", "auditor")
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            """SELECT priority, priority_weight, result, result_config, trace_id, archival_reason, archived_by,
                      original_table, archived_at IS NOT NULL FROM hammerwork_jobs_archive WHERE id = %s""",
            (job,),
        ).fetchone()
    assert row == (
        "critical",
        20,
        {"ok": True},
        {"storage": "Database", "ttl": {"secs": 60, "nanos": 0}, "max_size_bytes": None},  # Hammerwork's serde
        "trace-1",
        "Compliance",
        "auditor",
        "hammerwork_jobs",
        True,
    )


def test_every_run_is_audited(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        insert_job(conn)
        conn.commit()
    stats = archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig(), "maintenance", "ops")
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT operation, initiated_by, reason, outcome, counts->>'jobs_archived', finished_at IS NOT NULL "
            "FROM tiering_operations WHERE id = %s",
            (stats.operation_id,),
        ).fetchone()
    assert row == ("archive", "ops", "Maintenance", "succeeded", "1", True)


def test_bad_reason_is_refused(db_url: str) -> None:
    with pytest.raises(ConfigError, match="reason"):
        archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig(), "because")


def test_dry_run_counts_equal_the_real_run(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo_jobs(conn, 20_000)
        conn.commit()
        hot_before = count(conn, "hammerwork_jobs")
    policy = ArchivalPolicy(batch_size=700).with_queue_specific_policy("critical_queue", 60 * DAY)
    dry_policy = ArchivalPolicy(**{**policy.__dict__, "dry_run": True})
    dry = archive_jobs(session_for(db_url), None, dry_policy, ArchivalConfig())
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs") == hot_before
        assert count(conn, "hammerwork_jobs_archive") == 0
    real = archive_jobs(session_for(db_url), None, policy, ArchivalConfig())
    assert dry.jobs_that_would_be_archived == real.jobs_archived > 0
    assert dry.by_queue == real.by_queue
    assert dry.by_queue_status == real.by_queue_status
    assert real.batches >= real.jobs_archived // 700


def test_two_concurrent_runs_archive_each_job_exactly_once(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo_jobs(conn, 100_000)
        conn.commit()
        total = count(conn, "hammerwork_jobs")
    policy = ArchivalPolicy(batch_size=1000)
    dry = archive_jobs(session_for(db_url), None, ArchivalPolicy(dry_run=True), ArchivalConfig())
    eligible = dry.jobs_that_would_be_archived
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(archive_jobs(session_for(db_url), None, policy, ArchivalConfig(), workers=2).jobs_archived)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(results) == eligible
    assert all(r > 0 for r in results), "both runs should have taken part of the work"
    with psycopg.connect(db_url) as conn:
        staged = count(conn, "hammerwork_jobs_archive")
        hot = count(conn, "hammerwork_jobs")
        overlap = count(conn, "hammerwork_jobs h JOIN hammerwork_jobs_archive a USING (id)")
    assert staged == eligible
    assert hot + staged == total
    assert overlap == 0
