"""SQL of the manifest (tiering_manifest) and the job index (tiering_job_index)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

MANIFEST_COLUMNS = (
    "id, flush_id, bucket, key, queue_name, queue_slug, partition_date, row_count, row_groups, bytes, "
    "uncompressed_bytes, payload_original_bytes, min_created_at, max_created_at, min_archived_at, max_archived_at, "
    "statuses, storage_class, checksum_sha256, etag, encryption, kms_key_id, schema_version, state, replaces_id, "
    "created_at, committed_at, purged_at, restore_requested_at"
)


@dataclass(frozen=True)
class ManifestRow:
    id: int
    flush_id: uuid.UUID
    bucket: str
    key: str
    queue_name: str
    queue_slug: str
    partition_date: date
    row_count: int
    row_groups: int
    bytes: int
    uncompressed_bytes: int
    payload_original_bytes: int
    min_created_at: datetime | None
    max_created_at: datetime | None
    min_archived_at: datetime | None
    max_archived_at: datetime | None
    statuses: list[str]
    storage_class: str
    checksum_sha256: str | None
    etag: str | None
    encryption: str | None
    kms_key_id: str | None
    schema_version: int
    state: str
    replaces_id: int | None
    created_at: datetime
    committed_at: datetime | None
    purged_at: datetime | None
    restore_requested_at: datetime | None


def lock_flush(conn: psycopg.Connection, flush_id: uuid.UUID) -> None:
    """Held (session level) for as long as the flush runs: a pending row whose lock is free is abandoned."""
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s::text, 0))", (str(flush_id),))


def unlock_flush(conn: psycopg.Connection, flush_id: uuid.UUID) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s::text, 0))", (str(flush_id),))


def insert_pending(conn: psycopg.Connection, values: dict[str, Any]) -> int:
    names = list(values)
    query = "INSERT INTO tiering_manifest ({}) VALUES ({}) RETURNING id".format(  # noqa: S608 - column names are ours
        ", ".join(names), ", ".join(f"%({n})s" for n in names)
    )
    row = conn.execute(query.encode(), values).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def update_upload(conn: psycopg.Connection, manifest_id: int, values: dict[str, Any]) -> None:
    sets = ", ".join(f"{n} = %({n})s" for n in values)
    conn.execute(
        f"UPDATE tiering_manifest SET {sets} WHERE id = %(id)s".encode(),  # type: ignore[arg-type]  # noqa: S608
        {**values, "id": manifest_id},
    )


def abandoned_pending(conn: psycopg.Connection) -> list[ManifestRow]:
    """Pending rows whose flusher is gone (its advisory lock is free): their objects are orphans.

    The try-lock is released right away; two recoverers may both see a row, and deleting twice is harmless.
    """
    rows = conn.execute(
        f"""SELECT {MANIFEST_COLUMNS} FROM tiering_manifest m
             WHERE state = 'pending'
               AND pg_try_advisory_lock(hashtextextended(m.flush_id::text, 0))"""  # noqa: S608
    ).fetchall()
    for row in rows:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s::text, 0))", (str(row[1]),))
    return [ManifestRow(*r) for r in rows]


def delete_pending(conn: psycopg.Connection, manifest_id: int) -> None:
    conn.execute("DELETE FROM tiering_manifest WHERE id = %s AND state = 'pending'", (manifest_id,))


def quarantine(conn: psycopg.Connection, rows: list[tuple[str, str, str]], operation_id: int | None) -> None:
    """Record (job id, queue, reason) of staged jobs whose payload cannot be decoded."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO tiering_quarantine (job_id, queue_name, reason, flush_operation_id)
               VALUES (%s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING""",
            [(job_id, queue, reason, operation_id) for job_id, queue, reason in rows],
        )


# Committed objects that may hold jobs matching the filters, pruned by the manifest's min/max columns.
COMMITTED_WHERE = """state = 'committed'
               AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
               AND (%(aa)s::timestamptz IS NULL OR max_archived_at >= %(aa)s)
               AND (%(ab)s::timestamptz IS NULL OR min_archived_at < %(ab)s)
               AND (%(ca)s::timestamptz IS NULL OR max_created_at >= %(ca)s)
               AND (%(cb)s::timestamptz IS NULL OR min_created_at < %(cb)s)
               AND (%(statuses)s::text[] IS NULL OR statuses && %(statuses)s)"""
COMMITTED_ORDER = "queue_name, partition_date, id"


def committed_params(
    *,
    queue: str | None = None,
    archived_after: datetime | None = None,
    archived_before: datetime | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    statuses: list[str] | None = None,
) -> dict[str, Any]:
    """The parameters of COMMITTED_WHERE, named as the job filters' (db/query.py Filters.params) so one dict
    serves a query over the manifest, staging and the job index together."""
    return {
        "queue": queue,
        "statuses": statuses,
        "aa": archived_after,
        "ab": archived_before,
        "ca": created_after,
        "cb": created_before,
    }


def committed_objects(conn: psycopg.Connection, params: dict[str, Any]) -> list[ManifestRow]:
    """Committed objects that may hold matching jobs, pruned by the manifest's min/max columns. `params` are
    COMMITTED_WHERE's: committed_params(...), or the job filters' own (db/query.py Filters.params)."""
    rows = conn.execute(
        f"SELECT {MANIFEST_COLUMNS} FROM tiering_manifest WHERE {COMMITTED_WHERE} ORDER BY {COMMITTED_ORDER}",  # noqa: S608
        params,
    ).fetchall()
    return [ManifestRow(*r) for r in rows]


def manifest_rows(conn: psycopg.Connection, *, states: tuple[str, ...] = ("committed",)) -> list[ManifestRow]:
    rows = conn.execute(
        f"SELECT {MANIFEST_COLUMNS} FROM tiering_manifest WHERE state = ANY(%s) ORDER BY id",  # noqa: S608
        (list(states),),
    ).fetchall()
    return [ManifestRow(*r) for r in rows]


def adopt_unnamed_bucket(conn: psycopg.Connection, bucket: str) -> int:
    """Rows written by local stores before they recorded their root (bucket '') now name it; returns how many."""
    cur = conn.execute("UPDATE tiering_manifest SET bucket = %s WHERE bucket = ''", (bucket,))
    return cur.rowcount


def superseded_copies(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(bucket, key, job_id) of rows in committed objects that are not the job's current archived copy:
    the job was restored (and maybe archived again into a newer object)."""
    return [
        (str(b), str(k), str(j))
        for b, k, j in conn.execute(
            """SELECT m.bucket, m.key, x.job_id::text
                 FROM tiering_job_index x JOIN tiering_manifest m ON m.id = x.object_id AND m.state = 'committed'
                WHERE x.restored_at IS NOT NULL
                ORDER BY m.key, x.job_id"""
        ).fetchall()
    ]


# Whether analysts use the listing of a store (see migration 0005); a restore's first look asks it too.
LISTING_PUBLISHED_SQL = "EXISTS (SELECT 1 FROM tiering_analyst_listing WHERE store_uri = %(store_uri)s)"


def listing_published(conn: psycopg.Connection, store_uri: str) -> bool:
    """Whether analysts use the listing of this store (see migration 0005)."""
    row = conn.execute(f"SELECT {LISTING_PUBLISHED_SQL}", {"store_uri": store_uri}).fetchone()  # noqa: S608
    return bool(row and row[0])


def mark_listing_published(conn: psycopg.Connection, store_uri: str) -> None:
    conn.execute(
        """INSERT INTO tiering_analyst_listing (store_uri) VALUES (%s)
           ON CONFLICT (store_uri) DO UPDATE SET published_at = now()""",
        (store_uri,),
    )
