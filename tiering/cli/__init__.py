"""The `tiering` command line: thin wrappers that parse, call the engine and render."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tiering import __version__, logs
from tiering.cli import output
from tiering.cli.examples import attach_examples, groups
from tiering.context import Session, translate_error
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr (anywhere on the line).")] = (
        False
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr (anywhere on the line).")] = (
        False
    ),
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="text or json (one object a line; anywhere on the line).", metavar="FORMAT"),
    ] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    if verbose or quiet or log_format:  # main() takes these from anywhere on the line; this serves direct calls
        logs.configure(verbose=verbose, quiet=quiet, log_format=log_format or "text")
        output.set_quiet(quiet)
        output.set_json_logs(log_format == "json")
    settings = load_settings(database_url=database_url, store_url=store_url, home=home, embedded=embedded or None)
    session = Session(settings)
    ctx.obj = session
    ctx.call_on_close(session.close)


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


# --- the entry point -----------------------------------------------------------------------------------------

# Modules of the optional extras (pyproject.toml), and the extra that brings each.
OPTIONAL_MODULES = {
    "fastapi": "service",
    "starlette": "service",
    "pydantic": "service",
    "uvicorn": "service",
    "duckdb": "analyst",
    "duckdb_extension_httpfs": "analyst",
    "duckdb_extension_json": "analyst",
}
_GLOBAL_SWITCHES = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


@dataclass
class GlobalFlags:
    """Flags that work anywhere on the command line (before or after the subcommand)."""

    verbose: bool = False
    quiet: bool = False
    log_format: str = "text"
    json_output: bool = False  # --format json: errors too come as one JSON object on stdout


def split_global_flags(args: list[str], env: Mapping[str, str]) -> tuple[GlobalFlags, list[str]]:
    """Take -v/--verbose, -q/--quiet and --log-format X out of `args` wherever they stand (up to `--`), and see
    whether the output is JSON (`--format json`, `-f json`, TIERING_FORMAT=json)."""
    flags = GlobalFlags(log_format=env.get("TIERING_LOG_FORMAT") or "text")
    rest: list[str] = []
    fmt = env.get("TIERING_FORMAT")
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _GLOBAL_SWITCHES:
            setattr(flags, _GLOBAL_SWITCHES[arg], True)
        elif arg == "--log-format" and i + 1 < len(args):
            flags.log_format = args[i + 1]
            i += 1
        elif arg.startswith("--log-format="):
            flags.log_format = arg.partition("=")[2]
        else:
            if arg in ("--format", "-f") and i + 1 < len(args):
                fmt = args[i + 1]
            elif arg.startswith("--format="):
                fmt = arg.partition("=")[2]
            rest.append(arg)
        i += 1
    flags.json_output = (fmt or "").strip().lower() == "json"
    return flags, rest


def _click_exceptions() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(ClickException, Abort, Exit) classes of typer's vendored click (typer >= 0.29, where Abort and Exit are
    typer's own) and of click itself (older typer): either family may be raised, and both must end as click's
    usage message and exit code."""
    errors: list[type[Exception]] = []
    aborts: list[type[Exception]] = [typer.Abort]
    exits: list[type[Exception]] = [typer.Exit]
    for module_name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        errors.append(module.ClickException)
        aborts.extend(getattr(module, name) for name in ("Abort",) if hasattr(module, name))
        exits.extend(getattr(module, name) for name in ("Exit",) if hasattr(module, name))
    return tuple(errors), tuple(aborts), tuple(exits)


def _fail(flags: GlobalFlags, code: int, message: str, kind: str, *, shown: bool = False, **extra: Any) -> NoReturn:
    """End with `code`: the message on stderr (unless already shown), and with --format json one JSON object
    on stdout that scripts can read."""
    if flags.log_format == "json":  # stderr stays one JSON object a line
        logging.getLogger("tiering").error(message, extra={"outcome": "failed"}, exc_info=False)
    elif not shown:
        typer.echo(f"error: {message}", err=True)
    if flags.json_output:
        doc = {"success": False, "error": {"type": kind, "message": message, "exit_code": code, **extra}}
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    flags, args = split_global_flags(args, os.environ)
    try:
        logs.configure(verbose=flags.verbose, quiet=flags.quiet, log_format=flags.log_format)
    except TieringError as exc:
        _fail(flags, exc.exit_code, str(exc), type(exc).__name__)
    output.set_quiet(flags.quiet)
    output.set_json_logs(flags.log_format == "json")
    logging.getLogger("tiering").debug("tiering %s on Python %s", __version__, sys.version.split()[0])
    click_errors, click_aborts, click_exits = _click_exceptions()
    command = typer.main.get_command(app)
    attach_examples(command)
    for group in groups(command):  # a missing subcommand is a usage error (exit 2), not a help page on stdout
        group.no_args_is_help = False
    try:
        # With standalone_mode=False click returns the code of a typer.Exit instead of raising it.
        code = command.main(args=args, prog_name="tiering", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except TieringError as exc:
        _fail(flags, exc.exit_code, str(exc), type(exc).__name__)
    except click_exits as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except click_aborts:
        _fail(flags, 1, "aborted", "Aborted")
    except click_errors as exc:  # usage errors: click's usage message, exit 2
        exc.show()  # type: ignore[attr-defined]
        code = int(getattr(exc, "exit_code", 2))
        message = exc.format_message()  # type: ignore[attr-defined]
        if type(exc).__name__ == "NoArgsIsHelpError":
            message = "a command is missing (see the usage above)"
        _fail(flags, code, message, "UsageError" if code == 2 else type(exc).__name__, shown=True)
    except KeyboardInterrupt:
        _fail(flags, 130, "interrupted", "Interrupted")
    except BrokenPipeError:  # `tiering ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").partition(".")[0])
        if extra is None:
            if os.environ.get("TIERING_DEBUG"):
                raise
            _fail(flags, 1, f"unexpected {type(exc).__name__}: {exc} (a bug: set TIERING_DEBUG=1 for a traceback)",
                  "InternalError")  # fmt: skip
        _fail(flags, 2, f"this command needs the {extra!r} extra ({exc.name} is not installed): "
              f"pip install 'tiering[{extra}]'", "MissingExtra")  # fmt: skip
    except Exception as exc:
        translated = translate_error(exc)
        if translated is not None:
            _fail(flags, translated.exit_code, str(translated), type(translated).__name__)
        if os.environ.get("TIERING_DEBUG"):
            raise
        _fail(flags, 1, f"unexpected {type(exc).__name__}: {exc} (a bug: set TIERING_DEBUG=1 for a traceback)",
              "InternalError")  # fmt: skip
