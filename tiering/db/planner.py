"""Planner statistics after bulk changes.

A run that moves hundreds of thousands of rows leaves the tables it changed without statistics until
autovacuum gets to them (a minute or more later); meanwhile the planner guesses, and a list page over the job
index took ~1 s on a bad plan instead of ~0.05 s. Runs that changed many rows therefore ANALYZE the tables they
changed themselves. SKIP_LOCKED: a table another session is analysing (or vacuuming) is left to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

# Fewer changed rows than this are left to autovacuum (its own threshold is 50 rows + 10 % of the table).
BULK_ROWS = 10_000

HOT = "hammerwork_jobs"
STAGING = "hammerwork_jobs_archive"
JOB_INDEX = "tiering_job_index"
MANIFEST = "tiering_manifest"


def refresh_statistics(conn: psycopg.Connection, tables: Sequence[str]) -> None:
    """ANALYZE `tables` (autocommit connection, or inside a transaction: both are allowed)."""
    if tables:
        names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
        conn.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(names))
