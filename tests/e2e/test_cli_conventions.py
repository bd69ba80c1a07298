"""Conventions every `tiering` command keeps, checked on the installed executable as a user runs it:
usage errors exit 2 with click's usage message, typed input never ends in "unexpected ...", ages need a unit."""

from __future__ import annotations

import os
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
    home = tmp_path / "home"
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
