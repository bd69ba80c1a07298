"""Erase (right to deletion): remove chosen jobs from the hot table, staging and every cold object.

Jobs are chosen by id, or by a payload value at a dotted key (`customer.id=42`). The value is read as users
type it: JSON when it parses (42, true, null, "x", {...}), else a string; a JSON string equal to what was
typed matches too (`customer.id=42` finds both 42 and "42").

Cold matching reads only objects that can hold the jobs: for ids, the job index says which; for a payload
match, each object's `id` and `payload` columns are scanned, row group by row group, with a cheap substring
prefilter before the exact JSON check. Objects are rewritten without the erased rows (and swapped in the
manifest atomically) or deleted whole when nothing else is left in them. The audit row names the request and
the counts, never the erased payloads or the value searched for.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc

from tiering import codec
from tiering import parquet as pqio
from tiering.context import Session
from tiering.db import locks
from tiering.db import manifest as mdb
from tiering.db import retention as rdb
from tiering.db.manifest import ManifestRow
from tiering.db.operations import audited
from tiering.engine.flush import recover_abandoned
from tiering.engine.purge import (
    LockedObject,
    bucket_of,
    delete_whole_objects,
    head_all,
    lock_of,
    retry_leftovers,
    rewrite_object,
)
from tiering.engine.query import ValueMatcher, path_matches
from tiering.errors import InvalidInputError
from tiering.store.base import ObjectStore

_MISSING = object()


# --- payload matching (pure) ---------------------------------------------------------------------


def parse_match(text: str) -> tuple[list[str], Any, str]:
    """`KEY=VALUE` -> (dotted key path, typed value, raw value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInputError(f"--match {text!r}: expected KEY=VALUE, e.g. customer.id=42")
    return split_key(key), parse_value(raw), raw


def split_key(key: str) -> list[str]:
    path = key.strip().split(".")
    if any(not seg for seg in path):
        raise InvalidInputError(f"payload key {key!r}: empty segment (use dotted keys like customer.id)")
    return path


def parse_value(raw: str) -> Any:
    try:
        return codec.load_json(raw)
    except codec.UnreadablePayload:
        return raw


def value_at(doc: Any, path: Sequence[str]) -> Any:
    cur = doc
    for seg in path:
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit() and int(seg) < len(cur):
            cur = cur[int(seg)]
        else:
            return _MISSING
    return cur


def values_equal(actual: Any, value: Any, raw: str) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(actual, str):
        return actual == raw or (isinstance(value, str) and actual == value)
    if isinstance(actual, bool) or isinstance(value, bool):
        return type(actual) is type(value) and actual == value
    if actual is None or value is None:
        return actual is None and value is None
    return bool(actual == value)


@functools.lru_cache(maxsize=64)
def _search_matcher(raw: str) -> ValueMatcher:
    return ValueMatcher(raw)


def payload_matches(payload: Any, path: Sequence[str], value: Any, raw: str) -> bool:
    """Everything `tiering archive search KEY VALUE` finds (lists fan out, `"a.b"` top-level keys, 42 matches
    "42"), plus exact equality with a JSON literal (`a={"b": 1}`, `email="x"`): an erase never misses a job
    that a search for the same key and value shows."""
    if path_matches(payload, path, _search_matcher(raw)):
        return True
    return values_equal(value_at(payload, path), value, raw)


def needles(path: Sequence[str], value: Any, raw: str) -> list[str]:
    """Substrings every matching payload's JSON text holds (a prefilter: false positives are fine)."""
    out: list[str] = []
    # the leaf key and its closing quote: also inside a top-level dotted key such as "customer.id"
    last = json.dumps(path[-1], ensure_ascii=False)[1:]
    if not path[-1].isdigit() and last.isascii():
        out.append(last)
    if isinstance(value, str) and not isinstance(value, bool):
        text = json.dumps(value, ensure_ascii=False)[1:-1]
        candidates = {text, raw} if raw != value else {text}
        if len(candidates) == 1 and text.isascii() and text:
            out.append(text)
    elif isinstance(value, bool) or value is None:
        out.append(json.dumps(value))
    elif isinstance(value, int) and str(value) == raw.strip():
        out.append(str(value))
    return out


# --- result --------------------------------------------------------------------------------------


@dataclass
class EraseResult:
    dry_run: bool = False
    request_ref: str | None = None
    mode: str = "ids"
    jobs_found: int = 0
    hot_erased: int = 0
    staging_erased: int = 0
    cold_erased: int = 0
    objects_scanned: int = 0
    objects_deleted: int = 0
    objects_rewritten: int = 0
    index_rows_removed: int = 0
    delete_calls: int = 0
    locations: dict[str, list[str]] = field(default_factory=dict)  # job id -> where it was found
    deleted_keys: list[str] = field(default_factory=list)
    rewritten: list[dict[str, Any]] = field(default_factory=list)
    locked_objects: list[LockedObject] = field(default_factory=list)
    unreadable_objects: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    remaining: dict[str, list[str]] = field(default_factory=dict)  # job id -> where the final check still saw it
    # payloads that could not be decoded or parsed: a match cannot be ruled out, so erase reports them by id
    unreadable_payloads: dict[str, dict[str, str]] = field(default_factory=dict)
    passes: int = 0
    jobs_by_queue: dict[str, int] = field(default_factory=dict)
    execution_time_s: float = 0.0
    operation_id: int | None = None

    @property
    def jobs_erased(self) -> int:
        return len(self.locations) if self.dry_run else self._erased

    _erased: int = 0

    @property
    def complete(self) -> bool:
        return not (
            self.errors or self.locked_objects or self.unreadable_objects or self.remaining or self.unreadable_payloads
        )

    def counts(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "request_ref": self.request_ref,
            "mode": self.mode,
            "jobs_found": self.jobs_found,
            "jobs_erased": self.jobs_erased,
            "hot_erased": self.hot_erased,
            "staging_erased": self.staging_erased,
            "cold_erased": self.cold_erased,
            "objects_scanned": self.objects_scanned,
            "objects_deleted": self.objects_deleted,
            "objects_rewritten": self.objects_rewritten,
            "index_rows_removed": self.index_rows_removed,
            "delete_calls": self.delete_calls,
            "locked_objects": len(self.locked_objects),
            "unreadable_objects": len(self.unreadable_objects),
            "errors": len(self.errors),
            "remaining": len(self.remaining),
            "unreadable_payloads": len(self.unreadable_payloads),
            "jobs_by_queue": dict(sorted(self.jobs_by_queue.items())),
            "complete": self.complete,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "locations": self.locations,
            "deleted_keys": self.deleted_keys,
            "rewritten": self.rewritten,
            "locked_objects": [lo.to_dict() for lo in self.locked_objects],
            "unreadable_objects": self.unreadable_objects,
            "errors": self.errors,
            "remaining_jobs": self.remaining,
            "unreadable_payload_jobs": sorted(self.unreadable_payloads.values(), key=lambda u: u["job_id"]),
            "passes": self.passes,
            "execution_time_s": round(self.execution_time_s, 3),
            "operation_id": self.operation_id,
        }


# --- finding -------------------------------------------------------------------------------------


def _clean_ids(ids: Iterable[str]) -> list[str]:
    import uuid

    out = []
    for raw in ids:
        try:
            out.append(str(uuid.UUID(str(raw).strip())))
        except ValueError as exc:
            raise InvalidInputError(f"job id {raw!r} is not a UUID") from exc
    return sorted(set(out))


def _unreadable(result: EraseResult | None, job_id: str, where: str, exc: codec.UnreadablePayload) -> None:
    if result is not None:
        result.unreadable_payloads[job_id] = {"job_id": job_id, "where": where, "reason": exc.reason}


def _scan_object(
    store: ObjectStore,
    row: ManifestRow,
    path: Sequence[str],
    value: Any,
    raw: str,
    result: EraseResult | None = None,
) -> list[str]:
    """Ids of the rows of one object whose payload matches, reading only its id and payload columns; rows whose
    payload cannot be parsed are reported in `result.unreadable_payloads`."""
    found: list[str] = []
    subs = needles(path, value, raw)
    with store.open_input(row.key, size=row.bytes, readahead=4 * 1024 * 1024) as fh:
        for table in pqio.iter_row_groups(fh, columns=["id", "payload"]):
            payloads = table["payload"]
            if subs:
                mask: Any = None
                for sub in subs:
                    m = pc.match_substring(payloads, sub)
                    mask = m if mask is None else pc.and_(mask, m)
                table = table.filter(pc.fill_null(mask, False))
            for job_id, text in zip(table["id"].to_pylist(), table["payload"].to_pylist(), strict=True):
                if text is None:
                    continue
                try:
                    doc = codec.load_json(text)
                except codec.UnreadablePayload as exc:
                    _unreadable(result, str(job_id).lower(), f"cold:{row.key}", exc)
                    continue
                if payload_matches(doc, path, value, raw):
                    found.append(str(job_id).lower())
    return found


@dataclass
class _ObjectPlan:
    row: ManifestRow
    erase_live: list[str]
    erase_stale: list[str]
    other_stale: list[str]

    @property
    def erase_ids(self) -> list[str]:
        return sorted(set(self.erase_live) | set(self.erase_stale))

    @property
    def whole(self) -> bool:
        return self.row.row_count - len(set(self.erase_ids) | set(self.other_stale)) <= 0


def erase_jobs(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    key: str | None = None,
    value: str | None = None,
    dry_run: bool = False,
    initiated_by: str | None = None,
    request_ref: str | None = None,
) -> EraseResult:
    """Remove the chosen jobs from every tier; `dry_run` only reports where they are."""
    started = time.perf_counter()
    if (ids is None) == (key is None):
        raise InvalidInputError("erase: give job ids, or a payload key and value (not both)")
    store = session.store
    mode = "ids" if ids is not None else "match"
    result = EraseResult(dry_run=dry_run, request_ref=request_ref, mode=mode)
    wanted: list[str] = []
    path: list[str] = []
    typed: Any = None
    raw = ""
    if ids is not None:
        wanted = _clean_ids(ids)
        if not wanted:
            raise InvalidInputError("erase: no job ids given")
    else:
        if value is None:
            raise InvalidInputError("erase: a payload match needs a value")
        path, typed, raw = split_key(key or ""), parse_value(value), value
    params = {"mode": mode, "request_ref": request_ref, "dry_run": dry_run, "store": store.describe(),
              "ids_requested": len(wanted) if ids is not None else None,
              "match_key": key, "match_value": "<not recorded>" if key is not None else None}  # fmt: skip
    with audited(session, "erase", initiated_by=initiated_by, reason="Compliance", parameters=params) as op:
        result.operation_id = op.id
        # The lock connection goes back to the pool with its advisory locks released (the pool's reset).
        with session.connection(autocommit=True) as lock:
            rdb.lock_retention(lock)
            try:
                if not dry_run:
                    # no job changes tier from here to the final check (see tiering.db.locks)
                    locks.lock_moves(lock)
                    n, calls, errors = retry_leftovers(session)
                    result.delete_calls += calls
                    result.errors.extend({**e, "stage": "delete_replaced"} for e in errors)
                for _ in range(MAX_PASSES):
                    result.passes += 1
                    if not dry_run:
                        # objects of dead flushers hold copies of staged jobs; a flusher that just rolled back
                        # releases its flush lock a moment after the moves lock, so this runs at every pass
                        recover_abandoned(session)
                    clean = _run(session, result, wanted, path, typed, raw)
                    if dry_run:
                        break
                    result.remaining = _remaining(session, result, clean, wanted, path, typed, raw)
                    if not set(result.remaining) - _blocked(result):
                        break  # all gone, or left only where a lock or an error (already reported) keeps them
                    # else: something moved that tiering does not order (Hammerwork's own archiver): another pass
                result.locked_objects = list({lo.key: lo for lo in result.locked_objects}.values())
                if not dry_run:
                    gone = [j for j in result.locations if j not in result.remaining]
                    with session.connection() as conn:
                        result.index_rows_removed += rdb.delete_index_rows_of_gone_objects(conn, gone)
                        conn.commit()
                    result._erased = len([j for j in gone if j not in _blocked(result)])
            finally:
                if not dry_run:
                    locks.unlock_moves(lock)
                rdb.unlock_retention(lock)
        result.execution_time_s = time.perf_counter() - started
        op.counts = result.counts()
        if not result.complete:
            op.outcome = "partial"
    if not dry_run:
        from tiering.engine.analyst import publish_listing_quietly

        publish_listing_quietly(session)  # the analysts' file list must not name erased objects
        from tiering.engine.iceberg import reconcile_quietly

        reconcile_quietly(session, expire=True)  # drops deleted/rewritten objects, one snapshot
    return result


MAX_PASSES = 3


def _blocked(result: EraseResult) -> set[str]:
    """Jobs whose object could not be rewritten or deleted (locked, or an error): reported, not erased."""
    keys = {lo.key for lo in result.locked_objects} | {e.get("key", "") for e in result.errors}
    return {j for j, places in result.locations.items() if any(p.startswith("cold:") and p[5:] in keys for p in places)}


def _remaining(
    session: Session,
    result: EraseResult,
    clean: set[int],
    wanted: list[str],
    path: list[str],
    typed: Any,
    raw: str,
) -> dict[str, list[str]]:
    """The final check, read from the tiers themselves: every place a job to erase still is.

    Hot and staging are queried again. Cold: by id, the job index is the proof (a flush writes an index row
    for every row it commits, and erase removes index rows only with their object); by payload, every object
    that the scan under this erase's lock did not already find free of matches is read again (the rewritten
    copies, objects that held matches, and any pending or replaced object still in the bucket).
    """
    out: dict[str, list[str]] = {}
    store = session.store
    bucket = bucket_of(store)
    with session.connection() as conn:
        rows = rdb.manifest_rows_in(conn, bucket, ("committed", "pending"))
        if result.mode == "ids":
            hot, staged = rdb.hot_ids(conn, wanted), rdb.staging_ids(conn, wanted)
            by_id = {r.id: r for r in rows}
            cold = [(h.job_id, by_id[h.object_id].key) for h in rdb.index_hits(conn, wanted) if h.object_id in by_id]
        else:
            hot, staged = _find_hot_staged(conn, path, typed, raw, result)
            cold = []
        conn.rollback()
    for j in hot:
        out.setdefault(j, []).append("hot")
    for j in staged:
        out.setdefault(j, []).append("staging")
    for j, key in cold:
        out.setdefault(j, []).append(f"cold:{key}")
    todo = [r for r in rows if r.id not in clean and (result.mode == "match" or r.state == "pending")]
    infos = head_all(store, [r.key for r in todo])
    want = set(wanted)
    for r in todo:
        info = infos.get(r.key)
        if info is None or info.archived:
            continue  # gone; or in GLACIER, already reported in unreadable_objects by the scan
        if result.mode == "match":
            found = _scan_object(store, r, path, typed, raw)
        else:
            found = [j for j in _object_ids(store, r) if j in want]
        for j in found:
            out.setdefault(j, []).append(f"cold:{r.key}")
    return out


def _object_ids(store: ObjectStore, row: ManifestRow) -> list[str]:
    with store.open_input(row.key, size=row.bytes) as fh:
        return [str(j).lower() for j in pqio.read_columns(fh, ["id"])["id"].to_pylist()]


def _find_hot_staged(
    conn: Any, path: list[str], typed: Any, raw: str, result: EraseResult
) -> tuple[list[str], list[str]]:
    """Hot and staged jobs whose payload matches."""
    hot, staged = [], []
    for job_id, text in rdb.hot_payload_candidates(conn, needles(path, typed, raw)):
        try:
            doc = codec.load_json(text)
        except codec.UnreadablePayload as exc:
            _unreadable(result, job_id, "hot", exc)
            continue
        if payload_matches(doc, path, typed, raw):
            hot.append(job_id)
    for job_id, stored in rdb.staging_payloads(conn):
        try:
            doc = codec.load_json(stored, stored=True)
        except codec.UnreadablePayload as exc:
            _unreadable(result, job_id, "staging", exc)
            continue
        if payload_matches(doc, path, typed, raw):
            staged.append(job_id)
    return hot, staged


def _count_cold_by_queue(result: EraseResult, plans: list[_ObjectPlan], done: set[str] | None) -> None:
    """Add the cold jobs erased (or, on a dry run, to be erased) to the per-queue counts of the audit row."""
    for p in plans:
        n = len([j for j in p.erase_live if done is None or j in done])
        if n:
            result.jobs_by_queue[p.row.queue_name] = result.jobs_by_queue.get(p.row.queue_name, 0) + n


def _where(result: EraseResult, job_id: str, place: str) -> None:
    result.locations.setdefault(job_id, []).append(place)


def _run(
    session: Session,
    result: EraseResult,
    wanted: list[str],
    path: list[str],
    typed: Any,
    raw: str,
) -> set[int]:
    """One pass: find the jobs in every tier and erase them; returns the ids of objects read and found clean."""
    clean: set[int] = set()
    store = session.store
    by_object: dict[int, set[str]] = {}
    with session.connection() as conn:
        if result.mode == "ids":
            hot = rdb.hot_ids(conn, wanted)
            staged = rdb.staging_ids(conn, wanted)
            cold_hits = rdb.index_hits(conn, wanted)
            for h in cold_hits:
                by_object.setdefault(h.object_id, set()).add(h.job_id)
            rows = {r.id: r for r in mdb.manifest_rows(conn, states=("committed", "purged")) if r.id in by_object}
        else:
            hot, staged = _find_hot_staged(conn, path, typed, raw, result)
            rows = {}
            for r in mdb.manifest_rows(conn, states=("committed",)) + rdb.leftover_objects(conn, bucket_of(store)):
                if r.bucket == bucket_of(store):
                    rows[r.id] = r
        conn.rollback()
    if result.mode == "match":
        infos = head_all(store, [r.key for r in rows.values()])
        for r in rows.values():
            info = infos.get(r.key)
            if info is None:
                continue  # a replaced object already gone; a missing committed one is verify's business
            if info.archived:
                result.unreadable_objects.append(
                    {"key": r.key, "reason": f"in {info.storage_class}: restore it, then erase again"}
                )
                continue
            result.objects_scanned += 1
            matched = _scan_object(store, r, path, typed, raw, result)
            for job_id in matched:
                by_object.setdefault(r.id, set()).add(job_id)
            if not matched:
                clean.add(r.id)
    for j in hot:
        _where(result, j, "hot")
    for j in staged:
        _where(result, j, "staging")
    plans: list[_ObjectPlan] = []
    all_cold = sorted({j for s in by_object.values() for j in s})
    with session.connection() as conn:
        hits = rdb.index_hits(conn, all_cold) if all_cold else []
        for object_id, job_ids in sorted(by_object.items()):
            row = rows[object_id]
            live = {h.job_id for h in hits if h.object_id == object_id and h.live}
            erase_live = sorted(job_ids & live)
            erase_stale = sorted(job_ids - live)
            other_stale = [j for j in rdb.restored_ids(conn, object_id) if j not in job_ids]
            plans.append(_ObjectPlan(row, erase_live, erase_stale, other_stale))
            for j in sorted(job_ids):
                _where(result, j, f"cold:{row.key}")
        for table, ids in (("hammerwork_jobs", hot), ("hammerwork_jobs_archive", staged)):
            for q, n in rdb.queue_counts(conn, table, ids).items():
                result.jobs_by_queue[q] = result.jobs_by_queue.get(q, 0) + n
        conn.rollback()
    result.jobs_found = len(result.locations)
    if result.dry_run:
        _count_cold_by_queue(result, plans, None)
        result.hot_erased, result.staging_erased = len(hot), len(staged)
        result.cold_erased = len({j for p in plans for j in p.erase_live})
        result.objects_deleted = sum(1 for p in plans if p.whole and p.row.state == "committed")
        result.objects_rewritten = sum(1 for p in plans if not p.whole and p.row.state == "committed")
        return clean
    # hot and staging: one transaction
    with session.connection() as conn:
        result.hot_erased = rdb.delete_hot(conn, hot)
        result.staging_erased = rdb.delete_staged(conn, staged)
        conn.commit()
    now = datetime.now(UTC)
    committed = [p.row.key for p in plans if p.row.state == "committed"]
    infos = head_all(store, committed) if committed and store.object_lock_possible() else {}  # only for the lock
    cold_done: set[str] = set()
    deletes: list[_ObjectPlan] = []
    for p in plans:
        if p.row.state != "committed":
            continue  # a replaced object: retry_leftovers deleted it (or reported why not)
        locked, mode, until, hold = lock_of(infos.get(p.row.key), now)
        if locked:
            result.locked_objects.append(LockedObject(p.row.key, p.row.id, len(p.erase_ids), mode, until, hold))
            continue
        if p.whole:
            deletes.append(p)
            continue
        erase_ids = p.erase_ids
        pairs = [(p.row.id, j) for j in erase_ids]

        def in_swap(conn: Any, _pairs: list[tuple[int, str]] = pairs) -> None:
            rdb.delete_index_pairs(conn, _pairs)

        outcome = rewrite_object(
            session, p.row, p.erase_live, p.erase_stale + p.other_stale, in_swap=in_swap
        )
        result.delete_calls += outcome.delete_calls
        if outcome.error:
            result.errors.append(outcome.error)
        if outcome.new_id is None:
            continue
        result.objects_rewritten += 1
        cold_done.update(erase_ids)
        result.cold_erased += len(p.erase_live)
        result.rewritten.append({"old_key": p.row.key, "new_key": outcome.new_key, "jobs_removed": len(erase_ids)})

    def drop_index_rows(conn: Any, done: list[_ObjectPlan]) -> None:
        result.index_rows_removed += rdb.delete_index_pairs(conn, [(p.row.id, j) for p in done for j in p.erase_ids])

    for gone, done in delete_whole_objects(session, deletes, lambda p: p.row, drop_index_rows):
        result.delete_calls += gone.calls
        result.errors.extend({**e, "stage": "delete"} for e in gone.errors)
        for p in done:
            result.objects_deleted += 1
            result.cold_erased += len(p.erase_live)
            result.deleted_keys.append(p.row.key)
            cold_done.update(p.erase_ids)
    _count_cold_by_queue(result, plans, cold_done)
    return clean
