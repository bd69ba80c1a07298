"""Cold restore latency (p50/p95; requests and bytes per restore, counted on the wire by a proxy) and a one-queue
payload search beside DuckDB reading the same objects through the same endpoint."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg

from bench.duck import connect as duck_connect
from bench.proxy import counting_proxy
from tiering import parquet as pqio
from tiering import schema as S
from tiering.context import Session
from tiering.engine.query import object_footer, search_archived_jobs
from tiering.engine.restore import restore_archived_job
from tiering.settings import Settings
from tiering.store import open_store

SEARCH_QUEUE = "payment_queue"
SEARCH_KEY, SEARCH_VALUE = "customer.id", "1237"
SEARCH_ROUNDS = 7


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(what fn returns, wall seconds, CPU seconds of this process, every thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def decode_step(store: Any, key: str, size: int, rounds: int = 30) -> float:
    """Median ms to decode one job of the object's biggest row group from bytes already fetched (what a restore
    decodes: S.RESTORE_COLUMNS), without the database or the network."""
    meta = object_footer(store, key, size)
    rg = max(range(meta.num_row_groups), key=lambda i: meta.row_group(i).num_rows)
    cols = pqio.present_columns(meta, S.RESTORE_COLUMNS)
    start, end = pqio.row_group_range(meta, rg, cols)
    segment = (start, store.get_bytes(key, (start, end)))
    times = []
    for i in range(rounds):
        t0 = time.perf_counter()
        pqio.rows_from_segment(meta, size, segment, [(rg, i % meta.row_group(rg).num_rows)], cols).to_pylist()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run(url: str, settings: Settings, s3: Any, say: Callable[[str], None], restores: int = 50) -> dict[str, Any]:
    store = open_store(settings)
    bucket = settings.resolved_store_url.split("://", 1)[1].split("/", 1)[0]
    with psycopg.connect(url) as conn:
        sized = conn.execute(
            "SELECT key, bytes FROM tiering_manifest WHERE state = 'committed' AND queue_name = %s ORDER BY key",
            (SEARCH_QUEUE,),
        ).fetchall()
        files = [r[0] for r in sized]
        ids = [str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index WHERE restored_at IS NULL")]

    # search: tiering (through the store) vs DuckDB (httpfs, same endpoint, same objects). Each side's first search
    # (footers, connections, threads) is printed but left out of the ratio; then SEARCH_ROUNDS timed rounds, each
    # running every contender once in turn, so load from outside the bench falls on all alike. All run in this
    # process with what they keep between queries: tiering its session (pooled connections, store client, footer
    # cache, search threads), DuckDB its connection. With its defaults DuckDB keeps an external file cache: a
    # repeated query checks the files and reads their bytes from memory, while tiering reads every payload byte
    # from the store each time. So DuckDB is measured twice: as it comes (the reference of the goal) and with
    # that cache off (every byte from the store, like for like).
    def duck_connection(*settings: str) -> Any:
        con = duck_connect("httpfs", "json")
        for setting in settings:
            con.execute(f"SET {setting}")
        con.execute(
            f"CREATE SECRET bench (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', "
            f"REGION '{s3.region}', ENDPOINT '{s3.endpoint.split('://', 1)[1]}', URL_STYLE 'path', USE_SSL false)"
        )
        return con

    file_list = ", ".join(f"'s3://{bucket}/{key}'" for key in files)
    query = (
        f"SELECT count(*) FROM read_parquet([{file_list}]) "  # noqa: S608 - keys from our manifest
        f"WHERE json_extract_string(payload, '$.customer.id') = '{SEARCH_VALUE}'"
    )
    ducks = {"duck": duck_connection(), "duck_reread": duck_connection("enable_external_file_cache = false")}
    wire: list[tuple[int, int]] = []  # tiering's (store requests, object bytes) per search

    def tiering_search(session: Session) -> int:
        before = store.request_count
        found = search_archived_jobs(session, SEARCH_KEY, SEARCH_VALUE, queue=SEARCH_QUEUE)
        wire.append((store.request_count - before, found.bytes_read))
        return len(found)

    with Session(settings, database_url=url, store=store) as session:  # opened once, as DuckDB's connection is
        def duck_search(con: Any) -> Callable[[], int]:
            return lambda: int(con.execute(query).fetchone()[0])

        contenders: dict[str, Callable[[], int]] = {
            "tiering": lambda: tiering_search(session),
            **{name: duck_search(con) for name, con in ducks.items()},
        }
        runs = {name: [_timed(fn)] for name, fn in contenders.items()}
        for _ in range(SEARCH_ROUNDS):
            for name, fn in contenders.items():
                runs[name].append(_timed(fn))
    found, duck_found = runs["tiering"][-1][0], runs["duck"][-1][0]
    wall = {name: statistics.median(r[1] for r in timed[1:]) for name, timed in runs.items()}
    cpu = {name: statistics.median(r[2] for r in timed[1:]) * 1000 for name, timed in runs.items()}
    t_med, d_med, r_med = wall["tiering"], wall["duck"], wall["duck_reread"]
    say(
        f"search {SEARCH_KEY}={SEARCH_VALUE} in {SEARCH_QUEUE} ({len(files)} objects), median of {SEARCH_ROUNDS} "
        f"alternating rounds: tiering {t_med:.3f} s ({found} jobs), DuckDB {d_med:.3f} s ({duck_found} rows): "
        f"{t_med / d_med:.2f}x DuckDB's time"
    )
    say(
        f"  DuckDB with its file cache off (every byte from the store, as tiering reads): {r_med:.3f} s; "
        f"tiering {t_med / r_med:.2f}x that"
    )
    say(
        f"  first search: tiering {runs['tiering'][0][1]:.3f} s, DuckDB {runs['duck'][0][1]:.3f} s; CPU per search "
        f"in this process (median, all threads): tiering {cpu['tiering']:.0f} ms, DuckDB {cpu['duck']:.0f} ms, "
        f"cache off {cpu['duck_reread']:.0f} ms"
    )
    say(
        f"  tiering per search after the first: {statistics.median(n for n, _ in wire[1:]):.0f} store requests "
        f"(the first: {wire[0][0]}, footers included), {statistics.median(b for _, b in wire[1:]) / 1e6:.1f} MB of "
        "objects"
    )

    # restore: random cold jobs, one at a time, through a proxy that counts requests and bytes on the wire
    latencies: list[float] = []
    requests: list[int] = []
    kbytes: list[float] = []
    with counting_proxy(s3.endpoint) as proxy:
        pstore = open_store(replace(settings, s3_endpoint_url=proxy.endpoint))
        with Session(settings, database_url=url, store=pstore) as psession:
            for job_id in random.Random(7).sample(ids, min(restores, len(ids))):
                proxy.reset()
                start = time.perf_counter()
                restore_archived_job(psession, job_id, initiated_by="bench")
                latencies.append(time.perf_counter() - start)
                n, down = proxy.snapshot()
                requests.append(n)
                kbytes.append(down / 1024)
    p50, p95 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.95) * 1000
    say(
        f"cold restore ({len(latencies)} random jobs): p50 {p50:.1f} ms, p95 {p95:.1f} ms; per restore on the wire: "
        f"requests max {max(requests)} (mean {statistics.mean(requests):.2f}), "
        f"KB read max {max(kbytes):.0f} (mean {statistics.mean(kbytes):.0f})"
    )
    decode_ms = decode_step(store, sized[0][0], sized[0][1])
    say(f"  of which decoding one job's row group (restore columns, bytes in memory): median {decode_ms:.1f} ms")
    return {
        "restore_decode_ms": round(decode_ms, 2),
        "search_seconds": round(t_med, 4),
        "search_first_seconds": round(runs["tiering"][0][1], 4),
        "search_duckdb_first_seconds": round(runs["duck"][0][1], 4),
        "search_cpu_ms": round(cpu["tiering"], 1),
        "search_duckdb_cpu_ms": round(cpu["duck"], 1),
        "search_requests": statistics.median(n for n, _ in wire[1:]),
        "search_object_bytes": statistics.median(b for _, b in wire[1:]),
        "search_duckdb_reread_seconds": round(r_med, 4),
        "search_vs_duckdb_reread": round(t_med / r_med, 3),
        "search_duckdb_seconds": round(d_med, 4),
        "search_vs_duckdb": round(t_med / d_med, 3),
        "search_matches": found,
        "duckdb_matches": duck_found,
        "restore_p50_ms": round(p50, 1),
        "restore_p95_ms": round(p95, 1),
        "restore_requests_max": max(requests),
        "restore_requests_mean": round(statistics.mean(requests), 2),
        "restore_kb_max": round(max(kbytes)),
        "restore_kb_mean": round(statistics.mean(kbytes)),
    }
