"""`make bench`: tiering's throughput on 1,000,000 Hammerwork jobs beside references measured in the same run.

  staging   tiering archive (hot -> staging)      vs  a bare set-based SQL move of an identical copy
  flush     tiering flush to a local SeaweedFS    vs  DuckDB's plain export of the same rows to zstd Parquet
  cold      bytes per job in the cold tier        vs  DuckDB's export
  restore   p50/p95 latency + object requests per cold restore (through SeaweedFS)
  search    one-queue payload search              vs  DuckDB on the same objects through the same endpoint
  purge     purge of every cold job by age (seconds, DeleteObjects calls)

Figures only: nothing here asserts a timing. BENCH_JOBS=200000 make bench for a quicker run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.duck import connect as duck_connect
from tiering.db.connection import resolve_database_url, stop_embedded
from tiering.db.migrations import migrate
from tiering.db.staging import eligibility_predicate
from tiering.demo import seed_demo_jobs
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.policy import ArchivalConfig, ArchivalPolicy, eligibility_clauses
from tiering.settings import Settings
from tiering.store import open_store

warnings.simplefilter("ignore")
OUT = Path("bench/out")
JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
BATCH = int(os.environ.get("BENCH_BATCH", "5000"))
HOUR = timedelta(hours=1)
POLICY = ArchivalPolicy(
    archive_completed_after=HOUR,
    archive_failed_after=HOUR,
    archive_dead_after=HOUR,
    archive_timed_out_after=HOUR,
    batch_size=BATCH,
)
results: dict[str, Any] = {}
NOW = datetime.now(UTC)  # one eligibility instant for the reference and tiering


def say(message: str) -> None:
    print(message, flush=True)


def db_url(base: str, name: str) -> str:
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


FLOOR_SQL = """
WITH moved AS (
    DELETE FROM hammerwork_jobs WHERE id IN (
        SELECT h.id FROM hammerwork_jobs h WHERE {where} LIMIT %(limit)s FOR UPDATE OF h SKIP LOCKED)
    RETURNING *
)
INSERT INTO hammerwork_jobs_archive (
    id, queue_name, payload, payload_compressed, original_payload_size, status, priority, priority_weight,
    attempts, max_attempts, created_at, scheduled_at, started_at, completed_at, failed_at, timed_out_at,
    archived_at, error_message, result, result_ttl, timeout_seconds, cron_schedule, next_run_at, recurring,
    timezone, batch_id, depends_on, dependency_status, trace_id, correlation_id, parent_span_id, span_context,
    archival_reason, archived_by, is_encrypted, pii_fields)
SELECT id, queue_name, convert_to(payload::text, 'UTF8'), false, octet_length(payload::text), status, 'normal', 5,
       attempts, max_attempts, created_at, scheduled_at, started_at, completed_at, failed_at, timed_out_at,
       now(), error_message, result_data, result_expires_at, timeout_seconds, cron_schedule, next_run_at,
       recurring, timezone, batch_id, depends_on, dependency_status, trace_id, correlation_id, parent_span_id,
       span_context, 'Manual', 'bench-floor', is_encrypted, pii_fields
  FROM moved
"""


def floor_move(url: str) -> int:
    """The reference: one DELETE ... RETURNING feeding an INSERT per batch, payload copied as it is."""
    pred = eligibility_predicate(eligibility_clauses(POLICY, NOW), None)
    query = psycopg.sql.SQL(FLOOR_SQL).format(where=pred.clause)  # type: ignore[arg-type]
    moved = 0
    with psycopg.connect(url) as conn:
        while True:
            n = conn.execute(query, {**pred.params, "limit": BATCH}).rowcount
            conn.commit()
            if n <= 0:
                return moved
            moved += n


def prepare_databases(base: str) -> tuple[str, str]:
    with psycopg.connect(base, autocommit=True) as conn:
        for name in ("bench_src", "bench_floor", "bench_tiering"):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute("CREATE DATABASE bench_src")
    src = db_url(base, "bench_src")
    with psycopg.connect(src) as conn:
        migrate(conn)
        _, seconds = timed(lambda: seed_demo_jobs(conn, JOBS, days=90))
        conn.commit()
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    say(f"seeded {JOBS:,} Hammerwork jobs in {seconds:.1f} s")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_floor TEMPLATE bench_src")
        conn.execute("CREATE DATABASE bench_tiering TEMPLATE bench_src")
    return db_url(base, "bench_floor"), db_url(base, "bench_tiering")


def bench_staging(floor_url: str, tiering_url: str) -> None:
    say(f"\n== staging (hot -> hammerwork_jobs_archive), batches of {BATCH}")
    floor_n, floor_s = timed(lambda: floor_move(floor_url))
    stats, tier_s = timed(lambda: archive_jobs(tiering_url, None, POLICY, ArchivalConfig(), "manual", "bench", now=NOW))
    floor_rate, tier_rate = floor_n / floor_s, stats.jobs_archived / tier_s
    assert floor_n == stats.jobs_archived, (floor_n, stats.jobs_archived)
    say(f"floor (bare SQL move, 1 connection):   {floor_n:,} jobs in {floor_s:6.1f} s = {floor_rate:9,.0f} jobs/s")
    say(
        f"tiering archive (zstd payloads):       {stats.jobs_archived:,} jobs in {tier_s:6.1f} s = "
        f"{tier_rate:9,.0f} jobs/s  ({tier_rate / floor_rate:.2f}x floor; compression ratio "
        f"{stats.compression_ratio})"
    )
    results["staging"] = {
        "jobs": floor_n,
        "floor_jobs_per_s": round(floor_rate),
        "tiering_jobs_per_s": round(tier_rate),
        "ratio": round(tier_rate / floor_rate, 3),
        "seconds": round(tier_s, 2),
    }


def bench_flush(floor_url: str, tiering_url: str, s3: Any) -> Settings:
    say("\n== flush (staging -> zstd Parquet on SeaweedFS)")
    bucket = "bench-archive"
    s3.client().create_bucket(Bucket=bucket)
    settings = Settings(home=OUT / "home", store_url=f"s3://{bucket}/archive", s3_endpoint_url=s3.endpoint)
    store = open_store(settings)
    stats, flush_s = timed(lambda: flush_staged(tiering_url, store, settings, POLICY, ArchivalConfig()))
    rate = stats.jobs_flushed / flush_s
    cold = stats.bytes_written / stats.jobs_flushed
    say(
        f"tiering flush:  {stats.jobs_flushed:,} jobs, {stats.objects_written} objects, {flush_s:6.1f} s = "
        f"{rate:9,.0f} jobs/s, {cold:.1f} cold bytes/job"
    )

    duck_bucket = "bench-duckdb"
    s3.client().create_bucket(Bucket=duck_bucket)
    con = duck_connect("httpfs", "postgres_scanner")
    host = floor_url.split("host=")[1]
    con.execute(f"ATTACH 'host={host} dbname=bench_floor user=postgres' AS pg (TYPE postgres, READ_ONLY)")
    con.execute(
        f"CREATE SECRET bench (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', REGION '{s3.region}', "
        f"ENDPOINT '{s3.endpoint.split('://', 1)[1]}', URL_STYLE 'path', USE_SSL false)"
    )
    _, duck_s = timed(
        lambda: con.execute(
            f"""COPY (SELECT * EXCLUDE (payload), decode(payload) AS payload,
                             strftime(archived_at AT TIME ZONE 'UTC', '%Y-%m-%d') AS date
                        FROM pg.public.hammerwork_jobs_archive)
                TO 's3://{duck_bucket}/archive' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (queue_name, date))"""  # noqa: S608
        )
    )
    duck_rows = stats.jobs_flushed
    listing = s3.client().get_paginator("list_objects_v2").paginate(Bucket=duck_bucket)
    duck_bytes = sum(o["Size"] for page in listing for o in page.get("Contents", []))
    duck_rate, duck_cold = duck_rows / duck_s, duck_bytes / duck_rows
    say(
        f"DuckDB export:  {duck_rows:,} rows, {duck_s:6.1f} s = {duck_rate:9,.0f} rows/s, "
        f"{duck_cold:.1f} cold bytes/job"
    )
    say(f"flush / DuckDB: {rate / duck_rate:.2f}x rate; cold bytes {cold / duck_cold:.2f}x DuckDB's")
    results["flush"] = {
        "jobs": stats.jobs_flushed,
        "objects": stats.objects_written,
        "seconds": round(flush_s, 2),
        "jobs_per_s": round(rate),
        "cold_bytes_per_job": round(cold, 1),
        "duckdb_rows_per_s": round(duck_rate),
        "duckdb_cold_bytes_per_job": round(duck_cold, 1),
        "rate_vs_duckdb": round(rate / duck_rate, 3),
        "cold_vs_duckdb": round(cold / duck_cold, 3),
    }
    end_to_end = stats.jobs_flushed / (results["staging"]["seconds"] + flush_s)
    results["end_to_end_jobs_per_s"] = round(end_to_end)
    say(f"end to end (hot -> committed objects): {end_to_end:,.0f} jobs/s")
    return settings


def later_sections(url: str, settings: Settings, s3: Any) -> None:
    from bench.purge_bench import run_purge_bench
    from bench.restore_search_bench import run as run_restore_search

    say("\n== restore & search (cold, through SeaweedFS)")
    results["restore_search"] = run_restore_search(url, settings, s3, say)
    say("\n== purge of every cold job by age")
    purge = run_purge_bench(url, open_store(settings), settings)
    say(
        f"purged {purge['jobs_purged']:,} jobs ({purge['objects_deleted']} objects) in {purge['purge_seconds']:.2f} s "
        f"with {purge['delete_objects_calls']} DeleteObjects calls"
    )
    results["purge"] = purge


def main() -> None:
    stop_embedded(OUT / ".tiering")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    base = resolve_database_url(Settings(home=OUT / ".tiering", embedded=True))
    say(f"bench: {JOBS:,} jobs, embedded PostgreSQL (tiering's tuning), {os.cpu_count()} cores")
    floor_url, tiering_url = prepare_databases(base)
    bench_staging(floor_url, tiering_url)
    from bench.seaweed import seaweedfs_server

    with seaweedfs_server((OUT / "weed").resolve()) as s3:
        os.environ.update(
            AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key, AWS_DEFAULT_REGION=s3.region
        )
        settings = bench_flush(floor_url, tiering_url, s3)
        later_sections(tiering_url, settings, s3)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    stop_embedded(OUT / ".tiering")
    say(f"\nfigures saved to {OUT / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())
