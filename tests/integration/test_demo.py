"""The demo data the README's examples rely on: its queues and customer ids, an archive history written as
Hammerwork's archiver writes it (archived_at over many months), and tiering settles that history into Parquet."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg

from tests.helpers import count
from tiering.demo import QUEUES, seed_demo_jobs

TIERING_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiering")


def test_history_goes_to_the_archive_table_as_hammerwork_leaves_it(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        inserted = seed_demo_jobs(conn, 3000, days=730, history=True)
        conn.commit()
        hot, staged = count(conn, "hammerwork_jobs"), count(conn, "hammerwork_jobs_archive")
        assert inserted == hot + staged == 3000
        # terminal jobs older than 30 days are archived, nothing else is
        old_terminal = ("status IN ('Completed','Failed','Dead','TimedOut') "
                        "AND coalesce(completed_at, failed_at, timed_out_at) < now() - interval '30 days'")  # fmt: skip
        assert count(conn, "hammerwork_jobs", old_terminal) == 0
        assert count(conn, "hammerwork_jobs_archive", "status NOT IN ('Completed','Failed','Dead','TimedOut')") == 0
        assert staged > hot
        months, newest, by = conn.execute(
            "SELECT count(DISTINCT date_trunc('month', archived_at)), max(archived_at) <= now(), "
            "min(archived_by) || max(archived_by) FROM hammerwork_jobs_archive"
        ).fetchone()  # type: ignore[misc]
        assert months >= 20 and newest and by == "hammerworkhammerwork"
        archive = "hammerwork_jobs_archive"
        assert count(conn, archive, "payload_compressed OR original_payload_size <> length(payload)") == 0
        assert count(conn, archive, "priority NOT IN ('background','low','normal','high','critical')") == 0
        payload = conn.execute("SELECT convert_from(payload, 'UTF8') FROM hammerwork_jobs_archive LIMIT 1").fetchone()
        assert payload is not None and set(json.loads(payload[0])) >= {"customer", "order_id", "email"}
        queues = {r[0] for r in conn.execute("SELECT DISTINCT queue_name FROM hammerwork_jobs_archive")}
        assert queues == set(QUEUES)
        customers = "convert_from(payload, 'UTF8')::jsonb #>> '{customer,id}' = '12345'"
        assert count(conn, "hammerwork_jobs_archive", customers) + count(
            conn, "hammerwork_jobs", "payload #>> '{customer,id}' = '12345'"
        ) > 0

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_")) and k != "DATABASE_URL"}
    env.update(TIERING_DATABASE_URL=db_url, TIERING_STORE_URL=(tmp_path / "objects").as_uri(), NO_COLOR="1")
    run = subprocess.run([TIERING_BIN, "archive", "run", "--no-purge", "--format", "json"], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs_archive") == 0
        assert count(conn, "tiering_job_index") == staged + json.loads(run.stdout)["jobs_archived"]


def test_without_history_every_job_is_hot(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert seed_demo_jobs(conn, 500, days=730) == 500
        assert count(conn, "hammerwork_jobs") == 500 and count(conn, "hammerwork_jobs_archive") == 0
