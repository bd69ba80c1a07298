"""The `tiering` command line: thin wrappers that parse, call the engine and render."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tiering import __version__
from tiering.context import Context
from tiering.errors import TieringError
from tiering.settings import load_settings

app = typer.Typer(
    name="tiering",
    help="Move finished Hammerwork jobs into cheap, queryable cold storage, and bring them back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tiering {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="TIERING_DATABASE_URL",
            help="PostgreSQL URL of the Hammerwork database (else DATABASE_URL). Required unless --embedded.",
        ),
    ] = None,
    embedded: Annotated[
        bool,
        typer.Option(
            "--embedded",
            envvar="TIERING_EMBEDDED",
            help="No database URL given: start (or reuse) an embedded PostgreSQL under --home, to try tiering out.",
        ),
    ] = False,
    store_url: Annotated[
        str | None,
        typer.Option(envvar="TIERING_STORE_URL", help="s3://bucket/prefix or file:///path; default: <home>/objects."),
    ] = None,
    home: Annotated[
        Path | None, typer.Option(envvar="TIERING_HOME", help="Where the embedded database and local objects live.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = load_settings(database_url=database_url, store_url=store_url, home=home, embedded=embedded or None)
    ctx.obj = Context(settings)


def _register() -> None:
    from tiering.cli import archive, db, demo

    app.add_typer(archive.app, name="archive")
    app.add_typer(demo.app, name="demo")
    app.add_typer(db.app, name="db")
    for module_name in ("tiering.cli.query", "tiering.cli.retention", "tiering.cli.analyst", "tiering.cli.serve"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(app, archive.app)


_register()


def main() -> None:
    try:
        # With standalone_mode=False click returns the code of a typer.Exit instead of raising it.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except TieringError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("TIERING_DEBUG"):
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (set TIERING_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
