"""Run one `tiering` CLI command in this (child) process and time it after the imports, so the parent can
read the command's own peak RSS (os.wait4) and its time without interpreter start-up.

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
    started = time.perf_counter()
    try:
        tiering_main()
    except SystemExit as exc:
        code = exc.code
    seconds = time.perf_counter() - started
    timing_file.write_text(json.dumps({"seconds": seconds, "exit": code if isinstance(code, int) else 1}))


if __name__ == "__main__":
    main()
