"""Load test of `tiering serve` (issue 12.5), loopback only and bounded: LOAD_CLIENTS clients (default 20) for
LOAD_SECONDS (default 30) mixing GET /api/archive/jobs and GET /api/archive/search while an `archive run`
moves jobs. Reports /jobs and /search p50/p99 and every status code; 429/503 from admission control are the
documented answers to overload, anything else is an error.

Data: LOAD_ROWS Hammerwork-shaped jobs (bench/dataset.py, default 300,000). A first `archive run` with a 30-day
policy fills the cold tier (the searches scan it); the run under load uses a 1-day policy, so it moves the
younger finished jobs while the clients hammer the API.

    python -m bench.load           (also the last step of `make bench`)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from bench import dataset

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "20"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "30"))
ROWS = int(os.environ.get("LOAD_ROWS", "300000"))
SEARCH_SHARE = float(os.environ.get("LOAD_SEARCH_SHARE", "0.3"))
WITH_RUN = os.environ.get("LOAD_WITH_RUN", "1") != "0"  # 0: no archive run during the load (a baseline)
REUSE = os.environ.get("LOAD_REUSE", "0") == "1"  # 1: reuse the last load database and objects (iterating)
_TOKEN: list[str] = ["bench-token"]  # the API token bench.run's api_server configures


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _request(url: str) -> tuple[int, float]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {_TOKEN[0]}"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
            resp.read()
            code = resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        code = exc.code
    except OSError:
        code = -1  # connection refused/reset: an error
    return code, time.perf_counter() - start


def _run_cli(env: dict[str, str], policy: Path, out: Path, label: str) -> subprocess.Popen[bytes]:
    log = (out / f"load-{label}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", "from tiering.cli import main; main()", "archive", "run", "--format", "json"],
        env=env | {"TIERING_POLICY": str(policy)}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def run_load(
    base_url: str, out: Path, db_url_for: Any, api_server: Any, tiering_env: Any, token: str
) -> dict[str, Any]:
    """The load test against a fresh database on the PostgreSQL server at `base_url`; returns its figures.
    `api_server(env)` starts `tiering serve` (bearer `token`) and yields its base URL."""
    _TOKEN[0] = token
    out.mkdir(parents=True, exist_ok=True)
    home = (out / "home-load").resolve()
    objects = (out / "load-objects").resolve()
    month, day = out / "load-policy-30d.json", out / "load-policy-1d.json"
    url = db_url_for(base_url, "bench_load")
    env = tiering_env(url, objects.as_uri(), home)
    if not REUSE:
        url = dataset.create_database(base_url, "bench_load", db_url_for)
        shutil.rmtree(objects, ignore_errors=True)
        dataset.seed(url, ROWS)
        for path, age in ((month, "30d"), (day, "1d")):
            doc = {f"archive_{s}_after": age for s in ("completed", "failed", "dead", "timed_out")}
            path.write_text(json.dumps(doc))
        t0 = time.perf_counter()
        first = _run_cli(env, month, out, "first")
        if first.wait() != 0:
            raise RuntimeError(f"the first archive run failed; see {out / 'load-first.log'}")
        say = f"load: {ROWS:,} jobs seeded; first archive run (30-day policy) {time.perf_counter() - t0:.1f} s"
        print(say, flush=True)
        # a database in service has been analysed since its first flush (autovacuum); the plan of the list
        # route right after a flush, before any ANALYZE, is measured by bench.run's list-route row instead
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")

    codes: dict[str, dict[int, int]] = {"jobs": {}, "search": {}}
    times: dict[str, list[float]] = {"jobs": [], "search": [], "search_ok": []}
    lock = threading.Lock()
    with api_server(env) as base:
        # the reference in the same run: one client alone, /jobs after /jobs (the first warms the pool)
        alone = [_request(f"{base}/api/archive/jobs?limit=50")[1] for _ in range(21)][1:]
        stop_at = time.monotonic() + SECONDS
        runner = _run_cli(env, day, out, "under-load") if WITH_RUN else None
        run_started = time.perf_counter()

        def client(n: int) -> None:
            rng = random.Random(n)
            while time.monotonic() < stop_at:
                if rng.random() < SEARCH_SHARE:
                    route = "search"
                    target = f"{base}/api/archive/search?key=customer.id&value={rng.randrange(4999)}&limit=20"
                else:
                    route = "jobs"
                    offset = rng.choice([0, 0, 0, 50, 500])
                    target = f"{base}/api/archive/jobs?limit=50&offset={offset}"
                code, seconds = _request(target)
                with lock:
                    codes[route][code] = codes[route].get(code, 0) + 1
                    times[route].append(seconds)
                    if route == "search" and code == 200:
                        times["search_ok"].append(seconds)
                if code in (429, 503):
                    time.sleep(0.2)  # a polite client waits (a short Retry-After for the bench)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run_code = runner.wait() if runner is not None else None
        run_seconds = time.perf_counter() - run_started
    errors = {
        route: sum(n for code, n in by_code.items() if code not in (200, 429, 503)) for route, by_code in codes.items()
    }
    figures = {
        "clients": CLIENTS,
        "seconds": SECONDS,
        "rows": ROWS,
        "jobs_alone_median_s": round(statistics.median(alone), 4),
        "jobs_requests": sum(codes["jobs"].values()),
        "jobs_p50_s": _pct(times["jobs"], 0.5),
        "jobs_p99_s": _pct(times["jobs"], 0.99),
        "jobs_max_s": _pct(times["jobs"], 1.0),
        "search_requests": sum(codes["search"].values()),
        "search_ok_p50_s": _pct(times["search_ok"], 0.5),
        "search_ok_p99_s": _pct(times["search_ok"], 0.99),
        "search_all_median_s": round(statistics.median(times["search"]), 3) if times["search"] else None,
        "codes": {route: {str(k): v for k, v in sorted(by_code.items())} for route, by_code in codes.items()},
        "errors_other_than_429_503": errors,
        "archive_run_exit": run_code,
        "archive_run_seconds_under_load": round(run_seconds, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
    (out / "load.json").write_text(json.dumps(figures, indent=2))
    print(
        f"load: {CLIENTS} clients x {SECONDS:.0f} s during an archive run ({run_seconds:.1f} s, exit {run_code}): "
        f"/jobs p50 {figures['jobs_p50_s']} s p99 {figures['jobs_p99_s']} s ({figures['jobs_requests']} requests); "
        f"/search 200s p50 {figures['search_ok_p50_s']} s p99 {figures['search_ok_p99_s']} s; "
        f"codes {figures['codes']}; "
        f"errors other than 429/503: {errors}; one client alone: /jobs median {figures['jobs_alone_median_s']} s; "
        f"load average {figures['load_average']}",
        flush=True,
    )
    return figures


def main() -> None:
    from bench import run as bench_run
    from tiering.db.connection import resolve_database_url, stop_embedded
    from tiering.settings import Settings

    out = bench_run.OUT
    out.mkdir(parents=True, exist_ok=True)
    home = out / ".tiering-load"
    base = resolve_database_url(Settings(home=home, embedded=True))
    try:
        run_load(base, out, bench_run.db_url, bench_run.api_server, bench_run.tiering_env, bench_run.TOKEN)
    finally:
        stop_embedded(home)


if __name__ == "__main__":
    main()
