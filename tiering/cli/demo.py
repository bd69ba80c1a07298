"""`tiering demo seed`: realistic Hammerwork jobs for trying tiering out."""

from __future__ import annotations

from typing import Annotated

import typer

from tiering.cli import output
from tiering.cli.common import FormatOption, context
from tiering.cli.output import Format

app = typer.Typer(help="Demo data.", no_args_is_help=True)


@app.command("seed")
def seed(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, max=10_000_000, help="How many jobs to insert.")] = 50_000,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Only when the hot table is empty.")] = False,
    days: Annotated[int, typer.Option(min=1, help="Spread finish times over this many days.")] = 730,
    history: Annotated[
        bool,
        typer.Option(
            "--history/--no-history",
            help="Put terminal jobs older than 30 days into hammerwork_jobs_archive, as Hammerwork's own archiver "
            "would have (archived_at spans the days, so retention examples have something to purge).",
        ),
    ] = True,
    fmt: FormatOption = Format.table,
) -> None:
    """Insert demo jobs (mixed queues, statuses, payload sizes, customer ids 10000-14999) for trying tiering out.

    Example: tiering --embedded demo seed --count 20000
    """
    from tiering.demo import hot_job_count, seed_demo_jobs, staged_job_count

    c = context(ctx)
    with c.connection() as conn:
        existing = hot_job_count(conn)
        if if_empty and existing:
            if fmt is Format.json:
                output.print_json({"seeded": 0, "existing": existing})
            output.info(f"hammerwork_jobs already holds {existing} jobs: not seeding")
            return
        staged_before = staged_job_count(conn)
        inserted = seed_demo_jobs(conn, count, days=days, history=history)
        archived = staged_job_count(conn) - staged_before
        conn.commit()
    if fmt is Format.json:
        output.print_json({"seeded": inserted, "existing": existing, "hot": inserted - archived, "archived": archived})
    else:
        output.info(
            f"seeded {inserted - archived} demo jobs into hammerwork_jobs"
            + (f" and {archived} that Hammerwork archived earlier into hammerwork_jobs_archive" if archived else "")
        )
