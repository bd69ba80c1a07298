"""Advisory locks that order moves of jobs between tiers against erasure.

Every step that moves jobs (archive hot -> staging, flush staging -> cold, restore back to hot) holds the
*moves* lock shared for its transaction; an erase holds it exclusively from its first look to its final check,
so no job changes tier while an erase decides where it is. PostgreSQL queues new shared requests behind a
waiting exclusive one, so an erase is not starved by a stream of flush rounds.
"""

from __future__ import annotations

import psycopg

MOVES_LOCK_KEY = "tiering:moves"
# Wrapped in a SELECT that returns an integer: the ADBC driver cannot read a `void` column.
SHARE_MOVES_SQL = "SELECT 1 FROM (SELECT pg_advisory_xact_lock_shared(hashtextextended('tiering:moves', 0))) s"


def share_moves(conn: psycopg.Connection) -> None:
    """Hold the moves lock shared until this transaction ends (call it first in the transaction)."""
    conn.execute(SHARE_MOVES_SQL)


def lock_moves(conn: psycopg.Connection) -> None:
    """Session-level exclusive hold (an erase): waits for every move in flight to commit or roll back."""
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (MOVES_LOCK_KEY,))


def unlock_moves(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (MOVES_LOCK_KEY,))
