"""A/B of the partial purge (make bench's "Dead jobs of payment_queue, all days") between checkouts, on the same
data, alternating runs: one embedded PostgreSQL and one SeaweedFS; a 365-day archive flushed once per flushing
checkout (a template database, its payment_queue objects kept on disk); then for every run a fresh copy of that
database and of those objects (a bucket of its own), purged by the checkout under test.

    python -m bench.purge_ab --jobs 200000 --pairs 3 old=/work/wt/purge-old new=.          # 2 checkouts
    python -m bench.purge_ab --reuse --pairs 3 new=. new-mi=.@ARROW_DEFAULT_MEMORY_POOL=mimalloc

NAME=WORKTREE runs that worktree's `.venv/bin/python -m bench.cli_child` (cwd = the worktree), with the environment
after `@` added; --flush-with names the checkouts whose flush makes a fixture (default: every one), and every
purging checkout runs on every fixture. --days 73 puts as many rows in each object as 1M jobs over 365 days do.
PAB_PROFILE=1 (or =gil: only samples holding the GIL) records each purge with py-spy (raw stacks beside the
timings). Figures only; compare checkouts within one run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import dataset
from bench.run import db_url, floor_move, tiering_env
from tiering.db.connection import resolve_database_url, stop_embedded
from tiering.settings import Settings

OUT = Path(os.environ.get("PURGE_AB_OUT", "/tmp/purge-ab")).resolve()
PURGE_ARGS = ["archive", "purge", "--queue", "payment_queue", "--status", "Dead", "--yes"]
PAYMENT_KEYS = "SELECT key FROM tiering_manifest WHERE state = 'committed' AND queue_name = 'payment_queue'"


def cli(tree: Path, label: str, args: list[str], env: dict[str, str], extra: dict[str, str]) -> dict[str, Any]:
    """`tiering <args>` by that checkout in a child process: its JSON and bench.cli_child's timing."""
    # importing tiering here set Arrow's allocator for this process's children; each checkout chooses its own
    env = {k: v for k, v in env.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | extra
    timing = OUT / f"{label}.timing.json"
    python = [str(tree / ".venv/bin/python")]
    profile = os.environ.get("PAB_PROFILE")
    if profile and label.startswith("purge"):
        spy = str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
        gil = ["--gil"] if profile == "gil" else []
        python = [spy, "record", "--format", "raw", "-r", "250", *gil, "--threads",
                  "-o", str(OUT / f"{label}.prof.txt"), "--", *python]  # fmt: skip
    with open(OUT / f"{label}.stderr", "wb") as err:
        proc = subprocess.run(
            ["nice", *python, "-m", "bench.cli_child", str(timing), *args, "--format", "json"],
            env=env, stdout=subprocess.PIPE, stderr=err, cwd=tree, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: exit {proc.returncode}; see {OUT / (label + '.stderr')}")
    out = b"\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith(b"py-spy>"))
    return {"doc": json.loads(out), **json.loads(timing.read_text())}


def cpu_of_servers() -> dict[str, float]:
    """CPU seconds used so far by this run's PostgreSQL (its processes, ended children included) and SeaweedFS
    (Linux /proc: processes whose command line names OUT)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"postgres": 0.0, "seaweedfs": 0.0}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        kind = "seaweedfs" if "weed" in cmd and str(OUT) in cmd else None
        if kind is None and "postgres" in stat[: stat.rindex(")")] and str(OUT) in cmd:
            kind = "postgres"  # the postmaster (its ended children in cutime/cstime)
        elif kind is None and "postgres" in stat[: stat.rindex(")")]:
            try:
                parent = Path(f"/proc/{fields[1]}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            kind = "postgres" if str(OUT) in parent else None
            fields = fields[:13] + ["0", "0"] + fields[15:]  # a backend: its own time only
        if kind is not None:
            out[kind] += sum(int(v) for v in fields[11:15]) / tick
    return out


def make_fixture(base: str, s3: Any, tree: Path, name: str) -> None:
    """Database pab_fix_NAME (a copy of pab_src, staged by the bare SQL move, flushed by `tree` into bucket
    pab-fix-NAME) and its payment_queue objects kept under OUT/objects-NAME."""
    url = db_url(base, f"pab_fix_{name}")
    n = floor_move(url)
    client = s3.client()
    client.create_bucket(Bucket=f"pab-fix-{name}")
    env = tiering_env(url, f"s3://pab-fix-{name}/archive", OUT / f"home-{name}", s3.endpoint)
    run = cli(tree, f"flush-{name}", ["archive", "flush"], env, {})
    with psycopg.connect(url) as conn:
        keys = [r[0] for r in conn.execute(PAYMENT_KEYS)]

    def download(key: str) -> None:
        path = OUT / f"objects-{name}" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(f"pab-fix-{name}", key, str(path))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(download, keys))
    print(f"fixture {name}: {n:,} staged, flushed {run['doc'].get('jobs_flushed')} jobs into "
          f"{run['doc'].get('objects_written')} objects in {run['seconds']:.1f} s", flush=True)  # fmt: skip


def upload_fixture(s3: Any, name: str) -> None:
    """--reuse: a fresh SeaweedFS gets the kept objects of fixture NAME again."""
    client = s3.client()
    client.create_bucket(Bucket=f"pab-fix-{name}")
    kept = OUT / f"objects-{name}"
    files = [p for p in kept.rglob("*") if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), f"pab-fix-{name}", str(p.relative_to(kept))), files))


def one_run(base: str, s3: Any, k: int, tree: Path, extra: dict[str, str], label: str, fix: str) -> dict[str, Any]:
    """A fresh copy of fixture `fix` (database and payment_queue objects, a bucket of its own) purged by `tree`."""
    client = s3.client()
    stamp = f"{k}x{int(time.time()) % 100000}"
    db, bucket = f"pab_run{stamp}", f"pab-run{stamp}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db} TEMPLATE pab_fix_{fix} STRATEGY FILE_COPY")
    url = db_url(base, db)
    with psycopg.connect(url, autocommit=True) as conn:
        keys = [r[0] for r in conn.execute(PAYMENT_KEYS)]
        conn.execute("UPDATE tiering_manifest SET bucket = %s", (bucket,))
    client.create_bucket(Bucket=bucket)
    source = f"pab-fix-{fix}"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.copy_object(Bucket=bucket, Key=key,
                                                     CopySource={"Bucket": source, "Key": key}), keys))  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    time.sleep(2)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    env = tiering_env(url, f"s3://{bucket}/archive", OUT / f"home-run{k}", s3.endpoint)
    servers = cpu_of_servers()
    run = cli(tree, f"purge-{k}-{label}-on-{fix}", [*PURGE_ARGS, "--older-than", tomorrow], env, extra)
    servers = {name: round(v - servers[name], 2) for name, v in cpu_of_servers().items()}
    d = run["doc"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {db} WITH (FORCE)")
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):  # a run leaves as many as it copied
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
    return {"seconds": round(run["seconds"], 2), "cpu_s": round(run["cpu_s"], 2), "jobs": d.get("jobs_purged"),
            "rewritten": d.get("objects_rewritten"), "phases": d.get("phase_seconds"),
            "postgres_cpu_s": servers["postgres"], "seaweedfs_cpu_s": servers["seaweedfs"]}  # fmt: skip


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--days", type=int, default=365, help="fewer days: as many rows per object as a bigger run")
    ap.add_argument("--flush-with", default="")
    ap.add_argument("--reuse", action="store_true", help="the fixtures of the last run (same --flush-with)")
    ap.add_argument("trees", nargs="+", help="NAME=WORKTREE[@VAR=VALUE,...]")
    a = ap.parse_args()
    trees: dict[str, Path] = {}
    extra: dict[str, dict[str, str]] = {}
    for spec in a.trees:
        name, _, rest = spec.partition("=")
        path, _, env_spec = rest.partition("@")
        trees[name] = Path(path).resolve()
        extra[name] = dict(e.split("=", 1) for e in env_spec.split(",") if e)
    flushers = a.flush_with.split(",") if a.flush_with else list(trees)
    from bench.seaweed import seaweedfs_server

    stop_embedded(OUT / ".tiering")
    if not a.reuse:
        shutil.rmtree(OUT, ignore_errors=True)
    shutil.rmtree(OUT / "weed", ignore_errors=True)  # a fresh SeaweedFS; --reuse uploads the kept objects again
    OUT.mkdir(parents=True, exist_ok=True)
    base = resolve_database_url(Settings(home=OUT / ".tiering", embedded=True))
    try:
        if not a.reuse:
            src = dataset.create_database(base, "pab_src", db_url)
            dataset.seed(src, dataset.rows_for(a.jobs), days=a.days)
            with psycopg.connect(base, autocommit=True) as conn:
                for name in flushers:
                    conn.execute(f"CREATE DATABASE pab_fix_{name} TEMPLATE pab_src STRATEGY FILE_COPY")
                conn.execute("DROP DATABASE pab_src")
        with seaweedfs_server((OUT / "weed").resolve()) as s3:
            os.environ.update(
                AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key, AWS_DEFAULT_REGION=s3.region
            )
            for name in flushers:
                upload_fixture(s3, name) if a.reuse else make_fixture(base, s3, trees[name], name)
            times: dict[tuple[str, str], list[dict[str, Any]]] = {}
            k = 0
            for pair in range(a.pairs):
                for fix in flushers:
                    for name in trees if pair % 2 == 0 else list(trees)[::-1]:
                        k += 1
                        rec = one_run(base, s3, k, trees[name], extra[name], name, fix)
                        times.setdefault((name, fix), []).append(rec)
                        print(f"run {k}: purge {name} on fixture {fix}: {json.dumps(rec)}", flush=True)
            print("\nsummary (medians: the whole purge's wall, its rewrite phase, the process's CPU)")
            for (name, fix), recs in times.items():
                secs, cpu = [r["seconds"] for r in recs], [r["cpu_s"] for r in recs]
                pg, weed = [r["postgres_cpu_s"] for r in recs], [r["seaweedfs_cpu_s"] for r in recs]
                rw = [(r["phases"] or {}).get("rewrite", 0.0) for r in recs]
                print(f"  purge {name:8} on {fix:8}: {median(secs):.2f} s {sorted(secs)}; rewrite {median(rw):.2f} s "
                      f"{sorted(rw)}; CPU {median(cpu):.2f} s {sorted(cpu)} (PostgreSQL {median(pg):.2f}, SeaweedFS "
                      f"{median(weed):.2f})")  # fmt: skip
    finally:
        stop_embedded(OUT / ".tiering")


if __name__ == "__main__":
    main()
