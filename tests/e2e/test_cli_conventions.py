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
