"""Planner statistics after bulk changes.

A run that moves hundreds of thousands of rows leaves the tables it changed without statistics until
autovacuum gets to them (a minute or more later); meanwhile the planner guesses, and a list page over the job
index took ~1 s on a bad plan instead of ~0.05 s. Runs that changed many rows therefore ANALYZE the tables they
changed themselves (flushes also VACUUM them). SKIP_LOCKED: a table another session is analysing (or vacuuming)
is left to it.
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


def refresh_statistics(conn: psycopg.Connection, tables: Sequence[str], *, vacuum: bool = False) -> None:
    """ANALYZE `tables`; with `vacuum`, VACUUM (ANALYZE) them (autocommit connection only): after a flush the
    staging table holds every flushed row dead and the job index's new rows are not yet all-visible, and a list
    page right after a 1M-job flush took 5.6 s against 1.9 s once vacuumed (make bench); ANALYZE alone did not
    remove that."""
    if tables:
        names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
        command = "VACUUM (ANALYZE, SKIP_LOCKED) {}" if vacuum else "ANALYZE (SKIP_LOCKED) {}"
        conn.execute(sql.SQL(command).format(names))
