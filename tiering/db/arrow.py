"""Arrow-native access to PostgreSQL (ADBC, libpq's binary COPY in C) for the bulk paths of flush.

A flush claims staged rows with FOR UPDATE SKIP LOCKED and streams them as Arrow record batches in the
same transaction; the commit (manifest committed, index rows, staged rows deleted) is that transaction's end.
"""

from __future__ import annotations

import array
import re
import struct
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import adbc_driver_manager  # type: ignore[import-untyped]
import adbc_driver_manager.dbapi as adbc_dbapi  # type: ignore[import-untyped]
import adbc_driver_postgresql as adbc_pg  # type: ignore[import-untyped]
import adbc_driver_postgresql.dbapi as adbc  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from tiering import schema as S
from tiering.db import planner
from tiering.db.literals import array_literal
from tiering.db.locks import SHARE_MOVES_SQL
from tiering.db.staging import NOT_A_COLD_COPY, WHOLE_SCAN, Predicate
from tiering.errors import DatabaseError
from tiering.policy import TERMINAL_STATUSES, StorageClassRule, stored_spellings

ArrowConnection = Any  # adbc_driver_postgresql.dbapi.Connection (untyped)


def connect_arrow(url: str) -> ArrowConnection:
    try:
        return adbc.connect(url)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise DatabaseError(f"cannot connect to the database (ADBC): {exc}") from exc


# adbc_driver_manager's reference-counted holder of a driver database, which its dbapi connections share (private,
# present from 1.0 to at least 1.13)
_SHARED_DATABASE: Any = getattr(adbc_dbapi, "_SharedDatabase", None)


class _SerializedConnection(adbc_dbapi.Connection):  # type: ignore[misc]
    """A dbapi connection whose close() (and so its __del__) holds its ArrowDatabase's driver lock."""

    _driver_lock: threading.RLock | None = None  # set before the base __init__, which __del__ may follow

    def __init__(self, shared: Any, driver_connection: Any, driver_lock: threading.RLock) -> None:
        self._driver_lock = driver_lock
        super().__init__(shared, driver_connection)

    def close(self) -> None:
        lock = self._driver_lock
        if lock is None:
            super().close()
            return
        with lock:
            super().close()


class ArrowDatabase:
    """ADBC connections to one database that share the driver's database object: a fresh one connects once more
    and reads pg_type to build its type lookups, 40 ms of CPU (0.4 s on a busy machine) for every connection, and
    a direct run opens one per scan range, per worker and per plan. Its connections are dbapi connections as
    connect_arrow's; close() lets the shared object go once the last of them is closed.

    The PostgreSQL driver counts a database's open connections in a plain integer (not atomic) that every
    connect and close changes outside the GIL, so two threads doing either at once can lose a count and a later
    close fails with "Open connection count underflowed". Every open and close of this database's connections
    holds one lock (re-entrant: a connection's __del__ may run inside it)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.RLock()
        self._shared: Any = None
        self._closed = False

    def connect(self) -> ArrowConnection:
        try:
            with self._lock:
                if self._closed:
                    raise DatabaseError("the ADBC database of this session is closed")
                if self._shared is None and _SHARED_DATABASE is not None:
                    self._shared = _SHARED_DATABASE(adbc_pg.connect(self._url))
                shared = self._shared
                if shared is not None:
                    # the connection takes a reference of its own (released by its close())
                    driver_connection = adbc_driver_manager.AdbcConnection(shared._db)
                    try:
                        return _SerializedConnection(shared, driver_connection, self._lock)
                    except BaseException:
                        driver_connection.close()
                        raise
            # a driver manager without its (private) holder: a database per connection, nothing shared to guard
            return connect_arrow(self._url)
        except DatabaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise DatabaseError(f"cannot connect to the database (ADBC): {exc}") from exc

    def close(self) -> None:
        with self._lock:
            shared, self._shared, self._closed = self._shared, None, True
            if shared is not None:
                shared.close()


def storage_class_case(
    rules: Sequence[StorageClassRule], default: str, first_param: int, alias: str = "a"
) -> tuple[str, list[Any]]:
    """A CASE expression (with $n parameters) giving each row (of `alias`: a staged row, or the direct path's hot
    row) the storage class of its first rule; an empty rule list needs no CASE at all."""
    params: list[Any] = []
    whens: list[str] = []
    n = first_param
    for rule in rules:
        whens.append(
            f"WHEN (${n}::text IS NULL OR {alias}.queue_name = ${n}) "
            f"AND (${n + 1}::text IS NULL OR {S.bare_status_sql(f'{alias}.status')} = ${n + 1}) THEN ${n + 2}::text"
        )
        params.extend([rule.queue, rule.status, rule.storage_class])
        n += 3
    params.append(default)
    if not whens:
        return f"${n}::text", params
    return f"CASE {' '.join(whens)} ELSE ${n}::text END", params


def share_moves(conn: ArrowConnection) -> None:
    """Hold the moves lock shared for this transaction (see tiering.db.locks): an erase waits for the round."""
    cur = conn.cursor()
    try:
        cur.execute(SHARE_MOVES_SQL)
        cur.fetchall()
    finally:
        cur.close()


def plan_groups(conn: ArrowConnection, queue: str | None) -> list[tuple[str, str, int]]:
    """(queue, UTC date, staged rows) of everything staged, biggest first."""
    cur = conn.cursor()
    try:
        cur.execute(
            """SELECT queue_name, to_char(archived_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*) AS n
                 FROM hammerwork_jobs_archive
                WHERE ($1::text IS NULL OR queue_name = $1)
                GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""",
            parameters=pa.record_batch([pa.array([queue], pa.string())], names=["queue"]),
        )
        return [(q, d, int(n)) for q, d, n in cur.fetchall()]
    finally:
        cur.close()


def stream_claimed_group(
    conn: ArrowConnection,
    group: tuple[str, str],
    limit: int,
    rules: Sequence[StorageClassRule],
    default_class: str,
) -> tuple[Any, pa.RecordBatchReader]:
    """Claim (FOR UPDATE SKIP LOCKED) and read up to `limit` staged rows of one (queue, UTC date) group, with
    `tiering_storage_class`, read as the column registry says (statuses bare); the row locks last until this
    transaction ends. Returns (cursor, reader): close the cursor after reading. Sorted by storage class only when
    rules can give a group several classes. (A staged row whose job is already live cold is settled before the
    flush; one staged in the meantime is refused at commit and settled then, at no cost to every other row.)"""
    case_sql, params = storage_class_case(rules, default_class, 4)
    cols = ", ".join(S.staging_read_exprs())
    order = "ORDER BY tiering_storage_class" if rules else ""
    query = f"""
        SELECT {cols}, {case_sql} AS tiering_storage_class
          FROM hammerwork_jobs_archive a
         WHERE a.queue_name = $1
           AND a.archived_at >= ($2::date::timestamp AT TIME ZONE 'UTC')
           AND a.archived_at < (($2::date + 1)::timestamp AT TIME ZONE 'UTC')
           AND NOT EXISTS (SELECT 1 FROM tiering_quarantine q WHERE q.job_id = a.id)
         {order}
         LIMIT $3
           FOR UPDATE OF a SKIP LOCKED"""  # noqa: S608 - columns are ours, values are parameters
    cur = conn.cursor()
    return cur, _stream(cur, query, [group[0], group[1], limit, *params])


_NAMED = re.compile(r"%\((\w+)\)s|%%")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _stream(cur: Any, query: str, values: Sequence[Any]) -> pa.RecordBatchReader:
    """Run a claim ($n placeholders) and read it as a stream of record batches. The values are rendered into the
    text by psycopg's quoting (sql.Literal), not bound: ADBC streams a statement without bind parameters through
    binary COPY, but holds a bound statement's whole result in libpq before its first batch (150k jobs: +527 MB
    bound, +55 MB streamed), which made a run's peak memory grow with its rounds, and so with the backlog.
    Batches of about CLAIM_BATCH_BYTES: a flush reads them a few ahead of its writer (see engine.flush)."""
    cur.adbc_statement.set_options(**{adbc_pg.StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(CLAIM_BATCH_BYTES)})
    cur.execute(_PLACEHOLDER.sub(lambda m: sql.Literal(values[int(m.group(1)) - 1]).as_string(None), query))
    return cur.fetch_record_batch()


# ADBC's default is 16 MB a batch; a flush holds a few batches read ahead per worker, so they are kept smaller
CLAIM_BATCH_BYTES = 4 << 20


def _positional(text: str, params: dict[str, Any], first: int) -> tuple[str, list[Any]]:
    """psycopg's %(name)s placeholders -> ADBC's $n (typed by a cast), with the values in order: the eligibility
    predicate is composed once (tiering.db.staging) and runs on both drivers."""
    order: dict[str, int] = {}
    values: list[Any] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        name = m.group(1)
        value = params[name]
        if name not in order:
            order[name] = first + len(values)
            if isinstance(value, list | tuple):
                values.append(array_literal(value))
            elif isinstance(value, datetime):
                values.append(value.isoformat())
            else:
                values.append(value)
        if isinstance(value, list | tuple):
            cast = "::text[]"
        elif isinstance(value, datetime):
            cast = "::timestamptz"
        elif isinstance(value, bool):
            cast = "::boolean"
        elif isinstance(value, int):
            cast = "::bigint"
        else:
            cast = "::text"
        return f"${order[name]}{cast}"

    return _NAMED.sub(sub, text), values


def transaction_day(conn: ArrowConnection) -> str:
    """The UTC date of this transaction's now(): the day a direct round's jobs are archived on (their
    archived_at is that now())."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
        row = cur.fetchone()
        assert row is not None
        return str(row[0])
    finally:
        cur.close()


@dataclass
class HotScan:
    """What the direct path's one scan of the hot table found: each queue's eligible jobs as packed tids, and the
    finished jobs the policy leaves hot (per plain status: not yet due, or a status it never archives)."""

    tids: dict[str, pa.Array]
    not_due: Counter[str] = field(default_factory=Counter)
    marked: int = 0  # hot rows Hammerwork marked archived (what settling looks for)

    @property
    def eligible(self) -> int:
        return sum(len(t) for t in self.tids.values())

    def add(self, other: HotScan) -> HotScan:
        """This part of the table and `other`'s: each queue's tids in table order (parts are given in order)."""
        queues = sorted({*self.tids, *other.tids})
        tids = {q: pa.concat_arrays([p.tids[q] for p in (self, other) if q in p.tids]) for q in queues}
        return HotScan(tids, self.not_due + other.not_due, self.marked + other.marked)


def eligible_hot(conn: ArrowConnection, pred: Predicate, blocks: tuple[int, int | None] | None = None) -> HotScan:
    """Each queue's eligible hot jobs as packed tids (int64), found in ONE scan of the hot table without locks: the
    direct path's rounds then claim exactly these rows by their tids (a TID scan each) instead of scanning the whole
    table again for every queue and round (at 1M jobs over 8 queues that was ~14 scans). A tid is the row's ctid
    packed as block * 65536 + offset (8 bytes a job held for the run). The server gathers one binary tid[] per queue
    (packed_tids unpacks it): read as a row per job (queue name and ctid text), the driver's buffers for 1M jobs
    (outside Arrow's pool) stayed resident for the whole run, +85 MB of peak RSS against +12 MB, most of what a
    run's peak grew with its backlog. A row updated since (a new ctid) is not claimed by this run; the claim
    re-checks the predicate anyway. The same scan counts the finished jobs the policy leaves hot, what the run
    reports as left behind: counted afterwards, that was a second full scan of the hot table at the run's end (1M
    jobs: 1.5-2.7 s of wall, one core). It also counts the hot rows Hammerwork marked archived, so that settling
    scans the hot table for them only when there are some. It reads every finished (or marked) row instead of the
    eligible ones (the staging check a LEFT JOIN on the archive's primary key in place of the anti-join, the same
    hash), ~5 % more than the eligible scan alone. Planned with no nested loop (staging.WHOLE_SCAN): the scan runs
    in this connection's transaction, which holds the setting until it is restored here. `blocks` (first, end; end
    None: to the end of the table) scans that range of the table's blocks only (a TID range scan), so that
    connections can scan parts of it at once."""
    within = ""
    if blocks is not None:
        first, end = blocks
        within = f" AND h.ctid >= '({int(first)},0)'::tid"
        if end is not None:
            within += f" AND h.ctid < '({int(end)},0)'::tid"
    params = dict(pred.params, finished=stored_spellings(TERMINAL_STATUSES), scan_queue=pred.queue)
    counts = []
    for i, status in enumerate(TERMINAL_STATUSES):
        params[f"finished{i}"] = stored_spellings((status,))
        counts.append(f"count(*) FILTER (WHERE h.status = ANY(%(finished{i})s) AND NOT ({{hot}})) AS not_due{i}")
    hot = pred.hot_clause.as_string(None)
    text = f"""SELECT h.queue_name,
                      array_send(array_agg(h.ctid) FILTER (WHERE {hot} AND a.id IS NULL AND {NOT_A_COLD_COPY}))
                        AS tids,
                      {", ".join(counts).format(hot=hot)},
                      count(*) FILTER (WHERE h.archived_at IS NOT NULL) AS marked
                 FROM hammerwork_jobs h
                 LEFT JOIN hammerwork_jobs_archive a ON a.id = h.id
                WHERE (h.status = ANY(%(finished)s) OR h.archived_at IS NOT NULL)
                  AND (%(scan_queue)s IS NULL OR h.queue_name = %(scan_queue)s){within}
                GROUP BY h.queue_name"""  # noqa: S608 - constant fragments, values are parameters
    query, values = _positional(text, params, 1)
    cur = conn.cursor()
    try:
        cur.execute(planner.switch_current_sql(WHOLE_SCAN))
        previous = cur.fetchall()[0][0]
        cur.execute(planner.switch_off_sql(WHOLE_SCAN))
        cur.fetchall()
        table = _stream(cur, query, values).read_all()
        cur.execute(planner.switch_restore_sql(WHOLE_SCAN, previous))
        cur.fetchall()
    finally:
        cur.close()
    scan = HotScan({})
    for queue_name, sent in zip(table.column("queue_name").to_pylist(), table.column("tids").to_pylist(), strict=True):
        if sent is not None:
            scan.tids[str(queue_name)] = packed_tids(sent)
    scan.marked = sum(table.column("marked").to_pylist())
    for i, status in enumerate(TERMINAL_STATUSES):
        left = sum(table.column(f"not_due{i}").to_pylist())
        if left:
            scan.not_due[status] = left
    return scan


_TID_ARRAY_HEADER = struct.Struct(">iiIii")  # ndim, has-nulls flag, element type, length, lower bound
_TID_OID = 27
_TID_ELEMENT = 10  # each element: its length (4 bytes, always 6), the block (4) and the offset in it (2), big-endian


def packed_tids(sent: bytes) -> pa.Array:
    """A tid[] in PostgreSQL's binary form (array_send) -> packed tids (int64, block * 65536 + offset), in order.
    The scan sends its tids so: turning each into a number on the server (its text form parsed as a point) was
    half the scan's CPU. The bytes are rearranged by strided slices (C loops), none per tid in Python."""
    if len(sent) < _TID_ARRAY_HEADER.size:
        raise DatabaseError(f"a tid array of {len(sent)} bytes has no header")
    ndim, _nulls, oid, n, _lower = _TID_ARRAY_HEADER.unpack_from(sent)
    start = _TID_ARRAY_HEADER.size
    if ndim != 1 or oid != _TID_OID or len(sent) - start != n * _TID_ELEMENT:
        raise DatabaseError(f"not a one-dimensional tid array (ndim {ndim}, type {oid}, {n} items, {len(sent)} bytes)")
    lengths = [sent[start + k :: _TID_ELEMENT] for k in range(4)]
    if lengths[:3] != [bytes(n)] * 3 or lengths[3] != b"\x06" * n:
        raise DatabaseError("a tid array with NULLs or items not 6 bytes long")
    # the int64 in this machine's byte order: the element's 6 big-endian bytes (block, offset) as its low bytes
    order = (9, 8, 7, 6, 5, 4) if sys.byteorder == "little" else (4, 5, 6, 7, 8, 9)
    first = 0 if sys.byteorder == "little" else 2
    packed = bytearray(8 * n)
    for to, byte in enumerate(order, start=first):
        packed[to::8] = sent[start + byte :: _TID_ELEMENT]
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(packed)])


def tid_literal(tids: pa.Array) -> str:
    """A tid[] literal of packed tids (see eligible_hot)."""
    block = pc.cast(pc.divide(tids, 65536), pa.string())
    offset = pc.cast(pc.bit_wise_and(tids, 65535), pa.string())
    items = pc.binary_join_element_wise('"(', block, ",", offset, ')"', "")
    # joined in Arrow (one list of every item), not through a Python string per tid: a third of the CPU
    whole = pa.ListArray.from_arrays(pa.array([0, len(items)], pa.int32()), items)
    return "{" + str(pc.binary_join(whole, ",")[0].as_py()) + "}"


def stream_claimed_hot(
    conn: ArrowConnection,
    pred: Predicate,
    queue_name: str,
    tids: pa.Array,
    rules: Sequence[StorageClassRule],
    default_class: str,
    *,
    reason: str,
    archived_by: str | None,
) -> tuple[Any, Iterator[pa.RecordBatch]]:
    """The direct path's claim: lock (FOR UPDATE SKIP LOCKED) the eligible hot jobs of one queue at these tids
    (eligible_hot), DELETE them and read what the DELETE returns as a flush reads staged rows: the registry's hot
    expressions (those of the staging move, archived now()), whose values the flush's read expressions leave as
    they are, so the objects equal those the staging path writes. Payloads come as JSON text; their byte length
    (the move's original_payload_size) is measured here, not by a second text conversion on the server; the
    round's constants and result_config are filled here too (_filled_on_client). The rows
    are deleted in this round's transaction, which commits them cold (manifest, job index) or rolls back (they
    are hot again): one write of each hot row instead of a row lock now and a DELETE at commit (which joined the
    hot table with the claimed ids). Hammerwork's archiver cannot mark these rows meanwhile (its UPDATE waits for
    the round, then finds nothing).

    The DELETE's RETURNING is streamed as it is (COPY of the DELETE itself): the flush's read layer over a CTE of
    the deleted rows held every row in a tuplestore (spilled to disk past work_mem) and ran a second set of
    expressions; 113k jobs: 2.0-2.4 s of backend CPU against 1.3-1.4 s. Only storage class rules, which need
    the rows sorted by class, wrap it in a CTE to ORDER BY. The tids come as a one-row subquery (an InitPlan
    parameter of unknown size): given the array itself the planner costed each tid as a random page read and
    scanned the WHOLE hot table instead, once per claim (37k tids of a 434k-row table: 458 ms against 178 ms,
    growing with the table). Returns (cursor, batches): close the cursor after reading."""
    filled = dict(zip(S.move_insert_columns(), S.move_select_exprs("h.payload::text", "false", "NULL"), strict=True))
    names = [c.name for c in S.COLUMNS if c.name != "original_payload_size"]
    exprs = {name: filled.get(name, "NULL") for name in names}
    # per round, not per row: what reads nothing of the hot row (the round's now(), who, why) is asked once in this
    # transaction and repeated by the client, and result_config is built by the client from its three hot columns
    constant = [name for name in names if not _ROW_REFERENCE.search(exprs[name])]
    returned = [f"{exprs[n]} AS {n}" for n in names if n not in constant and n != "result_config"]
    returned += [f"h.{c} AS tiering_{c}" for c in S.RESULT_CONFIG_HOT]
    # The claim names only rows by their tids from the eligible scan, and keeps of the predicate what the hot row
    # itself holds: the scan's answers about other tables (not staged, not live cold) still hold for a row whose
    # version is unchanged, since every way a job gets a staged or cold copy changes or deletes its hot row
    # (Hammerwork's archiver marks it in the copy's transaction; a move or a round deletes it), and a changed row
    # is a new version at another tid, which no claim names (PostgreSQL re-checks the tid of a row updated
    # meanwhile). Those two subqueries per row cost 0.15 s of backend CPU per 100k jobs.
    delete = f"""
        DELETE FROM hammerwork_jobs h
         WHERE h.ctid = ANY(ARRAY(
               SELECT h.ctid FROM hammerwork_jobs h
                WHERE h.ctid = ANY((SELECT {{tids}}::tid[])::tid[]) AND {pred.hot_clause.as_string(None)}
                  AND h.queue_name = %(direct_queue)s
                  FOR UPDATE OF h SKIP LOCKED))
        RETURNING {", ".join(returned)}, {{case}} AS tiering_storage_class"""  # noqa: S608 - registry SQL
    text = f"WITH d AS ({delete}) SELECT * FROM d ORDER BY tiering_storage_class" if rules else delete  # noqa: S608
    params = {**pred.params, "direct_queue": queue_name, "reason": reason, "archived_by": archived_by}
    query, values = _positional(text, params, 1)
    case_sql, case_params = storage_class_case(rules, default_class, len(values) + 1, alias="h")
    query = query.replace("{case}", case_sql).replace("{tids}", sql.Literal(tid_literal(tids)).as_string(None))
    once_text, once_values = _positional(
        "SELECT " + ", ".join(f"{exprs[n]} AS {n}" for n in constant), {"reason": reason, "archived_by": archived_by}, 1
    )  # noqa: S608 - registry SQL, values are parameters
    cur = conn.cursor()
    cur.execute(_PLACEHOLDER.sub(lambda m: sql.Literal(once_values[int(m.group(1)) - 1]).as_string(None), once_text))
    once = cur.fetch_arrow_table()
    return cur, _filled_on_client(_stream(cur, query, [*values, *case_params]), once)


_ROW_REFERENCE = re.compile(r"\bh\.")  # a registry expression reading the hot row (alias h)


def _filled_on_client(reader: pa.RecordBatchReader, once: pa.Table) -> Iterator[pa.RecordBatch]:
    """Each batch of the direct claim with what the client fills: the round's constants (`once`, one row, repeated),
    result_config from its three hot columns (S.result_config_arrow; the columns dropped), and
    original_payload_size, the payload text's byte length (as the staging move's octet_length). Backend CPU of
    the claims of 200k jobs without the constants and result_config: 2.82 -> 2.39 s."""
    hot = [f"tiering_{c}" for c in S.RESULT_CONFIG_HOT]
    for batch in reader:
        n = batch.num_rows
        config = S.result_config_arrow(*(batch.column(c) for c in hot))
        arrays = [batch.column(i) for i, name in enumerate(batch.schema.names) if name not in hot]
        names = [name for name in batch.schema.names if name not in hot]
        for name in once.column_names:
            arrays.append(pa.repeat(once.column(name)[0], n))
            names.append(name)
        arrays += [config, pc.binary_length(batch.column("payload")).cast(pa.int32())]
        names += ["result_config", "original_payload_size"]
        yield pa.RecordBatch.from_arrays(arrays, names=names)


class CommitConflict(DatabaseError):
    """Some claimed rows cannot be committed (a constraint refuses their index rows): `bad` maps each such job
    id to (queue, reason). Nothing was committed; the caller quarantines them and flushes the rest again."""

    def __init__(self, message: str, bad: dict[str, tuple[str, str]]) -> None:
        super().__init__(message)
        self.bad = bad


_INSERT_INDEX = """INSERT INTO tiering_job_index (job_id, object_id, row_group, row_in_group, queue_name, status,
                                                  created_at, archived_at, payload_bytes, error_message)
                   SELECT job_id::uuid, object_id, row_group, row_in_group, queue_name, status, created_at,
                          archived_at, payload_bytes, error_message FROM tiering_index_load"""
INDEX_COLUMNS = ("job_id", "object_id", "row_group", "row_in_group", "queue_name", "status", "created_at",
                 "archived_at", "payload_bytes", "error_message")  # fmt: skip


def index_copy_rows(index_rows: pa.Table) -> pa.Table:
    """A round's index rows as tiering_job_index takes them by binary COPY: its columns in its types (job ids as
    16-byte uuids), sorted by job id. A round's rows come in object order, their job ids random: in job id order
    the unique job index and the list index (one archived_at per round, then job id) each take them as one
    ascending run (leaf pages filled left to right, not split at random). COPY straight into the job index
    instead of an INSERT ... SELECT from a temporary table: one write of each row instead of two, batched heap
    inserts, no server-side cast and sort; backend CPU of 249k rows (means of 3): 1.74 -> 1.25 s, for 30-50 ms
    of client CPU per 100k rows here."""
    text = index_rows.column("job_id").combine_chunks()
    n = len(text)
    if n and not pc.all(pc.equal(pc.binary_length(text), 36)).as_py():
        raise ValueError("job index rows: a job id is not a uuid in its canonical form")
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, text.buffers()[1]], offset=text.offset)
    first, end = (offsets[0].as_py(), offsets[-1].as_py()) if n else (0, 0)
    data = text.buffers()[2]
    raw = bytes.fromhex(data[first:end].to_pybytes().replace(b"-", b"").decode("ascii")) if n and data else b""
    if len(raw) != 16 * n:
        raise ValueError("job index rows: a job id is not a uuid in its canonical form")
    ids = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(raw)])
    table = index_rows.select([c for c in INDEX_COLUMNS if c != "job_id"])
    table = table.add_column(0, "job_id", pa.ExtensionArray.from_storage(pa.uuid(), ids))
    return table.take(pc.sort_indices(_uuid_halves(raw, n), sort_keys=[("hi", "ascending"), ("lo", "ascending")]))


def _uuid_halves(raw: bytes, n: int) -> pa.Table:
    """n packed 16-byte uuids as two unsigned integers each (hi, lo: their bytes big-endian), which sort as
    PostgreSQL orders uuids (bytewise) at a third of the client CPU of sorting the 16-byte values."""
    words = array.array("Q")
    words.frombytes(raw)
    if sys.byteorder == "little":
        words.byteswap()
    return pa.table({
        "hi": pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(words[::2])]),
        "lo": pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(words[1::2])]),
    })  # fmt: skip


def _uncommittable(conn: ArrowConnection, index_rows: pa.Table) -> dict[str, tuple[str, str]]:
    """The index rows the database refuses, found by bisection: each probe inserts a slice in its own
    transaction and rolls it back (a few statements per bad row, whatever the round's size; nothing is kept).
    Returns job id -> (queue, error)."""
    numbered = index_rows.append_column("tiering_n", pa.array(range(index_rows.num_rows), pa.int64()))
    ids = index_rows.column("job_id").to_pylist()
    queues = index_rows.column("queue_name").to_pylist()
    bad: dict[str, tuple[str, str]] = {}
    cur = conn.cursor()
    try:
        cur.adbc_ingest("tiering_index_load", numbered, mode="create", temporary=True)
        conn.commit()  # the temporary table outlives the probes' rollbacks (it lives until the session ends)
        todo = [(0, index_rows.num_rows)]
        while todo:
            lo, hi = todo.pop()
            try:
                cur.execute(_INSERT_INDEX + " WHERE tiering_n >= $1 AND tiering_n < $2", parameters=(lo, hi))
            except adbc_driver_manager.Error as exc:
                if not refused_by_a_constraint(exc):
                    raise
                if hi - lo == 1:
                    bad[str(ids[lo])] = (str(queues[lo]), f"cannot be committed: {str(exc).splitlines()[0][:200]}")
                else:
                    mid = (lo + hi) // 2
                    todo.extend([(mid, hi), (lo, mid)])
            finally:
                conn.rollback()
        cur.execute("DROP TABLE IF EXISTS tiering_index_load")
        conn.commit()
    finally:
        cur.close()
    return bad


def refused_by_a_constraint(exc: BaseException) -> bool:
    """A statement refused by a constraint (SQLSTATE class 23): IntegrityError, or, from the 1.8 driver, a COPY's
    refusal reported as a ProgrammingError that carries the SQLSTATE."""
    if isinstance(exc, adbc_driver_manager.IntegrityError):
        return True
    return str(getattr(exc, "sqlstate", None) or "").startswith("23")


STAGED = "hammerwork_jobs_archive"
HOT = "hammerwork_jobs"


def commit_claimed(
    conn: ArrowConnection, manifest_ids: list[int], index_rows: pa.Table, expected_rows: int, source: str = STAGED
) -> None:
    """ONE transaction: manifest rows committed, index rows written, and the claimed rows gone from `source`: the
    staged rows (locked by the claim) are deleted here, the hot rows of the direct path were deleted by their
    claim (stream_claimed_hot) and go with this commit. Rows that a constraint refuses raise CommitConflict
    naming them (after a rollback). The claimed rows are locked by this transaction, so nobody can have moved or
    changed them; the staged DELETE's count re-checks it, and every manifest row must still be pending (a
    difference rolls everything back)."""
    if source not in (STAGED, HOT):
        raise ValueError(f"commit_claimed: unknown source table {source!r}")
    cur = conn.cursor()
    try:
        if source == STAGED:  # the claimed staged rows, deleted below
            cur.adbc_ingest("tiering_index_load", index_rows.select(["job_id"]), mode="create", temporary=True)
        if index_rows.num_rows:
            try:
                cur.adbc_ingest("tiering_job_index", index_copy_rows(index_rows), mode="append")
            except adbc_driver_manager.Error as exc:
                if not refused_by_a_constraint(exc):
                    raise
                conn.rollback()
                bad = _uncommittable(conn, index_rows)
                if not bad:
                    raise DatabaseError(f"flush commit refused: {exc}; rolled back") from exc
                raise CommitConflict(f"{len(bad)} staged rows cannot be committed", bad) from exc
        cur.execute(
            """WITH done AS (UPDATE tiering_manifest SET state = 'committed', committed_at = now()
                              WHERE id = ANY($1::bigint[]) AND state = 'pending' RETURNING 1)
               SELECT count(*) FROM done""",
            parameters=("{" + ",".join(str(i) for i in manifest_ids) + "}",),
        )
        row = cur.fetchone()
        committed = int(row[0]) if row else 0
        if committed != len(manifest_ids):
            raise DatabaseError(
                f"flush commit: {committed} of {len(manifest_ids)} manifest rows were still pending; rolled back"
            )
        if source == STAGED:
            cur.execute(
                f"""WITH gone AS (DELETE FROM {source} a USING tiering_index_load l
                                   WHERE a.id = l.job_id::uuid RETURNING 1)
                    SELECT count(*) FROM gone"""  # noqa: S608 - one of two table names checked above
            )
            row = cur.fetchone()
            deleted = int(row[0]) if row else 0
            if deleted != expected_rows:
                raise DatabaseError(
                    f"flush commit: deleted {deleted} rows of {source}, expected {expected_rows}; rolled back"
                )
            cur.execute("DROP TABLE IF EXISTS tiering_index_load")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
