"""Applies tiering/sql in order, tracked in tiering_schema_migrations (never hammerwork_migrations).

The SQL files are package data, read with importlib.resources: they ship inside the wheel."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from importlib.resources.abc import Traversable

import psycopg

SQL_DIR: Traversable = files("tiering") / "sql"
HAMMERWORK_DIR: Traversable = SQL_DIR / "hammerwork"
_MIGRATION_NAME = re.compile(r"^[0-9]{4}_.*\.sql$")
_LOCK_KEY = 0x7469657269  # "tieri": serialises concurrent migrators

_TRACKING = """
CREATE TABLE IF NOT EXISTS tiering_schema_migrations (
    version TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class Migration:
    """One numbered SQL file: `stem` is its version (0001_core)."""

    def __init__(self, resource: Traversable) -> None:
        self.resource = resource
        self.name = resource.name
        self.stem = resource.name.removesuffix(".sql")

    def read_text(self) -> str:
        return self.resource.read_text(encoding="utf-8")


def migration_files() -> list[Migration]:
    found = [Migration(r) for r in SQL_DIR.iterdir() if r.is_file() and _MIGRATION_NAME.match(r.name)]
    return sorted(found, key=lambda m: m.name)


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def ensure_hammerwork_tables(conn: psycopg.Connection) -> list[str]:
    """Create the Hammerwork tables only where absent; a real Hammerwork database is left as it is."""
    created = []
    for table in ("hammerwork_jobs", "hammerwork_jobs_archive"):
        if not _table_exists(conn, table):
            conn.execute((HAMMERWORK_DIR / f"{table}.sql").read_text(encoding="utf-8").encode())
            created.append(table)
    return created


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        ensure_hammerwork_tables(conn)
        conn.execute(_TRACKING)
        done = {row[0]: row[1] for row in conn.execute("SELECT version, checksum FROM tiering_schema_migrations")}
        for path in migration_files():
            version = path.stem
            text = path.read_text()
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                continue
            conn.execute(text.encode())
            conn.execute(
                "INSERT INTO tiering_schema_migrations (version, checksum) VALUES (%s, %s)",
                (version, checksum),
            )
            applied_now.append(version)
    return applied_now
