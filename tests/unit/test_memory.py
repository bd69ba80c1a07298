"""tiering.memory: glibc's allocator gives freed memory back during a long run (Linux with glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tiering import memory

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator only"
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
        )
    ]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = _MallInfo2
    return libc


def _rss_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


_MAPPED_BLOCKS = """
import ctypes, ctypes.util, sys
from tests.unit.test_memory import _libc
from tiering import memory
libc = _libc()
if sys.argv[1] == "fixed":
    assert memory.fix_mmap_threshold()
libc.free(libc.malloc(16 << 20))  # a freed 16 MB mapping: glibc's dynamic threshold would rise to 16 MB
before = libc.mallinfo2().hblks
blocks = [libc.malloc(int(sys.argv[2])) for _ in range(40)]
print(libc.mallinfo2().hblks - before)
"""


def _mapped_blocks(mode: str, size: int) -> int:
    """How many of 40 fresh blocks of `size` bytes got a mapping of their own, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _MAPPED_BLOCKS, mode, str(size)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def test_big_blocks_stay_mapped_once_the_threshold_is_fixed() -> None:
    # glibc's default: after a 16 MB block was freed, blocks of a few MB come from the heap (and stay resident when
    # freed in its middle); with the threshold fixed, blocks above it are mapped on their own and unmapped when freed
    size = memory.MMAP_THRESHOLD_BYTES + (1 << 20)
    assert _mapped_blocks("dynamic", size) <= 5
    assert _mapped_blocks("fixed", size) >= 30


_REUSED_BLOCK = """
import ctypes, resource, sys
from tests.unit.test_memory import _libc
from tiering import memory
libc = _libc()
if sys.argv[1] == "fixed":
    assert memory.fix_mmap_threshold()
else:
    assert libc.mallopt(memory.M_MMAP_THRESHOLD, 128 << 10) == 1  # glibc's starting threshold, fixed
size = 3 << 20  # zstd's context for one Parquet page at level 6, made and freed for every page
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    block = libc.malloc(size)
    ctypes.memset(block, 0, size)  # zstd clears its tables first
    libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_of_a_reused_block(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _REUSED_BLOCK, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_a_zstd_context_is_reused_not_faulted_in_for_every_page() -> None:
    # a 3 MB block made, cleared and freed 40 times (zstd's context per compressed page): at a 128 KB threshold
    # each is a fresh mapping whose 768 pages the kernel faults in and zeroes; under the fixed threshold the same
    # heap block comes back every time
    pages = (3 << 20) // 4096
    assert _faults_of_a_reused_block("128k") > 20 * pages
    assert _faults_of_a_reused_block("fixed") < 3 * pages


def test_free_pages_inside_the_heap_go_back() -> None:
    libc = _libc()
    size = 64 << 10  # under any mmap threshold: from the heap
    blocks = [libc.malloc(size) for _ in range(800)]  # ~50 MB
    for b in blocks:
        ctypes.memset(b, 1, size)  # resident
    for b in blocks[:-1]:
        libc.free(b)  # free, but not at the heap's top (the last block pins it): free() keeps them resident
    try:
        before = _rss_kb()
        assert memory.release_free_memory()
        after = _rss_kb()
        assert before - after > 30 << 10, (before, after)  # most of the ~50 MB went back
    finally:
        libc.free(blocks[-1])


_ARROW_POOL = """
import pyarrow as pa
from tiering import memory
chosen = memory.use_jemalloc_for_arrow()
before = pa.default_memory_pool().bytes_allocated()
data = pa.array(range(100_000))  # allocated from the default pool
print(chosen, pa.default_memory_pool().backend_name, pa.default_memory_pool().bytes_allocated() - before >= 800_000)
"""


def _python_with_pool(script: str, *args: str, env_pool: str | None = None) -> list[str]:
    """The words `script` prints in a fresh interpreter, ARROW_DEFAULT_MEMORY_POOL set to `env_pool` (or unset)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != memory.ARROW_POOL_ENV}
    if env_pool is not None:
        env[memory.ARROW_POOL_ENV] = env_pool
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, env=env)
    return out.stdout.split()


def _skip_without_jemalloc() -> None:
    import pyarrow as pa

    try:
        pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pytest.skip("this pyarrow has no jemalloc pool")


def test_arrow_buffers_come_from_jemalloc_unless_the_environment_chooses() -> None:
    _skip_without_jemalloc()
    assert _python_with_pool(_ARROW_POOL) == ["True", "jemalloc", "True"]
    assert _python_with_pool(_ARROW_POOL, env_pool="system") == ["False", "system", "True"]  # the user's choice stands


_IMPORT_ORDER = """
import os, sys
if sys.argv[1] == "pyarrow-first":
    import pyarrow
import tiering
import pyarrow as pa
print(os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "-"), pa.default_memory_pool().backend_name)
"""


def test_tiering_asks_arrow_for_jemalloc_before_pyarrow_loads() -> None:
    # Arrow reads ARROW_DEFAULT_MEMORY_POOL once: tiering imported first sets it, so Arrow's C++ allocations (the
    # Parquet writer's pages) use jemalloc too, not only what pyarrow allocates; a choice already made stands, and
    # once pyarrow is loaded tiering leaves the environment alone
    _skip_without_jemalloc()
    assert _python_with_pool(_IMPORT_ORDER, "tiering-first") == ["jemalloc", "jemalloc"]
    assert _python_with_pool(_IMPORT_ORDER, "tiering-first", env_pool="system") == ["system", "system"]
    assert _python_with_pool(_IMPORT_ORDER, "pyarrow-first")[0] == "-"
