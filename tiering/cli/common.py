"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

from tiering.cli.output import Format
from tiering.context import Session

FormatOption = Annotated[
    Format,
    typer.Option("--format", "-f", envvar="TIERING_FORMAT", help="table|json|csv (JSON and CSV keep raw numbers)."),
]
QueueOption = Annotated[str | None, typer.Option("--queue", envvar="TIERING_QUEUE", help="Only this queue.")]
InitiatedByOption = Annotated[
    str | None, typer.Option("--initiated-by", envvar="TIERING_INITIATED_BY", help="Who runs this (audit trail).")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]


def context(ctx: typer.Context) -> Session:
    """The archive session the root command opened (one per process)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Session)
    return obj


def default_initiator(value: str | None) -> str:
    if value:
        return value
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def confirm(question: str) -> None:
    """Ask on the terminal; a "no" is a refusal for safety (exit 6, as README's exit-code table says), not an error."""
    from tiering.errors import SafetyAbort

    if not typer.confirm(question, default=False):
        raise SafetyAbort("declined: nothing was changed")
