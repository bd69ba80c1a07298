"""The command line's surface: every command has --format json and examples in its --help that parse; global
flags are taken from anywhere; errors that escape the engine end with their documented exit code."""

from __future__ import annotations

import json
import shlex
from typing import Any

import psycopg
import pytest
import typer

import tiering.cli as cli
from tiering.cli.examples import EXAMPLES, attach_examples, leaf_commands
from tiering.db.connection import translate_error
from tiering.errors import DatabaseError


def root_command() -> Any:
    command = typer.main.get_command(cli.app)
    attach_examples(command)
    return command


def test_every_command_has_format_json_and_examples_that_parse() -> None:
    leaves = leaf_commands(root_command())
    assert len(leaves) >= 20
    missing, stale = sorted(set(leaves) - set(EXAMPLES)), sorted(set(EXAMPLES) - set(leaves))
    assert not missing, f"give these commands one or two examples in tiering/cli/examples.py: {missing}"
    assert not stale, f"tiering/cli/examples.py names commands that no longer exist: {stale}"
    for path, command in leaves.items():
        assert any("--format" in p.opts for p in command.params), f"{path} has no --format"
        assert 1 <= len(EXAMPLES[path]) <= 2 and "Examples:" in command.epilog, path
        for example in EXAMPLES[path]:
            words = [w for w in shlex.split(example) if "=" not in w or w.startswith("-")]
            assert words[0] == "tiering"
            flags, words = cli.split_global_flags(words[1:], {})
            words = [w for w in words if w != "--embedded"]
            assert " ".join(words).startswith(path), example
            args = words[len(path.split()):]
            ctx = command.make_context(path, list(args))  # parses options and arguments as the command would
            assert ctx.params is not None
            as_json = command.make_context(path, [*args, "--format", "json"])
            assert str(as_json.params["fmt"]) == "json", path


def test_global_flags_anywhere() -> None:
    flags, rest = cli.split_global_flags(["archive", "-v", "run", "--log-format", "json", "-q", "--queue", "x"], {})
    assert flags.verbose and flags.quiet and flags.log_format == "json" and not flags.json_output
    assert rest == ["archive", "run", "--queue", "x"]
    flags, rest = cli.split_global_flags(["archive", "list", "-f", "json", "--", "-v"], {"TIERING_LOG_FORMAT": "json"})
    assert flags.json_output and flags.log_format == "json" and not flags.verbose and rest[-2:] == ["--", "-v"]
    flags, _ = cli.split_global_flags(["archive", "list"], {"TIERING_FORMAT": "json"})
    assert flags.json_output
    flags, _ = cli.split_global_flags(["archive", "list", "--format=json", "--log-format=text"], {})
    assert flags.json_output and flags.log_format == "text"


def test_database_errors_that_escape_the_engine_exit_8(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    translated = translate_error(lost)
    assert isinstance(translated, DatabaseError) and translated.exit_code == 8 and translated.retryable
    assert translate_error(ValueError("x")) is None
    out_of_range = translate_error(psycopg.errors.NumericValueOutOfRange("bigint out of range"))
    assert out_of_range is not None and out_of_range.exit_code == 2 and "out of range" in str(out_of_range)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise lost

    monkeypatch.setattr("tiering.db.connection.resolve_database_url", fail)
    monkeypatch.setattr("tiering.context.resolve_database_url", fail)
    monkeypatch.setenv("TIERING_DATABASE_URL", "postgresql://x@127.0.0.1:1/y")
    with pytest.raises(SystemExit) as done:
        cli.main(["archive", "stats", "--format", "json"])
    assert done.value.code == 8
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["error"]["exit_code"] == 8 and "server closed the connection" in doc["error"]["message"]
    assert "error: unexpected" not in out.err and "error: the database failed" in out.err


def test_usage_errors_of_either_click_family_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """typer >= 0.29 raises its vendored click's exceptions, older typer click's own: both end as click's
    usage message and exit 2, never "unexpected"."""
    import importlib

    families = [importlib.import_module(m) for m in ("typer._click.exceptions", "click.exceptions")
                if importlib.util.find_spec(m.partition(".")[0]) is not None]  # fmt: skip
    assert families
    for family in families:
        def refuse(*args: Any, _family: Any = family, **kwargs: Any) -> Any:
            raise _family.UsageError("no such thing here")

        monkeypatch.setattr("tiering.context.Session.stop_embedded", refuse)
        with pytest.raises(SystemExit) as done:
            cli.main(["db", "stop", "--format", "json"])
        assert done.value.code == 2, family
        out = capsys.readouterr()
        assert "no such thing here" in out.err and "unexpected" not in out.err
        assert json.loads(out.out)["error"]["exit_code"] == 2


HEAVY_MODULES = ("psycopg", "pyarrow", "prometheus_client", "boto3", "duckdb", "fastapi", "zstandard")


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["archive", "list", "--help"], ["archive", "purge", "--older-than", "365"],
     ["archive", "list", "--archived-after", "not-a-date"], ["no-such-command"]],
)  # fmt: skip
def test_help_version_and_usage_errors_do_not_import_the_heavy_layers(argv: list[str]) -> None:
    """They start in a fraction of a second: the database, Arrow, S3 and metrics layers load when a command runs
    (each costs 0.1-1 s of start-up on a busy machine, and many tests spawn the CLI)."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom tiering.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
        f"    code = e.code\nprint(code, sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    code, _, loaded = done.stderr.strip().splitlines()[-1].partition(" ")
    assert loaded == "[]", done.stderr
    assert code == ("0" if argv[-1] in ("--help", "--version") else "2"), done.stderr
