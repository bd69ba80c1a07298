"""FsspecStore details the contract suite cannot reach: filesystems whose info() has no timestamp."""

from __future__ import annotations

import uuid
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem

from tiering.store.fsspec_store import FsspecStore, _modified


class _NoTimes(MemoryFileSystem):
    """A filesystem that reports no modification time (as some fsspec backends do)."""

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in super().info(path, **kwargs).items() if k != "created"}


def test_head_falls_back_to_the_recorded_write_time() -> None:
    store = FsspecStore("memory", f"b{uuid.uuid4().hex[:12]}", "p")
    store.fs = _NoTimes()
    store.ensure_bucket()
    key = store.key("x.bin")
    store.put_bytes(key, b"data")
    info = store.head(key)
    assert info is not None and info.last_modified is not None and info.size == 4
    assert info.checksum_sha256 is not None


def test_modified_reads_the_usual_fields() -> None:
    assert _modified({"mtime": 0}).year == 1970  # type: ignore[union-attr]
    assert _modified({"updated": "2024-05-06T07:08:09Z"}).day == 6  # type: ignore[union-attr]
    assert _modified({"LastModified": "not a date"}) is None
    assert _modified({}) is None
