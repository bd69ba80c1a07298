"""Run one `tiering` CLI command in this (child) process and time it after the imports (wall and this process's
CPU, all threads), and record its own peak
RSS (VmHWM of this process's memory after exec: os.wait4's ru_maxrss also counts the parent's RSS when the
child was spawned with vfork, so a bench process grown big made a small run look big).

    python -m bench.cli_child TIMING_FILE archive run --format json ...
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    timing_file = Path(sys.argv[1])
    args = sys.argv[2:]
    # The CLI imports the engine when a command runs (fast --help); the bench times the work, so import the engine
    # and its drivers here, before the clock starts, as this child always did.
    import tiering.db.arrow  # noqa: F401
    import tiering.db.connection  # noqa: F401
    import tiering.engine.pipeline  # noqa: F401
    import tiering.engine.purge  # noqa: F401
    import tiering.store.s3  # noqa: F401
    from tiering.cli import main as tiering_main

    sys.argv = ["tiering", *args]
    code: object = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        tiering_main()
    except SystemExit as exc:
        code = exc.code
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    timing_file.write_text(
        json.dumps(
            {"seconds": seconds, "cpu_s": cpu, "exit": code if isinstance(code, int) else 1, "rss_mb": hwm_kb / 1024}
        )
    )


if __name__ == "__main__":
    main()
