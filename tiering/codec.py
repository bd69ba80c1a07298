"""Payload codecs of the archive table: zstd (tiering's default), gzip (Hammerwork's), raw JSON.

Codecs are recognised by magic bytes, never by the payload_compressed flag alone, so rows written by
Hammerwork or by any tiering version decode the same way. Pure: no I/O.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Sequence
from enum import StrEnum

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Codec(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


def detect(data: bytes) -> Codec:
    if data[:4] == ZSTD_MAGIC:
        return Codec.ZSTD
    if data[:2] == GZIP_MAGIC:
        return Codec.GZIP
    return Codec.NONE


_local = threading.local()


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cctx", None)
    if cache is None:
        cache = _local.cctx = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cctx


def decode(data: bytes) -> bytes:
    """The original JSON bytes of a stored payload, whatever codec wrote it."""
    codec = detect(data)
    if codec is Codec.ZSTD:
        return _zstd_decompressor().decompress(data)
    if codec is Codec.GZIP:
        return gzip.decompress(data)
    return data


def encode(raw: bytes, codec: Codec, level: int, min_size: int = 0) -> tuple[bytes, bool]:
    """Compress `raw` when it is at least `min_size` bytes and compression makes it smaller.

    Returns (stored bytes, compressed?) the way Hammerwork fills payload/payload_compressed.
    """
    if codec is Codec.NONE or len(raw) < min_size:
        return raw, False
    if codec is Codec.ZSTD:
        packed = _zstd_compressor(max(1, min(level, 22))).compress(raw)
    else:
        obj = zlib.compressobj(max(0, min(level, 9)), zlib.DEFLATED, 31)
        packed = obj.compress(raw) + obj.flush()
    if len(packed) < len(raw):
        return packed, True
    return raw, False


def encode_many(raws: Sequence[bytes], codec: Codec, level: int, min_size: int = 0) -> tuple[list[bytes], list[bool]]:
    stored: list[bytes] = []
    flags: list[bool] = []
    for raw in raws:
        data, compressed = encode(raw, codec, level, min_size)
        stored.append(data)
        flags.append(compressed)
    return stored, flags
