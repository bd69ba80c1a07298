"""Find archived jobs wherever they lie: the staging table or a committed object.

- `list_archived_jobs`: a page (newest archived first, stable) plus a total count, answered by the staging
  table and the job index alone; no object is read.
- `query_archived_jobs(session)`: a builder with the same filters plus created_at bounds; with
  `.with_payload(True)` it reads, for the page's cold jobs, only the row groups that hold them.
- `search_archived_jobs`: payload `key` (dotted path) equal to a value typed by a user; staging rows are
  streamed with a server-side cursor and decoded in Python, cold objects (pruned by the manifest) are streamed
  in parallel, the payload column only, each row group decoded as soon as its chunk is in, with a vectorised
  substring prefilter before the exact JSON check; matched rows are mapped to jobs through the job index. Jobs
  already restored (index `restored_at`) are excluded.
- `get_archived_job`: one job, for `archive show` and the API.
"""

from __future__ import annotations

import base64
import math
import os
import re
import sys
import threading
import time as _time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from tiering import codec
from tiering import parquet as pqio
from tiering import schema as S
from tiering.context import Session
from tiering.db import manifest as mdb
from tiering.db import query as qdb
from tiering.errors import CorruptPayloadError, InvalidInputError, NotFoundError, OperationTimeout, StoreError
from tiering.inputs import (
    check_limit,
    check_offset,
    parse_job_id,
    parse_key_path,
    parse_statuses,
    parse_when,
)
from tiering.store.base import ARCHIVE_STORAGE_CLASSES, ObjectArchivedError, ObjectStore

T = TypeVar("T")
SEARCH_THREADS = 8  # reads in flight (footers, payload ranges, staging)
# Decoding and matching run on as many threads as there are cores: they release the GIL and keep a core busy, so
# more threads only add fresh per-thread heaps to fault in (a first search took 2-3x longer with 8) and switches.
SCAN_THREADS = max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2)
# A tier the planner expects to hold over this many times list_exact_total_up_to matches is not counted at all
# (a count that stops at up_to + 1 rows still reads them: 4 ms for 10,000 index rows, most of a page's cost).
ESTIMATE_ONLY_FACTOR = 10
RESTORE_TAIL_BYTES = 256 * 1024  # one request holds the footer of objects up to ~35 row groups (a 1M-job flush)
# Range requests: neighbours closer than COALESCE_GAP are read in one request (a request costs more than that many
# bytes), up to COALESCE_MAX bytes per request (bounded memory per reading thread).
COALESCE_GAP = 1024 * 1024
COALESCE_MAX = 4 * 1024 * 1024

# Input parsing lives in tiering.inputs (shared by the CLI and the API); re-exported here for callers.


def _check_window(after: datetime | None, before: datetime | None, what: str) -> None:
    if after is not None and before is not None and after >= before:
        raise InvalidInputError(f"{what}_after ({after.isoformat()}) must be earlier than {what}_before")


def _check_page(limit: int | None, offset: int) -> None:
    check_limit(limit)
    check_offset(offset)


def make_filters(
    *,
    queue: str | None = None,
    status: str | Sequence[str] | None = None,
    archived_after: Any = None,
    archived_before: Any = None,
    created_after: Any = None,
    created_before: Any = None,
) -> qdb.Filters:
    aa = parse_when(archived_after, name="archived_after")
    ab = parse_when(archived_before, name="archived_before")
    ca = parse_when(created_after, name="created_after")
    cb = parse_when(created_before, name="created_before")
    _check_window(aa, ab, "archived")
    _check_window(ca, cb, "created")
    if queue is not None and ("\x00" in queue):
        raise InvalidInputError("queue name holds a NUL character")
    return qdb.Filters(queue, parse_statuses(status), aa, ab, ca, cb)


# --- results ----------------------------------------------------------------------------------------


@dataclass
class ArchivedJob:
    job_id: str
    queue_name: str
    status: str
    created_at: datetime
    archived_at: datetime
    tier: str  # 'staging' | 'cold'
    payload_bytes: int | None = None
    object_key: str | None = None
    storage_class: str | None = None
    object_id: int | None = None
    row_group: int | None = None
    row_in_group: int | None = None
    payload: Any = None
    has_payload: bool = False
    record: dict[str, Any] | None = None  # every archive column (get_archived_job with_payload)
    warning: str | None = None
    error_message: str | None = None  # the first 500 characters (job index); the full text is in the record

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ArchivedJob:
        return cls(
            job_id=str(row["job_id"]),
            queue_name=row["queue_name"],
            status=row["status"],
            created_at=row["created_at"],
            archived_at=row["archived_at"],
            tier=row["tier"],
            payload_bytes=row.get("payload_bytes"),
            object_key=row.get("object_key"),
            storage_class=row.get("storage_class"),
            object_id=row.get("object_id"),
            row_group=row.get("row_group"),
            row_in_group=row.get("row_in_group"),
            error_message=row.get("error_message"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "queue_name": self.queue_name,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "archived_at": self.archived_at.isoformat(),
            "tier": self.tier,
            "payload_bytes": self.payload_bytes,
            "object_key": self.object_key,
            "storage_class": self.storage_class,
            "error_message": self.error_message,
        }
        if self.tier == "cold":
            out["row_group"] = self.row_group
        if self.has_payload:
            out["payload"] = self.payload
        if self.record is not None:
            out["record"] = {k: _jsonable(v) for k, v in self.record.items()}
        if self.warning:
            out["warning"] = self.warning
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass
class ArchivedJobPage:
    """A page and the total. `total` is exact unless `total_is_estimate`: past `list_exact_total_up_to` matching
    jobs in a tier it is the planner's estimate (never below what the pages shown prove). `has_more` is always
    exact (the page asked for one row more than it shows)."""

    items: list[ArchivedJob]
    total: int
    limit: int
    offset: int
    warnings: list[str] = field(default_factory=list)
    has_more: bool = False
    total_is_estimate: bool = False

    @property
    def next_cursor(self) -> str | None:
        """Pass as `after` for the next page (a keyset: as cheap at the millionth job as at the first)."""
        if not self.has_more or not self.items:
            return None
        last = self.items[-1]
        return encode_cursor(last.archived_at, last.job_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() for i in self.items],
            "total": self.total,
            "total_is_estimate": self.total_is_estimate,
            "has_more": self.has_more,
            "next_cursor": self.next_cursor,
            "limit": self.limit,
            "offset": self.offset,
            "warnings": self.warnings,
        }


def encode_cursor(archived_at: datetime, job_id: str) -> str:
    """An opaque page cursor: the list key (archived_at, job id) of the last job shown."""
    raw = f"{archived_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, job = raw.partition("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when, uuid.UUID(job)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"after: not a cursor from a previous page's next_cursor ({exc})") from None


# --- list / query -------------------------------------------------------------------------------------


def list_archived_jobs(
    session: Session,
    *,
    queue: str | None = None,
    status: str | Sequence[str] | None = None,
    archived_after: Any = None,
    archived_before: Any = None,
    limit: int = 50,
    offset: int = 0,
    exact_total: bool = False,
    after: str | None = None,
) -> ArchivedJobPage:
    """Archived jobs (staging + cold), newest archived first (ties by id), with the total; no object reads.
    The total is exact up to settings.list_exact_total_up_to jobs per tier and estimated past it, unless
    `exact_total` (which counts every matching job: seconds on millions). `after`: a page's next_cursor; the page
    then starts after that job (offset still skips from there), at the cost of a first page however deep."""
    filters = make_filters(queue=queue, status=status, archived_after=archived_after, archived_before=archived_before)
    _check_page(limit, offset)
    key = parse_cursor(after)
    with session.connection(autocommit=True) as conn:  # reads only: no BEGIN/COMMIT round trips
        return _read_page(conn, filters, limit, offset, exact_total, session.settings.list_exact_total_up_to, after=key)


def _read_page(
    conn: Any,
    filters: qdb.Filters,
    limit: int,
    offset: int,
    exact_total: bool,
    up_to: int,
    object_ids: Sequence[int] | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> ArchivedJobPage:
    """One page, limit-first, and its total: known for free on the last page, else per tier either the planner's
    estimate (when it expects over ESTIMATE_ONLY_FACTOR x `up_to` matches: no row is counted) or a count that
    stops past `up_to` (exact below it, the estimate above)."""
    rows, estimates = qdb.list_page(conn, filters, limit=limit + 1, offset=offset, object_ids=object_ids, after=after)
    has_more = len(rows) > limit
    items = [ArchivedJob.from_row(r) for r in rows[:limit]]
    seen = offset + len(items)
    if after is None and not has_more and (items or offset == 0):  # the last page: nothing past it
        return ArchivedJobPage(items, seen, limit, offset, has_more=False)
    # what the page proves exists (past a cursor, how many came before it is not known here)
    proven = seen + 1 if has_more and after is None else 0
    if exact_total:
        total = sum(qdb.count_sides(conn, filters, object_ids=object_ids).values())
        return ArchivedJobPage(items, max(total, proven), limit, offset, has_more=has_more)
    cap = max(0, up_to)
    to_count = [side for side, n in estimates.items() if n <= ESTIMATE_ONLY_FACTOR * cap]
    counts = qdb.count_sides(conn, filters, to_count, up_to=cap, object_ids=object_ids)
    total, estimated = 0, len(to_count) < len(qdb.SIDES)
    for side in qdb.SIDES:
        if side in counts and counts[side] <= cap:
            total += counts[side]
        else:
            estimated = True
            total += max(estimates[side], counts.get(side, 0))
    return ArchivedJobPage(items, max(total, proven), limit, offset, has_more=has_more,
                           total_is_estimate=estimated)  # fmt: skip


class ArchiveQuery:
    """`query_archived_jobs(session).queue("q").status("Failed").limit(10).with_payload().execute()`."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._queue: str | None = None
        self._statuses: list[str] | None = None
        self._when: dict[str, Any] = {}
        self._limit = 50
        self._offset = 0
        self._with_payload = False
        self._exact_total = False

    def queue(self, name: str | None) -> ArchiveQuery:
        self._queue = name
        return self

    def status(self, *statuses: str) -> ArchiveQuery:
        self._statuses = parse_statuses(list(statuses))
        return self

    def archived_after(self, when: Any) -> ArchiveQuery:
        self._when["archived_after"] = parse_when(when, name="archived_after")
        return self

    def archived_before(self, when: Any) -> ArchiveQuery:
        self._when["archived_before"] = parse_when(when, name="archived_before")
        return self

    def created_after(self, when: Any) -> ArchiveQuery:
        self._when["created_after"] = parse_when(when, name="created_after")
        return self

    def created_before(self, when: Any) -> ArchiveQuery:
        self._when["created_before"] = parse_when(when, name="created_before")
        return self

    def limit(self, n: int) -> ArchiveQuery:
        _check_page(n, 0)
        self._limit = n
        return self

    def offset(self, n: int) -> ArchiveQuery:
        _check_page(None, n)
        self._offset = n
        return self

    def with_payload(self, flag: bool = True) -> ArchiveQuery:
        self._with_payload = flag
        return self

    def exact_total(self, flag: bool = True) -> ArchiveQuery:
        """Count every matching job for `total` (else exact up to list_exact_total_up_to per tier)."""
        self._exact_total = flag
        return self

    def filters(self) -> qdb.Filters:
        return make_filters(queue=self._queue, status=self._statuses, **self._when)

    def execute(self) -> ArchivedJobPage:
        filters = self.filters()
        with self._session.connection() as conn:
            # Prune by the manifest's min/max columns first: only these objects can hold matching jobs.
            objects = mdb.committed_objects(conn, filters.params())
            object_ids = [m.id for m in objects]
            up_to = self._session.settings.list_exact_total_up_to
            page = _read_page(conn, filters, self._limit, self._offset, self._exact_total, up_to, object_ids)
        if self._with_payload:
            by_id = {m.id: m for m in objects}
            page.warnings = attach_payloads(self._session, page.items, by_id)
        return page


def query_archived_jobs(session: Session) -> ArchiveQuery:
    return ArchiveQuery(session)


def attach_payloads(
    session: Session, items: list[ArchivedJob], manifests: dict[int, mdb.ManifestRow] | None = None
) -> list[str]:
    """Fill `payload` of each item: staging rows decoded from their codec, cold ones from their row group."""
    warnings: list[str] = []
    staged = [uuid.UUID(i.job_id) for i in items if i.tier == "staging"]
    cold = [i for i in items if i.tier == "cold"]
    if staged:
        with session.connection() as conn:
            rows = conn.execute(
                "SELECT id, payload FROM hammerwork_jobs_archive WHERE id = ANY(%s::uuid[])", (staged,)
            ).fetchall()
        payloads = {str(r[0]): r[1] for r in rows}
        for item in items:
            if item.tier == "staging" and item.job_id in payloads:
                _set_payload(item, bytes(payloads[item.job_id]), stored=True)
    if cold:
        manifests = dict(manifests or {})
        missing = [i.object_id for i in cold if i.object_id is not None and i.object_id not in manifests]
        if missing:
            with session.connection() as conn:
                manifests.update(qdb.manifest_by_ids(conn, [m for m in missing if m is not None]))
        groups: dict[int, list[ArchivedJob]] = {}
        for item in cold:
            assert item.object_id is not None
            groups.setdefault(item.object_id, []).append(item)

        def load(object_id: int) -> tuple[int, dict[str, dict[str, Any]] | str]:
            m = manifests[object_id]
            wants = [(i.row_group or 0, i.row_in_group or 0) for i in groups[object_id]]
            try:
                return object_id, read_cold_rows(session.store, m.key, m.bytes, wants, columns=["id", "payload"])
            except ObjectArchivedError:
                return object_id, f"{m.key} is in {m.storage_class}: restore the job (or the object) to read it"

        with ThreadPoolExecutor(min(SEARCH_THREADS, len(groups))) as pool:
            for object_id, got in pool.map(load, list(groups)):
                if isinstance(got, str):
                    warnings.append(got)
                    for item in groups[object_id]:
                        item.warning = got
                    continue
                for item in groups[object_id]:
                    row = got.get(item.job_id)
                    if row is not None:
                        _set_payload(item, row["payload"])
    return warnings


def _set_payload(item: ArchivedJob, data: Any, *, stored: bool = False) -> None:
    """Attach a parsed payload; an unreadable one becomes the item's warning (listing pages go on)."""
    try:
        item.payload = codec.load_json(data, stored=stored)
        item.has_payload = True
    except codec.UnreadablePayload as exc:
        item.warning = f"payload unreadable: {exc.reason}"


def object_footer(store: ObjectStore, key: str, size: int) -> Any:
    """An object's footer: parsed once per process (objects never change under a name), else a 256 KB tail read
    (a second request only for a bigger footer)."""

    def load() -> Any:
        with store.open_input(key, size=size, tail_prefetch=RESTORE_TAIL_BYTES, readahead=RESTORE_TAIL_BYTES) as fh:
            return pqio.read_footer(fh)

    return pqio.cached_footer((store.uri(key), size), load)


def read_cold_rows(
    store: ObjectStore,
    key: str,
    size: int,
    wants: Iterable[tuple[int, int]],
    *,
    columns: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Rows (row_group, row_in_group) of one object, by job id: the footer (see object_footer), then one range
    request per run of neighbouring row groups holding them (just `columns`' chunks when given: the rest is
    neither read nor decoded). Flushes cap row groups at ~640 KB compressed, so restoring one job costs 2 requests
    and under 1 MB (3 for a footer over 256 KB), and 1 request once the footer is known."""
    wants = list(wants)
    meta = object_footer(store, key, size)
    cols = None if columns is None else pqio.present_columns(meta, columns)
    ranges = {rg: pqio.row_group_range(meta, rg, cols) for rg in {rg for rg, _ in wants}}
    out: dict[str, dict[str, Any]] = {}
    for start, end in pqio.coalesce(ranges.values(), max_gap=COALESCE_GAP, max_size=COALESCE_MAX):
        data = store.get_bytes(key, (start, end))
        here = [(rg, row) for rg, row in wants if start <= ranges[rg][0] and ranges[rg][1] <= end]
        picked = pqio.rows_from_segment(meta, size, (start, data), here, cols)
        out.update((str(row["id"]), row) for row in picked.to_pylist())
    return out


# --- get one --------------------------------------------------------------------------------------------


def get_archived_job(session: Session, job_id: str | uuid.UUID, with_payload: bool = True) -> ArchivedJob:
    """One archived job; with_payload adds the payload and every archive column (`record`)."""
    jid = parse_job_id(job_id)
    with session.connection() as conn:
        staged = qdb.staged_rows(conn, [jid], lock=False)
        loc = None if staged else qdb.cold_location(conn, jid)
        hot = qdb.hot_job(conn, jid) if not staged and loc is None else None
        restored = qdb.last_restored_at(conn, jid) if not staged and loc is None else None
    if staged:
        row = staged[0]
        job = ArchivedJob(
            job_id=str(row["id"]),
            queue_name=row["queue_name"],
            status=row["status"].strip('"'),
            created_at=row["created_at"],
            archived_at=row["archived_at"],
            tier="staging",
            payload_bytes=row["original_payload_size"] or len(row["payload"]),
        )
        if with_payload:
            try:
                raw = codec.decode_checked(bytes(row["payload"]))
                job.payload = codec.load_json(raw)
            except codec.UnreadablePayload as exc:
                raise _corrupt(jid, "staging", exc) from exc
            job.has_payload = True
            record = dict(row)
            record["payload"] = raw.decode("utf-8")
            job.record = record
        return job
    if loc is None:
        if hot is not None:
            raise NotFoundError(f"job {jid} is not archived: it is in the hot table (status {hot[0]})")
        if restored is not None:
            raise NotFoundError(f"job {jid} was restored to the hot table at {restored.isoformat()}")
        raise NotFoundError(f"no archived job with id {jid} (neither in staging nor in the job index)")
    job = ArchivedJob.from_row({**loc, "tier": "cold"})
    if with_payload:
        try:
            rows = read_cold_rows(
                session.store, loc["object_key"], loc["object_bytes"], [(loc["row_group"], loc["row_in_group"])]
            )
        except ObjectArchivedError:
            job.warning = (
                f"{loc['object_key']} is in {loc['storage_class']}: the payload cannot be read until the object "
                "is restored (`tiering archive restore` starts that)"
            )
            return job
        cold_row = rows.get(str(jid))
        if cold_row is None:
            raise StoreError(
                f"job {jid} is not at row {loc['row_in_group']} of row group {loc['row_group']} of "
                f"{loc['object_key']}: the object does not match the job index (run `tiering archive verify`)"
            )
        try:
            job.payload = codec.load_json(cold_row["payload"])
        except codec.UnreadablePayload as exc:
            raise _corrupt(jid, loc["object_key"], exc) from exc
        job.has_payload = True
        job.record = cold_row
    return job


def _corrupt(jid: uuid.UUID, where: str, exc: codec.UnreadablePayload) -> CorruptPayloadError:
    return CorruptPayloadError(
        f"job {jid} ({where}): {exc.reason}; its other fields are readable without the payload, "
        f"and `tiering archive erase --id {jid}` removes it"
    )


# --- search ---------------------------------------------------------------------------------------------


_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_\-.:@+ ]*")
_NEEDLE_SPLIT = re.compile(r'["\\/\x00-\x1f\x7f-\U0010ffff]+')


def _longest_safe_run(text: str) -> str:
    runs = _NEEDLE_SPLIT.split(text)
    return max(runs, key=len) if runs else ""


class ValueMatcher:
    """What a user-typed value matches: the string itself; a number equal to it (when it is numeric);
    true/false/null for those words. Also the substring(s) every matching JSON text must contain."""

    def __init__(self, value: str | int | float | bool | None) -> None:
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        else:
            text = str(value)
        if "\x00" in text:
            raise InvalidInputError("search value holds a NUL character")
        self.text = text
        self.number: Decimal | None = None
        try:
            d = Decimal(text.strip())
            if d.is_finite() and text.strip() == text and text:
                self.number = d
        except (InvalidOperation, ValueError):
            pass
        self.word = {"true": True, "false": False}.get(text)
        self.is_null = text == "null"
        self.needles = self._needles()

    def _needles(self) -> list[str] | None:
        """Substrings of which at least one occurs in any JSON text holding a match; None = no prefilter."""
        alts: list[str] = []
        string_needle = _longest_safe_run(self.text)
        if not string_needle:
            return None
        alts.append(string_needle)
        if self.number is not None:
            n = self.number
            if n == 0:
                alts.append("0")
            elif Decimal("1e-4") <= abs(n) < Decimal("1e15"):
                plain = format(n.normalize(), "f")
                alts.append(plain)
            else:
                return None  # exponent forms differ between JSON writers: check every row
        out: list[str] = []
        for a in alts:
            if a and a not in out:
                out.append(a)
        # "12345" covers "12345" the string and 12345 the number: drop needles that contain another needle
        return [a for a in out if not any(b != a and b in a for b in out)]

    def key_pattern(self, path: Sequence[str]) -> str | None:
        """An RE2 pattern every JSON text holding a match at `path` contains: the leaf key, a colon, then the
        value (as a string or a bare literal, possibly inside a list). None when it cannot be made exact enough
        to be safe (keys or values needing JSON escapes, list indexes, numbers in exponent range)."""
        leaf, dotted = path[-1], ".".join(path)
        if leaf.isdigit() or not all(_PLAIN_TOKEN.fullmatch(k) for k in (leaf, dotted)):
            return None
        if not _PLAIN_TOKEN.fullmatch(self.text) and self.text:
            return None
        values = ['"' + re.escape(self.text) + '"']
        if self.number is not None:
            if not (self.number == 0 or Decimal("1e-4") <= abs(self.number) < Decimal("1e15")):
                return None
            plain = format(self.number.normalize(), "f")
            frac = r"(?:\.0*)?" if "." not in plain else "0*"
            values.append(re.escape(plain) + frac + r"(?:[^0-9.eE]|$)")
        if self.word is not None or self.is_null:
            values.append(re.escape(self.text) + r"(?:[^a-z]|$)")
        keys = "|".join(sorted({re.escape(leaf), re.escape(dotted)}))
        return '"(?:' + keys + r')"\s*:\s*(?s:\[.*?)?(?:' + "|".join(values) + ")"

    def matches(self, value: Any) -> bool:
        if isinstance(value, str):
            return value == self.text
        if isinstance(value, bool):
            return self.word is not None and value is self.word
        if value is None:
            return self.is_null
        if self.number is None:
            return False
        if isinstance(value, Decimal):
            return value.is_finite() and value == self.number
        if isinstance(value, int):
            return Decimal(value) == self.number
        if isinstance(value, float):
            return math.isfinite(value) and Decimal(repr(value)) == self.number
        return False


def _parse_float(text: str) -> Decimal:
    return Decimal(text)


def path_matches(doc: Any, path: Sequence[str], matcher: ValueMatcher) -> bool:
    """Does `doc` hold `matcher`'s value at `path`? Lists fan out (any element), numeric segments index lists;
    a top-level key that itself holds dots (`"a.b": 1`) matches too. Walked with an explicit stack, so no
    payload is too deep for it."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, i = stack.pop()
        if i == len(path):
            if matcher.matches(node):
                return True
            if isinstance(node, list):
                stack.extend((v, i) for v in node)
            continue
        head = path[i]
        if isinstance(node, dict):
            if head in node:
                stack.append((node[head], i + 1))
            if len(path) - i > 1:
                joined = ".".join(path[i:])
                if joined in node and matcher.matches(node[joined]):
                    return True
        elif isinstance(node, list):
            if head.isdigit() and int(head) < len(node):
                stack.append((node[int(head)], i + 1))
            stack.extend((v, i) for v in node if isinstance(v, dict | list))
    return False


def _loads(text: str | bytes) -> Any:
    # JSON numbers become Decimal so 0.1 typed matches 0.1 stored exactly; ints stay ints
    return codec.load_json(text, parse_float=_parse_float)


UNREADABLE = object()  # _payload_match's answer for a payload that cannot be parsed (counted, never a match)


def _payload_match(text: str | bytes, path: Sequence[str], matcher: ValueMatcher) -> Any | None:
    try:
        doc = _loads(text)
    except codec.UnreadablePayload:
        return UNREADABLE
    return doc if path_matches(doc, path, matcher) else None


@dataclass
class SearchResult:
    items: list[ArchivedJob]
    key: str
    value: str
    staging_rows_checked: int = 0
    objects_total: int = 0
    objects_scanned: int = 0
    objects_skipped: list[str] = field(default_factory=list)  # GLACIER/DEEP_ARCHIVE objects not readable
    rows_scanned: int = 0
    rows_prefiltered: int = 0
    bytes_read: int = 0
    truncated: bool = False
    unreadable_payloads: int = 0  # candidate rows whose payload could not be decoded or parsed (skipped)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "count": len(self.items),
            "truncated": self.truncated,
            "items": [i.to_dict() for i in self.items],
            "stats": {
                "staging_rows_checked": self.staging_rows_checked,
                "objects_total": self.objects_total,
                "objects_scanned": self.objects_scanned,
                "rows_scanned": self.rows_scanned,
                "rows_after_prefilter": self.rows_prefiltered,
                "object_bytes": self.bytes_read,
                "unreadable_payloads": self.unreadable_payloads,
            },
            "objects_skipped": self.objects_skipped,
        }


def _prefilter_mask(payload: pa.ChunkedArray | pa.Array, needles: list[str] | None) -> pa.Array | None:
    if not needles:
        return None
    mask = None
    for needle in needles:
        m = pc.match_substring(payload, needle)
        mask = m if mask is None else pc.or_(mask, m)
    return mask


SCAN_BATCH_ROWS = 8192  # small batches keep the decoded payload text in cache instead of 100s of MB at once


def literal_regex(needles: Sequence[str]) -> str:
    """An RE2 pattern matching any of `needles` literally (RE2 finds literals far faster than Arrow's plain
    substring kernel, and faster than the key/value pattern, which starts at every quote)."""
    return "|".join("".join("\\" + c if c in _RE2_META else c for c in n) for n in needles)


_RE2_META = frozenset("\\.+*?()|[]{}^$")


def _candidate_rows(payload: pa.Array, matcher: ValueMatcher, pattern: str | None) -> pa.Array:
    """Indexes of the rows that may match: rows holding a needle (every match holds one), narrowed by the
    key/value regex when there is one; else every row. Both stages run in RE2: measured on 125k bench payloads,
    19 ms against 44 ms for the key/value regex alone and 150 ms for Arrow's substring search."""
    if matcher.needles:
        rows = pc.indices_nonzero(pc.match_substring_regex(payload, literal_regex(matcher.needles)))
        if pattern is None or not len(rows):
            return rows
        return pc.take(rows, pc.indices_nonzero(pc.match_substring_regex(payload.take(rows), pattern)))
    if pattern is not None:
        return pc.indices_nonzero(pc.match_substring_regex(payload, pattern))
    mask = _prefilter_mask(payload, matcher.needles)
    return pa.array(range(len(payload)), pa.int64()) if mask is None else pc.indices_nonzero(mask)


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and _time.monotonic() > deadline:
        raise OperationTimeout("search stopped at its deadline")


def _scan_payloads(
    meta: Any,
    size: int,
    segment: pqio.Segment,
    rg: int,
    path: Sequence[str],
    matcher: ValueMatcher,
    pattern: str | None,
    deadline: float | None = None,
) -> tuple[list[tuple[int, int, Any]], int, int, int]:
    """(matches (row group, row in group, payload), rows scanned, rows after prefilter, unreadable payloads) of
    one row group, decoded from a fetched `segment` holding its payload chunk, in small batches: a prefilter in
    Arrow's C++ (`pattern`: matcher.key_pattern(path), made once per search) leaves few rows for the exact JSON
    check, and matched rows are mapped to jobs through the job index afterwards."""
    found: list[tuple[int, int, Any]] = []
    scanned = kept = offset = bad = 0
    for batch in pqio.batches_from_segment(meta, size, segment, rg, ["payload"], SCAN_BATCH_ROWS):
        _check_deadline(deadline)
        payload = batch.column(0)
        rows = _candidate_rows(payload, matcher, pattern)
        scanned += len(payload)
        kept += len(rows)
        if len(rows):
            for row, text in zip(rows.to_pylist(), payload.take(rows).to_pylist(), strict=True):
                doc = _payload_match(text, path, matcher)
                if doc is UNREADABLE:
                    bad += 1
                elif doc is not None:
                    found.append((rg, offset + row, doc))
        offset += len(payload)
    return found, scanned, kept, bad


# One read: a byte range of an object, and the (row group, [start, end) of its payload chunk) pairs inside it.
PayloadReads = list[tuple[tuple[int, int], list[tuple[int, tuple[int, int]]]]]
_PAYLOAD_READS: OrderedDict[tuple[str, int], PayloadReads] = OrderedDict()
_PAYLOAD_READS_LOCK = threading.Lock()
# A search streams each read: a row group's payload chunk is decoded as soon as its last byte is in, while the rest
# of the range is still on the wire, and only bytes a later chunk needs are kept. So a request's size no longer
# sets memory: reads go up to STREAM_MAX bytes, one request per object of the bench's 100k-job flushes (3-4 at
# COALESCE_MAX). Fewer requests matter because botocore builds each one in Python, about 3 ms holding the GIL:
# the requests of a search go out one after another. STREAM_PIECE: how much of a body is taken at a time (each
# take needs the GIL; 256 KB pieces were slower than 1 MB ones).
STREAM_MAX = 16 * 1024 * 1024
STREAM_PIECE = 1024 * 1024


def _payload_reads(store: ObjectStore, m: mdb.ManifestRow, meta: Any) -> PayloadReads:
    """The range requests that fetch every payload chunk of an object (neighbours coalesced), each with the row
    groups whose chunk it holds, in file order. Kept per object as its footer is (an address and size name one
    content for good): walking every column chunk of every row group in Python took 6 % of a search."""
    identity = (store.uri(m.key), m.bytes)
    with _PAYLOAD_READS_LOCK:
        reads = _PAYLOAD_READS.get(identity)
        if reads is not None:
            _PAYLOAD_READS.move_to_end(identity)
            return reads
    chunks = sorted(
        ((rg, pqio.row_group_range(meta, rg, ["payload"])) for rg in range(meta.num_row_groups)), key=lambda c: c[1]
    )
    reads = [
        (seg, [(rg, (a, b)) for rg, (a, b) in chunks if seg[0] <= a and b <= seg[1]])
        for seg in pqio.coalesce((c for _, c in chunks), max_gap=COALESCE_GAP, max_size=STREAM_MAX)
    ]
    with _PAYLOAD_READS_LOCK:
        _PAYLOAD_READS[identity] = reads
        while len(_PAYLOAD_READS) > pqio.FOOTER_CACHE_ENTRIES:
            _PAYLOAD_READS.popitem(last=False)
    return reads


def _stream_payloads(
    store: ObjectStore,
    key: str,
    seg: tuple[int, int],
    chunks: list[tuple[int, tuple[int, int]]],
    deadline: float | None,
    stop: threading.Event,
    dispatch: Callable[[int, pqio.Segment], None],
) -> None:
    """Read one range as a stream; hand each row group's payload chunk (`chunks`, in file order) to `dispatch`
    as soon as its last byte has arrived. Holds at most one chunk and one piece: bytes before the next chunk still
    to come are dropped as the stream moves on (the other columns' chunks between payload chunks, too)."""
    base, buf, i = seg[0], bytearray(), 0
    for piece in store.get_stream(key, seg, STREAM_PIECE):
        _check_deadline(deadline)
        if stop.is_set():
            return
        buf += piece
        end = base + len(buf)
        while i < len(chunks) and chunks[i][1][1] <= end:
            rg, (a, b) = chunks[i]
            with memoryview(buf) as view, view[a - base : b - base] as part:
                dispatch(rg, (a, bytes(part)))
            i += 1
        keep = min(chunks[i][1][0], end) if i < len(chunks) else end
        del buf[: keep - base]  # front deletion of a bytearray moves no bytes
        base = keep
    if i < len(chunks):
        raise StoreError(
            f"{key} ended at byte {base + len(buf)}, before its row group {chunks[i][0]}'s payload (bytes "
            f"{chunks[i][1][0]}..{chunks[i][1][1]}): the object does not match its footer"
        )


_POOLS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _search_pool(threads: int, kind: str = "io") -> ThreadPoolExecutor:
    """The process's search threads (one pool per kind and size, started on first use and kept): a search then
    starts no thread and finds its S3 connections and decoders warm. "io" pools read (footers, payload streams,
    staging); "scan" pools decode and match. Scan tasks never wait for anything, and io tasks wait only for scans
    (a stream waits while its search's queued chunks are over SCAN_QUEUE_BYTES), so searches sharing the pools
    cannot deadlock."""
    key = (kind, max(1, threads))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(key[1], thread_name_prefix=f"tiering-{kind}")
        return pool


RELEASE_THREADS = 2  # returned connections being reset; kept apart so that a busy search pool never delays them


def _release_pool() -> ThreadPoolExecutor:
    """The threads that give search connections back to the pool."""
    return _search_pool(RELEASE_THREADS, "release")


def _forget_pools() -> None:
    """A forked child has none of its parent's threads: it starts its own pools."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def _cancel(futures: Iterable[Future[Any]]) -> None:
    for future in futures:
        future.cancel()


SCAN_QUEUE_BYTES = 64 * 1024 * 1024  # payload chunks of one search handed on and not yet scanned, at most


class _ByteBudget:
    """Bytes in flight, bounded: take() waits while `limit` would be passed (a chunk bigger than the limit alone
    goes when nothing else is in flight), so streams read no faster than scans keep up and a search over many
    objects holds a bounded part of their payloads, not all of it."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._cond = threading.Condition()

    def take(self, n: int, stop: threading.Event, deadline: float | None) -> bool:
        """False when `stop` is set before there was room; OperationTimeout past `deadline`."""
        with self._cond:
            while self.used and self.used + n > self.limit:
                if stop.is_set():
                    return False
                _check_deadline(deadline)
                self._cond.wait(0.05)
            if stop.is_set():
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def _scan_objects(
    store: ObjectStore,
    readable: list[mdb.ManifestRow],
    path: Sequence[str],
    matcher: ValueMatcher,
    threads: int,
    deadline: float | None,
    result: SearchResult,
) -> list[tuple[tuple[int, int, int], Any]]:
    """Payload matches ((object id, row group, row in group), doc) of the readable objects: footers (cached per
    process), then each object's coalesced payload ranges streamed in parallel; every row group's payload chunk is
    decoded and matched on a pool of SCAN_THREADS as soon as its bytes are in (decoding and regex matching release
    the GIL), while the rest of its range is still arriving."""
    cold: list[tuple[tuple[int, int, int], Any]] = []
    pool = _search_pool(threads)
    scan_pool = _search_pool(min(threads, SCAN_THREADS), "scan")
    queued = _ByteBudget(SCAN_QUEUE_BYTES)
    pattern = matcher.key_pattern(path)
    stop = threading.Event()  # set on failure: streams still running stop handing on chunks
    scans: list[tuple[mdb.ManifestRow, Future[tuple[list[tuple[int, int, Any]], int, int, int]]]] = []

    def dispatcher(m: mdb.ManifestRow, meta: Any) -> Callable[[int, pqio.Segment], None]:
        def dispatch(rg: int, segment: pqio.Segment) -> None:
            size = len(segment[1])
            if not queued.take(size, stop, deadline):
                return  # the search stopped
            future = scan_pool.submit(_scan_payloads, meta, m.bytes, segment, rg, path, matcher, pattern, deadline)
            future.add_done_callback(lambda _: queued.give(size))
            scans.append((m, future))  # list.append is atomic; read once every stream has ended

        return dispatch

    def start(m: mdb.ManifestRow, meta: Any) -> None:
        for seg, chunks in _payload_reads(store, m, meta):
            result.bytes_read += seg[1] - seg[0]
            dispatch = dispatcher(m, meta)
            streams.append(pool.submit(_stream_payloads, store, m.key, seg, chunks, deadline, stop, dispatch))

    footers: dict[Future[Any], mdb.ManifestRow] = {}
    streams: list[Future[None]] = []
    try:
        for m in readable:  # objects whose footer is known start at once; the others when theirs is read
            meta = pqio.known_footer((store.uri(m.key), m.bytes))
            if meta is None:
                footers[pool.submit(object_footer, store, m.key, m.bytes)] = m
            else:
                start(m, meta)
        for footer in as_completed(footers):
            start(footers[footer], footer.result())
        for stream in as_completed(streams):
            stream.result()
        result.objects_scanned = len(readable)
        for m, future in scans:
            found, scanned, kept, bad = future.result()
            result.unreadable_payloads += bad
            result.rows_scanned += scanned
            result.rows_prefiltered += kept
            cold.extend(((m.id, rg, row), doc) for rg, row, doc in found)
    except BaseException:
        stop.set()
        _cancel(footers)
        _cancel(streams)
        _cancel(f for _, f in list(scans))
        raise
    return cold


def _query_then_release(session: Session, query: Callable[[Any], T]) -> T:
    """`query` on a pooled autocommit connection (reads only: no BEGIN/COMMIT round trips), which then goes back
    to the pool on a release thread: the pool's reset of a returned connection (a round trip) runs beside the
    search instead of before its next step."""
    cm = session.connection(autocommit=True)
    conn = cm.__enter__()
    try:
        value = query(conn)
    except BaseException:
        cm.__exit__(*sys.exc_info())
        raise
    _release_pool().submit(cm.__exit__, None, None, None)
    return value


def _search_staging(
    session: Session, filters: qdb.Filters, path: Sequence[str], matcher: ValueMatcher, deadline: float | None
) -> tuple[list[ArchivedJob], int, int]:
    """The staging part of a search: (matches, rows checked, unreadable payloads), streamed with a server-side
    cursor (a substring prefilter in SQL when there is one needle) and checked in Python."""
    items: list[ArchivedJob] = []
    checked = bad = 0
    needle_bytes = matcher.needles[0].encode("utf-8") if matcher.needles and len(matcher.needles) == 1 else None
    with session.connection() as conn, conn.transaction():
        for jid, qname, st, created, archived, payload, size in qdb.staging_payload_stream(conn, filters, needle_bytes):
            checked += 1
            if checked % 1000 == 0:
                _check_deadline(deadline)
            try:
                raw = codec.decode_checked(bytes(payload))
            except codec.UnreadablePayload:
                bad += 1
                continue
            if matcher.needles and not any(n.encode("utf-8") in raw for n in matcher.needles):
                continue
            doc = _payload_match(raw, path, matcher)
            if doc is UNREADABLE:
                bad += 1
            elif doc is not None:
                items.append(ArchivedJob(str(jid), qname, st, created, archived, "staging", size, payload=doc,
                                         has_payload=True))  # fmt: skip
    return items, checked, bad


def _search_cold(
    session: Session,
    objects: list[mdb.ManifestRow],
    filters: qdb.Filters,
    path: Sequence[str],
    matcher: ValueMatcher,
    threads: int,
    deadline: float | None,
    result: SearchResult,
) -> list[ArchivedJob]:
    """The cold part of a search: matches in the readable objects, mapped to live jobs through the job index."""
    items: list[ArchivedJob] = []
    store = session.store
    result.objects_total = len(objects)
    readable: list[mdb.ManifestRow] = []
    for m in objects:
        if m.storage_class in ARCHIVE_STORAGE_CLASSES:
            result.objects_skipped.append(m.key)
        else:
            readable.append(m)
    if readable:
        cold = _scan_objects(store, readable, path, matcher, threads, deadline, result)
        if cold:
            positions = [position for position, _ in cold]
            live = _query_then_release(session, lambda conn: qdb.live_index_rows_at(conn, positions))
            for position, doc in cold:
                row = live.get(position)
                if row is None:
                    continue  # restored (or erased) since it was flushed
                if not _in_filters(row, filters):
                    continue
                item = ArchivedJob.from_row({**row, "tier": "cold"})
                item.payload = doc
                item.has_payload = True
                items.append(item)
    return items


def search_archived_jobs(
    session: Session,
    key: str,
    value: str | int | float | bool | None,
    queue: str | None = None,
    limit: int | None = None,
    archived_after: Any = None,
    archived_before: Any = None,
    *,
    status: str | Sequence[str] | None = None,
    threads: int = SEARCH_THREADS,
    include_staging: bool = True,
    deadline: float | None = None,
) -> SearchResult:
    """Archived jobs whose payload holds `value` at `key` (dotted path), newest archived first. `deadline` (a
    time.monotonic() instant): stop with OperationTimeout once it passes (checked between batches)."""
    path = parse_key_path(key)
    matcher = ValueMatcher(value)
    filters = make_filters(queue=queue, status=status, archived_after=archived_after, archived_before=archived_before)
    _check_page(limit, 0)
    result = SearchResult([], key, matcher.text)
    items: list[ArchivedJob] = []
    objects, staged_rows = _query_then_release(session, lambda conn: qdb.search_sources(conn, filters))
    staged: Future[tuple[list[ArchivedJob], int, int]] | None = None
    if include_staging and staged_rows:
        # Staging rows (PostgreSQL) are searched while the objects are read: neither waits for the other.
        staged = _search_pool(threads).submit(_search_staging, session, filters, path, matcher, deadline)
    try:
        items.extend(_search_cold(session, objects, filters, path, matcher, threads, deadline, result))
    finally:
        if staged is not None:
            wait([staged])  # never leave it running on the session's connections
    if staged is not None:
        found, checked, bad = staged.result()
        items.extend(found)
        result.staging_rows_checked += checked
        result.unreadable_payloads += bad
    items.sort(key=lambda i: (-i.archived_at.timestamp(), i.job_id))
    if limit is not None and len(items) > limit:
        result.truncated = True
        items = items[:limit]
    for item in items:
        item.payload = _plain(item.payload)
    result.items = items
    return result


def _plain(doc: Any) -> Any:
    """Decimal (JSON fractions, parsed exactly for matching) -> float again for rendering."""
    if isinstance(doc, Decimal):
        return float(doc)
    if isinstance(doc, list):
        return [_plain(v) for v in doc]
    if isinstance(doc, dict):
        return {k: _plain(v) for k, v in doc.items()}
    return doc


def _in_filters(row: dict[str, Any], f: qdb.Filters) -> bool:
    if f.queue is not None and row["queue_name"] != f.queue:
        return False
    if f.statuses and row["status"] not in f.statuses:
        return False
    if f.archived_after is not None and row["archived_at"] < f.archived_after:
        return False
    if f.archived_before is not None and row["archived_at"] >= f.archived_before:
        return False
    return True


ProgressFn = Callable[[int], None]

__all__ = [
    "ArchiveQuery",
    "ArchivedJob",
    "ArchivedJobPage",
    "SearchResult",
    "ValueMatcher",
    "attach_payloads",
    "get_archived_job",
    "list_archived_jobs",
    "parse_job_id",
    "parse_key_path",
    "parse_statuses",
    "parse_when",
    "query_archived_jobs",
    "read_cold_rows",
    "search_archived_jobs",
]

_ = S  # the archive schema documents the columns read here
