"""The engine's planning rules, each on a small fake session: settings and a store that answers HEADs from a
dict, and a database that fails the test if a rule touches it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tiering.db.manifest import ManifestRow
from tiering.db.retention import ObjectCandidate, QueueSlice
from tiering.engine.flush import flush_warnings, plan_rounds
from tiering.engine.purge import _Plan, auto_purge, classify_candidates, estimated_saving, purged_prefixes
from tiering.policy import ArchivalPolicy
from tiering.settings import Settings
from tiering.store.base import ObjectInfo, StoreCapabilities

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeStore:
    """HEAD answers from `objects` (None: missing); nothing else is needed by the planners."""

    objects: dict[str, ObjectInfo | None] = field(default_factory=dict)
    prefix: str = "archive"
    encrypts: bool = False
    heads: list[str] = field(default_factory=list)

    def head(self, key: str) -> ObjectInfo | None:
        self.heads.append(key)
        return self.objects.get(key)

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(None, self.encrypts, True, frozenset({"STANDARD"}), False)

    def describe(self) -> str:
        return "fake://store"


@dataclass
class FakeSession:
    settings: Settings = field(default_factory=Settings)
    store: Any = field(default_factory=FakeStore)

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[Any]:
        raise AssertionError("a planning rule must not touch the database")
        yield


def manifest_row(object_id: int, slug: str = "q", day: date = date(2026, 1, 1), *, rows: int = 10,
                 size: int = 1000) -> ManifestRow:  # fmt: skip
    key = f"archive/queue={slug}/date={day.isoformat()}/part-{object_id:05d}.parquet"
    return ManifestRow(
        object_id, uuid.uuid4(), "", key, slug, slug, day, rows, 1, size, size * 3, size * 2, None, None,
        NOW - timedelta(days=400), NOW - timedelta(days=390), ["Completed"], "STANDARD", None, None, None, None, 1,
        "committed", None, NOW, NOW, None, None,
    )  # fmt: skip


def candidate(object_id: int, *, live: int = 10, hits: int = 10, slug: str = "q",
              day: date = date(2026, 1, 1)) -> ObjectCandidate:  # fmt: skip
    row = manifest_row(object_id, slug, day, rows=live)
    return ObjectCandidate(row, live, hits, hits * 100, NOW - timedelta(days=400), NOW - timedelta(days=390), False)


def info(key: str, **kw: Any) -> ObjectInfo:
    return ObjectInfo(key=key, size=1000, **kw)


# --- flush: rounds ---------------------------------------------------------------------------------


def test_rounds_pack_groups_up_to_the_claim_size() -> None:
    session = FakeSession(Settings(workers=1))
    groups = [("a", "2026-01-01", 40), ("a", "2026-01-02", 40), ("b", "2026-01-01", 40)]
    assert plan_rounds(session, groups, claim_rows=100) == [  # type: ignore[arg-type]
        [("a", "2026-01-01"), ("a", "2026-01-02")],
        [("b", "2026-01-01")],
    ]


def test_rounds_shrink_so_that_every_worker_gets_one() -> None:
    groups = [("a", f"2026-01-0{d}", 10) for d in range(1, 5)]  # 40 rows
    one = plan_rounds(FakeSession(Settings(workers=1)), groups, claim_rows=1000)  # type: ignore[arg-type]
    four = plan_rounds(FakeSession(Settings(workers=4)), groups, claim_rows=1000)  # type: ignore[arg-type]
    assert len(one) == 1 and len(four) == 4
    assert plan_rounds(FakeSession(Settings(workers=4)), groups, 1000, workers=2) == [  # type: ignore[arg-type]
        [("a", "2026-01-01"), ("a", "2026-01-02")],
        [("a", "2026-01-03"), ("a", "2026-01-04")],
    ]


def test_a_group_larger_than_a_round_is_a_round_of_its_own() -> None:
    groups = [("a", "2026-01-01", 5), ("big", "2026-01-01", 500), ("c", "2026-01-01", 5)]
    rounds = plan_rounds(FakeSession(Settings(workers=1)), groups, claim_rows=100)  # type: ignore[arg-type]
    assert [("big", "2026-01-01")] in rounds
    assert sorted(g for r in rounds for g in r) == sorted((q, d) for q, d, _ in groups)  # each group once


def test_no_staged_rows_no_rounds() -> None:
    assert plan_rounds(FakeSession(), [], claim_rows=100) == []  # type: ignore[arg-type]


def test_flush_warns_when_encryption_is_asked_of_a_store_that_cannot() -> None:
    assert flush_warnings(FakeSession(Settings(sse="AES256"), FakeStore(encrypts=False))) == [  # type: ignore[arg-type]
        "fake://store does not encrypt: sse=AES256 has no effect there (use an S3 store for server-side encryption)"
    ]
    assert flush_warnings(FakeSession(Settings(sse="AES256"), FakeStore(encrypts=True))) == []  # type: ignore[arg-type]
    assert flush_warnings(FakeSession(Settings(), FakeStore(encrypts=False))) == []  # type: ignore[arg-type]


# --- purge: what happens to each object ------------------------------------------------------------


def test_object_lock_wins_over_delete_and_rewrite() -> None:
    whole, partial = candidate(1), candidate(2, hits=3)
    store = FakeStore({
        whole.row.key: info(whole.row.key, object_lock_mode="COMPLIANCE", object_lock_retain_until=NOW + timedelta(1)),
        partial.row.key: info(partial.row.key, object_lock_legal_hold=True),
    })  # fmt: skip
    deletes, rewrites, locked, unreadable = classify_candidates(FakeSession(store=store), [whole, partial], NOW)  # type: ignore[arg-type]
    assert (deletes, rewrites, unreadable) == ([], [], [])
    assert [(lo.key, lo.mode, lo.legal_hold) for lo in locked] == [
        (whole.row.key, "COMPLIANCE", False),
        (partial.row.key, None, True),
    ]


def test_expired_retention_does_not_lock() -> None:
    c = candidate(1)
    store = FakeStore({c.row.key: info(c.row.key, object_lock_mode="GOVERNANCE", object_lock_retain_until=NOW)})
    deletes, _, locked, _ = classify_candidates(FakeSession(store=store), [c], NOW)  # type: ignore[arg-type]
    assert deletes == [c] and locked == []


def test_whole_objects_are_deleted_even_when_archived_or_missing() -> None:
    archived, missing = candidate(1), candidate(2)
    store = FakeStore({archived.row.key: info(archived.row.key, archived=True, storage_class="GLACIER")})
    deletes, rewrites, locked, unreadable = classify_candidates(FakeSession(store=store), [archived, missing], NOW)  # type: ignore[arg-type]
    assert deletes == [archived, missing] and (rewrites, locked, unreadable) == ([], [], [])


def test_partial_objects_are_rewritten_only_when_readable() -> None:
    ok, archived, missing = candidate(1, hits=2), candidate(2, hits=2), candidate(3, hits=2)
    store = FakeStore({
        ok.row.key: info(ok.row.key),
        archived.row.key: info(archived.row.key, archived=True, storage_class="DEEP_ARCHIVE"),
    })  # fmt: skip
    deletes, rewrites, locked, unreadable = classify_candidates(
        FakeSession(store=store), [ok, archived, missing], NOW  # type: ignore[arg-type]
    )
    assert rewrites == [ok] and deletes == [] and locked == []
    assert [u["key"] for u in unreadable] == [archived.row.key, missing.row.key]
    assert "DEEP_ARCHIVE" in unreadable[0]["reason"] and "verify" in unreadable[1]["reason"]
    assert store.heads == [ok.row.key, archived.row.key, missing.row.key]  # one HEAD per candidate


def test_prefixes_go_only_when_every_object_under_them_goes() -> None:
    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    a1, a2, b1 = candidate(1, slug="a", day=d1), candidate(2, slug="a", day=d2), candidate(3, slug="b", day=d1)
    under = [(1, "a", d1), (2, "a", d2), (3, "b", d1), (4, "b", d1), (5, "b", date(2026, 1, 3))]
    # queue a: every object goes -> the whole queue prefix; queue b: object 4 stays on d1 -> no prefix
    assert purged_prefixes([a1, a2, b1], under) == ["archive/queue=a/"]
    # b's d1 goes whole when 4 goes too (5 keeps the queue prefix)
    b4 = ObjectCandidate(manifest_row(4, "b", d1), 10, 10, 0, None, None, False)
    assert purged_prefixes([b1, b4], under) == ["archive/queue=b/date=2026-01-01/"]
    assert purged_prefixes([], under) == []


def test_preview_counts_staging_and_cold_and_estimates_rewrites() -> None:
    whole, partial = candidate(1, live=10, hits=10), candidate(2, live=10, hits=4, slug="r")
    staging = [QueueSlice("q", 5, 700, NOW - timedelta(days=500), NOW - timedelta(days=450))]
    plan = _Plan(NOW, None, None, staging, [whole], [partial], [], [], ["archive/queue=q/"])
    preview = plan.preview()
    assert (preview.staging_jobs, preview.cold_jobs, preview.jobs_to_purge) == (5, 14, 19)
    assert preview.jobs_by_queue == {"q": 15, "r": 4}
    assert preview.storage_to_free == 700 + whole.row.bytes + estimated_saving(partial.row, 4)
    assert estimated_saving(partial.row, 4) == 400 and preview.storage_estimated
    assert preview.oldest_affected == NOW - timedelta(days=500)


def test_auto_purge_skips_without_purge_archived_after() -> None:
    session = FakeSession()  # its database fails the test if touched
    result = auto_purge(session, ArchivalPolicy(purge_archived_after=None))  # type: ignore[arg-type]
    assert result.skipped_reason and "purge_archived_after" in result.skipped_reason
    off = ArchivalPolicy(purge_archived_after=timedelta(days=1), auto_purge=False)
    assert auto_purge(session, off).skipped_reason == result.skipped_reason  # type: ignore[arg-type]


@pytest.mark.parametrize("hits, live, qualifies, whole", [(10, 10, False, True), (3, 10, False, False),
                                                         (0, 0, True, True), (0, 0, False, False)])  # fmt: skip
def test_an_object_goes_whole_when_every_live_job_qualifies(hits: int, live: int, qualifies: bool, whole: bool) -> None:
    row = manifest_row(1, rows=max(live, 1))
    assert ObjectCandidate(row, live, hits, 0, None, None, qualifies).whole is whole


def test_without_object_lock_only_partial_objects_are_headed() -> None:
    whole, partial = candidate(1), candidate(2, hits=3)
    store = FakeStore({partial.row.key: info(partial.row.key)})
    deletes, rewrites, locked, unreadable = classify_candidates(
        FakeSession(store=store), [whole, partial], NOW, lock_possible=False  # type: ignore[arg-type]
    )
    assert (deletes, rewrites, locked, unreadable) == ([whole], [partial], [], [])
    assert store.heads == [partial.row.key]  # the whole object is deleted without a HEAD


def test_packed_tids_render_as_a_tid_array_literal() -> None:
    """The direct path's claim names its rows by tid (block * 65536 + offset, see arrow.eligible_hot): rendered as
    PostgreSQL's tid[] literal, every item quoted, in the order given; a slice (a round's chunk) renders only its
    own tids, and no tid renders an empty array."""
    import pyarrow as pa

    from tiering.db.arrow import tid_literal

    packed = pa.array([1, 3 * 65536 + 65535, 70000 * 65536 + 2, 5 * 65536], pa.int64())
    assert tid_literal(packed) == '{"(0,1)","(3,65535)","(70000,2)","(5,0)"}'
    assert tid_literal(packed.slice(1, 2)) == '{"(3,65535)","(70000,2)"}'
    assert tid_literal(pa.array([], pa.int64())) == "{}"


def _sent_tids(tids: list[tuple[int, int]], *, element_length: int = 6, oid: int = 27, ndim: int = 1) -> bytes:
    """A tid[] as PostgreSQL's array_send writes it: header, then per item its length, block and offset."""
    import struct

    head = struct.pack(">iiIii", ndim, 0, oid, len(tids), 1)
    return head + b"".join(struct.pack(">iIH", element_length, b, o) for b, o in tids)


def test_the_scans_binary_tid_arrays_unpack_to_packed_tids_in_order() -> None:
    """The eligible scan sends each queue's tids as a binary tid[] (array_send): every item becomes block * 65536 +
    offset, in order, across every byte of the block and the offset (blocks past 2**16 and 2**24, offsets past
    255), and the packed tids render back to the same tid literal."""
    from tiering.db.arrow import packed_tids, tid_literal

    tids = [(0, 1), (0, 65535), (70000, 3), (2**32 - 1, 65535), (258, 513), (2**24 + 7, 256)]
    packed = packed_tids(_sent_tids(tids))
    assert packed.type == "int64" and packed.to_pylist() == [b * 65536 + o for b, o in tids]
    assert tid_literal(packed) == "{" + ",".join(f'"({b},{o})"' for b, o in tids) + "}"
    assert packed_tids(_sent_tids([(9, 9)])).to_pylist() == [9 * 65536 + 9]


@pytest.mark.parametrize(
    "sent",
    [
        b"\x00\x00\x00\x01",  # no whole header
        _sent_tids([(1, 1)], oid=23),  # an int4[], not a tid[]
        _sent_tids([(1, 1)], ndim=2),
        _sent_tids([(1, 1), (2, 2)])[:-3],  # cut short
        _sent_tids([(1, 1)], element_length=-1),  # a NULL item
    ],
)
def test_a_binary_tid_array_of_another_shape_is_refused(sent: bytes) -> None:
    from tiering.db.arrow import packed_tids
    from tiering.errors import DatabaseError

    with pytest.raises(DatabaseError):
        packed_tids(sent)
