"""What a bulk run does so that its memory stays flat however long it runs.

Most of a flush's transient memory outside Arrow's pool is glibc malloc's: the database driver's record batches
(a few MB each), libpq's buffers, zstd's contexts. glibc raises its mmap threshold to the size of the largest
block freed so far, so after the first batch every such block comes from an arena heap, and a heap gives memory
back only from its top: freed blocks in the middle stay resident, and more of them with every round, so a long
run's peak grew with its backlog. Two calls keep it flat: a fixed threshold (blocks bigger than zstd's context are
mapped and unmapped on their own) and a trim after each round (free pages inside the heaps go back). Elsewhere
than glibc both do nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
# Fixed (a set threshold is no longer raised), just above the 3 MB context zstd allocates and frees for every Parquet
# page it compresses at the default level 6: at glibc's starting 128 KB each context was a fresh mapping, whose
# pages the kernel faulted in and zeroed once per page written (a third of a flush's system CPU). Heap blocks up to
# this size are reused instead; a heap's top is trimmed past twice it, and a trim after each round returns the rest.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES

_lock = threading.Lock()
_libc: Any = None
_looked_up = False


def _glibc() -> Any:
    global _libc, _looked_up
    with _lock:
        if not _looked_up:
            _looked_up = True
            import ctypes  # here, not at import: tiering imports this module first thing (prefer_jemalloc_for_arrow)
            import ctypes.util

            name = ctypes.util.find_library("c")
            try:
                libc = ctypes.CDLL(name) if name else None
                if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                    libc.malloc_trim.argtypes = [ctypes.c_size_t]
                    _libc = libc
            except OSError:
                _libc = None
        return _libc


def fix_mmap_threshold() -> bool:
    """Big malloc blocks mapped on their own from now on (returned to the system when freed); True if set."""
    libc = _glibc()
    return bool(
        libc is not None
        and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )


def release_free_memory() -> bool:
    """Give the free pages inside malloc's heaps back to the system (between rounds); True if any went back."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)


ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"  # Arrow's own choice of allocator, left to whoever sets it


def prefer_jemalloc_for_arrow() -> bool:
    """Ask Arrow for its jemalloc allocator (ARROW_DEFAULT_MEMORY_POOL, unless set) before pyarrow loads: Arrow reads
    it once, for all its C++ allocations (Parquet pages included). Its default mimalloc gave pages back and faulted
    fresh (huge) pages in for every row group. 1M bench jobs: the run's process CPU 1.80 -> 1.71 s per 100k, peak
    RSS 348 -> 287 MB; 200k (4 alternating pairs): 4.20 -> 4.00 s of CPU, 301-315 -> 271-287 MB. Called when
    tiering is imported; too late (does nothing) once pyarrow is, where use_jemalloc_for_arrow still covers
    pyarrow's own allocations. Linux only (pyarrow's wheels elsewhere may lack it, and Arrow warns). True if set."""
    if not sys.platform.startswith("linux") or "pyarrow" in sys.modules or os.environ.get(ARROW_POOL_ENV):
        return False
    os.environ[ARROW_POOL_ENV] = "jemalloc"
    return True


def use_jemalloc_for_arrow() -> bool:
    """pyarrow's allocations (record batches, sorted row groups) from Arrow's jemalloc pool from now on, where
    pyarrow has one and ARROW_DEFAULT_MEMORY_POOL chooses nothing else (see prefer_jemalloc_for_arrow, which
    covers Arrow's C++ allocations too when it came first). True if set."""
    if os.environ.get(ARROW_POOL_ENV, "jemalloc") != "jemalloc":
        return False
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        return False
    pa.set_memory_pool(pool)
    return True


def prepare_for_bulk_io() -> None:
    """Both settings a flush wants before its scan and rounds: big malloc blocks mapped on their own, and Arrow's
    buffers from jemalloc. Each is idempotent, so every entry point of a flush calls this once."""
    fix_mmap_threshold()
    use_jemalloc_for_arrow()
