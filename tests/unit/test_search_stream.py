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


def test_streams_wait_for_scans_past_the_queue_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for one chunk, every chunk waits for the one before to be scanned: the search still finds every
    match (no deadlock, nothing dropped), and no more than one chunk is ever queued."""
    data, table = _object()
    meta = pq.read_metadata(io.BytesIO(data))
    store = PieceStore(data, 333)
    pqio.cached_footer((store.uri("k"), len(data)), lambda: meta)
    peak = [0]

    class Watched(Q._ByteBudget):
        def take(self, n: int, stop: threading.Event, deadline: float | None) -> bool:
            ok = super().take(n, stop, deadline)
            peak[0] = max(peak[0], self.used)
            return ok

    monkeypatch.setattr(Q, "_ByteBudget", Watched)
    monkeypatch.setattr(Q, "SCAN_QUEUE_BYTES", 1)
    m = SimpleNamespace(id=7, key="k", bytes=len(data))
    result = Q.SearchResult([], "customer.id", "5")
    found = Q._scan_objects(store, [m], ["customer", "id"], Q.ValueMatcher("5"), 8, None, result)  # type: ignore[arg-type, list-item]
    payloads = table.column("payload").to_pylist()
    want = {(7, i // 100, i % 100) for i, p in enumerate(payloads) if json.loads(p)["customer"]["id"] == "5"}
    assert {position for position, _ in found} == want and len(want) == 25
    assert result.rows_scanned == 900
    chunk = max(b - a for a, b in (pqio.row_group_range(meta, rg, ["payload"]) for rg in range(9)))
    assert 0 < peak[0] <= chunk


def test_a_byte_budget_waits_for_room_and_a_stop() -> None:
    budget, stop = Q._ByteBudget(100), threading.Event()
    assert budget.take(300, stop, None) and budget.used == 300  # bigger than the limit: goes alone
    budget.give(300)
    assert budget.take(80, stop, None)
    took: list[bool] = []
    waiter = threading.Thread(target=lambda: took.append(budget.take(30, stop, None)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not took  # 80 + 30 > 100: waits
    budget.give(80)
    waiter.join(2)
    assert took == [True] and budget.used == 30
    blocked = threading.Thread(target=lambda: took.append(budget.take(90, stop, None)))
    blocked.start()
    stop.set()
    blocked.join(2)
    assert took == [True, False] and budget.used == 30
