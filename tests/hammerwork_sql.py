"""Hammerwork's own SQL, restated for the tests: its migration runner, enqueue, complete/fail/dead, archive
(`archive_jobs`, v1.15.5 and v1.7.4's legacy archive insert), restore (`restore_archived_job`) and dequeue.

Restated from CodingAnarchy/hammerwork (MIT), src/queue/postgres.rs and src/migrations/postgres.rs at v1.15.5
(v1.7.4 for the legacy archive insert). Statements keep Hammerwork's text; the Rust around them (row mapping,
serde, gzip) is restated in Python as it behaves: values Hammerwork binds as `Utc::now()` are parameters here
so tests can place jobs in time. The migrations themselves are Hammerwork's text and are read, never copied,
from ../shared/reference/hammerwork-migrations/ (see migrations_dir()).
"""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

MIGRATIONS_ENV = "TIERING_HAMMERWORK_MIGRATIONS"
_REL = Path("shared") / "reference" / "hammerwork-migrations"

# --- the schema: Hammerwork's migrations, applied as its runner does ------------------------------------


def migrations_dir() -> Path | None:
    """Hammerwork v1.15.5's migrations: $TIERING_HAMMERWORK_MIGRATIONS, else ../shared/reference/... beside the
    repository root or any folder above it (worktrees live deeper than the main checkout)."""
    env = os.environ.get(MIGRATIONS_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    for parent in Path(__file__).resolve().parents:
        candidate = parent / _REL
        if candidate.is_dir() and any(candidate.glob("0*_*.postgres.sql")):
            return candidate
    return None


def split_statements(text: str) -> list[str]:
    """Hammerwork's runner splits a migration into statements respecting quotes, dollar quotes and comments."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            buf.append(text[i:j])
            i = j
            continue
        if ch == "'":
            j = i + 1
            while j < n:
                if text[j] == "'" and text.startswith("''", j):
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            buf.append(text[i : j + 1])
            i = j + 1
            continue
        if ch == "$":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j < n and text[j] == "$":
                tag = text[i : j + 1]
                end = text.find(tag, j + 1)
                end = n if end < 0 else end + len(tag)
                buf.append(text[i:end])
                i = end
                continue
        if ch == ";":
            stmt = "".join(buf).strip()
            if any(line.strip() and not line.strip().startswith("--") for line in stmt.splitlines()):
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    stmt = "".join(buf).strip()
    if any(line.strip() and not line.strip().startswith("--") for line in stmt.splitlines()):
        out.append(stmt)
    return out


def apply_migrations(url: str, directory: Path) -> list[str]:
    """Run 001..014 in order, one transaction each, recorded in hammerwork_migrations (its runner's table)."""
    applied = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS hammerwork_migrations (
                   migration_id VARCHAR NOT NULL PRIMARY KEY,
                   executed_at TIMESTAMPTZ NOT NULL,
                   execution_time_ms BIGINT NOT NULL)"""
        )
        done = {r[0] for r in conn.execute("SELECT migration_id FROM hammerwork_migrations")}
    for path in sorted(directory.glob("0*_*.postgres.sql")):
        migration_id = path.name.removesuffix(".postgres.sql")
        if migration_id in done:
            continue
        started = time.perf_counter()
        with psycopg.connect(url) as conn:  # one transaction (012's own BEGIN/COMMIT run inside it, as in sqlx)
            for stmt in split_statements(path.read_text(encoding="utf-8")):
                conn.execute(stmt.encode())
            conn.commit()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO hammerwork_migrations (migration_id, executed_at, execution_time_ms) "
                "VALUES (%s, %s, %s)",
                (migration_id, datetime.now(UTC), int((time.perf_counter() - started) * 1000)),
            )
        applied.append(migration_id)
    return applied


# --- jobs ----------------------------------------------------------------------------------------------


@dataclass
class HwJob:
    """The fields of Hammerwork's Job that its PostgreSQL SQL binds."""

    queue_name: str
    payload: Any
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    status: str = "Pending"
    priority: int = 2
    attempts: int = 0
    max_attempts: int = 3
    timeout_seconds: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    scheduled_at: datetime | None = None
    error_message: str | None = None
    cron_schedule: str | None = None
    next_run_at: datetime | None = None
    recurring: bool = False
    timezone: str | None = None
    batch_id: uuid.UUID | None = None
    result_storage: str = "None"  # ResultStorage: Database | Memory | None
    result_ttl_seconds: int | None = None
    result_max_size_bytes: int | None = None
    depends_on: list[uuid.UUID] = field(default_factory=list)
    dependents: list[uuid.UUID] = field(default_factory=list)
    dependency_status: str = "none"
    workflow_id: uuid.UUID | None = None
    workflow_name: str | None = None
    trace_id: str | None = None
    correlation_id: str | None = None
    parent_span_id: str | None = None
    span_context: str | None = None


_ENQUEUE = """
            INSERT INTO hammerwork_jobs (
                id, queue_name, payload, status, priority, attempts, max_attempts, 
                timeout_seconds, created_at, scheduled_at, error_message, 
                cron_schedule, next_run_at, recurring, timezone, batch_id,
                result_storage_type, result_ttl_seconds, result_max_size_bytes,
                depends_on, dependents, dependency_status, workflow_id, workflow_name,
                trace_id, correlation_id, parent_span_id, span_context
            ) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""  # noqa: W291, E501 - Hammerwork's text


def _enqueue_params(job: HwJob, status_text: str) -> list[Any]:
    return [
        job.id, job.queue_name, Jsonb(job.payload), status_text, job.priority, job.attempts, job.max_attempts,
        job.timeout_seconds, job.created_at, job.scheduled_at or job.created_at, job.error_message,
        job.cron_schedule, job.next_run_at, job.recurring, job.timezone, job.batch_id,
        job.result_storage.lower(), job.result_ttl_seconds, job.result_max_size_bytes,
        job.depends_on, job.dependents, job.dependency_status, job.workflow_id, job.workflow_name,
        job.trace_id, job.correlation_id, job.parent_span_id, job.span_context,
    ]  # fmt: skip


def enqueue(conn: psycopg.Connection, job: HwJob) -> uuid.UUID:
    """v1.15.5 `enqueue` (JobStatus encoded bare)."""
    conn.execute(_ENQUEUE, _enqueue_params(job, job.status))
    return job.id


def enqueue_v174(conn: psycopg.Connection, job: HwJob) -> uuid.UUID:
    """v1.7.4 `enqueue`: the status bound as `serde_json::to_string(&job.status)`, i.e. with literal quotes."""
    conn.execute(_ENQUEUE, _enqueue_params(job, json.dumps(job.status)))
    return job.id


def complete_job(conn: psycopg.Connection, job_id: uuid.UUID, at: datetime) -> None:
    conn.execute("UPDATE hammerwork_jobs SET status = %s, completed_at = %s WHERE id = %s", ("Completed", at, job_id))


def fail_job(conn: psycopg.Connection, job_id: uuid.UUID, error: str, at: datetime) -> None:
    conn.execute(
        "UPDATE hammerwork_jobs SET status = %s, error_message = %s, failed_at = %s WHERE id = %s",
        ("Failed", error, at, job_id),
    )


def mark_job_dead(conn: psycopg.Connection, job_id: uuid.UUID, error: str, at: datetime) -> None:
    conn.execute(
        "UPDATE hammerwork_jobs SET status = %s, error_message = %s, failed_at = %s WHERE id = %s",
        ("Dead", error, at, job_id),
    )


def mark_job_timed_out(conn: psycopg.Connection, job_id: uuid.UUID, error: str, at: datetime) -> None:
    conn.execute(
        "UPDATE hammerwork_jobs SET status = %s, error_message = %s, timed_out_at = %s WHERE id = %s",
        ("TimedOut", error, at, job_id),
    )


def fail_job_dependencies(conn: psycopg.Connection, dependent_ids: list[uuid.UUID]) -> None:
    """What `fail_job_dependencies` leaves on the dependents of a failed job."""
    conn.execute(
        "UPDATE hammerwork_jobs SET dependency_status = 'failed' WHERE id = ANY(%s)", (dependent_ids,)
    )


def dequeue(conn: psycopg.Connection, queue_name: str, now: datetime | None = None) -> uuid.UUID | None:
    """v1.15.5 `dequeue`: only Pending jobs whose dependency_status is none or satisfied."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        """
            UPDATE hammerwork_jobs 
            SET status = %s, started_at = %s, attempts = attempts + 1 
            WHERE id = (
                SELECT id FROM hammerwork_jobs 
                WHERE queue_name = %s AND status = %s AND scheduled_at <= %s
                  AND (dependency_status = 'none' OR dependency_status = 'satisfied')
                ORDER BY priority DESC, scheduled_at ASC 
                FOR UPDATE SKIP LOCKED 
                LIMIT 1
            )
            RETURNING id
            """,  # noqa: W291 - Hammerwork's text
        ("Running", now, queue_name, "Pending", now),
    ).fetchone()
    return row[0] if row else None


# --- archive_jobs -----------------------------------------------------------------------------------------

PRIORITY_WORDS = {0: "background", 1: "low", 2: "normal", 3: "high", 4: "critical"}
PRIORITY_WEIGHTS = {0: 1, 1: 2, 2: 5, 3: 10, 4: 20}
_STORAGE = {"database": "Database", "memory": "Memory", "none": "None"}


def _status_of(stored: str) -> str:
    return stored.strip('"')  # JobRow::into_job trims legacy quotes


def result_config_value(row: dict[str, Any]) -> dict[str, Any]:
    """serde_json::to_value(&job.result_config) of a JobRow."""
    storage = _STORAGE.get(row.get("result_storage_type") or "", "None")
    ttl = row.get("result_ttl_seconds")
    return {
        "storage": storage,
        "ttl": None if ttl is None else {"secs": ttl, "nanos": 0},
        "max_size_bytes": row.get("result_max_size_bytes"),
    }


def _dependency_status_of(stored: Any) -> str:
    return stored if stored in ("none", "waiting", "satisfied", "failed") else "none"  # parse_from_db or None


def archive_select(
    conn: psycopg.Connection, after: dict[str, timedelta], batch_size: int, queue: str | None, now: datetime
) -> list[dict[str, Any]]:
    """The SELECTs of `archive_jobs` (no locks), one per status with a policy age; deduplicated, batch-limited."""
    specs = {"Completed": "completed_at", "Failed": "failed_at", "Dead": "failed_at", "TimedOut": "timed_out_at"}
    found: list[dict[str, Any]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        for status, col in specs.items():
            if status not in after:
                continue
            threshold = now - after[status]
            if queue is None:
                cur.execute(
                    f"""SELECT * FROM hammerwork_jobs 
                WHERE archived_at IS NULL 
                AND status = '{status}' 
                AND {col} IS NOT NULL 
                AND {col} <= %s
                ORDER BY created_at ASC 
                LIMIT %s""",  # noqa: S608, W291 - Hammerwork's text per status
                    (threshold, batch_size),
                )
            else:
                cur.execute(
                    f"""SELECT * FROM hammerwork_jobs 
                    WHERE archived_at IS NULL 
                    AND queue_name = %s
                    AND status = '{status}' 
                    AND {col} IS NOT NULL 
                    AND {col} <= %s
                    ORDER BY created_at ASC 
                    LIMIT %s""",  # noqa: S608, W291
                    (queue, threshold, batch_size),
                )
            found.extend(cur.fetchall())
    found.sort(key=lambda r: r["created_at"])
    seen: set[uuid.UUID] = set()
    unique = []
    for r in found:
        if r["id"] not in seen:
            seen.add(r["id"])
            unique.append(r)
    return unique[:batch_size]


_ARCHIVE_INSERT = """
                INSERT INTO hammerwork_jobs_archive (
                    id, queue_name, payload, payload_compressed, original_payload_size,
                    status, priority, attempts, max_attempts, created_at, scheduled_at,
                    started_at, completed_at, failed_at, timed_out_at, archived_at,
                    error_message, result, result_ttl, retry_strategy, timeout_seconds,
                    priority_weight, cron_schedule, next_run_at, recurring, timezone,
                    batch_id, depends_on, dependency_status, result_config,
                    trace_id, correlation_id, parent_span_id, span_context,
                    archival_reason, archived_by, original_table
                ) VALUES (
                    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                    %s, %s, %s, %s, %s, %s, %s
                )
"""


def compact_payload(value: Any) -> bytes:
    """serde_json::to_vec of a serde_json::Value (keys sorted: Value's map is a BTreeMap)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def gzip_if_smaller(raw: bytes, level: int) -> tuple[bytes, bool]:
    packed = gzip.compress(raw, compresslevel=level)
    return (packed, True) if len(packed) < len(raw) else (raw, False)


def archive_insert(
    conn: psycopg.Connection,
    rows: list[dict[str, Any]],
    *,
    compress: bool = True,
    level: int = 6,
    reason: str = "Automatic",
    archived_by: str | None = None,
    now: datetime | None = None,
    legacy_v174: bool = False,
) -> int:
    """The INSERTs and hot-row UPDATEs of `archive_jobs` for candidates from archive_select (in the caller's
    transaction). `legacy_v174` binds as v1.7.4's archiver did: quoted status, serde-quoted dependency status
    (`"None"`), depends_on NULL."""
    now = now or datetime.now(UTC)
    for r in rows:
        raw = compact_payload(r["payload"])
        stored, compressed = gzip_if_smaller(raw, level) if compress else (raw, False)
        status = _status_of(r["status"])
        dep = _dependency_status_of(r.get("dependency_status"))
        conn.execute(
            _ARCHIVE_INSERT,
            [
                r["id"], r["queue_name"], stored, compressed, len(raw),
                json.dumps(status) if legacy_v174 else status,
                PRIORITY_WORDS.get(r["priority"], "normal"), r["attempts"], r["max_attempts"], r["created_at"],
                r["scheduled_at"], r["started_at"], r["completed_at"], r["failed_at"], r["timed_out_at"], now,
                r["error_message"], None if r["result_data"] is None else Jsonb(r["result_data"]),
                r["result_expires_at"], None, r["timeout_seconds"], PRIORITY_WEIGHTS.get(r["priority"], 5),
                r["cron_schedule"], r["next_run_at"], r["recurring"], r["timezone"], r["batch_id"],
                (r["depends_on"] or None) if legacy_v174 else r["depends_on"],
                json.dumps(dep.capitalize()) if legacy_v174 else dep,
                Jsonb(result_config_value(r)), r["trace_id"], r["correlation_id"], r["parent_span_id"],
                r["span_context"], reason, archived_by, "hammerwork_jobs",
            ],  # fmt: skip
        )
        conn.execute(
            "UPDATE hammerwork_jobs SET archived_at = %s, archival_reason = %s, archival_policy_applied = %s "
            "WHERE id = %s",
            (now, reason, archived_by, r["id"]),
        )
    return len(rows)


def archive_jobs(
    url: str,
    after: dict[str, timedelta],
    *,
    batch_size: int = 1000,
    queue: str | None = None,
    now: datetime | None = None,
    **insert_options: Any,
) -> int:
    """`archive_jobs` in one transaction, as Hammerwork runs it."""
    now = now or datetime.now(UTC)
    with psycopg.connect(url) as conn:
        rows = archive_select(conn, after, batch_size, queue, now)
        n = archive_insert(conn, rows, now=now, **insert_options)
        conn.commit()
    return n


# --- restore_archived_job ---------------------------------------------------------------------------------


class HammerworkError(Exception):
    """What Hammerwork's restore would return as an error."""


@dataclass
class Restored:
    job: HwJob
    result_config_fell_back: bool  # serde_json::from_value failed and Hammerwork used ResultConfig::default()


def _serde_result_config(value: Any) -> tuple[str, int | None, int | None] | None:
    """serde_json::from_value::<ResultConfig>: None when Hammerwork would fail (and fall back to the default)."""
    if not isinstance(value, dict) or value.get("storage") not in ("Database", "Memory", "None"):
        return None
    ttl = value.get("ttl")
    secs = None
    if ttl is not None:
        if not (isinstance(ttl, dict) and isinstance(ttl.get("secs"), int) and isinstance(ttl.get("nanos"), int)):
            return None
        secs = ttl["secs"]
    size = value.get("max_size_bytes")
    if size is not None and not (isinstance(size, int) and size >= 0):
        return None
    return value["storage"], secs, size


def _serde_dependency_status(text: str | None) -> str:
    try:
        parsed = json.loads(text) if text is not None else None
    except ValueError:
        parsed = None
    return parsed.lower() if parsed in ("None", "Waiting", "Satisfied", "Failed") else "none"


def restore_archived_job(url: str, job_id: uuid.UUID, now: datetime | None = None) -> Restored:
    """v1.15.5 `restore_archived_job`: read the archive row (gzip when payload_compressed), enqueue it back as
    Pending in the same transaction, delete the archive row, clear the hot row's archival marks."""
    now = now or datetime.now(UTC)
    with psycopg.connect(url) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """
            SELECT 
                id, queue_name, payload, payload_compressed, original_payload_size,
                status, priority, attempts, max_attempts, created_at, scheduled_at,
                started_at, completed_at, failed_at, timed_out_at,
                error_message, result, result_ttl, retry_strategy, timeout_seconds,
                cron_schedule, next_run_at, recurring, timezone, batch_id,
                depends_on, dependency_status, result_config,
                trace_id, correlation_id, parent_span_id, span_context
            FROM hammerwork_jobs_archive 
            WHERE id = %s
        """,  # noqa: W291 - Hammerwork's text
                (job_id,),
            ).fetchone()
        if row is None:
            raise HammerworkError("no rows returned")
        data = bytes(row["payload"])
        if row["payload_compressed"]:
            try:
                data = zlib.decompress(data, 31)  # flate2's GzDecoder: gzip and nothing else
            except zlib.error as exc:
                raise HammerworkError(f"invalid gzip header: {exc}") from exc
        payload = json.loads(data)
        parsed = _serde_result_config(row["result_config"])
        storage, ttl, size = parsed if parsed is not None else ("None", None, None)
        word = (row["priority"] or "").lower()
        priority = {w: p for p, w in PRIORITY_WORDS.items()}.get(word, 2)
        job = HwJob(
            id=row["id"], queue_name=row["queue_name"], payload=payload, status="Pending", priority=priority,
            attempts=0, max_attempts=row["max_attempts"], created_at=row["created_at"], scheduled_at=now,
            timeout_seconds=row["timeout_seconds"], cron_schedule=row["cron_schedule"],
            next_run_at=row["next_run_at"], recurring=row["recurring"], timezone=row["timezone"],
            batch_id=row["batch_id"], result_storage=storage, result_ttl_seconds=ttl, result_max_size_bytes=size,
            depends_on=list(row["depends_on"] or []),
            dependency_status=_serde_dependency_status(row["dependency_status"]),
            trace_id=row["trace_id"], correlation_id=row["correlation_id"], parent_span_id=row["parent_span_id"],
            span_context=row["span_context"],
        )  # fmt: skip
        enqueue(conn, job)
        conn.execute("DELETE FROM hammerwork_jobs_archive WHERE id = %s", (job_id,))
        conn.execute(
            "UPDATE hammerwork_jobs SET archived_at = NULL, archival_reason = NULL, archival_policy_applied = NULL "
            "WHERE id = %s",
            (job_id,),
        )
        conn.commit()
    return Restored(job, parsed is None)


# What Hammerwork's restore keeps (and tiering's must keep equal to the original hot row).
KEPT_ON_RESTORE = (
    "id", "queue_name", "payload", "priority", "max_attempts", "created_at", "timeout_seconds", "cron_schedule",
    "next_run_at", "recurring", "timezone", "batch_id", "depends_on", "result_storage_type", "result_ttl_seconds",
    "result_max_size_bytes", "trace_id", "correlation_id", "parent_span_id", "span_context",
)  # fmt: skip


def hot_row(conn: psycopg.Connection, job_id: uuid.UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM hammerwork_jobs WHERE id = %s", (job_id,)).fetchone()
