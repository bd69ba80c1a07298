"""SQL of list / query / search / restore: the staging table, the job index and the hot table.

Every statement here is parameterised; user input never becomes SQL text. Staging statuses may hold
Hammerwork's legacy literal quotes (`"Completed"`), so they are compared after btrim(status, '"'); so are the
job index's (objects flushed by earlier tiering builds kept staged statuses as they were).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tiering import schema as S
from tiering.db.manifest import (
    COMMITTED_ORDER,
    COMMITTED_WHERE,
    LISTING_PUBLISHED_SQL,
    MANIFEST_COLUMNS,
    ManifestRow,
    committed_params,
)


@dataclass(frozen=True)
class Filters:
    """Filters over archived jobs; None means "any"."""

    queue: str | None = None
    statuses: Sequence[str] | None = None
    archived_after: datetime | None = None  # inclusive
    archived_before: datetime | None = None  # exclusive
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive

    def params(self) -> dict[str, Any]:
        return committed_params(
            queue=self.queue,
            statuses=list(self.statuses) if self.statuses is not None else None,
            archived_after=self.archived_after,
            archived_before=self.archived_before,
            created_after=self.created_after,
            created_before=self.created_before,
        )


_STAGING_WHERE = """
      (%(queue)s::text IS NULL OR a.queue_name = %(queue)s)
  AND (%(statuses)s::text[] IS NULL OR btrim(a.status, '"') = ANY(%(statuses)s::text[]))
  AND (%(aa)s::timestamptz IS NULL OR a.archived_at >= %(aa)s)
  AND (%(ab)s::timestamptz IS NULL OR a.archived_at < %(ab)s)
  AND (%(ca)s::timestamptz IS NULL OR a.created_at >= %(ca)s)
  AND (%(cb)s::timestamptz IS NULL OR a.created_at < %(cb)s)
"""

_COLD_WHERE = """
      x.restored_at IS NULL
  AND (%(object_ids)s::bigint[] IS NULL OR x.object_id = ANY(%(object_ids)s::bigint[]))
  AND (%(queue)s::text IS NULL OR x.queue_name = %(queue)s)
  AND (%(statuses)s::text[] IS NULL OR btrim(x.status, '"') = ANY(%(statuses)s::text[]))
  AND (%(aa)s::timestamptz IS NULL OR x.archived_at >= %(aa)s)
  AND (%(ab)s::timestamptz IS NULL OR x.archived_at < %(ab)s)
  AND (%(ca)s::timestamptz IS NULL OR x.created_at >= %(ca)s)
  AND (%(cb)s::timestamptz IS NULL OR x.created_at < %(cb)s)
"""

_STAGING_COLUMNS = """a.id AS job_id, a.queue_name, btrim(a.status, '"') AS status, a.created_at, a.archived_at,
       'staging'::text AS tier, NULL::bigint AS object_id, NULL::text AS object_key, NULL::text AS storage_class,
       NULL::int AS row_group, NULL::int AS row_in_group,
       COALESCE(a.original_payload_size, octet_length(a.payload)) AS payload_bytes,
       left(a.error_message, 500) AS error_message"""
_COLD_COLUMNS = """x.job_id, x.queue_name, btrim(x.status, '"'), x.created_at, x.archived_at, 'cold'::text, m.id, m.key,
       m.storage_class, x.row_group, x.row_in_group, x.payload_bytes, x.error_message"""
_STAGING_FROM = "hammerwork_jobs_archive a"
_COLD_FROM = "tiering_job_index x JOIN tiering_manifest m ON m.id = x.object_id AND m.state = 'committed'"
# The page's cold side looks each row's object up per index row (LATERAL with OFFSET 0: a fence the planner cannot
# flatten into a join). A join let the planner start from the manifest when the job index had no statistics yet
# (right after its first flush) and sort every index row: 6,000 read for a page of 51. With the lookup fenced,
# the index is the only table to scan, and its (archived_at DESC, job_id) order serves the page and stops.
# The lookup's only condition is the primary key (state is checked outside it), so no partial index of the
# manifest can look like a cheaper way to it when the manifest has no statistics.
_COLD_PAGE_FROM = """tiering_job_index x
       CROSS JOIN LATERAL (SELECT m.id, m.key, m.storage_class, m.state FROM tiering_manifest m
                            WHERE m.id = x.object_id OFFSET 0) m"""

LIST_COLUMNS = (
    "job_id",
    "queue_name",
    "status",
    "created_at",
    "archived_at",
    "tier",
    "object_id",
    "object_key",
    "storage_class",
    "row_group",
    "row_in_group",
    "payload_bytes",
    "error_message",
)


def _conditions(alias: str, filters: Filters, object_ids: Sequence[int] | None) -> str:
    """The WHERE clause of one side (`a` staging, `x` job index) holding only the filters given: a clause like
    `($1 IS NULL OR col = $1)` would keep a prepared (generic) plan from using the column's index. The text comes
    from fixed fragments; every value is a bound parameter."""
    conds = ["x.restored_at IS NULL"] if alias == "x" else []
    if alias == "x" and object_ids is not None:
        conds.append("x.object_id = ANY(%(object_ids)s::bigint[])")
    if alias == "x" and filters.queue is not None:
        # implied (an object holds one queue) but it lets the planner reach a small queue through its objects
        # instead of walking every index row, and answer a queue without objects at once
        conds.append(
            "x.object_id IN (SELECT id FROM tiering_manifest WHERE queue_name = %(queue)s AND state = 'committed')"
        )
    for value, cond in (
        (filters.queue, "{t}.queue_name = %(queue)s"),
        (filters.statuses, "btrim({t}.status, '\"') = ANY(%(statuses)s::text[])"),
        (filters.archived_after, "{t}.archived_at >= %(aa)s::timestamptz"),
        (filters.archived_before, "{t}.archived_at < %(ab)s::timestamptz"),
        (filters.created_after, "{t}.created_at >= %(ca)s::timestamptz"),
        (filters.created_before, "{t}.created_at < %(cb)s::timestamptz"),
    ):
        if value is not None:
            conds.append(cond.format(t=alias))
    return " AND ".join(conds) or "true"


def _params(filters: Filters, object_ids: Sequence[int] | None) -> dict[str, Any]:
    return {**filters.params(), "object_ids": list(object_ids) if object_ids is not None else None}


def _limit(n: int | None) -> str:
    return "ALL" if n is None else str(int(n))


def _after(alias: str, id_column: str, after: tuple[datetime, uuid.UUID] | None) -> str:
    """Rows that come after the key (archived_at, id) in the list's order (archived_at DESC, id): a keyset cursor,
    whose cost does not grow with the page's depth as an offset's does."""
    if after is None:
        return ""
    t, i = alias, f"{alias}.{id_column}"
    return (
        f" AND {t}.archived_at <= %(after_at)s::timestamptz"
        f" AND ({t}.archived_at < %(after_at)s::timestamptz OR {i} > %(after_id)s::uuid)"
    )


def _page_query(
    filters: Filters,
    limit: int | None,
    offset: int,
    object_ids: Sequence[int] | None,
    with_staging: bool,
    with_cold: bool,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> str | None:
    want = None if limit is None else offset + limit
    sides = []
    if with_staging:
        sides.append(
            f"(SELECT {_STAGING_COLUMNS} FROM {_STAGING_FROM} WHERE {_conditions('a', filters, None)}"  # noqa: S608
            f"{_after('a', 'id', after)} ORDER BY a.archived_at DESC, a.id LIMIT {_limit(want)})"
        )
    if with_cold:
        sides.append(
            f"(SELECT {_COLD_COLUMNS} FROM {_COLD_PAGE_FROM}"  # noqa: S608
            f" WHERE m.state = 'committed' AND {_conditions('x', filters, object_ids)}{_after('x', 'job_id', after)}"
            f" ORDER BY x.archived_at DESC, x.job_id LIMIT {_limit(want)})"
        )
    if not sides:
        return None
    return (
        f"SELECT * FROM ({' UNION ALL '.join(sides)}) u"  # noqa: S608 - fixed fragments; values are parameters
        f" ORDER BY archived_at DESC, job_id LIMIT {_limit(limit)} OFFSET {int(offset)}"
    )


PAGE_PLANNER = ("SET enable_sort = off", "RESET enable_sort")  # around the page statement (see list_page)


def index_order_forced(filters: Filters, object_ids: Sequence[int] | None) -> bool:
    """Sorts are turned off for a page filtered by time at most (the dashboard's and the API's default listing):
    walking the archived_at index is then right at any size, with or without statistics. A queue or status filter
    is left to the planner: for a small queue, reading its objects' rows and sorting them beats walking the whole
    index in order (a queue without jobs took 3.7 s that way at 921k jobs, 2 ms planned)."""
    return (
        object_ids is None
        and filters.queue is None
        and filters.statuses is None
        and filters.created_after is None
        and filters.created_before is None
    )


def list_page(
    conn: psycopg.Connection,
    filters: Filters,
    *,
    limit: int,
    offset: int,
    object_ids: Sequence[int] | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One page of archived jobs (staging + live cold index rows), newest archived first, ties by id, and the
    planner's estimate of each side's matches (as `estimate_side`), sent together in one pipeline: one round trip
    instead of three (under load every round trip waits for a core).

    Limit-first: each side reads at most offset + limit rows in the order of its archived_at index and stops,
    then the two short lists are merged, so a page costs its depth, not the archive's size (sorting every row
    took 0.33 s at 207k jobs). Unfiltered, sorts are off for this statement (index_order_forced): with statistics
    missing or stale (a job index never analysed since its first flush is estimated at a few rows) the planner
    would rather sort every row it believes few than walk the index, the right plan at every size. Ask for one row
    more than you show to learn whether another page exists. `after` (archived_at, id): only rows past that key."""
    query = _page_query(filters, limit, offset, object_ids, True, True, after)
    assert query is not None
    params = _params(filters, object_ids)
    page_params = params | ({"after_at": after[0], "after_id": after[1]} if after else {})
    forced = index_order_forced(filters, object_ids)
    with conn.pipeline():
        if forced:
            conn.execute(PAGE_PLANNER[0])
        page = conn.cursor(row_factory=dict_row)
        page.execute(query.encode(), page_params)  # type: ignore[arg-type]
        if forced:
            conn.execute(PAGE_PLANNER[1])
        plans = {side: conn.execute(_explain(side, filters, object_ids).encode(), params) for side in SIDES}  # type: ignore[arg-type]
    rows = page.fetchall()
    page.close()
    return rows, {side: _plan_rows(cur.fetchone()) for side, cur in plans.items()}


def _side_select(side: str, filters: Filters, object_ids: Sequence[int] | None, *, join: bool = True) -> str:
    if side == "staging":
        return f"SELECT 1 FROM {_STAGING_FROM} WHERE {_conditions('a', filters, None)}"  # noqa: S608
    source = _COLD_FROM if join else "tiering_job_index x"
    return f"SELECT 1 FROM {source} WHERE {_conditions('x', filters, object_ids)}"  # noqa: S608


SIDES = ("staging", "cold")


def count_sides(
    conn: psycopg.Connection,
    filters: Filters,
    sides: Sequence[str] = SIDES,
    *,
    up_to: int | None = None,
    object_ids: Sequence[int] | None = None,
) -> dict[str, int]:
    """Matching jobs per side ('staging', 'cold'), each counted up to `up_to` + 1 at most (None: all of them):
    a count past `up_to` means "more than up_to", and costs no more than reading up_to + 1 rows."""
    if not sides:
        return {}
    cap = "" if up_to is None else f" LIMIT {int(up_to) + 1}"
    parts = [f"(SELECT count(*) FROM ({_side_select(s, filters, object_ids)}{cap}) c)" for s in sides]  # noqa: S608
    row = conn.execute(f"SELECT {', '.join(parts)}".encode(), _params(filters, object_ids)).fetchone()  # noqa: S608
    assert row is not None
    return {s: int(n) for s, n in zip(sides, row, strict=True)}


def _explain(side: str, filters: Filters, object_ids: Sequence[int] | None) -> str:
    return "EXPLAIN (FORMAT JSON) " + _side_select(side, filters, object_ids, join=False)


def _plan_rows(row: Any) -> int:
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return int(plan[0]["Plan"]["Plan Rows"])


def estimate_side(
    conn: psycopg.Connection, side: str, filters: Filters, *, object_ids: Sequence[int] | None = None
) -> int:
    """The planner's row estimate for one side (EXPLAIN, no rows read: 0.1-0.2 ms). The cold side is estimated
    on the job index alone (its live rows all belong to committed objects: a purge deletes them in the
    transaction that marks the object purged), which the planner estimates better than the join."""
    query = _explain(side, filters, object_ids)
    return _plan_rows(conn.execute(query.encode(), _params(filters, object_ids)).fetchone())  # type: ignore[arg-type]


def search_sources(conn: psycopg.Connection, filters: Filters) -> tuple[list[ManifestRow], bool]:
    """What a search must read, in one round trip: the committed objects that may hold matching jobs (pruned by
    the manifest, as committed_objects) and whether any staged job passes the filters (when none does, the
    search opens no cursor on staging)."""
    params = filters.params()
    rows = conn.execute(
        f"""SELECT s.staged, o.*
              FROM (SELECT EXISTS (SELECT 1 FROM hammerwork_jobs_archive a WHERE {_STAGING_WHERE})) AS s(staged)
              LEFT JOIN (SELECT {MANIFEST_COLUMNS} FROM tiering_manifest WHERE {COMMITTED_WHERE}) AS o ON true
             ORDER BY {COMMITTED_ORDER}""",  # noqa: S608
        params,
        prepare=False,  # a generic plan cannot use an index for "$1 IS NULL OR col = $1" (see db/staging.py NO_PREPARE)
    ).fetchall()
    return [ManifestRow(*r[1:]) for r in rows if r[1] is not None], bool(rows[0][0])


def staging_payload_stream(
    conn: psycopg.Connection, filters: Filters, needle: bytes | None, *, itersize: int = 2000
) -> Iterator[tuple[Any, ...]]:
    """(id, queue, status, created_at, archived_at, payload bytes, payload size) of staged jobs, streamed with a
    server-side cursor. Raw (uncompressed) payloads that lack `needle` are dropped by the server already;
    compressed ones come back whole (they are decoded by the caller)."""
    query = f"""
        SELECT a.id, a.queue_name, btrim(a.status, '"'), a.created_at, a.archived_at, a.payload,
               COALESCE(a.original_payload_size, octet_length(a.payload))
          FROM hammerwork_jobs_archive a
         WHERE {_STAGING_WHERE}
           AND (%(needle)s::bytea IS NULL
                OR substring(a.payload FROM 1 FOR 2) = '\\x1f8b'::bytea
                OR substring(a.payload FROM 1 FOR 4) = '\\x28b52ffd'::bytea
                OR position(%(needle)s::bytea IN a.payload) > 0)"""  # noqa: S608
    params = filters.params() | {"needle": needle}
    with conn.cursor(name=f"tiering_search_{uuid.uuid4().hex[:8]}", binary=True) as cur:
        cur.itersize = itersize
        cur.execute(query.encode(), params)  # type: ignore[arg-type]
        yield from cur


def live_index_rows_at(
    conn: psycopg.Connection, positions: Sequence[tuple[int, int, int]]
) -> dict[tuple[int, int, int], dict[str, Any]]:
    """The live index rows at these (object id, row group, row in group) positions, by position: how a cold
    search maps the rows it matched to jobs without reading the objects' id column."""
    if not positions:
        return {}
    objects, groups, rows_in = (list(col) for col in zip(*positions, strict=True))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT x.job_id, x.object_id, x.row_group, x.row_in_group, x.queue_name, x.status, x.created_at,
                      x.archived_at, x.payload_bytes, m.key AS object_key, m.storage_class
                 FROM unnest(%s::bigint[], %s::int[], %s::int[]) AS p(object_id, row_group, row_in_group)
                 JOIN tiering_job_index x
                   ON x.object_id = p.object_id AND x.row_group = p.row_group AND x.row_in_group = p.row_in_group
                 JOIN tiering_manifest m ON m.id = x.object_id AND m.state = 'committed'
                WHERE x.restored_at IS NULL""",
            (objects, groups, rows_in),
        ).fetchall()
    return {(r["object_id"], r["row_group"], r["row_in_group"]): r for r in rows}


def manifest_by_ids(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, ManifestRow]:
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT {MANIFEST_COLUMNS} FROM tiering_manifest WHERE id = ANY(%s::bigint[])",  # noqa: S608
        (list(ids),),
    ).fetchall()
    return {int(r[0]): ManifestRow(*r) for r in rows}


# --- single job lookups --------------------------------------------------------------------------


def hot_job(conn: psycopg.Connection, job_id: uuid.UUID) -> tuple[str, datetime | None] | None:
    """(status, archived_at) of the job in the hot table, None when it is not there."""
    row = conn.execute("SELECT status, archived_at FROM hammerwork_jobs WHERE id = %s", (job_id,)).fetchone()
    return (row[0], row[1]) if row else None


def staged_rows(conn: psycopg.Connection, job_ids: Sequence[uuid.UUID], *, lock: bool) -> list[dict[str, Any]]:
    """Full staging rows (every column) of these jobs; `lock` takes FOR UPDATE row locks."""
    query = "SELECT * FROM hammerwork_jobs_archive WHERE id = ANY(%s::uuid[]) ORDER BY id"
    if lock:
        query += " FOR UPDATE"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query.encode(), (list(job_ids),)).fetchall()  # type: ignore[arg-type]


_COLD_LOCATION_COLUMNS = """x.job_id, x.object_id, x.row_group, x.row_in_group, x.queue_name, x.status, x.created_at,
       x.archived_at, x.payload_bytes, m.key AS object_key, m.storage_class, m.bytes AS object_bytes"""
_COLD_LOCATION_FROM = """tiering_job_index x JOIN tiering_manifest m ON m.id = x.object_id AND m.state = 'committed'
 WHERE x.job_id = %(id)s AND x.restored_at IS NULL"""


def cold_location(conn: psycopg.Connection, job_id: uuid.UUID) -> dict[str, Any] | None:
    """The live index row of a cold job joined with its committed manifest row (read without a lock: a restore
    locks the index row itself, lock_live_index)."""
    query = f"SELECT {_COLD_LOCATION_COLUMNS} FROM {_COLD_LOCATION_FROM}"  # noqa: S608 - constant text
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query.encode(), {"id": job_id}).fetchone()  # type: ignore[arg-type]


@dataclass(frozen=True)
class FirstLook:
    """Where one job is, read without locks in one statement: the hot row's (status, archived_at), whether a
    staged row exists, the cold location (cold_location's columns), and whether analysts use the store's listing
    (listing_published: a cold restore then rewrites its superseded rows; asked here, not in a statement of its
    own on another pooled connection after the restore)."""

    hot: tuple[str, datetime | None] | None
    staged: bool
    cold: dict[str, Any] | None
    listing_in_use: bool = False


_FIRST_LOOK_SQL = f"""SELECT h.id IS NOT NULL AS in_hot, h.status AS hot_status, h.archived_at AS hot_archived_at,
       EXISTS (SELECT 1 FROM hammerwork_jobs_archive a WHERE a.id = %(id)s) AS staged,
       {LISTING_PUBLISHED_SQL} AS listing_in_use, l.*
  FROM (SELECT %(id)s::uuid AS id) j
  LEFT JOIN hammerwork_jobs h ON h.id = j.id
  LEFT JOIN LATERAL (SELECT {_COLD_LOCATION_COLUMNS} FROM {_COLD_LOCATION_FROM}) l ON true"""  # noqa: S608


def first_look(conn: psycopg.Connection, job_id: uuid.UUID, store_uri: str) -> FirstLook:
    """hot_job, staged_rows, cold_location and listing_published (of `store_uri`) in one round trip (a restore's
    first look)."""
    params = {"id": job_id, "store_uri": store_uri}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_FIRST_LOOK_SQL.encode(), params).fetchone()  # type: ignore[arg-type]
    assert row is not None  # one row by construction
    hot = (row["hot_status"], row["hot_archived_at"]) if row["in_hot"] else None
    cold = None
    if row["job_id"] is not None:
        looked = ("in_hot", "hot_status", "hot_archived_at", "staged", "listing_in_use")
        cold = {k: v for k, v in row.items() if k not in looked}
    return FirstLook(hot, bool(row["staged"]), cold, bool(row["listing_in_use"]))


def last_restored_at(conn: psycopg.Connection, job_id: uuid.UUID) -> datetime | None:
    row = conn.execute(
        "SELECT max(restored_at) FROM tiering_job_index WHERE job_id = %s AND restored_at IS NOT NULL", (job_id,)
    ).fetchone()
    return row[0] if row else None


def lock_live_index(conn: psycopg.Connection, pairs: Sequence[tuple[int, str]]) -> set[str]:
    """Lock the still-live index rows of (object_id, job_id) pairs; the job ids that are still live."""
    if not pairs:
        return set()
    rows = conn.execute(
        """SELECT x.job_id FROM tiering_job_index x
             JOIN unnest(%s::bigint[], %s::uuid[]) AS p(object_id, job_id)
               ON p.object_id = x.object_id AND p.job_id = x.job_id
            WHERE x.restored_at IS NULL
            FOR UPDATE OF x""",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    ).fetchall()
    return {str(r[0]) for r in rows}


def mark_restored(conn: psycopg.Connection, pairs: Sequence[tuple[int, str]]) -> int:
    if not pairs:
        return 0
    cur = conn.execute(
        """UPDATE tiering_job_index x SET restored_at = now()
             FROM unnest(%s::bigint[], %s::uuid[]) AS p(object_id, job_id)
            WHERE p.object_id = x.object_id AND p.job_id = x.job_id AND x.restored_at IS NULL""",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    )
    return cur.rowcount


def delete_staged(conn: psycopg.Connection, job_ids: Sequence[uuid.UUID]) -> int:
    cur = conn.execute("DELETE FROM hammerwork_jobs_archive WHERE id = ANY(%s::uuid[])", (list(job_ids),))
    return cur.rowcount


def hot_ids(conn: psycopg.Connection, job_ids: Sequence[uuid.UUID]) -> set[str]:
    """Which of these ids are in the hot table now."""
    if not job_ids:
        return set()
    rows = conn.execute("SELECT id FROM hammerwork_jobs WHERE id = ANY(%s::uuid[])", (list(job_ids),)).fetchall()
    return {str(r[0]) for r in rows}


@cache
def _insert_hot_sql(version: int) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """The restore's INSERT INTO hammerwork_jobs, its placeholder names and its jsonb columns (from the registry)."""
    pairs = S.hot_insert_columns()
    text = "INSERT INTO hammerwork_jobs ({}) VALUES ({})".format(  # noqa: S608 - registry column names
        ", ".join(c for c, _ in pairs), ", ".join(v for _, v in pairs)
    )
    names = tuple(c for c, v in pairs if v.startswith("%("))
    jsonb = frozenset(c for c, v in pairs if v.endswith("::jsonb") and c != "payload")
    return text, names, jsonb


def insert_hot(conn: psycopg.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert restored jobs (dicts as tiering.schema.restore_values gives them; payload as JSON text)."""
    if not rows:
        return 0
    text, names, jsonb = _insert_hot_sql(S.REGISTRY_VERSION)
    prepared = []
    for r in rows:
        values = {n: r.get(n) for n in names}
        for n in jsonb:
            if values[n] is not None:
                values[n] = Jsonb(values[n])
        prepared.append(values)
    with conn.cursor() as cur:
        cur.executemany(text.encode(), prepared)
    return len(rows)


def set_restore_requested(conn: psycopg.Connection, object_id: int) -> None:
    conn.execute("UPDATE tiering_manifest SET restore_requested_at = now() WHERE id = %s", (object_id,))


def queue_slugs(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(queue_slug, queue_name) of committed objects."""
    rows = conn.execute(
        "SELECT DISTINCT queue_slug, queue_name FROM tiering_manifest WHERE state = 'committed' ORDER BY 1"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def partition_date_range(conn: psycopg.Connection) -> tuple[Any, Any]:
    row = conn.execute(
        "SELECT min(partition_date), max(partition_date) FROM tiering_manifest WHERE state = 'committed'"
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def count_staged(conn: psycopg.Connection, queue: str | None = None) -> int:
    """Staged jobs a flush would write (quarantined ones stay behind): the total of a flush's progress bar."""
    row = conn.execute(
        """SELECT count(*) FROM hammerwork_jobs_archive a
            WHERE (%(q)s::text IS NULL OR a.queue_name = %(q)s)
              AND NOT EXISTS (SELECT 1 FROM tiering_quarantine x WHERE x.job_id = a.id)""",
        {"q": queue},
    ).fetchone()
    return int(row[0]) if row else 0


def finished_hot_counts(conn: psycopg.Connection, queue: str | None = None) -> dict[str, int]:
    """Finished jobs still in hammerwork_jobs per plain status (what a run left behind)."""
    rows = conn.execute(
        """SELECT btrim(status, '"'), count(*) FROM hammerwork_jobs
            WHERE btrim(status, '"') IN ('Completed', 'Failed', 'Dead', 'TimedOut')
              AND (%(q)s::text IS NULL OR queue_name = %(q)s)
            GROUP BY 1""",
        {"q": queue},
    ).fetchall()
    return {str(s): int(n) for s, n in rows}
