"""db/literals.array_literal: the one PostgreSQL array literal built from Python values, for the eligibility
predicate's text[] parameters on the ADBC driver (statuses, legacy '"Completed"' spellings, queue names) and a
purge rewrite's uuid[] / int[] index moves on psycopg. Each comes back from PostgreSQL exactly as it went in."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tiering.db import arrow as arrowdb
from tiering.db.literals import array_literal

AWKWARD = [
    "Completed",
    '"Completed"',  # a legacy status spelling, quotes included
    "a,b",
    "{braces}",
    "back\\slash",
    'both \\" at once',
    "  spaced  ",
    "",
    "NULL",  # the word, not the null
    "null",
    "reports/monthly",
    "notifications.push",
    "ünïcode ✓",
]


def test_every_item_is_quoted_and_escaped() -> None:
    assert array_literal([]) == "{}"
    assert array_literal(["a", 'q"t', "b\\s", "x,y", "{z}"]) == '{"a","q\\"t","b\\\\s","x,y","{z}"}'
    assert array_literal([1, 20, -3]) == '{"1","20","-3"}'
    assert array_literal(["NULL", None]) == '{"NULL",NULL}'  # None is the array's NULL, the word stays text
    job = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert array_literal([job, str(job)]) == '{"' + str(job) + '","' + str(job) + '"}'
    assert array_literal(x for x in ("g", "e", "n")) == '{"g","e","n"}'  # any iterable, read once


def test_text_items_round_trip_on_both_drivers(db_url: str) -> None:
    literal = array_literal([*AWKWARD, None])
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT %s::text[]", (literal,)).fetchone()
    assert row is not None and row[0] == [*AWKWARD, None]

    database = arrowdb.ArrowDatabase(db_url)
    conn_a = database.connect()
    try:
        cur = conn_a.cursor()
        # as the eligibility predicate's list parameters go through ADBC (arrow._positional): one text, cast
        cur.execute("SELECT $1::text[] AS items", parameters=(literal,))
        assert cur.fetch_arrow_table().to_pylist() == [{"items": [*AWKWARD, None]}]
        cur.close()
        conn_a.rollback()
    finally:
        conn_a.close()
        database.close()


def test_uuid_and_int_items_round_trip_as_a_purge_rewrite_sends_them(db_url: str) -> None:
    moves: list[tuple[Any, int, int]] = [(str(uuid.uuid4()), rg, rg * 7 + 1) for rg in range(300)]
    moves.append((uuid.uuid4(), 2**31 - 1, 0))  # a UUID object as well as its text; int4's largest
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT u.job_id, u.rg, u.rig FROM unnest(%s::uuid[], %s::int[], %s::int[]) WITH ORDINALITY"
            " AS u(job_id, rg, rig, n) ORDER BY n",
            tuple(array_literal(m[k] for m in moves) for k in range(3)),
        ).fetchall()
    assert [(str(j), rg, rig) for j, rg, rig in rows] == [(str(j), rg, rig) for j, rg, rig in moves]
