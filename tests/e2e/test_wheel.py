"""The built wheel works anywhere: built from the checkout, installed into a fresh virtual environment (packages
from the index, as `pip install` / `pipx` / `uv tool install` would get them) and run from a folder outside the
checkout, so nothing can be read from the source tree. Migrations, the policy schema and the dashboard's files
must all come from inside the wheel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import count
from tiering import __version__

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """tiering[service] from a freshly built wheel in a fresh venv (no analyst extra: its absence is tested)."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(work / "dist")],
                 cwd=work, timeout=600)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("tiering-*.whl")
    venv = work / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    made = _run([base_python, "-m", "venv", str(venv)], timeout=300)
    assert made.returncode == 0, made.stderr
    started = time.monotonic()
    done = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[service]"], cwd=work,
                timeout=1200)  # fmt: skip
    if done.returncode != 0 and ("Could not find a version" in done.stderr or "NewConnectionError" in done.stderr):
        pytest.skip(f"no package index: the wheel's dependencies cannot be installed ({done.stderr[-500:]})")
    assert done.returncode == 0, done.stderr[-3000:]
    install_seconds = time.monotonic() - started
    (work / "install_seconds.txt").write_text(f"{install_seconds:.1f}\n")  # for the closing note, never asserted
    run_dir = work / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TIERING_", "AWS_", "PYTHON", "VIRTUAL_ENV")) and k != "DATABASE_URL"}  # fmt: skip
    env.update(PATH=f"{venv / 'bin'}:/usr/bin:/bin", NO_COLOR="1", HOME=str(work))
    yield {"venv": venv, "bin": venv / "bin" / "tiering", "cwd": run_dir, "env": env, "wheel": wheel}


def tiering(inst: dict[str, Any], *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return _run([str(inst["bin"]), *args], cwd=inst["cwd"], env={**inst["env"], **env}, timeout=timeout)


def test_the_wheel_carries_its_runtime_files_and_runs_from_its_own_install(installed: dict[str, Any]) -> None:
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {"tiering/sql/0001_core.sql", "tiering/sql/hammerwork/hammerwork_jobs.sql", "tiering/policy.schema.json",
            "tiering/service/static/index.html", "tiering/service/static/app.js"} <= names  # fmt: skip
    assert not any(n.startswith(("tests/", "schemas/", "bench/")) for n in names)
    version = tiering(installed, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tiering {__version__}", version.stderr
    where = _run([str(installed["venv"] / "bin" / "python"), "-c", "import tiering; print(tiering.__file__)"],
                 cwd=installed["cwd"], env=installed["env"], timeout=60)  # fmt: skip
    assert where.stdout.strip().startswith(str(installed["venv"])), where.stdout
    assert str(ROOT) not in where.stdout


def test_installed_archive_run_migrates_a_fresh_database_and_archives(
    installed: dict[str, Any], empty_db_url: str, tmp_path: Path
) -> None:
    objects = tmp_path / "objects"
    env = {"TIERING_DATABASE_URL": empty_db_url, "TIERING_STORE_URL": objects.as_uri()}
    seeded = tiering(installed, "demo", "seed", "--count", "400", "--format", "json", **env)
    assert seeded.returncode == 0, seeded.stderr
    assert json.loads(seeded.stdout)["seeded"] == 400
    run = tiering(installed, "archive", "run", "--no-purge", "--format", "json", **env)
    assert run.returncode == 0, run.stderr
    moved = json.loads(run.stdout)["jobs_archived"]
    assert moved > 0
    with psycopg.connect(empty_db_url) as conn:
        assert count(conn, "tiering_job_index") == json.loads(run.stdout)["flush"]["jobs_flushed"] > 0
        versions = [r[0] for r in conn.execute("SELECT version FROM tiering_schema_migrations ORDER BY 1")]
    assert versions and versions[0] == "0001_core"
    assert list(objects.rglob("*.parquet"))
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text('{"batch_size": 0, "surprise": 1}')
    refused = tiering(installed, "archive", "set-policy", "--file", str(bad_policy), **env)
    assert refused.returncode == 2 and "batch_size" in refused.stderr and "surprise" in refused.stderr, refused.stderr
    no_duckdb = tiering(installed, "analyst", "duckdb", "-c", "select 1", **env)
    assert no_duckdb.returncode == 2 and "pip install 'tiering[analyst]'" in no_duckdb.stderr, no_duckdb.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_installed_serve_serves_the_dashboard(installed: dict[str, Any], db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**installed["env"], "TIERING_DATABASE_URL": db_url, "TIERING_STORE_URL": (tmp_path / "o").as_uri()}
    server = subprocess.Popen(
        [str(installed["bin"]), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler",
         "--log-format", "json"],
        cwd=installed["cwd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "tiering serve did not answer within 60 s"
                time.sleep(0.3)
        with urllib.request.urlopen(f"{base}/archive", timeout=10) as r:
            page = r.read().decode()
            assert r.status == 200 and r.headers["content-type"].startswith("text/html")
        assert "<html" in page.lower() and "app.js" in page
        with urllib.request.urlopen(f"{base}/archive/static/app.js", timeout=10) as r:
            assert r.status == 200 and len(r.read()) > 1000
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # stderr: one JSON object a line
    assert any(ln["logger"] == "uvicorn.access" and "GET /archive " in ln["message"] for ln in lines), err[-2000:]
