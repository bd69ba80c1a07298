"""Planner statistics after bulk changes.

A run that moves hundreds of thousands of rows leaves the tables it changed without statistics until
autovacuum gets to them (a minute or more later); meanwhile the planner guesses, and a list page over the job
index took ~1 s on a bad plan instead of ~0.05 s. Runs that changed many rows therefore ANALYZE the tables they
changed themselves (flushes also VACUUM them). SKIP_LOCKED: a table another session is analysing (or vacuuming)
is left to it. Some statements also need a planner switch off for themselves alone (switched_off).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql

# Fewer changed rows than this are left to autovacuum (its own threshold is 50 rows + 10 % of the table).
BULK_ROWS = 10_000

HOT = "hammerwork_jobs"
STAGING = "hammerwork_jobs_archive"
JOB_INDEX = "tiering_job_index"
MANIFEST = "tiering_manifest"


# Hammerwork's hot table is analysed for what plans over it need right after a bulk move: its row count and the
# columns that Hammerwork's queries (dequeue, stats, cleanup, dependencies, cron) and tiering's (eligibility,
# settling, what was left behind) filter, join or sort on; with a smaller sample (HOT_SAMPLE_TARGET x 300 rows).
# An ANALYZE that names columns leaves the table's count of changes since its last full ANALYZE as it was, so
# autovacuum still analyses the whole table on its own schedule, at the table's own statistics target: this only
# fills the gap until then. At 300k jobs moved: 0.1-0.2 s of CPU against 0.85-1.1 s for a full ANALYZE (30k-row
# sample, every column: the payload's JSONB comparisons alone 0.5 s), which was the last step of every run.
HOT_PLAN_COLUMNS = (
    "id", "queue_name", "status", "priority", "scheduled_at", "created_at", "completed_at", "failed_at",
    "timed_out_at", "archived_at", "batch_id", "next_run_at", "recurring", "result_expires_at", "workflow_id",
)  # fmt: skip
HOT_SAMPLE_TARGET = 30
# The job index likewise, once a flush or purge changed it in bulk: the columns its readers filter, join or sort on
# (not payload_bytes, nor error_message, the costliest to sample), at the same small sample, its change counter
# left for autovacuum's full ANALYZE (and its VACUUM: a bulk INSERT leaves the new pages' hint and visibility bits
# to it, as after any INSERT). 200k fresh index rows: 0.04-0.05 s of backend CPU against 0.18-0.21 s for the
# VACUUM ANALYZE a flush ran; the list route right after a run stayed at 8-17 ms (it reads the planner's
# estimates and walks the list index, which do not need the visibility bits).
JOB_INDEX_PLAN_COLUMNS = (
    "job_id", "object_id", "row_group", "row_in_group", "queue_name", "status", "created_at", "archived_at",
    "restored_at",
)  # fmt: skip
PLAN_COLUMNS = {HOT: HOT_PLAN_COLUMNS, JOB_INDEX: JOB_INDEX_PLAN_COLUMNS}


def refresh_statistics(conn: psycopg.Connection, tables: Sequence[str], *, vacuum: bool = False) -> None:
    """ANALYZE `tables`; with `vacuum`, VACUUM (ANALYZE) them (autocommit connection only): after a flush the
    staging table holds every flushed row dead. The hot table and the job index (never vacuumed here) are
    analysed for their plan columns (PLAN_COLUMNS) at a small sample."""
    for table in tables:
        if table in PLAN_COLUMNS:
            _analyse_plan_columns(conn, table)
    tables = [t for t in tables if t not in PLAN_COLUMNS]
    if tables:
        names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
        command = "VACUUM (ANALYZE, SKIP_LOCKED) {}" if vacuum else "ANALYZE (SKIP_LOCKED) {}"
        conn.execute(sql.SQL(command).format(names))


def _analyse_plan_columns(conn: psycopg.Connection, table: str) -> None:
    with conn.transaction():
        present = conn.execute(
            """SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0
                  AND NOT attisdropped AND attname = ANY(%s) ORDER BY attnum""",
            (table, list(PLAN_COLUMNS[table])),
        ).fetchall()
        if not present:
            return
        conn.execute(sql.SQL("SET LOCAL default_statistics_target = {}").format(sql.Literal(HOT_SAMPLE_TARGET)))
        columns = sql.SQL(", ").join(sql.Identifier(r[0]) for r in present)
        conn.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {} ({})").format(sql.Identifier(table), columns))


def switch_current_sql(setting: str) -> str:
    """The statement reading a planner switch (enable_*) as it is now, to put back after (switch_restore_sql)."""
    return sql.SQL("SELECT current_setting({})").format(sql.Literal(setting)).as_string(None)


def switch_off_sql(setting: str) -> str:
    """The statement turning a planner switch off for the rest of this transaction only."""
    return sql.SQL("SELECT set_config({}, 'off', true)").format(sql.Literal(setting)).as_string(None)


def switch_restore_sql(setting: str, previous: str) -> str:
    """The statement putting back the value switch_current_sql read. Literals, not parameters: the same three
    statements serve both drivers (psycopg here, ADBC in db/arrow.py)."""
    statement = sql.SQL("SELECT set_config({}, {}, true)").format(sql.Literal(setting), sql.Literal(previous))
    return statement.as_string(None)


@contextmanager
def switched_off(conn: psycopg.Connection, setting: str) -> Iterator[None]:
    """Planner switch `setting` off for the statements inside only, the previous value put back after. The
    caller's transaction holds the setting (on an autocommit connection, open one around this)."""
    row = conn.execute(switch_current_sql(setting)).fetchone()
    conn.execute(switch_off_sql(setting))
    yield
    conn.execute(switch_restore_sql(setting, row[0] if row else "on"))
