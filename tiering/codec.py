"""Payload codecs of the archive table: raw JSON (tiering's default), gzip (Hammerwork's), zstd (read only:
earlier tiering builds wrote it; Hammerwork cannot read it, so nothing writes it into staging any more).

Codecs are recognised by magic bytes, never by the payload_compressed flag alone, so rows written by
Hammerwork or by any tiering version decode the same way. Pure: no I/O.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

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
    """The original JSON bytes of a stored payload, whatever codec wrote it. As lenient as the flush's decoder
    (schema.decode_payloads): zstd frames without a content size are streamed, gzip members are read by zlib
    first (trailing bytes ignored), so a payload that flush accepts is readable everywhere else too."""
    codec = detect(data)
    if codec is Codec.ZSTD:
        if zstandard.frame_content_size(data) < 0:
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return _zstd_decompressor().decompress(data)
    if codec is Codec.GZIP:
        try:
            return zlib.decompress(data, 31)
        except zlib.error:
            return gzip.decompress(data)
    return data


# Deeper payloads are refused: Python's JSON parser and the recursive walkers would hit the recursion limit
# (Hammerwork's serde_json refuses to read anything deeper than 128 levels anyway).
MAX_DEPTH = 512


class UnreadablePayload(ValueError):
    """A stored payload that cannot be decoded or parsed; `reason` says why (for reports, never the bytes)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_checked(data: bytes) -> bytes:
    """`decode`, with every codec failure (truncated gzip, bad zstd frame, ...) as UnreadablePayload."""
    try:
        return decode(data)
    except Exception as exc:  # noqa: BLE001 - gzip/zlib/zstd raise EOFError, OSError, zlib.error, ZstdError
        raise UnreadablePayload(f"cannot decompress the payload ({detect(data)}): {type(exc).__name__}") from exc


def _reject_constant(name: str) -> Any:
    raise UnreadablePayload(f"the payload is not JSON: it holds {name}")


def depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON document, walked iteratively (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in node if isinstance(v, dict | list))
    return deepest


def load_json(data: bytes | str, *, parse_float: Callable[[str], Any] | None = None, stored: bool = False) -> Any:
    """Parse a payload's JSON (its stored bytes when `stored`: decompressed first), or raise UnreadablePayload:
    not UTF-8, not JSON, NaN/Infinity, or nested deeper than MAX_DEPTH. Every reader of payloads uses this, so
    one bad row is reported as that row's problem and never stops a bulk operation."""
    if stored:
        data = decode_checked(bytes(data))  # type: ignore[arg-type]
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadablePayload(f"the payload is not UTF-8 (byte {exc.start})") from exc
    else:
        text = data
    try:
        doc = json.loads(text, parse_float=parse_float, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise UnreadablePayload(f"the payload is nested deeper than {MAX_DEPTH} levels") from exc
    except UnreadablePayload:
        raise
    except ValueError as exc:
        raise UnreadablePayload(f"the payload is not JSON: {str(exc)[:120]}") from exc
    # cheap bound first: fewer brackets than the limit cannot nest deeper than it
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(doc) > MAX_DEPTH:
        raise UnreadablePayload(f"the payload is nested deeper than {MAX_DEPTH} levels")
    return doc


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
