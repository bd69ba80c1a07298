"""`tiering db stop | status`: the embedded PostgreSQL that `--embedded` (or TIERING_EMBEDDED=1) starts."""

from __future__ import annotations

import typer

from tiering.cli import output
from tiering.cli.common import FormatOption, context
from tiering.cli.output import Format

app = typer.Typer(help="The embedded PostgreSQL used by --embedded (make run, the demo).", no_args_is_help=True)


@app.command("stop")
def stop(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """Stop the embedded PostgreSQL under --home (it keeps running between commands otherwise).

    Example: tiering db stop; TIERING_HOME=/srv/tiering tiering db stop
    """
    session = context(ctx)
    home = session.settings.home
    stopped = session.stop_embedded()
    doc = {"home": str(home.resolve()), "stopped": stopped}
    if fmt is not Format.table:
        output.emit(doc, fmt)
    else:
        output.info(f"stopped the embedded PostgreSQL under {home / 'pg'}" if stopped
                    else f"no embedded PostgreSQL runs under {home / 'pg'}")  # fmt: skip


@app.command("status")
def status(ctx: typer.Context, fmt: FormatOption = Format.table) -> None:
    """Whether the embedded PostgreSQL under --home runs.

    Example: tiering db status --format json
    """
    session = context(ctx)
    home = session.settings.home
    doc = {"home": str(home.resolve()), "running": session.embedded_running()}
    output.emit(doc, fmt)
