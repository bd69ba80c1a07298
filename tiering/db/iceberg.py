"""The Iceberg SQL catalog in tiering's own PostgreSQL (pyiceberg's SqlCatalog: the JDBC catalog's tables
`iceberg_tables` and `iceberg_namespace_properties`, so Trino and Spark attach to the same catalog).

Only opened when the Iceberg table is enabled: nothing is created in the database otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from tiering.db.operations import Connections
from tiering.errors import ConfigError

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog

CATALOG_NAME = "tiering"


def sqlalchemy_url(database_url: str) -> str:
    """The libpq URL as SQLAlchemy's psycopg (3) dialect spells it (no psycopg2 needed)."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


def open_catalog(database_url: str, warehouse: str, *, create_tables: bool, **properties: Any) -> SqlCatalog:
    """The SQL catalog named `tiering`. Its two tables are created only when `create_tables` (the caller holds the
    creation lock: concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog)."""
    try:
        from pyiceberg.catalog.sql import SqlCatalog
    except ImportError as exc:
        raise ConfigError(f"the Iceberg table needs pyiceberg: pip install 'tiering[iceberg]' ({exc})") from None
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("the Iceberg SQL catalog needs a postgresql:// database URL, not a key=value string")
    return SqlCatalog(
        CATALOG_NAME,
        uri=sqlalchemy_url(database_url),
        warehouse=warehouse,
        init_catalog_tables="true" if create_tables else "false",
        **properties,
    )


def catalog_tables_exist(conn: psycopg.Connection) -> bool:
    """Whether the SQL catalog's tables (the JDBC catalog's layout) are in this database."""
    row = conn.execute(
        "SELECT to_regclass('iceberg_tables') IS NOT NULL AND to_regclass('iceberg_namespace_properties') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


PUBLISH_LOCK_KEY = "tiering:iceberg"
CREATE_LOCK_KEY = "tiering:iceberg:create"


@contextmanager
def _advisory_lock(db: Connections, key: str) -> Iterator[None]:
    with db.connection(autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


@contextmanager
def publish_lock(db: Connections) -> Iterator[None]:
    """One tiering process at a time reads the table, computes and commits a snapshot: pyiceberg 0.12's SQL catalog
    let concurrent appends from one base snapshot all commit (each file added once per writer)."""
    with _advisory_lock(db, PUBLISH_LOCK_KEY):
        yield


@contextmanager
def create_lock(db: Connections) -> Iterator[None]:
    """One tiering process at a time creates the catalog's tables, the namespace and the table, or evolves its
    schema (whatever the catalog: the lock is in tiering's own database). A separate key from the publish lock:
    a reconcile holding that one opens the table."""
    with _advisory_lock(db, CREATE_LOCK_KEY):
        yield


def restored_rows(conn: psycopg.Connection, bucket: str) -> dict[str, list[tuple[int, int]]]:
    """Object key -> (row group, row in group) of the jobs restored out of it, for the committed objects of one
    bucket (the partial index on restored rows: no scan of the job index)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for key, groups, rows in conn.execute(
        """SELECT m.key, array_agg(x.row_group ORDER BY x.row_group, x.row_in_group),
                  array_agg(x.row_in_group ORDER BY x.row_group, x.row_in_group)
             FROM tiering_job_index x JOIN tiering_manifest m ON m.id = x.object_id
            WHERE x.restored_at IS NOT NULL AND m.state = 'committed' AND m.bucket = %s
            GROUP BY m.key""",
        (bucket,),
    ).fetchall():
        found[str(key)] = list(zip(groups, rows, strict=True))
    return found
