"""Run DuckDB's export of the bench's eligible rows in this (child) process and time the COPY alone (wall and this
process's CPU, all threads), as bench/cli_child.py times a tiering command: each contender of the end-to-end rounds
is a fresh process, so neither keeps a warm library, allocator or thread pool from an earlier round.

    python -m bench.duck_child LIBPQ_DSN WHERE_SQL OUT_DIR     (prints {"seconds": ..., "cpu_s": ...})
"""

from __future__ import annotations

import json
import sys
import time

from bench.duck import connect


def main() -> None:
    dsn, where, out_dir = sys.argv[1:4]
    con = connect("postgres_scanner")
    con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
    started, cpu_started = time.perf_counter(), time.process_time()
    con.execute(
        f"""COPY (SELECT *, strftime(now() AT TIME ZONE 'UTC', '%Y-%m-%d') AS date
                    FROM pg.public.hammerwork_jobs WHERE {where})
            TO '{out_dir}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (queue_name, date))"""  # noqa: S608
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    con.close()
    print(json.dumps({"seconds": seconds, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
