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
blocks = [libc.malloc(1 << 20) for _ in range(40)]
print(libc.mallinfo2().hblks - before)
"""


def _mapped_1mb_blocks(mode: str) -> int:
    """How many of 40 fresh 1 MB blocks got a mapping of their own, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", _MAPPED_BLOCKS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_big_blocks_stay_mapped_once_the_threshold_is_fixed() -> None:
    # glibc's default: after a 16 MB block was freed, 1 MB blocks come from the heap (and stay resident when freed
    # in its middle); with the threshold fixed they are mapped on their own and unmapped when freed
    assert _mapped_1mb_blocks("dynamic") <= 5
    assert _mapped_1mb_blocks("fixed") >= 30


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
