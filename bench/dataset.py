"""Bench data: a database built by Hammerwork's own migrations (001-014, read from ../shared/reference/),
then tiering's, filled with Hammerwork-shaped jobs: every column Hammerwork's migrations create, 8 queues with
their own payload shapes (mixed JSON, ~150 B - 3 KB), all seven statuses, finish times over `days` days.

Finished jobs are either old (finished more than a day and two hours ago) or young (less than 22 hours ago),
so a policy of "archive finished jobs after one day" selects the same rows for a couple of hours after seeding:
tiering, DuckDB and the bare SQL references all move exactly the same set of jobs.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from tests.hammerwork_sql import migrations_dir
from tiering.db.migrations import migrate

QUEUES = [
    "email_queue",
    "payment_queue",
    "analytics_queue",
    "critical_queue",
    "webhooks",
    "reports/monthly",
    "image-resize",
    "notifications.push",
]
AGE = timedelta(days=1)  # the bench policy: every finished status archived one day after it finished
ELIGIBLE_SHARE = 0.72 * 0.96  # finished statuses (72 %) x old enough (24 of 25)

_LOREM = (
    "Thank you for your order. Your payment was received and your items will ship within two business days. "
    "If you have questions about your invoice, reply to this message or visit the help centre. We processed "
    "the refund to the original payment method; banks usually take three to five days to show it. Your "
    "subscription renews automatically at the end of the billing period unless cancelled in account settings. "
    "The report covers revenue, refunds, chargebacks, active customers and churn by region and by plan. "
    "A new sign-in to your account was detected from a device we did not recognise; if this was not you, "
    "reset your password now. The webhook delivery failed with a timeout and will be retried with exponential "
    "backoff. Image variants are generated for thumbnails, previews and full size, stripped of metadata. "
    "Your export is ready to download for seven days. Shipping address updated; the courier was notified. "
)

# One INSERT ... SELECT. %(...)s are parameters; the payload shapes differ per queue.
_SEED_SQL = """
INSERT INTO hammerwork_jobs (
    id, queue_name, payload, status, attempts, max_attempts, created_at, scheduled_at, started_at, completed_at,
    failed_at, error_message, priority, timeout_seconds, timed_out_at, cron_schedule, next_run_at, recurring,
    timezone, batch_id, result_data, result_stored_at, result_expires_at, dependency_status, workflow_id,
    workflow_name, result_storage_type, result_ttl_seconds, result_max_size_bytes, trace_id, correlation_id,
    parent_span_id, span_context, archived_at, archival_reason, archival_policy_applied, is_encrypted,
    encryption_key_id, encryption_algorithm, encrypted_payload, encryption_nonce, encryption_tag,
    encryption_metadata, payload_hash, pii_fields, retention_policy, retention_delete_at, encrypted_at,
    depends_on, dependents)
SELECT id, queue_name, payload, status,
       CASE WHEN status IN ('Failed', 'Dead') THEN max_att WHEN n %% 10 = 0 THEN 2
            WHEN status = 'Pending' THEN 0 ELSE 1 END,
       max_att, created, created + CASE WHEN n %% 9 = 0 THEN interval '30 seconds' ELSE interval '0' END,
       CASE WHEN status = 'Pending' THEN NULL ELSE finished - (n %% 600) * interval '100 milliseconds' END,
       CASE WHEN status = 'Completed' THEN finished END,
       CASE WHEN status IN ('Failed', 'Dead') THEN finished END,
       CASE status WHEN 'Failed' THEN 'upstream returned HTTP 503 (attempt ' || max_att || ')'
                   WHEN 'Dead' THEN 'gave up after ' || max_att || ' attempts: connection reset by peer'
                   WHEN 'TimedOut' THEN 'job exceeded its timeout of ' || coalesce(timeout_s, 300) || ' s'
                   WHEN 'Retrying' THEN 'temporary failure, retrying' END,
       n %% 5, timeout_s,
       CASE WHEN status = 'TimedOut' THEN finished END,
       CASE WHEN recurring THEN '0 0 1 * *' END, CASE WHEN recurring THEN finished + interval '30 days' END,
       recurring, CASE WHEN recurring THEN 'Europe/Berlin' END,
       CASE WHEN n %% 7 = 0 THEN md5('batch' || (n / 700))::uuid END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0
            THEN jsonb_build_object('ok', true, 'n', n, 'took_ms', n %% 900) END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0 THEN finished END,
       CASE WHEN status = 'Completed' AND n %% 3 = 0 THEN finished + interval '7 days' END,
       'none',
       CASE WHEN n %% 20 = 0 THEN md5('wf' || (n / 20))::uuid END,
       CASE WHEN n %% 20 = 0 THEN 'checkout-flow' END,
       CASE WHEN n %% 3 = 0 THEN 'database' ELSE 'none' END,
       CASE WHEN n %% 3 = 0 THEN 604800 END, CASE WHEN n %% 3 = 0 THEN 1048576 END,
       CASE WHEN n %% 2 = 0 THEN md5('t' || n) END, CASE WHEN n %% 2 = 0 THEN 'corr-' || (n / 4) END,
       CASE WHEN n %% 4 = 0 THEN left(md5('s' || n), 16) END,
       CASE WHEN n %% 4 = 0 THEN '00-' || md5('t' || n) || '-' || left(md5('s' || n), 16) || '-01' END,
       NULL, NULL, NULL, false,
       NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN n %% 11 = 0 THEN md5(n::text) END,
       CASE WHEN queue_name = 'email_queue' THEN ARRAY['to', 'vars.first_name'] END,
       CASE WHEN queue_name = 'email_queue' THEN 'DeleteAfter' END,
       CASE WHEN queue_name = 'email_queue' THEN finished + interval '400 days' END,
       NULL,
       CASE WHEN n %% 20 = 0 THEN ARRAY[md5('dep' || (n - 1))::uuid] ELSE '{}'::uuid[] END,
       '{}'::uuid[]
  FROM (
    SELECT b.*,
           CASE WHEN b.status IN ('Pending', 'Running', 'Retrying')
                THEN %(t0)s::timestamptz - (n %% 3600) * interval '1 second'
                WHEN n %% 25 = 0 THEN %(t0)s::timestamptz - (n %% 79000) * interval '1 second'
                ELSE %(t0)s::timestamptz - interval '26 hours'
                     - ((n * 104729) %% (%(days)s * 86400 - 93600)) * interval '1 second' END AS finished,
           CASE WHEN b.queue_name = 'reports/monthly' THEN true ELSE false END AS recurring,
           CASE n %% 4 WHEN 0 THEN 300 WHEN 1 THEN 30 WHEN 2 THEN 60 END AS timeout_s,
           CASE WHEN n %% 5 = 0 THEN 5 ELSE 3 END AS max_att
      FROM (
        SELECT n, md5('job' || n)::uuid AS id, q.name AS queue_name,
               CASE WHEN n %% 100 < 60 THEN 'Completed' WHEN n %% 100 < 66 THEN 'Failed'
                    WHEN n %% 100 < 69 THEN 'Dead' WHEN n %% 100 < 72 THEN 'TimedOut'
                    WHEN n %% 100 < 86 THEN 'Pending' WHEN n %% 100 < 94 THEN 'Running'
                    ELSE 'Retrying' END AS status,
               substr(%(lorem)s, 1 + ((n * 37) %% 700)::int, 40 + ((n * 53) %% 2400)::int) AS txt,
               md5(n::text) AS h
          FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS n
          CROSS JOIN LATERAL (SELECT (%(queues)s::text[])[1 + ((n * 7919) %% 8)::int] AS name) q
      ) b
  ) s
  CROSS JOIN LATERAL (SELECT s.finished - (1 + n %% 600) * interval '1 second' AS created) c
  CROSS JOIN LATERAL (SELECT CASE s.queue_name
    WHEN 'email_queue' THEN jsonb_build_object(
        'to', 'user' || (n %% 50000) || '@example.com',
        'template', (ARRAY['receipt','welcome','reset','digest'])[1 + n %% 4],
        'subject', left(txt, 60), 'vars', jsonb_build_object('first_name', 'Alex' || (n %% 977), 'order_id', n,
        'locale', (ARRAY['en-GB','de-DE','fr-FR','nl-NL'])[1 + n %% 4]), 'body_html', '<p>' || txt || '</p>')
    WHEN 'payment_queue' THEN jsonb_build_object(
        'customer', jsonb_build_object('id', (n %% 4999)::text, 'tier', (ARRAY['free','pro','team'])[1 + n %% 3]),
        'order_id', n, 'amount', round((n %% 100000)::numeric / 7, 2),
        'currency', (ARRAY['EUR','USD','GBP'])[1 + n %% 3],
        'card', jsonb_build_object('brand', (ARRAY['visa','mastercard','amex'])[1 + n %% 3],
                                   'last4', lpad((n %% 10000)::text, 4, '0')),
        'idempotency_key', h, 'items', jsonb_build_array(
            jsonb_build_object('sku', 'SKU-' || (n %% 811), 'qty', 1 + n %% 3, 'price', (n %% 9000) / 100.0),
            jsonb_build_object('sku', 'SKU-' || (n %% 173), 'qty', 1, 'price', (n %% 4000) / 100.0)),
        'note', left(txt, (n %% 600)::int))
    WHEN 'analytics_queue' THEN jsonb_build_object(
        'event', (ARRAY['page_view','add_to_cart','checkout','signup','search'])[1 + n %% 5], 'user_id', n %% 200000,
        'session', h, 'props', jsonb_build_object('path', '/products/' || (n %% 3000),
        'referrer', 'https://search.example.org/?q=' || (n %% 97), 'duration_ms', n %% 30000),
        'context', jsonb_build_object('ip', '10.' || (n %% 256) || '.' || (n * 7 %% 256) || '.' || (n * 13 %% 256),
        'user_agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0'))
    WHEN 'critical_queue' THEN jsonb_build_object(
        'alert', 'disk usage above threshold', 'severity', (ARRAY['warning','critical','page'])[1 + n %% 3],
        'service', 'svc-' || (n %% 40), 'host', 'node-' || (n %% 300) || '.prod.internal', 'details', txt)
    WHEN 'webhooks' THEN jsonb_build_object(
        'url', 'https://hooks.example.com/' || left(h, 12) || '/events', 'event', 'invoice.paid',
        'headers', jsonb_build_object('X-Signature', h || md5(h), 'Content-Type', 'application/json'),
        'body', jsonb_build_object('customer', jsonb_build_object('id', (n %% 4999)::text), 'invoice', 'in_' || h,
        'lines', (n %% 5) + 1, 'memo', left(txt, (n %% 1500)::int)))
    WHEN 'reports/monthly' THEN jsonb_build_object(
        'report', 'revenue', 'month', to_char(s.finished, 'YYYY-MM'), 'filters', jsonb_build_object(
        'regions', jsonb_build_array('eu-west', 'us-east', 'ap-south'),
        'plan', (ARRAY['free','pro','team'])[1 + n %% 3]),
        'recipients', jsonb_build_array('finance@example.com', 'cfo@example.com'), 'summary', txt)
    WHEN 'image-resize' THEN jsonb_build_object(
        'bucket', 'uploads-prod', 'key', 'uploads/' || (n %% 100000) || '/' || h || '.jpg',
        'sizes', jsonb_build_array(64, 256, 1024), 'format', (ARRAY['webp','avif','jpeg'])[1 + n %% 3],
        'exif', left(txt, (n %% 300)::int))
    ELSE jsonb_build_object(
        'device_token', h || md5(h) || md5(h || 'x'), 'platform', (ARRAY['ios','android'])[1 + n %% 2],
        'title', left(txt, 40), 'body', left(txt, (n %% 900)::int),
        'data', jsonb_build_object('deeplink', 'app://orders/' || n))
    END AS payload) p
"""


def hammerwork_migrations() -> Path:
    """Hammerwork's own migrations stay in ../shared (its text, not ours); found the way the tests find them."""
    found = migrations_dir()
    if found is None:
        raise SystemExit(
            "bench needs Hammerwork's migrations: ../shared/reference/hammerwork-migrations/ beside the checkout, "
            "or TIERING_HAMMERWORK_MIGRATIONS=/path/to/them"
        )
    return found


def apply_hammerwork_migrations(url: str) -> None:
    """Hammerwork's 001-014 as Hammerwork applies them (each file once, recorded in hammerwork_migrations)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS hammerwork_migrations (migration_id VARCHAR PRIMARY KEY, "
            "executed_at TIMESTAMPTZ NOT NULL DEFAULT now(), execution_time_ms BIGINT NOT NULL DEFAULT 0)"
        )
        for path in sorted(hammerwork_migrations().glob("0*.postgres.sql")):
            started = time.perf_counter()
            conn.execute(path.read_text().encode())
            conn.execute(
                "INSERT INTO hammerwork_migrations (migration_id, execution_time_ms) VALUES (%s, %s)",
                (path.name.split(".")[0], int((time.perf_counter() - started) * 1000)),
            )


def create_database(base_url: str, name: str, db_url_for: object) -> str:
    """A fresh database with Hammerwork's schema and tiering's tables; returns its URL."""
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = db_url_for(base_url, name)  # type: ignore[operator]
    apply_hammerwork_migrations(url)
    with psycopg.connect(url) as conn:
        migrate(conn)
    return str(url)


def rows_for(eligible: int) -> int:
    """How many jobs to seed so that about `eligible` of them are archivable."""
    return math.ceil(eligible / ELIGIBLE_SHARE)


def seed(url: str, rows: int, *, days: int = 365, chunk: int = 250_000) -> None:
    """Insert `rows` Hammerwork-shaped jobs (in chunks, one transaction each), then VACUUM ANALYZE."""
    with psycopg.connect(url) as conn:
        t0 = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        for start in range(1, rows + 1, chunk):
            stop = min(rows, start + chunk - 1)
            conn.execute(
                _SEED_SQL,  # type: ignore[arg-type]
                {"queues": QUEUES, "days": days, "start": start, "stop": stop, "lorem": _LOREM * 4, "t0": t0},
            )
            conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


ELIGIBLE_SQL = """(status = 'Completed' AND completed_at < {cut})
    OR (status IN ('Failed', 'Dead') AND failed_at < {cut})
    OR (status = 'TimedOut' AND timed_out_at < {cut})"""


def eligible_where(cutoff_sql: str) -> str:
    """The bench policy's eligibility as plain SQL (for the references, which do not use tiering's code)."""
    return "(" + ELIGIBLE_SQL.format(cut=cutoff_sql) + ")"
