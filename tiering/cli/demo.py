"""`tiering demo seed`: realistic Hammerwork jobs for trying tiering out."""

from __future__ import annotations

from typing import Annotated

import typer

from tiering.cli import output
from tiering.cli.common import FormatOption, context
from tiering.cli.output import Format
from tiering.db.connection import connect
from tiering.demo import hot_job_count, seed_demo_jobs

app = typer.Typer(help="Demo data.", no_args_is_help=True)


@app.command("seed")
def seed(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, help="How many jobs to insert.")] = 50_000,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Only when the hot table is empty.")] = False,
    days: Annotated[int, typer.Option(min=1, help="Spread finish times over this many days.")] = 90,
    fmt: FormatOption = Format.table,
) -> None:
    """Insert demo jobs (mixed queues, statuses and payload sizes) into hammerwork_jobs."""
    c = context(ctx)
    with connect(c.database_url) as conn:
        existing = hot_job_count(conn)
        if if_empty and existing:
            if fmt is Format.json:
                output.print_json({"seeded": 0, "existing": existing})
            output.info(f"hammerwork_jobs already holds {existing} jobs: not seeding")
            return
        inserted = seed_demo_jobs(conn, count, days=days)
        conn.commit()
    if fmt is Format.json:
        output.print_json({"seeded": inserted, "existing": existing})
    else:
        output.info(f"seeded {inserted} demo jobs into hammerwork_jobs")
