"""Demo and benchmark data: realistic Hammerwork jobs generated inside PostgreSQL (set-based, fast)."""

from __future__ import annotations

import psycopg

QUEUES = ["email_queue", "payment_queue", "analytics_queue", "critical_queue", "webhooks", "reports/monthly"]

# One INSERT ... SELECT: mixed queues, all seven statuses, payloads of ~150 B to ~3 KB, finish times spread
# over the last `days` days, priorities 0..4, some tracing, dependencies and results.
_SEED_SQL = """
INSERT INTO hammerwork_jobs (
    id, queue_name, payload, status, priority, attempts, max_attempts, created_at, scheduled_at, started_at,
    completed_at, failed_at, timed_out_at, error_message, timeout_seconds, result_data, result_expires_at,
    trace_id, correlation_id, batch_id, depends_on, dependency_status, recurring, cron_schedule)
SELECT id, queue_name,
       jsonb_build_object(
           'customer', jsonb_build_object('id', (n %% 5000)::text, 'tier', (ARRAY['free','pro','team'])[1 + n %% 3]),
           'order_id', n, 'amount', round((n %% 100000)::numeric / 7, 2), 'currency', 'EUR',
           'email', 'user' || (n %% 5000) || '@example.com',
           'notes', repeat(md5(n::text), (n %% 90)::int)),
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
       NULL, '{}'::uuid[], 'none', false, NULL
  FROM (
    SELECT n, gen_random_uuid() AS id,
           %(queues)s::text[] AS qs,
           (%(queues)s::text[])[1 + (n * 7919) %% cardinality(%(queues)s::text[])] AS queue_name,
           CASE WHEN n %% 100 < 70 THEN 'Completed' WHEN n %% 100 < 80 THEN 'Failed' WHEN n %% 100 < 85 THEN 'Dead'
                WHEN n %% 100 < 90 THEN 'TimedOut' WHEN n %% 100 < 94 THEN 'Pending' WHEN n %% 100 < 97 THEN 'Running'
                ELSE 'Retrying' END AS status,
           now() - make_interval(secs => ((n * 104729) %% (%(days)s * 86400))::double precision) AS finished
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n
  ) s
"""


def seed_demo_jobs(conn: psycopg.Connection, count: int, *, days: int = 90, start: int = 1) -> int:
    """Insert `count` jobs; returns how many were inserted."""
    cur = conn.execute(
        _SEED_SQL,  # type: ignore[arg-type]
        {"queues": QUEUES, "days": days, "start": start, "stop": start + count - 1},
    )
    return cur.rowcount


def hot_job_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM hammerwork_jobs").fetchone()
    return int(row[0]) if row else 0
