"""`tiering archive run | flush | get-policy | set-policy | remove-policy` as a new user runs them: the installed
`tiering` executable in a subprocess, settings from TIERING_* variables, objects in a local folder."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import count
from tiering.demo import seed_demo_jobs

TIERING_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiering")
RUN_KEYS = {"jobs_archived", "by_queue", "bytes_original", "bytes_stored", "compression_ratio", "execution_time_s",
            "dry_run"}  # fmt: skip


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, Any]:
    objects = tmp_path / "objects"
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_"))}
    e.update(
        TIERING_DATABASE_URL=db_url,
        TIERING_STORE_URL=objects.as_uri(),
        TIERING_HOME=str(tmp_path / "home"),
        TIERING_INITIATED_BY="e2e",
        NO_COLOR="1",
    )
    with psycopg.connect(db_url) as conn:  # what `tiering demo seed --count 300 --days 40` inserts
        seed_demo_jobs(conn, 300, days=40)
        conn.commit()
    return {"env": e, "db": db_url, "objects": objects, "tmp": tmp_path}


def tiering(ctx: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIERING_BIN, *args],
        env={**ctx["env"], **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def state(ctx: dict[str, Any]) -> dict[str, Any]:
    with psycopg.connect(ctx["db"]) as conn:
        policies = conn.execute("SELECT name, policy::text FROM tiering_policies ORDER BY name").fetchall()
        return {
            "hot": count(conn, "hammerwork_jobs"),
            "staged": count(conn, "hammerwork_jobs_archive"),
            "committed": count(conn, "tiering_manifest", "state = 'committed'"),
            "policies": policies,
            "objects": sorted(p.name for p in ctx["objects"].rglob("*.parquet")) if ctx["objects"].exists() else [],
        }


def eligible_by_default(ctx: dict[str, Any]) -> int:
    """Terminal jobs past the default thresholds (Completed 7d, Failed 30d, Dead 14d, TimedOut 21d)."""
    with psycopg.connect(ctx["db"]) as conn:
        return count(
            conn,
            "hammerwork_jobs",
            """(status = 'Completed' AND completed_at < now() - interval '7 days')
            OR (status = 'Failed' AND failed_at < now() - interval '30 days')
            OR (status = 'Dead' AND failed_at < now() - interval '14 days')
            OR (status = 'TimedOut' AND timed_out_at < now() - interval '21 days')""",
        )


# --- archive run -------------------------------------------------------------------------------------
def on_stderr_terminal(ctx: dict[str, Any], *args: str) -> tuple[subprocess.Popen[str], str, bytes]:
    """Run with stderr on a pseudo-terminal (progress bars are drawn there) and stdout a pipe read whole:
    (process, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [TIERING_BIN, *args],
        env={**ctx["env"], "COLUMNS": "100"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc, out, terminal


def test_run_json_is_one_object_on_stdout_and_progress_goes_to_stderr(env: dict[str, Any]) -> None:
    eligible = eligible_by_default(env)
    assert eligible > 50
    proc, out, terminal = on_stderr_terminal(env, "archive", "run", "--format", "json")

    assert proc.returncode == 0, terminal.decode(errors="replace")
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert isinstance(doc, dict)
    assert RUN_KEYS <= set(doc), RUN_KEYS - set(doc)
    assert "jobs_that_would_be_archived" not in doc
    assert doc["dry_run"] is False
    assert doc["jobs_archived"] == eligible
    assert sum(doc["by_queue"].values()) == eligible
    assert doc["bytes_original"] > 0 and doc["bytes_stored"] > 0
    # one definition with `stats`: the flushed objects' bytes / their original payload bytes
    flushed = doc["flush"]
    assert doc["compression_ratio"] == pytest.approx(
        flushed["bytes_written"] / flushed["payload_original_bytes"], abs=1e-3
    )
    assert doc["staging_compression_ratio"] == pytest.approx(doc["bytes_stored"] / doc["bytes_original"], abs=1e-3)
    assert doc["flush"]["jobs_flushed"] == eligible
    assert "━".encode() in terminal and f"/{eligible}".encode() in terminal  # progress bars went to the terminal
    assert f"{eligible}/{eligible}".encode() in terminal.replace(b" ", b"")  # the flush bar has its total too
    assert b"/?" not in terminal and b".py:" not in terminal  # no unknown totals, no source locations
    assert b"{" not in terminal  # ... and nothing of the JSON did
    s = state(env)
    assert s["staged"] == 0 and s["committed"] == doc["flush"]["objects_written"] == len(s["objects"])


def test_run_no_flush_on_a_terminal_shows_the_staging_moves_total(env: dict[str, Any]) -> None:
    """--no-flush takes the staging path, which has no scan of its own: its bar still has the total from the start."""
    eligible = eligible_by_default(env)
    assert eligible > 50
    proc, out, terminal = on_stderr_terminal(env, "archive", "run", "--no-flush", "--format", "json")

    assert proc.returncode == 0, terminal.decode(errors="replace")
    doc = json.loads(out)
    assert doc["jobs_archived"] == eligible and "flush" not in doc
    assert f"{eligible}/{eligible}".encode() in terminal.replace(b" ", b"")
    assert b"/?" not in terminal and b"flushed" not in terminal
    assert state(env)["committed"] == 0


def test_demo_seed_then_run_logs_on_stderr_only_without_a_terminal(env: dict[str, Any]) -> None:
    plain = tiering(env, "demo", "seed", "--count", "100", "--days", "40", "--no-history")
    assert plain.returncode == 0, plain.stderr
    assert state(env)["hot"] == 400 and state(env)["staged"] == 0  # without history: all 100 are hot
    # with history (the default), the terminal jobs older than 30 days are already in Hammerwork's archive
    seeded = tiering(env, "demo", "seed", "--count", "100", "--days", "40", "--format", "json")
    assert seeded.returncode == 0, seeded.stderr
    doc = json.loads(seeded.stdout)
    assert doc["seeded"] == 100 == doc["hot"] + doc["archived"] and doc["existing"] == 400
    s = state(env)
    assert doc["archived"] > 0 and s["staged"] == doc["archived"] and s["hot"] == 400 + doc["hot"]
    done = tiering(env, "archive", "run", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["jobs_archived"] > 0
    assert "policy: defaults" in done.stderr  # the log line went to stderr, not into the JSON


def test_dry_run_reports_and_changes_nothing(env: dict[str, Any]) -> None:
    before = state(env)
    eligible = eligible_by_default(env)
    for args, extra in ((("--dry-run",), {}), ((), {"TIERING_DRY_RUN": "1"})):
        dry = tiering(env, "archive", "run", *args, "--format", "json", **extra)
        assert dry.returncode == 0, dry.stderr
        doc = json.loads(dry.stdout)
        assert doc["dry_run"] is True
        assert doc["jobs_that_would_be_archived"] == eligible
        assert RUN_KEYS <= set(doc)
        assert "flush" not in doc
        assert state(env) == before


def test_queue_from_the_environment(env: dict[str, Any]) -> None:
    done = tiering(env, "archive", "run", "--format", "json", TIERING_QUEUE="email_queue")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc["by_queue"]) == {"email_queue"} and doc["jobs_archived"] > 0
    with psycopg.connect(env["db"]) as conn:
        queues = {r[0] for r in conn.execute("SELECT DISTINCT queue_name FROM tiering_manifest")}
    assert queues == {"email_queue"}


def test_no_flush_leaves_rows_staged_then_flush_moves_them(env: dict[str, Any]) -> None:
    staged = tiering(env, "archive", "run", "--no-flush", "--format", "json")
    assert staged.returncode == 0, staged.stderr
    doc = json.loads(staged.stdout)
    assert "flush" not in doc
    s = state(env)
    assert s["staged"] == doc["jobs_archived"] > 0 and s["committed"] == 0 and s["objects"] == []

    flushed = tiering(env, "archive", "flush", "--format", "json")
    assert flushed.returncode == 0, flushed.stderr
    f = json.loads(flushed.stdout)
    assert f["jobs_flushed"] == doc["jobs_archived"]
    s = state(env)
    assert s["staged"] == 0 and s["committed"] == f["objects_written"] == len(s["objects"]) > 0

    again = tiering(env, "archive", "run", "--format", "json", TIERING_NO_FLUSH="1")
    assert again.returncode == 0 and "flush" not in json.loads(again.stdout)


# --- policies ----------------------------------------------------------------------------------------
GOOD_POLICY = {
    "archive_completed_after": "2d",
    "archive_failed_after": "P10D",
    "batch_size": 50,
    "queue_policies": {"critical_queue": "90d"},
    "storage_classes": [{"status": "Failed", "storage_class": "STANDARD_IA"}],
    "config": {"compression_level": 5},
}


def test_policy_round_trip(env: dict[str, Any]) -> None:
    defaults = tiering(env, "archive", "get-policy")
    assert defaults.returncode == 0, defaults.stderr
    default_doc = json.loads(defaults.stdout)
    assert default_doc["archive_completed_after"] == "7d"

    path = env["tmp"] / "policy.json"
    path.write_text(json.dumps(GOOD_POLICY))
    stored = tiering(env, "archive", "set-policy", "--file", str(path))
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout == ""
    doc = json.loads(tiering(env, "archive", "get-policy").stdout)
    assert doc["archive_completed_after"] == "2d"
    assert doc["archive_failed_after"] == "10d"
    assert doc["batch_size"] == 50
    assert doc["queue_policies"] == {"critical_queue": "90d"}
    assert doc["storage_classes"] == [{"status": "Failed", "storage_class": "STANDARD_IA"}]
    assert doc["config"]["compression_level"] == 5
    assert doc["archive_dead_after"] == default_doc["archive_dead_after"]  # unspecified fields keep defaults

    # a run uses the stored policy: Completed jobs 2-7 days old now qualify
    run = json.loads(tiering(env, "archive", "run", "--dry-run", "--format", "json").stdout)
    assert run["jobs_that_would_be_archived"] > eligible_by_default(env)

    removed = tiering(env, "archive", "remove-policy", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(tiering(env, "archive", "get-policy").stdout) == default_doc
    twice = tiering(env, "archive", "remove-policy", "--yes")
    assert twice.returncode == 0 and "no stored policy" in twice.stderr


BAD_POLICIES = [
    pytest.param({"archive_completed_afterr": "7d"}, "archive_completed_afterr", id="unknown-field"),
    pytest.param({"archive_failed_after": "-5d"}, "archive_failed_after", id="negative-duration"),
    pytest.param({"archive_failed_after": -5}, "archive_failed_after", id="negative-seconds"),
    pytest.param({"archive_dead_after": "soon"}, "archive_dead_after", id="unparsable-duration"),
    pytest.param({"batch_size": 0}, "batch_size", id="batch-size-0"),
    pytest.param(
        {"storage_classes": [{"status": "Exploded", "storage_class": "STANDARD_IA"}]},
        "storage_classes[0].status",
        id="unknown-status",
    ),
    pytest.param(
        {"storage_classes": [{"status": "Failed", "storage_class": "COLD_AS_ICE"}]},
        "storage_classes[0].storage_class",
        id="unknown-storage-class",
    ),
    pytest.param('{"batch_size": 10,', "JSON", id="invalid-json"),
]


@pytest.mark.parametrize(("document", "field"), BAD_POLICIES)
def test_bad_policy_file_exits_2_names_the_field_and_changes_nothing(
    env: dict[str, Any], document: Any, field: str
) -> None:
    good = env["tmp"] / "good.json"
    good.write_text(json.dumps(GOOD_POLICY))
    assert tiering(env, "archive", "set-policy", "--file", str(good)).returncode == 0
    before = state(env)  # includes the stored policy document
    bad = env["tmp"] / "bad.json"
    bad.write_text(document if isinstance(document, str) else json.dumps(document))

    for args in (("archive", "set-policy", "--file", str(bad)), ("archive", "run", "--policy", str(bad))):
        done = tiering(env, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert field in done.stderr, done.stderr
        assert str(bad) in done.stderr  # where the problem is
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert state(env) == before
    via_env = tiering(env, "archive", "run", "--format", "json", TIERING_POLICY=str(bad))
    assert via_env.returncode == 2 and field in via_env.stderr
    assert state(env) == before


def test_remove_policy_without_yes_and_without_a_terminal_refuses(env: dict[str, Any]) -> None:
    good = env["tmp"] / "good.json"
    good.write_text(json.dumps(GOOD_POLICY))
    assert tiering(env, "archive", "set-policy", "--file", str(good)).returncode == 0
    stored = tiering(env, "archive", "get-policy").stdout

    refused = tiering(env, "archive", "remove-policy")

    assert refused.returncode == 6, (refused.stdout, refused.stderr)
    assert "--yes" in refused.stderr
    assert tiering(env, "archive", "get-policy").stdout == stored
