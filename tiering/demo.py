"""Demo and benchmark data: realistic Hammerwork jobs generated inside PostgreSQL (set-based, fast).

The README's examples run against this data: queues `email_queue`, `payment_queue`, ...; payloads with
`customer.id` from 10000 to 14999 (so `customer.id=12345` matches). With `history`, the terminal jobs that
finished before the last `archived_after_days` days are already in `hammerwork_jobs_archive`, put there by
Hammerwork's own archiver in monthly runs (raw JSON payloads, `archived_by` 'hammerwork'): `archived_at` spans
many months, so retention examples (`purge --older-than 180d`) have something to purge.
"""

from __future__ import annotations

import psycopg

QUEUES = ["email_queue", "payment_queue", "analytics_queue", "critical_queue", "webhooks", "reports/monthly"]
TERMINAL = ("Completed", "Failed", "Dead", "TimedOut")

# The generated jobs: mixed queues, all seven statuses, finish times spread over the last `days` days.
_ROWS = """
    SELECT n, gen_random_uuid() AS id,
           (%(queues)s::text[])[1 + (n * 7919) %% cardinality(%(queues)s::text[])] AS queue_name,
           CASE WHEN n %% 100 < 70 THEN 'Completed' WHEN n %% 100 < 80 THEN 'Failed' WHEN n %% 100 < 85 THEN 'Dead'
                WHEN n %% 100 < 90 THEN 'TimedOut' WHEN n %% 100 < 94 THEN 'Pending' WHEN n %% 100 < 97 THEN 'Running'
                ELSE 'Retrying' END AS status,
           now() - make_interval(secs => ((n * 104729) %% (%(days)s * 86400))::double precision) AS finished
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n
"""
# Payloads of ~150 B to ~3 KB.
_PAYLOAD = """jsonb_build_object(
           'customer', jsonb_build_object('id', (10000 + n %% 5000)::text,
                                          'tier', (ARRAY['free','pro','team'])[1 + n %% 3]),
           'order_id', n, 'amount', round((n %% 100000)::numeric / 7, 2), 'currency', 'EUR',
           'email', 'user' || (10000 + n %% 5000) || '@example.com',
           'notes', repeat(md5(n::text), (n %% 90)::int))"""
# Already archived by Hammerwork: terminal and finished before the cutoff (only when history is asked for).
_ARCHIVED = (
    "(%(history)s AND s.status = ANY(%(terminal)s) AND s.finished < now() - make_interval(days => %(archived_after)s))"
)

_HOT_SQL = f"""
INSERT INTO hammerwork_jobs (
    id, queue_name, payload, status, priority, attempts, max_attempts, created_at, scheduled_at, started_at,
    completed_at, failed_at, timed_out_at, error_message, timeout_seconds, result_data, result_expires_at,
    trace_id, correlation_id, batch_id, depends_on, dependency_status, recurring, cron_schedule)
SELECT id, queue_name, {_PAYLOAD},
       status, n %% 5, CASE WHEN status IN ('Failed', 'Dead') THEN 3 ELSE 1 END, 3,
       finished - interval '5 minutes', finished - interval '5 minutes', finished - interval '1 minute',
       CASE WHEN status = 'Completed' THEN finished END,
       CASE WHEN status IN ('Failed', 'Dead') THEN finished END,
       CASE WHEN status = 'TimedOut' THEN finished END,
       CASE WHEN status IN ('Failed', 'Dead') THEN 'upstream returned 503' END,
       CASE WHEN n %% 4 = 0 THEN 300 END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0 THEN jsonb_build_object('ok', true, 'n', n) END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0 THEN finished + interval '7 days' END,
       CASE WHEN n %% 2 = 0 THEN md5('t' || n) END, CASE WHEN n %% 2 = 0 THEN 'corr-' || n END,
       NULL, '{{}}'::uuid[], 'none', false, NULL
  FROM ({_ROWS}) s
 WHERE NOT {_ARCHIVED}
"""  # noqa: S608 - constant SQL fragments, no input

# What Hammerwork's archiver leaves behind: compact-enough JSON bytes (not compressed), priority as a word.
_ARCHIVED_SQL = f"""
INSERT INTO hammerwork_jobs_archive (
    id, queue_name, payload, payload_compressed, original_payload_size, status, priority, priority_weight,
    attempts, max_attempts, created_at, scheduled_at, started_at, completed_at, failed_at, timed_out_at,
    archived_at, error_message, result, result_ttl, timeout_seconds, depends_on, dependency_status, trace_id,
    correlation_id, archival_reason, archived_by, original_table)
SELECT id, queue_name, convert_to(p::text, 'UTF8'), false, octet_length(convert_to(p::text, 'UTF8')), status,
       (ARRAY['background', 'low', 'normal', 'high', 'critical'])[1 + n %% 5], (ARRAY[1, 2, 5, 10, 20])[1 + n %% 5],
       CASE WHEN status IN ('Failed', 'Dead') THEN 3 ELSE 1 END, 3,
       finished - interval '5 minutes', finished - interval '5 minutes', finished - interval '1 minute',
       CASE WHEN status = 'Completed' THEN finished END,
       CASE WHEN status IN ('Failed', 'Dead') THEN finished END,
       CASE WHEN status = 'TimedOut' THEN finished END,
       least(now(), date_trunc('month', finished) + interval '1 month'),
       CASE WHEN status IN ('Failed', 'Dead') THEN 'upstream returned 503' END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0 THEN jsonb_build_object('ok', true, 'n', n) END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0 THEN finished + interval '7 days' END,
       CASE WHEN n %% 4 = 0 THEN 300 END, '{{}}'::uuid[], 'none',
       CASE WHEN n %% 2 = 0 THEN md5('t' || n) END, CASE WHEN n %% 2 = 0 THEN 'corr-' || n END,
       'Automatic', 'hammerwork', 'hammerwork_jobs'
  FROM (SELECT s.*, {_PAYLOAD} AS p FROM ({_ROWS}) s WHERE {_ARCHIVED}) a
"""  # noqa: S608 - constant SQL fragments, no input


def seed_demo_jobs(
    conn: psycopg.Connection,
    count: int,
    *,
    days: int = 90,
    start: int = 1,
    history: bool = False,
    archived_after_days: int = 30,
) -> int:
    """Insert `count` jobs; returns how many were inserted (hot plus, with `history`, already archived).

    With `history`, terminal jobs that finished more than `archived_after_days` ago go straight into
    `hammerwork_jobs_archive` as Hammerwork's archiver would have put them there (monthly runs: archived on
    the 1st of the month after they finished), the rest into `hammerwork_jobs`."""
    params = {
        "queues": QUEUES, "days": days, "start": start, "stop": start + count - 1, "history": history,
        "terminal": list(TERMINAL), "archived_after": max(archived_after_days, 7),
    }  # fmt: skip
    hot = conn.execute(_HOT_SQL, params).rowcount  # type: ignore[arg-type]
    archived = conn.execute(_ARCHIVED_SQL, params).rowcount if history else 0  # type: ignore[arg-type]
    return hot + archived


def hot_job_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM hammerwork_jobs").fetchone()
    return int(row[0]) if row else 0


def staged_job_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM hammerwork_jobs_archive").fetchone()
    return int(row[0]) if row else 0
