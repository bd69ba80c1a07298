"""The service's own SQL (schedule windows, background tasks, trend and metrics queries), kept in one place.

Everything is parameterized; table names are constants.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tiering.db.operations import Connections
from tiering.jsonable import to_jsonable

# pg_try_advisory_lock(classid, objid): classid namespaces tiering's scheduler locks.
SCHEDULE_LOCK_CLASS = 0x74696572  # "tier"


def json_param(value: Any) -> Jsonb:
    return Jsonb(to_jsonable(value))


# ------------------------------------------------------------------ schedule windows


def try_task_lock(conn: psycopg.Connection, task: str) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (SCHEDULE_LOCK_CLASS, "tiering:schedule:" + task)
    ).fetchone()
    return bool(row and row[0])


def release_task_lock(conn: psycopg.Connection, task: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (SCHEDULE_LOCK_CLASS, "tiering:schedule:" + task))


def claim_window(conn: psycopg.Connection, task: str, window: datetime, cron: str, instance: str) -> bool:
    """Record that this instance runs `task` for `window`; False when some instance already has."""
    row = conn.execute(
        """INSERT INTO tiering_schedule_runs (task, window_start, cron, instance) VALUES (%s, %s, %s, %s)
           ON CONFLICT (task, window_start) DO NOTHING RETURNING task""",
        (task, window, cron, instance),
    ).fetchone()
    return row is not None


def finish_window(
    conn: psycopg.Connection, task: str, window: datetime, outcome: str, result: Any, error: str | None
) -> None:
    conn.execute(
        """UPDATE tiering_schedule_runs SET finished_at = clock_timestamp(), outcome = %s, result = %s, error = %s
            WHERE task = %s AND window_start = %s""",
        (outcome, json_param(result or {}), error, task, window),
    )


def last_cron(conn: psycopg.Connection, task: str) -> str | None:
    row = conn.execute(
        "SELECT cron FROM tiering_schedule_runs WHERE task = %s ORDER BY window_start DESC LIMIT 1", (task,)
    ).fetchone()
    return None if row is None else str(row[0])


def window_recorded(conn: psycopg.Connection, task: str, window: datetime) -> bool:
    row = conn.execute(
        "SELECT 1 FROM tiering_schedule_runs WHERE task = %s AND window_start = %s", (task, window)
    ).fetchone()
    return row is not None


def last_runs(conn: psycopg.Connection, tasks: list[str]) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT DISTINCT ON (task) task, window_start, cron, instance, started_at, finished_at, outcome,
                      result, error
                 FROM tiering_schedule_runs WHERE task = ANY(%s)
                ORDER BY task, window_start DESC""",
            (tasks,),
        ).fetchall()
    return {r["task"]: r for r in rows}


def schedule_history(conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT task, window_start, cron, instance, started_at, finished_at, outcome, error
                 FROM tiering_schedule_runs ORDER BY started_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()


# ------------------------------------------------------------------ background tasks


def insert_task(db: Connections, task_id: uuid.UUID, kind: str, request: Any, instance: str) -> None:
    with db.connection(autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tiering_service_tasks (id, kind, request, instance) VALUES (%s, %s, %s, %s)",
            (task_id, kind, json_param(request), instance),
        )


def update_task_progress(db: Connections, task_id: uuid.UUID, progress: Any) -> None:
    with db.connection(autocommit=True) as conn:
        conn.execute(
            """UPDATE tiering_service_tasks SET progress = %s, updated_at = clock_timestamp()
                WHERE id = %s AND state = 'running'""",
            (json_param(progress), task_id),
        )


def finish_task(
    db: Connections,
    task_id: uuid.UUID,
    *,
    state: str,
    progress: Any,
    result: Any = None,
    error: str | None = None,
    error_status: int | None = None,
) -> None:
    with db.connection(autocommit=True) as conn:
        conn.execute(
            """UPDATE tiering_service_tasks
                  SET state = %s, progress = %s, result = %s, error = %s, error_status = %s,
                      updated_at = clock_timestamp(), finished_at = clock_timestamp()
                WHERE id = %s""",
            (state, json_param(progress), None if result is None else json_param(result), error, error_status,
             task_id),
        )  # fmt: skip


def get_task(db: Connections, task_id: uuid.UUID) -> dict[str, Any] | None:
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, kind, request, state, progress, result, error, error_status, instance, started_at,
                      updated_at, finished_at
                 FROM tiering_service_tasks WHERE id = %s""",
            (task_id,),
        ).fetchone()


def recent_tasks(db: Connections, limit: int) -> list[dict[str, Any]]:
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, kind, state, progress, error, instance, started_at, finished_at
                 FROM tiering_service_tasks ORDER BY started_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()


# ------------------------------------------------------------------ metrics gauges (cheap, at scrape time)


def staging_gauges(conn: psycopg.Connection) -> tuple[int, float | None]:
    """(staged jobs, age in seconds of the oldest staged job). min(archived_at) uses its index."""
    row = conn.execute(
        """SELECT (SELECT count(*) FROM hammerwork_jobs_archive),
                  EXTRACT(EPOCH FROM clock_timestamp() - (SELECT min(archived_at) FROM hammerwork_jobs_archive))"""
    ).fetchone()
    assert row is not None
    return int(row[0]), (None if row[1] is None else float(row[1]))


def cold_gauges(conn: psycopg.Connection) -> list[tuple[str, int, int, int, int]]:
    """Per storage class: (class, objects, bytes, original payload bytes, rows) of committed objects."""
    rows = conn.execute(
        """SELECT storage_class, count(*), COALESCE(sum(bytes), 0), COALESCE(sum(payload_original_bytes), 0),
                  COALESCE(sum(row_count), 0)
             FROM tiering_manifest WHERE state = 'committed' GROUP BY storage_class"""
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def pending_objects(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM tiering_manifest WHERE state = 'pending'").fetchone()
    return int(row[0]) if row else 0


def last_operations(conn: psycopg.Connection) -> list[tuple[str, str, float, float | None]]:
    """Per operation kind: (operation, outcome, started epoch, duration seconds) of the latest run."""
    rows = conn.execute(
        """SELECT DISTINCT ON (operation) operation, outcome, EXTRACT(EPOCH FROM started_at),
                  EXTRACT(EPOCH FROM finished_at - started_at)
             FROM tiering_operations ORDER BY operation, started_at DESC"""
    ).fetchall()
    return [(str(r[0]), str(r[1]), float(r[2]), None if r[3] is None else float(r[3])) for r in rows]


# ------------------------------------------------------------------ trends for the dashboard (from the audit trail)

_TREND_KEYS = {
    "archive": "jobs_archived",
    "flush": "jobs_flushed",
    "restore": "restored",
    "purge": "jobs_purged",
    "erase": "jobs_erased",
}


def daily_trends(conn: psycopg.Connection, days: int) -> list[dict[str, Any]]:
    """Per UTC day of the last `days`: jobs archived, flushed, restored, purged, erased (dry runs excluded)."""
    sums = ",\n".join(
        f"""COALESCE(sum(CASE WHEN o.operation = '{op}' AND jsonb_typeof(o.counts->'{key}') = 'number'
                              THEN (o.counts->>'{key}')::numeric END), 0)::bigint AS {op}"""
        for op, key in _TREND_KEYS.items()
    )
    query = f"""
        WITH d AS (
            SELECT generate_series((now() AT TIME ZONE 'UTC')::date - (%(days)s - 1),
                                   (now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day
        )
        SELECT d.day, {sums}
          FROM d LEFT JOIN tiering_operations o
            ON (o.started_at AT TIME ZONE 'UTC')::date = d.day
           AND o.started_at >= now() - (%(days)s || ' days')::interval - interval '1 day'
           AND COALESCE(o.counts->>'dry_run', 'false') <> 'true'
         GROUP BY d.day ORDER BY d.day"""  # noqa: S608 - operation names and keys are constants above
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query.encode(), {"days": days}).fetchall()
