"""tiering beside a real Hammerwork: a schema built by Hammerwork v1.15.5's own migrations 001-014 (applied as its
runner does), rows written by Hammerwork's own SQL (tests/hammerwork_sql.py: v1.15.5 enqueue/complete/fail/dead,
`archive_jobs`, `restore_archived_job`, `dequeue`; v1.7.4's enqueue and archive insert with quoted statuses), and
Hammerwork's archiver running while tiering archives and flushes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import hammerwork_sql as hw
from tests.helpers import session_for
from tiering import schema as S
from tiering.db.migrations import migrate
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import preview_purge_operation
from tiering.engine.query import list_archived_jobs
from tiering.engine.restore import restore_archived_job
from tiering.engine.verify import verify_archive
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store import open_store

MIGRATIONS = hw.migrations_dir()
pytestmark = pytest.mark.skipif(
    MIGRATIONS is None,
    reason="Hammerwork's migrations are not here: ../shared/reference/hammerwork-migrations/ (above the repository "
    f"root) or ${hw.MIGRATIONS_ENV} holds Hammerwork v1.15.5's 0NN_*.postgres.sql files",
)

DAY = timedelta(days=1)
NOW = datetime.now(UTC)
OLD = NOW - 30 * DAY
POLICY = ArchivalPolicy(archive_completed_after=DAY, archive_failed_after=DAY, archive_dead_after=DAY,
                        archive_timed_out_after=DAY)  # fmt: skip
CONFIG = ArchivalConfig()
HW_AFTER = {"Completed": DAY, "Failed": DAY, "Dead": DAY, "TimedOut": DAY}


def _with_db(url: str, name: str) -> str:
    head, _, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


_template_lock = threading.Lock()
_template_ready: dict[str, bool] = {}


@pytest.fixture
def hw_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database cloned from one built by Hammerwork's migrations 001-014, then tiering's own."""
    assert MIGRATIONS is not None
    with _template_lock:
        if not _template_ready.get(pg_server_url):
            with psycopg.connect(pg_server_url, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS hammerwork_real_template WITH (FORCE)")
                conn.execute("CREATE DATABASE hammerwork_real_template")
            template = _with_db(pg_server_url, "hammerwork_real_template")
            applied = hw.apply_migrations(template, MIGRATIONS)
            assert applied[0] == "001_initial_schema" and applied[-1] == "014_add_queue_pause" and len(applied) == 14
            with psycopg.connect(template) as conn:
                migrate(conn)
                conn.commit()
            _template_ready[pg_server_url] = True
    name = "hw_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE hammerwork_real_template')
    yield _with_db(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def local(tmp_path: Path) -> tuple[Any, Settings]:
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri())
    return open_store(settings), settings


def _job(queue: str, i: int, **extra: Any) -> hw.HwJob:
    fields: dict[str, Any] = {
        "queue_name": queue,
        "payload": {"order": i, "customer": {"id": f"c{i}", "tier": "pro"}, "note": "x" * (i % 7) * 40},
        "priority": i % 5,
        "max_attempts": 3 + i % 4,
        "created_at": OLD - timedelta(minutes=10 + i),
        "timeout_seconds": 30 + i,
        "cron_schedule": "0 * * * *" if i % 3 == 0 else None,
        "next_run_at": OLD + DAY if i % 3 == 0 else None,
        "recurring": i % 3 == 0,
        "timezone": "UTC" if i % 3 == 0 else None,
        "batch_id": uuid.UUID(int=1000 + i) if i % 2 else None,
        "result_storage": ("Database", "Memory", "None")[i % 3],
        "result_ttl_seconds": 3600 if i % 3 != 2 else None,
        "result_max_size_bytes": 1048576 if i % 2 else None,
        "depends_on": [uuid.UUID(int=5000 + i)] if i % 4 == 0 else [],
        "trace_id": f"trace-{i}",
        "correlation_id": f"corr-{i}",
        "parent_span_id": f"span-{i}" if i % 2 else None,
        "span_context": json.dumps({"i": i}) if i % 2 else None,
    }
    fields.update(extra)
    return hw.HwJob(**fields)


def _finished_jobs(url: str, queue: str, n: int, *, start: int = 0, v174: bool = False) -> dict[uuid.UUID, dict]:
    """n jobs enqueued by Hammerwork and finished by it 30 days ago (Completed, Failed, Dead, TimedOut)."""
    originals: dict[uuid.UUID, dict] = {}
    with psycopg.connect(url) as conn:
        for i in range(start, start + n):
            job = _job(queue, i)
            (hw.enqueue_v174 if v174 else hw.enqueue)(conn, job)
            kind = i % 4
            if v174:
                status = ('"Completed"', '"Failed"', '"Dead"', '"TimedOut"')[kind]
                column = ("completed_at", "failed_at", "failed_at", "timed_out_at")[kind]
                conn.execute(f"UPDATE hammerwork_jobs SET status = %s, {column} = %s WHERE id = %s",  # noqa: S608
                             (status, OLD, job.id))  # fmt: skip
            elif kind == 0:
                hw.complete_job(conn, job.id, OLD)
            elif kind == 1:
                hw.fail_job(conn, job.id, "boom", OLD)
            elif kind == 2:
                hw.mark_job_dead(conn, job.id, "dead", OLD)
            else:
                hw.mark_job_timed_out(conn, job.id, "slow", OLD)
            conn.commit()
            row = hw.hot_row(conn, job.id)
            assert row is not None
            originals[job.id] = row
    return originals


def _places(url: str) -> dict[str, list[str]]:
    """job id -> the places holding it: hot (marked or not), staging, live cold."""
    where: dict[str, list[str]] = {}
    with psycopg.connect(url) as conn:
        for (jid, marked) in conn.execute("SELECT id, archived_at IS NOT NULL FROM hammerwork_jobs"):
            where.setdefault(str(jid), []).append("hot-marked" if marked else "hot")
        for (jid,) in conn.execute("SELECT id FROM hammerwork_jobs_archive"):
            where.setdefault(str(jid), []).append("staging")
        for (jid,) in conn.execute(
            """SELECT x.job_id FROM tiering_job_index x JOIN tiering_manifest m ON m.id = x.object_id
                WHERE x.restored_at IS NULL AND m.state = 'committed'"""
        ):
            where.setdefault(str(jid), []).append("cold")
    return where


def _assert_one_place(url: str, ids: set[uuid.UUID], place: str | None = None) -> None:
    places = _places(url)
    for jid in ids:
        got = places.get(str(jid), [])
        assert len(got) == 1, (jid, got)
        if place is not None:
            assert got == [place], (jid, got)


def _cold_statuses(store: Any, url: str) -> list[str]:
    statuses: list[str] = []
    with psycopg.connect(url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed'")]
    for key in keys:
        table = pq.read_table(pa.BufferReader(store.get_bytes(key)), columns=["status"])
        statuses += table.column("status").to_pylist()
    return statuses


def test_schema_is_hammerworks_own(hw_url: str) -> None:
    with psycopg.connect(hw_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT migration_id FROM hammerwork_migrations ORDER BY migration_id")]
        cols = {t: [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (t,))] for t in ("hammerwork_jobs", "hammerwork_jobs_archive")}  # fmt: skip
        tiering_versions = [r[0] for r in conn.execute("SELECT version FROM tiering_schema_migrations")]
    assert len(ids) == 14 and ids[0] == "001_initial_schema" and ids[-1] == "014_add_queue_pause"
    assert len(cols["hammerwork_jobs"]) == 50 and len(cols["hammerwork_jobs_archive"]) == 49
    assert sorted(cols["hammerwork_jobs_archive"]) == sorted(c.name for c in S.COLUMNS)  # the registry = its table
    assert tiering_versions  # tiering's own migrations beside Hammerwork's, tracked apart


# --- case 1: both archivers at once ---------------------------------------------------------------------------


def test_both_archivers_interleaved_never_wedge(hw_url: str, local: tuple[Any, Settings]) -> None:
    """Hammerwork's archive_jobs selects candidates; meanwhile tiering archives and flushes them; then Hammerwork
    commits its INSERTs. Every later run and flush succeeds, other queues' jobs go cold, every job ends in one
    place, the settled duplicates are recorded, and verify is clean."""
    store, settings = local
    a = _finished_jobs(hw_url, "alpha", 12)
    b = _finished_jobs(hw_url, "beta", 8, start=100)

    hammerwork = psycopg.connect(hw_url)
    try:
        candidates = hw.archive_select(hammerwork, HW_AFTER, 1000, "alpha", NOW)  # Hammerwork's tx, no locks
        assert {r["id"] for r in candidates} == set(a)
        archive_jobs(session_for(hw_url), "alpha", POLICY, CONFIG, "automatic", "tiering")
        first = flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
        assert first.jobs_flushed == 12
        hw.archive_insert(hammerwork, candidates, archived_by="hammerwork", now=NOW)  # the late INSERTs
        hammerwork.commit()
    finally:
        hammerwork.close()
    assert {tuple(sorted(p)) for p in _places(hw_url).values()} == {("hot",), ("cold", "staging")}

    # beta goes to staging; dups settled
    archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
    flushed = flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
    assert flushed.jobs_flushed == 8
    _assert_one_place(hw_url, set(a) | set(b), "cold")
    report = verify_archive(session_for(hw_url, store, settings), deep=True)
    assert report.ok, report.to_dict()


def test_flush_settles_staged_duplicates_and_records_both_copies(hw_url: str, local: tuple[Any, Settings]) -> None:
    """The same interleaving, then a flush on its own: the duplicate staged rows are dropped (the cold copy
    wins), the flush does not fail, and the audit record names each job with the object kept."""
    store, settings = local
    a = _finished_jobs(hw_url, "alpha", 6)
    with psycopg.connect(hw_url) as hammerwork:
        candidates = hw.archive_select(hammerwork, HW_AFTER, 1000, None, NOW)
        archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
        flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
        hw.archive_insert(hammerwork, candidates, archived_by="hammerwork", now=NOW)
        hammerwork.commit()
    b = _finished_jobs(hw_url, "beta", 4, start=50)
    # other queue staged beside the dups
    archive_jobs(session_for(hw_url), "beta", POLICY, CONFIG, "automatic", "tiering")

    stats = flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)

    assert stats.jobs_flushed == 4
    assert {d["job_id"] for d in stats.duplicates_settled} == {str(j) for j in a}
    assert all(d["kept"].endswith(".parquet") and d["staged_archived_by"] == "hammerwork"
               for d in stats.duplicates_settled)  # fmt: skip
    with psycopg.connect(hw_url) as conn:
        counts = conn.execute(
            "SELECT counts FROM tiering_operations WHERE id = %s", (stats.operation_id,)
        ).fetchone()[0]
    assert counts["duplicates_settled"] == 6 and {d["job_id"] for d in counts["duplicates"]} == {str(j) for j in a}
    _assert_one_place(hw_url, set(a) | set(b), "cold")


def test_a_duplicate_staged_after_the_flush_settled_is_settled_at_commit(
    hw_url: str, local: tuple[Any, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hammerwork's late INSERT can land between the flush's settling and its claim: the commit refuses that row
    (the job is live cold), the flush settles it (recorded, not quarantined) and commits the rest."""
    import tiering.engine.flush as flush_mod
    from tiering.engine.archive import Settled

    store, settings = local
    a = _finished_jobs(hw_url, "alpha", 5)
    with psycopg.connect(hw_url) as hammerwork:
        candidates = hw.archive_select(hammerwork, HW_AFTER, 1000, None, NOW)
        archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
        flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
        hw.archive_insert(hammerwork, candidates, archived_by="hammerwork", now=NOW)
        hammerwork.commit()
    b = _finished_jobs(hw_url, "alpha", 3, start=40)
    # beside the 5 duplicates: 3 new jobs
    archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
    with psycopg.connect(hw_url) as conn:  # make them the 5 duplicates again (the run settled them)
        hw.archive_insert(conn, candidates, archived_by="hammerwork", now=NOW)
        conn.commit()
    real = flush_mod.settle_two_places
    calls = []

    def late(url: str, queue: str | None, batch_size: int = 1000) -> Settled:
        calls.append(url)
        return Settled() if len(calls) == 1 else real(url, queue, batch_size)  # the INSERT lands after this

    monkeypatch.setattr(flush_mod, "settle_two_places", late)
    stats = flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)

    assert stats.jobs_flushed == 3 and stats.quarantined == []
    assert {d["job_id"] for d in stats.duplicates_settled} == {str(j) for j in a}
    with psycopg.connect(hw_url) as conn:
        assert conn.execute("SELECT count(*) FROM tiering_quarantine").fetchone() == (0,)
    _assert_one_place(hw_url, set(a) | set(b), "cold")
    assert verify_archive(session_for(hw_url, store, settings), deep=True).ok


# --- case 2: flush alone settles Hammerwork-marked hot copies ---------------------------------------------------


def test_flush_alone_settles_hammerwork_marked_hot_copies(hw_url: str, local: tuple[Any, Settings]) -> None:
    store, settings = local
    jobs = _finished_jobs(hw_url, "q", 10)
    assert hw.archive_jobs(hw_url, HW_AFTER, archived_by="hammerwork", now=NOW) == 10  # copies + marks
    assert {tuple(p) for p in _places(hw_url).values()} == {("hot-marked", "staging")}

    stats = flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)  # the scheduler's flush window, alone

    _assert_one_place(hw_url, set(jobs), "cold")
    assert stats.jobs_flushed == 10 and stats.hot_copies_settled == 10
    assert verify_archive(session_for(hw_url, store, settings), deep=True).ok


def test_verify_reports_and_repairs_jobs_in_two_places(hw_url: str, local: tuple[Any, Settings]) -> None:
    """hot (Hammerwork-marked) + cold and staged + cold, as a tiering without settling left them: verify names
    each job, --repair settles them (the cold copy wins), and a second verify is clean."""
    store, settings = local
    jobs = _finished_jobs(hw_url, "q", 6)
    archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
    flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
    hot_dup, staged_dup = list(jobs)[:2], list(jobs)[2:4]
    with psycopg.connect(hw_url) as conn:
        for jid in hot_dup:  # Hammerwork's hot copy, left marked by its archiver
            row = jobs[jid]
            hw.enqueue(conn, _job("q", 0, id=jid, created_at=row["created_at"]))
            conn.execute("UPDATE hammerwork_jobs SET archived_at = %s, archival_reason = 'Automatic' WHERE id = %s",
                         (NOW, jid))  # fmt: skip
        hw.archive_insert(conn, [jobs[j] for j in staged_dup], archived_by="hammerwork", now=NOW)  # late INSERTs
        conn.commit()

    report = verify_archive(session_for(hw_url, store, settings))
    kinds = {(p.kind, p.key) for p in report.problems}
    assert not report.ok
    assert kinds == {("hot_and_cold", str(j)) for j in hot_dup} | {("staged_and_cold", str(j)) for j in staged_dup}

    repaired = verify_archive(session_for(hw_url, store, settings), repair=True)
    assert repaired.ok and all(p.repaired for p in repaired.problems) and len(repaired.problems) == 4
    assert verify_archive(session_for(hw_url, store, settings), deep=True).problems == []
    _assert_one_place(hw_url, set(jobs), "cold")


# --- case 3: legacy statuses in rows of Hammerwork v1.7.4 -----------------------------------------------------


def test_legacy_quoted_statuses_reach_the_cold_tier_bare(hw_url: str, local: tuple[Any, Settings]) -> None:
    """v1.7.4 hot rows and v1.7.4 archive rows carry `"Completed"`; the cold tier holds bare statuses only, and
    list and purge agree on how many jobs are Completed."""
    store, settings = local
    legacy_hot = _finished_jobs(hw_url, "legacy", 8, v174=True)
    legacy_staged = _finished_jobs(hw_url, "legacy", 8, start=20)
    with psycopg.connect(hw_url) as conn:
        rows = [legacy_staged[j] for j in legacy_staged]
        hw.archive_insert(conn, rows, legacy_v174=True, archived_by="hammerwork-1.7.4", now=NOW - DAY)
        conn.commit()
        quoted = conn.execute("SELECT count(*) FROM hammerwork_jobs_archive WHERE status LIKE '\"%%'").fetchone()
    assert quoted == (8,)
    archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
    flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)

    statuses = _cold_statuses(store, hw_url)
    assert len(statuses) == 16 and set(statuses) == {"Completed", "Failed", "Dead", "TimedOut"}
    with psycopg.connect(hw_url) as conn:
        indexed = {r[0] for r in conn.execute("SELECT DISTINCT status FROM tiering_job_index")}
        manifest = {s for r in conn.execute("SELECT statuses FROM tiering_manifest") for s in r[0]}
    assert indexed == manifest == {"Completed", "Failed", "Dead", "TimedOut"}
    listed = list_archived_jobs(session_for(hw_url), status="Completed", limit=100).total
    preview = preview_purge_operation(session_for(hw_url, store, settings), NOW + DAY, status="Completed")
    assert listed == preview.jobs_to_purge == 4
    with psycopg.connect(hw_url) as conn:  # what objects flushed by earlier tiering builds left in the index
        conn.execute("""UPDATE tiering_job_index SET status = '"' || status || '"'
                         WHERE job_id = ANY(%s) AND status = 'Completed'""", (list(legacy_staged),))  # fmt: skip
        conn.commit()
    page = list_archived_jobs(session_for(hw_url), status="Completed", limit=100)
    preview = preview_purge_operation(session_for(hw_url, store, settings), NOW + DAY, status="Completed")
    assert page.total == preview.jobs_to_purge
    assert page.total == 4 and {j.status for j in page.items} == {"Completed"}
    _assert_one_place(hw_url, set(legacy_hot) | set(legacy_staged), "cold")


# --- case 4: every staged row is readable by Hammerwork's own restore -----------------------------------------


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_staged_rows_are_readable_by_hammerworks_restore(hw_url: str, codec: str) -> None:
    originals = _finished_jobs(hw_url, "q", 12)
    config = ArchivalConfig(payload_codec=codec, min_payload_size_for_compression=16)
    archive_jobs(session_for(hw_url), None, POLICY, config, "automatic", "tiering")
    with psycopg.connect(hw_url) as conn:
        flags = {r[0] for r in conn.execute("SELECT payload_compressed FROM hammerwork_jobs_archive")}
        configs = [r[0] for r in conn.execute("SELECT result_config FROM hammerwork_jobs_archive")]
    assert flags == ({True, False} if codec == "gzip" else {False})
    assert all(set(c) == {"storage", "ttl", "max_size_bytes"} for c in configs)
    for jid, original in originals.items():
        restored = hw.restore_archived_job(hw_url, jid)  # raises on a payload Hammerwork cannot read
        assert not restored.result_config_fell_back, jid
        with psycopg.connect(hw_url) as conn:
            row = hw.hot_row(conn, jid)
        assert row is not None
        for name in hw.KEPT_ON_RESTORE:
            assert row[name] == original[name], (name, row[name], original[name])


# --- case 5: a restored job is one Hammerwork's dequeue picks up ----------------------------------------------


@pytest.mark.parametrize("tier", ["staging", "cold"])
def test_restored_jobs_run_again_and_keep_their_columns(
    hw_url: str, local: tuple[Any, Settings], tier: str
) -> None:
    store, settings = local
    originals = _finished_jobs(hw_url, "work", 8)
    with psycopg.connect(hw_url) as conn:  # their dependencies failed before they died (fail_job_dependencies)
        hw.fail_job_dependencies(conn, list(originals))
        conn.commit()
        originals = {j: hw.hot_row(conn, j) for j in originals}  # type: ignore[misc]
    assert {r["dependency_status"] for r in originals.values()} == {"failed"}
    archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
    if tier == "cold":
        assert flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG).jobs_flushed == 8
    for jid in originals:
        assert restore_archived_job(session_for(hw_url, store, settings), jid).source == tier
    with psycopg.connect(hw_url) as conn:
        for jid, original in originals.items():
            row = hw.hot_row(conn, jid)
            assert row is not None and row["status"] == "Pending" and row["attempts"] == 0
            assert row["dependency_status"] == "none"  # as Hammerwork's own restore leaves it
            for name in hw.KEPT_ON_RESTORE:
                assert row[name] == original[name], (name, row[name], original[name])
        picked = set()
        while (jid := hw.dequeue(conn, "work")) is not None:
            picked.add(jid)
        conn.commit()
    assert picked == set(originals)


# --- the column registry: a new Hammerwork column flows through every tier --------------------------------------


def test_a_new_hammerwork_column_flows_hot_staging_parquet_restore(hw_url: str, local: tuple[Any, Settings]) -> None:
    store, settings = local
    with psycopg.connect(hw_url) as conn:  # Hammerwork's DDL for a column it adds to both tables
        conn.execute("ALTER TABLE hammerwork_jobs ADD COLUMN IF NOT EXISTS tenant_code VARCHAR(32)")
        conn.execute("ALTER TABLE hammerwork_jobs_archive ADD COLUMN IF NOT EXISTS tenant_code VARCHAR(32)")
        conn.commit()
    jobs = _finished_jobs(hw_url, "t", 4)
    with psycopg.connect(hw_url) as conn:
        for i, jid in enumerate(jobs):
            conn.execute("UPDATE hammerwork_jobs SET tenant_code = %s WHERE id = %s", (f"tenant-{i}", jid))
        conn.commit()
    expected = {str(j): f"tenant-{i}" for i, j in enumerate(jobs)}
    tenant = S.Column("tenant_code", pa.string(), True, "varchar(32)", "Tenant of the job.", "job")  # one line
    with S.extra_columns(tenant):
        archive_jobs(session_for(hw_url), None, POLICY, CONFIG, "automatic", "tiering")
        with psycopg.connect(hw_url) as conn:
            staged = {str(r[0]): r[1] for r in conn.execute("SELECT id, tenant_code FROM hammerwork_jobs_archive")}
        assert staged == expected
        flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
        with psycopg.connect(hw_url) as conn:
            key = conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed'").fetchone()[0]
        table = pq.read_table(pa.BufferReader(store.get_bytes(key)))
        assert table.schema.field("tenant_code").type == pa.string()
        cold = dict(zip(table.column("id").to_pylist(), table.column("tenant_code").to_pylist(), strict=True))
        assert cold == expected
        jid = next(iter(jobs))
        restore_archived_job(session_for(hw_url, store, settings), jid)
        with psycopg.connect(hw_url) as conn:
            row = hw.hot_row(conn, jid)
        assert row is not None and row["tenant_code"] == expected[str(jid)]
    assert "tenant_code" not in S.ARCHIVE_SCHEMA.names


def test_archive_rows_with_migration_defaults_flush(hw_url: str, local: tuple[Any, Settings]) -> None:
    """An archive row that leaves priority and priority_weight to migration 010's defaults ('Normal', NULL)
    reaches Parquet as tiering's own rows do (lower-case word, its weight) instead of failing the flush."""
    store, settings = local
    jid = uuid.uuid4()
    with psycopg.connect(hw_url) as conn:
        conn.execute(
            """INSERT INTO hammerwork_jobs_archive (id, queue_name, payload, payload_compressed, status, created_at,
                                                    scheduled_at, completed_at)
               VALUES (%s, 'defaults', %s, false, 'Completed', %s, %s, %s)""",
            (jid, b'{"a":1}', OLD, OLD, OLD),
        )
        conn.commit()
    assert flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG).jobs_flushed == 1
    with psycopg.connect(hw_url) as conn:
        key = conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed'").fetchone()[0]
    row = pq.read_table(pa.BufferReader(store.get_bytes(key))).to_pylist()[0]
    assert (row["id"], row["priority"], row["priority_weight"], row["payload"]) == (str(jid), "normal", 5, '{"a":1}')
    restore_archived_job(session_for(hw_url, store, settings), jid)
    with psycopg.connect(hw_url) as conn:
        hot = hw.hot_row(conn, jid)
    assert hot is not None and hot["priority"] == 2 and hot["payload"] == {"a": 1}


def test_restore_settles_the_hot_copy_hammerwork_only_marked(hw_url: str, local: tuple[Any, Settings]) -> None:
    """A job Hammerwork's archiver copied (its hot row only marked) restores from its archive copy, staged or
    cold, in one step: the marked hot copy goes, the job comes back Pending and unmarked, in one place."""
    from tiering.engine.restore import restore_archived_jobs

    store, settings = local
    jobs = _finished_jobs(hw_url, "m", 6)
    assert hw.archive_jobs(hw_url, HW_AFTER, archived_by="hammerwork", now=NOW) == 6
    first, *rest = list(jobs)
    assert restore_archived_job(session_for(hw_url, store, settings), first).source == "staging"
    bulk = restore_archived_jobs(session_for(hw_url, store, settings), queue="m", count=2)
    assert bulk.restored == 2 and not bulk.skipped
    cold_one = next(j for j in rest if j not in {uuid.UUID(x.job_id) for x in bulk.jobs})
    # the other 3 go cold (their marked copies settled)
    flush_staged(session_for(hw_url, store, settings), POLICY, CONFIG)
    with psycopg.connect(hw_url) as conn:  # a marked hot copy beside a cold job, as a Hammerwork run leaves it
        hw.enqueue(conn, _job("m", 0, id=cold_one, created_at=jobs[cold_one]["created_at"]))
        conn.execute("UPDATE hammerwork_jobs SET archived_at = %s WHERE id = %s", (NOW, cold_one))
        conn.commit()
    assert restore_archived_job(session_for(hw_url, store, settings), cold_one).source == "cold"
    restored = {first, cold_one} | {uuid.UUID(x.job_id) for x in bulk.jobs}
    with psycopg.connect(hw_url) as conn:
        for jid in restored:
            row = hw.hot_row(conn, jid)
            assert row is not None and row["status"] == "Pending" and row["archived_at"] is None
            assert row["payload"] == jobs[jid]["payload"]
    _assert_one_place(hw_url, restored, "hot")
    _assert_one_place(hw_url, set(jobs) - restored, "cold")
