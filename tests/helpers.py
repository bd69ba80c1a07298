"""Test helpers: insert Hammerwork jobs exactly as Hammerwork would store them."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

NOW = datetime.now(UTC)


def insert_job(
    conn: psycopg.Connection,
    *,
    queue: str = "default",
    status: str = "Completed",
    age: timedelta = timedelta(days=60),
    payload: Any = None,
    priority: int = 2,
    job_id: uuid.UUID | None = None,
    **extra: Any,
) -> uuid.UUID:
    """One hot job whose finishing timestamp (per its status) lies `age` in the past."""
    job_id = job_id or uuid.uuid4()
    finished = NOW - age
    plain = status.strip('"')
    cols: dict[str, Any] = {
        "id": job_id,
        "queue_name": queue,
        "payload": Jsonb(payload if payload is not None else {"job": str(job_id), "n": 1}),
        "status": status,
        "priority": priority,
        "created_at": finished - timedelta(minutes=10),
        "scheduled_at": finished - timedelta(minutes=10),
        "completed_at": finished if plain == "Completed" else None,
        "failed_at": finished if plain in ("Failed", "Dead") else None,
        "timed_out_at": finished if plain == "TimedOut" else None,
    }
    cols.update(extra)
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    conn.execute(f"INSERT INTO hammerwork_jobs ({names}) VALUES ({marks})", list(cols.values()))
    return job_id


def hammerwork_archive_copy(conn: psycopg.Connection, job_id: uuid.UUID, *, gzip_level: int = 6) -> bytes:
    """What Hammerwork's own archiver does: copy into the archive (compact JSON, gzip if smaller) and MARK
    the hot row archived instead of deleting it."""
    row = conn.execute("SELECT payload, queue_name, status FROM hammerwork_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    compact = json.dumps(row[0], separators=(",", ":")).encode()
    packed = gzip.compress(compact, compresslevel=gzip_level)
    stored, compressed = (packed, True) if len(packed) < len(compact) else (compact, False)
    conn.execute(
        """INSERT INTO hammerwork_jobs_archive (id, queue_name, payload, payload_compressed, original_payload_size,
               status, priority, priority_weight, attempts, max_attempts, created_at, scheduled_at, completed_at,
               failed_at, archival_reason, archived_by)
           SELECT id, queue_name, %s, %s, %s, status, 'normal', 5, attempts, max_attempts, created_at, scheduled_at,
                  completed_at, failed_at, 'Automatic', 'hammerwork'
             FROM hammerwork_jobs WHERE id = %s""",
        (stored, compressed, len(compact), job_id),
    )
    conn.execute(
        "UPDATE hammerwork_jobs SET archived_at = now(), archival_reason = 'Automatic' WHERE id = %s", (job_id,)
    )
    return compact


def count(conn: psycopg.Connection, table: str, where: str = "TRUE", params: Any = None) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
    assert row is not None
    return int(row[0])


# --- archive sessions -------------------------------------------------------------------------------

_SESSIONS: dict[tuple[str, int, int], tuple[Any, Any, Any]] = {}


def session_for(url: str, store: Any = None, settings: Any = None) -> Any:
    """The archive session of (database, store, settings), shared within one test and closed after it
    (tests.fixtures_pg closes them); `store`/`settings` default to what Settings() opens."""
    from tiering.context import Session
    from tiering.settings import Settings

    key = (url, id(store), id(settings))
    found = _SESSIONS.get(key)
    if found is None:
        session = Session(settings or Settings(database_url=url), database_url=url, store=store)
        found = _SESSIONS[key] = (session, store, settings)  # store/settings kept alive: their ids stay unique
    return found[0]


def close_sessions() -> None:
    while _SESSIONS:
        _, (session, _, _) = _SESSIONS.popitem()
        session.close()
