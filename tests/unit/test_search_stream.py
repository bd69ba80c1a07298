"""Cold search streams each object's payload range: every row group's payload chunk must reach the decoder whole
and exact, however the body is cut into pieces, and a body shorter than the footer says is an error."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiering import parquet as pqio
from tiering.engine import query as Q
from tiering.errors import StoreError


def _object(rows: int = 900, group: int = 100) -> tuple[bytes, pa.Table]:
    """A Parquet object with other columns' chunks before and after the payload's in every row group."""
    table = pa.table(
        {
            "id": [f"{i:08x}-job" for i in range(rows)],
            "payload": [json.dumps({"customer": {"id": str(i % 37)}, "pad": "x" * (i % 50)}) for i in range(rows)],
            "attempts": list(range(rows)),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=group, compression="zstd", data_page_size=512)
    return out.getvalue(), table


class PieceStore:
    """A store whose streams come in pieces of `piece` bytes, whatever the caller asks for."""

    def __init__(self, data: bytes, piece: int, cut_at: int | None = None) -> None:
        self.data, self.piece, self.cut_at = data, piece, cut_at
        self.requests = 0

    def uri(self, key: str) -> str:
        return f"memory://test/{key}/{self.piece}/{self.cut_at}"

    def get_stream(self, key: str, byte_range: tuple[int, int], piece: int = 0) -> Iterator[bytes]:
        self.requests += 1
        start, end = byte_range
        end = min(end, len(self.data) if self.cut_at is None else self.cut_at)
        for at in range(start, end, self.piece):
            yield self.data[at : min(at + self.piece, end)]


def _stream_all(store: PieceStore, data: bytes) -> dict[int, pqio.Segment]:
    meta = pq.read_metadata(io.BytesIO(data))
    m = SimpleNamespace(key="k", bytes=len(data))
    got: dict[int, pqio.Segment] = {}
    for seg, chunks in Q._payload_reads(store, m, meta):  # type: ignore[arg-type]
        Q._stream_payloads(store, "k", seg, chunks, None, threading.Event(), got.__setitem__)  # type: ignore[arg-type]
    return got


@pytest.mark.parametrize("piece", [1, 7, 333, 4096, 1 << 20])
def test_every_payload_chunk_arrives_whole_however_the_body_is_cut(piece: int) -> None:
    data, table = _object()
    meta = pq.read_metadata(io.BytesIO(data))
    store = PieceStore(data, piece)
    got = _stream_all(store, data)
    assert sorted(got) == list(range(meta.num_row_groups)) and meta.num_row_groups == 9
    assert store.requests == 1  # one coalesced range for the whole object
    payloads: list[Any] = []
    for rg in range(meta.num_row_groups):
        start, chunk = got[rg]
        a, b = pqio.row_group_range(meta, rg, ["payload"])
        assert (start, chunk) == (a, data[a:b])  # the payload chunk alone, byte for byte
        for batch in pqio.batches_from_segment(meta, len(data), got[rg], rg, ["payload"], 1000):
            payloads.extend(batch.column(0).to_pylist())
    assert payloads == table.column("payload").to_pylist()


def test_a_body_shorter_than_its_footer_says_is_an_error() -> None:
    data, _ = _object()
    meta = pq.read_metadata(io.BytesIO(data))
    last = pqio.row_group_range(meta, meta.num_row_groups - 1, ["payload"])
    with pytest.raises(StoreError, match="does not match its footer"):
        _stream_all(PieceStore(data, 100, cut_at=last[1] - 1), data)


def test_a_stopped_search_hands_on_no_more_chunks() -> None:
    data, _ = _object()
    meta = pq.read_metadata(io.BytesIO(data))
    store = PieceStore(data, 64)
    ((seg, chunks),) = Q._payload_reads(store, SimpleNamespace(key="k", bytes=len(data)), meta)  # type: ignore[arg-type]
    stop, got = threading.Event(), []

    def dispatch(rg: int, segment: pqio.Segment) -> None:
        got.append(rg)
        stop.set()  # as the search does when a scan failed

    Q._stream_payloads(store, "k", seg, chunks, None, stop, dispatch)  # type: ignore[arg-type]
    assert got == [0]
