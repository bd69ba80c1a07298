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


def open_catalog(database_url: str, warehouse: str, **properties: Any) -> SqlCatalog:
    """The catalog named `tiering`; its tables are created on first use (CREATE TABLE IF NOT EXISTS)."""
    try:
        from pyiceberg.catalog.sql import SqlCatalog
    except ImportError as exc:
        raise ConfigError(f"the Iceberg table needs pyiceberg: pip install 'tiering[iceberg]' ({exc})") from None
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("the Iceberg SQL catalog needs a postgresql:// database URL, not a key=value string")

    return SqlCatalog(CATALOG_NAME, uri=sqlalchemy_url(database_url), warehouse=warehouse, **properties)


PUBLISH_LOCK_KEY = "tiering:iceberg"


@contextmanager
def publish_lock(db: Connections) -> Iterator[None]:
    """One tiering process at a time reads the table, computes and commits a snapshot: pyiceberg 0.12's SQL catalog
    let concurrent appends from one base snapshot all commit (each file added once per writer)."""
    with db.connection(autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (PUBLISH_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (PUBLISH_LOCK_KEY,))


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
