"""SQL of the hot -> staging move. Set-based: a batch is one SELECT ... SKIP LOCKED and one DELETE/INSERT."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tiering.policy import EligibilityClause


@dataclass(frozen=True)
class Predicate:
    """A WHERE fragment over hammerwork_jobs (alias h) and its parameters."""

    clause: sql.Composable
    params: dict[str, Any]


def eligibility_predicate(clauses: Sequence[EligibilityClause], queue: str | None) -> Predicate:
    params: dict[str, Any] = {}
    parts: list[sql.Composable] = []
    for i, c in enumerate(clauses):
        params[f"st{i}"] = c.stored_statuses
        params[f"cut{i}"] = c.cutoff
        part = sql.SQL("(h.status = ANY({st}) AND h.{col} < {cut}").format(
            st=sql.Placeholder(f"st{i}"), col=sql.Identifier(c.finish_column), cut=sql.Placeholder(f"cut{i}")
        )
        if c.only_queue is not None:
            params[f"q{i}"] = c.only_queue
            part = sql.Composed([part, sql.SQL(" AND h.queue_name = {q}").format(q=sql.Placeholder(f"q{i}"))])
        if c.except_queues:
            params[f"xq{i}"] = list(c.except_queues)
            part = sql.Composed(
                [part, sql.SQL(" AND NOT (h.queue_name = ANY({xq}))").format(xq=sql.Placeholder(f"xq{i}"))]
            )
        parts.append(sql.Composed([part, sql.SQL(")")]))
    where: sql.Composable = sql.SQL(" OR ").join(parts) if parts else sql.SQL("FALSE")
    where = sql.Composed([sql.SQL("("), where, sql.SQL(")")])
    if queue is not None:
        params["only_queue"] = queue
        where = sql.Composed([where, sql.SQL(" AND h.queue_name = %(only_queue)s")])
    # A job whose id already sits in staging is never moved twice (the insert would collide).
    where = sql.Composed(
        [where, sql.SQL(" AND NOT EXISTS (SELECT 1 FROM hammerwork_jobs_archive a WHERE a.id = h.id)")]
    )
    return Predicate(where, params)


def claim_batch(conn: psycopg.Connection, pred: Predicate, limit: int) -> list[tuple[Any, ...]]:
    """Lock up to `limit` eligible jobs (skipping those another run holds); returns id, queue, status, payload."""
    query = sql.SQL(
        """SELECT h.id, h.queue_name, h.status, convert_to(h.payload::text, 'UTF8')
             FROM hammerwork_jobs h
            WHERE {where}
            LIMIT %(limit)s
              FOR UPDATE OF h SKIP LOCKED"""
    ).format(where=pred.clause)
    with conn.cursor(binary=True) as cur:
        cur.execute(query, {**pred.params, "limit": limit})
        return cur.fetchall()


MOVE_SQL = """
WITH p AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(payloads)s::bytea[], %(compressed)s::bool[], %(sizes)s::int[])
        AS p(id, payload, compressed, size)
), moved AS (
    DELETE FROM hammerwork_jobs h USING p WHERE h.id = p.id
    RETURNING h.*, p.payload AS z_payload, p.compressed AS z_compressed, p.size AS z_size
)
INSERT INTO hammerwork_jobs_archive (
    id, queue_name, payload, payload_compressed, original_payload_size, status, priority, priority_weight,
    attempts, max_attempts, created_at, scheduled_at, started_at, completed_at, failed_at, timed_out_at,
    archived_at, error_message, result, result_ttl, retry_strategy, timeout_seconds, cron_schedule,
    next_run_at, recurring, timezone, batch_id, depends_on, dependency_status, result_config, trace_id,
    correlation_id, parent_span_id, span_context, archival_reason, archived_by, original_table,
    is_encrypted, encryption_key_id, encryption_algorithm, encrypted_payload, encryption_nonce,
    encryption_tag, encryption_metadata, payload_hash, pii_fields, retention_policy, retention_delete_at,
    encrypted_at
)
SELECT id, queue_name, z_payload, z_compressed, z_size, btrim(status, '"'),
       CASE priority WHEN 0 THEN 'background' WHEN 1 THEN 'low' WHEN 3 THEN 'high' WHEN 4 THEN 'critical'
                     ELSE 'normal' END,
       CASE priority WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 3 THEN 10 WHEN 4 THEN 20 ELSE 5 END,
       attempts, max_attempts, created_at, scheduled_at, started_at, completed_at, failed_at, timed_out_at,
       now(), error_message, result_data, result_expires_at, NULL, timeout_seconds, cron_schedule,
       next_run_at, recurring, timezone, batch_id, COALESCE(depends_on, '{}'), dependency_status,
       jsonb_strip_nulls(jsonb_build_object('storage_type', result_storage_type,
                                            'ttl_seconds', result_ttl_seconds,
                                            'max_size_bytes', result_max_size_bytes)),
       trace_id, correlation_id, parent_span_id, span_context, %(reason)s, %(archived_by)s, 'hammerwork_jobs',
       is_encrypted, encryption_key_id, encryption_algorithm, encrypted_payload, encryption_nonce,
       encryption_tag, encryption_metadata, payload_hash, pii_fields, retention_policy, retention_delete_at,
       encrypted_at
  FROM moved
"""


def move_batch(
    conn: psycopg.Connection,
    *,
    ids: list[Any],
    payloads: list[bytes],
    compressed: list[bool],
    sizes: list[int],
    reason: str,
    archived_by: str | None,
) -> int:
    cur = conn.execute(
        MOVE_SQL,
        {
            "ids": ids,
            "payloads": payloads,
            "compressed": compressed,
            "sizes": sizes,
            "reason": reason,
            "archived_by": archived_by,
        },
        binary=True,
    )
    return cur.rowcount


def count_eligible(conn: psycopg.Connection, pred: Predicate) -> list[tuple[str, str, int]]:
    """(queue, plain status, count) of eligible jobs; what a dry run reports."""
    query = sql.SQL(
        """SELECT h.queue_name, btrim(h.status, '"'), count(*)
             FROM hammerwork_jobs h WHERE {where}
            GROUP BY 1, 2 ORDER BY 1, 2"""
    ).format(where=pred.clause)
    return [(q, s, int(n)) for q, s, n in conn.execute(query, pred.params).fetchall()]


_SETTLE_WHERE = """
    h.archived_at IS NOT NULL
    AND (%(queue)s::text IS NULL OR h.queue_name = %(queue)s)
    AND (EXISTS (SELECT 1 FROM hammerwork_jobs_archive a WHERE a.id = h.id)
         OR EXISTS (SELECT 1 FROM tiering_job_index x WHERE x.job_id = h.id AND x.restored_at IS NULL))
"""


def count_hammerwork_hot_copies(conn: psycopg.Connection, queue: str | None) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM hammerwork_jobs h WHERE {_SETTLE_WHERE}",  # noqa: S608 - constant fragment
        {"queue": queue},
    ).fetchone()
    return int(row[0]) if row else 0


def settle_hammerwork_hot_copies(conn: psycopg.Connection, queue: str | None, limit: int) -> int:
    """Delete up to `limit` hot rows Hammerwork marked archived whose archive copy exists (the copy wins)."""
    cur = conn.execute(
        f"""DELETE FROM hammerwork_jobs WHERE id IN (
               SELECT h.id FROM hammerwork_jobs h WHERE {_SETTLE_WHERE}
               LIMIT %(limit)s FOR UPDATE OF h SKIP LOCKED)""",  # noqa: S608 - constant fragment
        {"queue": queue, "limit": limit},
    )
    return cur.rowcount
