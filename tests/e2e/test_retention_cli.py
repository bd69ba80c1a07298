"""`tiering archive purge | erase | stats` and `tiering audit` as a user runs them (subprocess, no terminal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from tests.integration.test_purge import BASE, DAY, NOW, Spec, committed_keys, live_index, make_jobs, object_keys
from tiering.cli.retention import parse_cutoff

CLI = [sys.executable, "-c", "from tiering.cli import main; main()"]


@pytest.fixture
def env(s3_settings_factory: Any, db_url: str) -> dict[str, Any]:
    t = s3_settings_factory("local")
    t.settings = t.settings.with_overrides(database_url=db_url)
    specs = [Spec("q1", "Completed", BASE - d * DAY, {"customer": {"id": d}}) for d in (3, 3, 4)]
    specs += [Spec("q2", "Failed", NOW - 2 * DAY, {"customer": {"id": 7}})]
    ids = make_jobs(db_url, specs, flush=(t.store, t.settings))
    e = {k: v for k, v in os.environ.items() if not k.startswith("TIERING_")}
    e.update(TIERING_DATABASE_URL=db_url, TIERING_STORE_URL=t.settings.resolved_store_url,
             TIERING_HOME=str(t.settings.home), TIERING_INITIATED_BY="e2e")  # fmt: skip
    return {"env": e, "store": t.store, "ids": ids, "db": db_url}


def run(env: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env["env"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


def test_purge_without_terminal_refuses_unless_yes_or_dry_run(env: dict[str, Any]) -> None:
    before = object_keys(env["store"])
    refused = run(env, "archive", "purge", "--older-than", "365d")
    assert refused.returncode == 6, refused.stderr
    assert "--yes" in refused.stderr and "terminal" in refused.stderr
    assert object_keys(env["store"]) == before and len(live_index(env["db"])) == 4

    dry = run(env, "archive", "purge", "--older-than", "30 days", "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    preview = json.loads(dry.stdout)["preview"]
    assert preview["jobs_to_purge"] == 3 and preview["objects_to_delete"] == 2
    assert object_keys(env["store"]) == before

    capped = run(env, "archive", "purge", "--older-than", "30d", "--yes", "--max-jobs", "2")
    assert capped.returncode == 6 and "max-jobs" in capped.stderr
    assert object_keys(env["store"]) == before

    done = run(env, "archive", "purge", "--older-than", (NOW - 30 * DAY).date().isoformat(), "--yes", "-f", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["jobs_purged"] == 3 and data["objects_deleted"] == 2 and data["delete_calls"] == 1
    assert object_keys(env["store"]) == committed_keys(env["db"]) and len(object_keys(env["store"])) == 1


def test_erase_stats_audit(env: dict[str, Any]) -> None:
    refused = run(env, "archive", "erase", "--match", "customer.id=3")
    assert refused.returncode == 6
    erased = run(env, "archive", "erase", "--match", "customer.id=3", "--yes", "--request-ref", "R1", "-f", "json")
    assert erased.returncode == 0, erased.stderr
    data = json.loads(erased.stdout)
    assert data["jobs_erased"] == 2 and data["objects_deleted"] == 1
    assert set(live_index(env["db"])) == {env["ids"][2], env["ids"][3]}

    stats = run(env, "archive", "stats", "--format", "json")
    assert stats.returncode == 0, stats.stderr
    s = json.loads(stats.stdout)
    assert s["tiers"]["cold"]["jobs"] == 2 and s["total"]["jobs_erased_to_date"] == 2
    table = run(env, "archive", "stats", "--detailed")
    assert table.returncode == 0 and "ESTIMATED" in table.stdout

    # --watch with JSON: one document per tick, one per line, until interrupted
    proc = subprocess.Popen(
        [*CLI, "archive", "stats", "--watch", "--interval", "0.3s", "--format", "json"],
        env=env["env"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert all(json.loads(line)["tiers"]["cold"]["jobs"] == 2 for line in lines)

    audit = run(env, "audit", "--format", "json", "--operation", "erase")
    assert audit.returncode == 0, audit.stderr
    rows = json.loads(audit.stdout)
    assert len(rows) == 1 and rows[0]["parameters"]["request_ref"] == "R1" and rows[0]["initiated_by"] == "e2e"
    everything = json.loads(run(env, "audit", "--format", "json", "--since", "1d").stdout)
    assert {"archive", "flush", "erase"} <= {r["operation"] for r in everything}
    assert run(env, "audit").returncode == 0
    with psycopg.connect(env["db"]) as conn:
        row = conn.execute("SELECT count(*) FROM tiering_operations WHERE operation = 'erase'").fetchone()
    assert row is not None and row[0] == 1  # the refused run never started an operation


def test_parse_cutoff() -> None:
    now = NOW
    assert parse_cutoff("365 days", now) == now - 365 * DAY
    assert parse_cutoff("365d", now) == now - 365 * DAY
    assert parse_cutoff("2024-01-31", now).isoformat() == "2024-01-31T00:00:00+00:00"
    assert parse_cutoff("2024-01-31T12:00:00Z", now).hour == 12
