"""`tiering analyst duckdb | athena-ddl`: query the cold tier with the engines analysts already use."""

from __future__ import annotations

import signal
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from tiering.cli import output
from tiering.cli.common import FormatOption, context
from tiering.cli.output import Format
from tiering.errors import InvalidInputError, TieringError

app = typer.Typer(help="Analyst access: DuckDB sessions and Athena DDL over the archive objects.",
                  no_args_is_help=True)  # fmt: skip


class QueryError(TieringError):
    """DuckDB rejected a statement."""

    exit_code = 2
    http_status = 400


def _rows(result: Any) -> tuple[list[str], list[dict[str, Any]]]:
    # Arrow avoids DuckDB's pytz dependency for TIMESTAMPTZ values.
    table = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
    return table.column_names, table.to_pylist()


def _run(conn: Any, sql: str, fmt: Format) -> None:
    import duckdb

    statements = conn.extract_statements(sql)
    results: list[dict[str, Any]] = []
    for stmt in statements:
        try:
            rel = conn.execute(stmt)
        except duckdb.Error as exc:
            raise QueryError(f"DuckDB: {exc}") from exc
        if rel.description is None:
            continue
        columns, rows = _rows(rel)
        if fmt is Format.table:
            output.print_table(rows, columns, human=False)
        elif fmt is Format.csv:
            output.print_csv(rows, columns)
        else:
            results.append({"columns": columns, "rows": rows})
    if fmt is Format.json:
        output.print_json(results[-1] if len(results) == 1 else results)


@app.command("duckdb")
def duckdb_cmd(
    ctx: typer.Context,
    print_sql: Annotated[
        bool,
        typer.Option(
            "--print-sql",
            help="Print the session's setup SQL and exit. It names no object: it reads the file list tiering keeps "
            "in the store (rewritten by every flush, restore, purge and erase), so it stays valid.",
        ),
    ] = False,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="With --print-sql: print the real secret key, not a placeholder.")
    ] = False,
    execute: Annotated[
        str | None, typer.Option("--execute", "-c", help="Run this SQL (statements separated by ;) and exit.")
    ] = None,
    duckdb_file: Annotated[
        str, typer.Option("--duckdb-file", help="DuckDB database file to keep tables in (default: in memory).")
    ] = ":memory:",
    old_database: Annotated[
        str | None, typer.Option("--database", hidden=True, help="Deprecated name of --duckdb-file.")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """A DuckDB session with the view `archived_jobs` (each archived job once, as it is now) and
    `archived_jobs_all` (every row of every committed object, for audits)."""
    from tiering.engine.analyst import duckdb_sql, open_duckdb, publish_listing

    c = context(ctx)
    if old_database is not None:
        output.warn("--database is deprecated here: use --duckdb-file (athena-ddl's --glue-database is the other)")
        duckdb_file = old_database
    if print_sql:
        for warning in publish_listing(c):
            output.warn(warning)
        sys.stdout.write(duckdb_sql(c, show_secrets=show_secrets))
        return
    interactive = execute is None and sys.stdin.isatty()
    if interactive:
        # DuckDB's worker threads are created now and inherit this mask: Ctrl-C then always reaches the main
        # thread, which waits in readline (a SIGINT taken by a worker thread would not wake it up)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        conn = open_duckdb(c, database=duckdb_file)
    finally:
        if interactive:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if execute is not None:
        _run(conn, execute, fmt)
        return
    if not sys.stdin.isatty():
        _run(conn, sys.stdin.read(), fmt)
        return
    repl(conn, c.settings.home / "duckdb_history")


def repl(conn: Any, history: Path) -> None:
    """Line editing and history (readline), statements end with ';', Ctrl-C drops the line, Ctrl-D quits."""
    import readline

    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        if history.exists():
            readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)
    output.info(
        "DuckDB session: archived_jobs (each job once, as it is now), archived_jobs_all (every stored row). "
        "End statements with ';'. Up/down recall history, Ctrl-C drops the line, Ctrl-D quits."
    )
    buffer = ""
    try:
        while True:
            try:
                line = input("tiering> " if not buffer else "     ..> ")
            except KeyboardInterrupt:
                sys.stdout.write("^C\n")
                buffer = ""
                continue
            except EOFError:
                sys.stdout.write("\n")
                break
            buffer += line + "\n"
            if buffer.strip().endswith(";"):
                try:
                    _run(conn, buffer, Format.table)
                except QueryError as exc:
                    output.warn(str(exc))
                except KeyboardInterrupt:
                    conn.interrupt()
                    output.warn("query cancelled")
                buffer = ""
    finally:
        try:
            readline.write_history_file(history)
        except OSError:
            pass


@app.command("athena-ddl")
def athena_ddl_cmd(
    ctx: typer.Context,
    table: Annotated[str, typer.Option("--table", help="Name of the view; the raw table is <table>_all.")] = (
        "archived_jobs"
    ),
    glue_database: Annotated[
        str | None, typer.Option("--glue-database", help="Glue (Athena) database the tables go into.")
    ] = None,
    old_database: Annotated[
        str | None, typer.Option("--database", hidden=True, help="Deprecated name of --glue-database.")
    ] = None,
    queue_projection: Annotated[
        str, typer.Option("--queue-projection", help="auto | enum (the manifest's queue slugs) | injected")
    ] = "auto",
    start_date: Annotated[
        str | None, typer.Option("--start-date", help="First date of the date projection (default: oldest object).")
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Print only the ALTER TABLE that brings the queue enum up to date."),
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Print the Athena DDL (partition projection on queue and date): the raw table, the listing table and the
    view `archived_jobs` that shows each archived job once. `date` is the day a job was archived."""
    from tiering.engine.analyst import athena_ddl

    if old_database is not None:
        output.warn("--database is deprecated here: use --glue-database")
        glue_database = old_database
    start = None
    if start_date is not None:
        try:
            start = date.fromisoformat(start_date)
        except ValueError:
            raise InvalidInputError(f"--start-date {start_date!r} is not an ISO date (yyyy-mm-dd)") from None
    c = context(ctx)
    ddl = athena_ddl(c, table=table, database=glue_database,
                     queue_projection=queue_projection, start_date=start, refresh=refresh)  # fmt: skip
    if fmt is not Format.table:
        output.emit({"table": table, "database": glue_database, "ddl": ddl}, fmt)
    else:
        sys.stdout.write(ddl)


def register(root: typer.Typer, archive_app: typer.Typer) -> None:
    root.add_typer(app, name="analyst")
