"""SQL of the hot -> staging move, generated from the column registry (tiering.schema.COLUMNS).

Set-based: a batch is one statement (DELETE ... RETURNING feeding the INSERT), or, when payloads are gzipped in
Python, one SELECT ... SKIP LOCKED and one DELETE/INSERT. Hammerwork-marked hot copies are settled here too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg import sql

from tiering import schema as S
from tiering.db import planner
from tiering.policy import EligibilityClause

# NO_JOIN_IN_CLAIM: a move's claim scans hammerwork_jobs alone; whether a claimed job is already staged (or a
# Hammerwork-marked copy of a cold job) is asked after the claim, once per batch, of the claimed ids (an index
# probe each, or at worst one pass over staging), never once per scanned hot row. As a NOT EXISTS inside the
# claim, a statement planned while staging was empty (0 pages: a seq scan of it is costed at 0) took a nested-loop
# anti-join that seq-scans staging again for every hot row it looks at, skipped ones included; with two movers
# the other one filled staging meanwhile, so every rescan was longer than the last: one statement ran at 100 %
# CPU for minutes (half of the two-mover runs; tests/integration/test_staging_plan.py keeps the claim join-free).

# NO_PREPARE: the batch statements below run again and again on one connection while the tables they read
# change size by orders of magnitude (staging fills, the hot table empties). psycopg prepares a statement after 5
# runs, and PostgreSQL may then keep a generic plan made when staging was nearly empty: an anti-join that
# seq-scans hammerwork_jobs_archive for every hot row. Measured in `make bench` (200k jobs): one such batch ran
# for minutes (5,835 seq scans of staging). Planned afresh, each batch probes the primary key instead.


@dataclass(frozen=True)
class Predicate:
    """A WHERE fragment over hammerwork_jobs (alias h) and its parameters: `clause` is the whole eligibility,
    `hot_clause` its part over hammerwork_jobs alone (what a staging move claims by; see NO_JOIN_IN_CLAIM)."""

    clause: sql.Composable
    params: dict[str, Any]
    hot_clause: sql.Composable
    queue: str | None = None  # the run's one queue, if any (hot_clause holds it too)


# The two parts of eligibility beyond the hot row: a job whose id already sits in staging is never moved twice (the
# insert would collide), and a hot copy Hammerwork marked archived whose archive copy is already cold is settled,
# never archived again. (_refused asks the same of a staging move's claimed ids.)
NOT_STAGED = "NOT EXISTS (SELECT 1 FROM hammerwork_jobs_archive a WHERE a.id = h.id)"
NOT_A_COLD_COPY = (
    "(h.archived_at IS NULL OR NOT EXISTS ("
    "SELECT 1 FROM tiering_job_index x WHERE x.job_id = h.id AND x.restored_at IS NULL))"
)


def eligibility_predicate(clauses: Sequence[EligibilityClause], queue: str | None) -> Predicate:
    params: dict[str, Any] = {}
    parts: list[sql.Composable] = []
    for i, c in enumerate(clauses):
        params[f"st{i}"] = c.stored_statuses
        params[f"cut{i}"] = c.cutoff
        part = sql.SQL("(h.status = ANY({st}) AND h.{col} < {cut}").format(
            st=sql.Placeholder(f"st{i}"), col=sql.Identifier(c.finish_column), cut=sql.Placeholder(f"cut{i}")
        )
        if c.only_queue is not None:
            params[f"q{i}"] = c.only_queue
            part = sql.Composed([part, sql.SQL(" AND h.queue_name = {q}").format(q=sql.Placeholder(f"q{i}"))])
        if c.except_queues:
            params[f"xq{i}"] = list(c.except_queues)
            part = sql.Composed(
                [part, sql.SQL(" AND NOT (h.queue_name = ANY({xq}))").format(xq=sql.Placeholder(f"xq{i}"))]
            )
        parts.append(sql.Composed([part, sql.SQL(")")]))
    where: sql.Composable = sql.SQL(" OR ").join(parts) if parts else sql.SQL("FALSE")
    where = sql.Composed([sql.SQL("("), where, sql.SQL(")")])
    if queue is not None:
        params["only_queue"] = queue
        where = sql.Composed([where, sql.SQL(" AND h.queue_name = %(only_queue)s")])
    full = sql.Composed([where, sql.SQL(f" AND {NOT_STAGED} AND {NOT_A_COLD_COPY}")])
    return Predicate(full, params, where, queue)


def _claim_query(pred: Predicate, columns: str, skip: Sequence[Any]) -> sql.Composed:
    """SELECT <columns> of up to %(limit)s eligible jobs, locked (SKIP LOCKED), by hammerwork_jobs alone
    (NO_JOIN_IN_CLAIM); `skip` holds the jobs this mover found refused earlier in the run."""
    not_skipped = sql.SQL(" AND NOT (h.id = ANY(%(skip)s::uuid[]))") if skip else sql.SQL("")
    return sql.SQL(
        """SELECT {columns}
             FROM hammerwork_jobs h
            WHERE {where}{not_skipped}
            LIMIT %(limit)s
              FOR UPDATE OF h SKIP LOCKED"""
    ).format(columns=sql.SQL(columns), where=pred.hot_clause, not_skipped=not_skipped)


def claim_batch(
    conn: psycopg.Connection, pred: Predicate, limit: int, skip: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Lock up to `limit` eligible jobs (skipping those another run holds, and `skip`); returns id, queue, status,
    payload."""
    query = _claim_query(pred, "h.id, h.queue_name, h.status, convert_to(h.payload::text, 'UTF8')", skip)
    with conn.cursor(binary=True) as cur:
        cur.execute(query, {**pred.params, "limit": limit, "skip": list(skip)}, prepare=False)  # see NO_PREPARE
        return cur.fetchall()


def _refused(ids: str) -> str:
    """What a move leaves of its claimed jobs (`ids`, an array expression; alias d): one already staged, and a hot
    copy Hammerwork marked archived whose job is live cold (the checks of eligibility_predicate's full clause).
    Each subquery runs once per statement over the claimed ids (NO_JOIN_IN_CLAIM); the jobs left stay hot and
    locked until the commit."""
    return f"""
       AND NOT (d.id = ANY(ARRAY(
            SELECT a.id FROM hammerwork_jobs_archive a WHERE a.id = ANY({ids}))))
       AND (d.archived_at IS NULL OR NOT (d.id = ANY(ARRAY(
            SELECT x.job_id FROM tiering_job_index x
             WHERE x.job_id = ANY({ids}) AND x.restored_at IS NULL))))"""  # noqa: S608 - a constant array expression


def still_hot(conn: psycopg.Connection, ids: list[Any]) -> list[Any]:
    """Which of these claimed (locked) jobs a move left in hammerwork_jobs (see _refused)."""
    rows = conn.execute("SELECT id FROM hammerwork_jobs WHERE id = ANY(%s::uuid[])", (ids,), prepare=False)
    return [r[0] for r in rows.fetchall()]


def _insert_select(payload: str, compressed: str, size: str, source: str) -> str:
    """INSERT INTO hammerwork_jobs_archive (<registry columns>) SELECT <their hot expressions> FROM <source>."""
    cols = ", ".join(S.move_insert_columns())
    exprs = ", ".join(S.move_select_exprs(payload, compressed, size))
    return f"INSERT INTO hammerwork_jobs_archive ({cols})\nSELECT {exprs}\n  FROM {source}"


_TOTALS = """
SELECT queue_name, status, count(*), COALESCE(sum(original_payload_size), 0), COALESCE(sum(stored), 0)
  FROM ins GROUP BY 1, 2"""


@cache
def _raw_move_parts(version: int) -> tuple[str, str]:
    """The set-based move, claim included (text before and after the claim's WHERE): payloads copied as they are,
    as JSON text bytes (payload_compressed false), which Hammerwork's restore reads as they are. One statement,
    so the claimed ids never travel to the client and back; its last row says how many jobs were claimed and
    which of them _refused left hot (an EXCEPT of two CTEs: hashed or sorted, never rescanned)."""
    claimed = "ARRAY(SELECT id FROM claimed)"
    insert = _insert_select(
        "j.bytes", "false", "octet_length(j.bytes)",
        "moved h CROSS JOIN LATERAL (SELECT convert_to(h.payload::text, 'UTF8') AS bytes) j",
    )  # fmt: skip
    head = """WITH claimed AS MATERIALIZED (
    SELECT h.id FROM hammerwork_jobs h
     WHERE """
    tail = f"""
     LIMIT %(limit)s
       FOR UPDATE OF h SKIP LOCKED
), moved AS (
    DELETE FROM hammerwork_jobs d
     WHERE d.id = ANY({claimed}){_refused(claimed)}
    RETURNING d.*
), ins AS (
{insert}
    RETURNING queue_name, status, original_payload_size, octet_length(payload) AS stored
)
SELECT queue_name, status, count(*), COALESCE(sum(original_payload_size), 0), COALESCE(sum(stored), 0),
       NULL::uuid[]
  FROM ins GROUP BY 1, 2
UNION ALL
SELECT NULL, NULL, (SELECT count(*) FROM claimed), 0, 0,
       ARRAY(SELECT id FROM claimed EXCEPT ALL SELECT id FROM moved)"""  # noqa: S608 - registry column names
    return head, tail


def raw_move_query(pred: Predicate, skip: Sequence[Any]) -> sql.Composed:
    """The raw move's statement (parameters: the predicate's, limit, skip, reason, archived_by)."""
    head, tail = _raw_move_parts(S.REGISTRY_VERSION)
    not_skipped = sql.SQL(" AND NOT (h.id = ANY(%(skip)s::uuid[]))") if skip else sql.SQL("")
    return sql.Composed([sql.SQL(head), pred.hot_clause, not_skipped, sql.SQL(tail)])


@cache
def _packed_move_sql(version: int) -> str:
    """The move of claimed jobs whose payloads were compressed in Python (gzip): one statement per batch."""
    insert = _insert_select("h.z_payload", "h.z_compressed", "h.z_size", "moved h")
    return f"""WITH p AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(payloads)s::bytea[], %(compressed)s::bool[], %(sizes)s::int[])
        AS p(id, payload, compressed, size)
), moved AS (
    DELETE FROM hammerwork_jobs d USING p WHERE d.id = p.id{_refused("%(ids)s::uuid[]")}
    RETURNING d.*, p.payload AS z_payload, p.compressed AS z_compressed, p.size AS z_size
), ins AS (
{insert}
    RETURNING queue_name, status, original_payload_size, octet_length(payload) AS stored
){_TOTALS}"""  # noqa: S608 - registry column names, values are parameters


Totals = list[tuple[str, str, int, int, int]]  # (queue, status, jobs, original bytes, stored bytes)


@dataclass(frozen=True)
class RawBatch:
    """What one raw move did: jobs claimed, the moved ones' totals, and the claimed ones _refused left hot."""

    claimed: int
    totals: Totals
    refused: list[Any]


def move_raw_batch(
    conn: psycopg.Connection,
    pred: Predicate,
    limit: int,
    skip: Sequence[Any] = (),
    *,
    reason: str,
    archived_by: str | None,
) -> RawBatch:
    """Claim up to `limit` eligible jobs (SKIP LOCKED; not `skip`) and move them in one statement, payloads
    copied as they are."""
    params = {**pred.params, "limit": limit, "skip": list(skip), "reason": reason, "archived_by": archived_by}
    rows = conn.execute(raw_move_query(pred, skip), params, prepare=False).fetchall()  # see NO_PREPARE
    claimed, refused = next((int(n), list(r)) for _, _, n, _, _, r in rows if r is not None)
    totals = [(q, st, int(n), int(o), int(b)) for q, st, n, o, b, r in rows if r is None]
    return RawBatch(claimed, totals, refused)


def move_batch(
    conn: psycopg.Connection,
    *,
    ids: list[Any],
    payloads: list[bytes],
    compressed: list[bool],
    sizes: list[int],
    reason: str,
    archived_by: str | None,
) -> Totals:
    """Move claimed (locked) jobs with the stored payloads given here (gzip or raw), all but _refused ones."""
    rows = conn.execute(
        _packed_move_sql(S.REGISTRY_VERSION),
        {
            "ids": ids,
            "payloads": payloads,
            "compressed": compressed,
            "sizes": sizes,
            "reason": reason,
            "archived_by": archived_by,
        },
        binary=True,
        prepare=False,  # see NO_PREPARE
    ).fetchall()
    return [(q, st, int(n), int(o), int(b)) for q, st, n, o, b in rows]


# WHOLE_SCAN: statements that read every eligible hot row with the full clause (a count, the direct path's scan
# of them all) run with no nested loop, so their anti-join against staging is one hash over staging, never the
# staging scan per hot row that a plan made on an empty staging takes (see NO_JOIN_IN_CLAIM; it degenerates when
# staging fills while the statement runs). The setting is transaction-local, restored after; these statements
# are the one definition for both drivers (whole_scan_plans here, arrow.eligible_hot's on ADBC, through
# planner's switch statements).
WHOLE_SCAN = "enable_nestloop"


@contextmanager
def whole_scan_plans(conn: psycopg.Connection) -> Iterator[None]:
    """No nested loop for the statements inside (WHOLE_SCAN), restored after. A transaction (a savepoint inside
    one) holds the setting."""
    with conn.transaction(), planner.switched_off(conn, WHOLE_SCAN):
        yield


def count_eligible(conn: psycopg.Connection, pred: Predicate) -> list[tuple[str, str, int]]:
    """(queue, plain status, count) of eligible jobs; what a dry run reports."""
    query = sql.SQL(
        """SELECT h.queue_name, btrim(h.status, '"'), count(*)
             FROM hammerwork_jobs h WHERE {where}
            GROUP BY 1, 2 ORDER BY 1, 2"""
    ).format(where=pred.clause)
    with whole_scan_plans(conn):
        return [(q, s, int(n)) for q, s, n in conn.execute(query, pred.params, prepare=False).fetchall()]


_SETTLE_WHERE = """
    h.archived_at IS NOT NULL
    AND (%(queue)s::text IS NULL OR h.queue_name = %(queue)s)
    AND (EXISTS (SELECT 1 FROM hammerwork_jobs_archive a WHERE a.id = h.id)
         OR EXISTS (SELECT 1 FROM tiering_job_index x WHERE x.job_id = h.id AND x.restored_at IS NULL))
"""


def count_hammerwork_hot_copies(conn: psycopg.Connection, queue: str | None) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM hammerwork_jobs h WHERE {_SETTLE_WHERE}",  # noqa: S608 - constant fragment
        {"queue": queue},
    ).fetchone()
    return int(row[0]) if row else 0


def settle_hammerwork_hot_copies(conn: psycopg.Connection, queue: str | None, limit: int) -> int:
    """Delete up to `limit` hot rows Hammerwork marked archived whose archive copy exists (the copy wins)."""
    cur = conn.execute(
        f"""DELETE FROM hammerwork_jobs WHERE id IN (
               SELECT h.id FROM hammerwork_jobs h WHERE {_SETTLE_WHERE}
               LIMIT %(limit)s FOR UPDATE OF h SKIP LOCKED)""",  # noqa: S608 - constant fragment
        {"queue": queue, "limit": limit},
        prepare=False,  # see NO_PREPARE
    )
    return cur.rowcount


def settle_cold_duplicates(
    conn: psycopg.Connection, queue: str | None, limit: int, ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """Delete up to `limit` staged rows whose job is already live in the cold tier (the cold copy wins): what
    Hammerwork's archiver leaves when it commits a job tiering archived and flushed meanwhile. Returns, per
    settled job, the dropped staged copy and the kept cold object, to be recorded."""
    rows = conn.execute(
        """WITH dup AS (
               SELECT a.id FROM hammerwork_jobs_archive a
                WHERE (%(queue)s::text IS NULL OR a.queue_name = %(queue)s)
                  AND (%(ids)s::uuid[] IS NULL OR a.id = ANY(%(ids)s::uuid[]))
                  AND EXISTS (SELECT 1 FROM tiering_job_index x WHERE x.job_id = a.id AND x.restored_at IS NULL)
                LIMIT %(limit)s FOR UPDATE OF a SKIP LOCKED
           ), gone AS (
               DELETE FROM hammerwork_jobs_archive a USING dup WHERE a.id = dup.id
               RETURNING a.id, a.queue_name, a.archived_at, a.archived_by
           )
           SELECT g.id, g.queue_name, g.archived_at, g.archived_by, m.key
             FROM gone g
             JOIN tiering_job_index x ON x.job_id = g.id AND x.restored_at IS NULL
             JOIN tiering_manifest m ON m.id = x.object_id""",
        {"queue": queue, "limit": limit, "ids": ids},
        prepare=False,  # see NO_PREPARE
    ).fetchall()
    return [
        {
            "job_id": str(r[0]),
            "queue": r[1],
            "dropped": "staging",
            "staged_archived_at": r[2].isoformat() if r[2] else None,
            "staged_archived_by": r[3],
            "kept": r[4],
        }
        for r in rows
    ]


def count_two_places(conn: psycopg.Connection, queue: str | None) -> dict[str, list[str]]:
    """Jobs found in two places: Hammerwork-marked hot copies whose job is live in the cold tier, and staged rows
    whose job is live in the cold tier (ids, at most 1000 of each). A marked hot copy beside its staged copy is
    Hammerwork's archiver at work, not a problem: the next run or flush settles it."""
    hot = conn.execute(
        """SELECT h.id FROM hammerwork_jobs h
            WHERE h.archived_at IS NOT NULL AND (%(queue)s::text IS NULL OR h.queue_name = %(queue)s)
              AND EXISTS (SELECT 1 FROM tiering_job_index x WHERE x.job_id = h.id AND x.restored_at IS NULL)
            LIMIT 1000""",
        {"queue": queue},
    ).fetchall()
    staged = conn.execute(
        """SELECT a.id FROM hammerwork_jobs_archive a
            WHERE (%(queue)s::text IS NULL OR a.queue_name = %(queue)s)
              AND EXISTS (SELECT 1 FROM tiering_job_index x WHERE x.job_id = a.id AND x.restored_at IS NULL)
            LIMIT 1000""",
        {"queue": queue},
    ).fetchall()
    return {"hot_marked": [str(r[0]) for r in hot], "staged_and_cold": [str(r[0]) for r in staged]}


def settle_marked_hot(conn: psycopg.Connection, job_ids: list[Any]) -> int:
    """Delete the hot copies Hammerwork only marked archived of jobs a restore is about to bring back from their
    archive copy (locked by the caller): the archive copy wins, as everywhere."""
    if not job_ids:
        return 0
    cur = conn.execute(
        "DELETE FROM hammerwork_jobs WHERE id = ANY(%s::uuid[]) AND archived_at IS NOT NULL", (list(job_ids),)
    )
    return cur.rowcount


def hot_blocks(conn: psycopg.Connection) -> int:
    """How many blocks the hot table has now (the direct path splits its scan of eligible jobs by block)."""
    row = conn.execute(
        "SELECT (pg_relation_size('hammerwork_jobs') / current_setting('block_size')::int)::bigint"
    ).fetchone()
    return int(row[0]) if row else 0
