"""`tiering analyst duckdb | athena-ddl`: query the cold tier with the engines analysts already use."""

from __future__ import annotations

import sys
from datetime import date
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
            output.print_table(rows, columns)
        elif fmt is Format.csv:
            output.print_csv(rows, columns)
        else:
            results.append({"columns": columns, "rows": rows})
    if fmt is Format.json:
        output.print_json(results[-1] if len(results) == 1 else results)


@app.command("duckdb")
def duckdb_cmd(
    ctx: typer.Context,
    print_sql: Annotated[bool, typer.Option("--print-sql", help="Print the session's setup SQL and exit.")] = False,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="With --print-sql: print the real secret key, not a placeholder.")
    ] = False,
    execute: Annotated[
        str | None, typer.Option("--execute", "-c", help="Run this SQL (statements separated by ;) and exit.")
    ] = None,
    database: Annotated[
        str, typer.Option("--database", help="DuckDB database file (default: in memory).")
    ] = ":memory:",
    fmt: FormatOption = Format.table,
) -> None:
    """A DuckDB session with the view `archived_jobs` over exactly the committed objects."""
    from tiering.engine.analyst import duckdb_sql, open_duckdb

    c = context(ctx)
    if print_sql:
        sys.stdout.write(duckdb_sql(c.database_url, c.store, c.settings, show_secrets=show_secrets))
        return
    conn = open_duckdb(c.database_url, c.store, c.settings, database=database)
    if execute is not None:
        _run(conn, execute, fmt)
        return
    if not sys.stdin.isatty():
        _run(conn, sys.stdin.read(), fmt)
        return
    output.info("DuckDB session: the view archived_jobs holds every committed object. End statements with ';'. "
                "Ctrl-D quits.")  # fmt: skip
    buffer = ""
    while True:
        try:
            line = input("tiering> " if not buffer else "     ..> ")
        except EOFError:
            break
        buffer += line + "\n"
        if buffer.strip().endswith(";"):
            try:
                _run(conn, buffer, Format.table)
            except QueryError as exc:
                output.warn(str(exc))
            buffer = ""


@app.command("athena-ddl")
def athena_ddl_cmd(
    ctx: typer.Context,
    table: Annotated[str, typer.Option("--table", help="Table name.")] = "archived_jobs",
    database: Annotated[str | None, typer.Option("--database", help="Glue database.")] = None,
    queue_projection: Annotated[
        str, typer.Option("--queue-projection", help="auto | enum (the manifest's queue slugs) | injected")
    ] = "auto",
    start_date: Annotated[
        str | None, typer.Option("--start-date", help="First date of the date projection (default: oldest object).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Print CREATE EXTERNAL TABLE (partition projection on queue and date) for the bucket layout."""
    from tiering.engine.analyst import athena_ddl

    start = None
    if start_date is not None:
        try:
            start = date.fromisoformat(start_date)
        except ValueError:
            raise InvalidInputError(f"--start-date {start_date!r} is not an ISO date (yyyy-mm-dd)") from None
    c = context(ctx)
    ddl = athena_ddl(c.database_url, c.store, c.settings, table=table, database=database,
                     queue_projection=queue_projection, start_date=start)  # fmt: skip
    if fmt is Format.json:
        output.print_json({"table": table, "database": database, "ddl": ddl})
    else:
        sys.stdout.write(ddl)


def register(root: typer.Typer, archive_app: typer.Typer) -> None:
    root.add_typer(app, name="analyst")
