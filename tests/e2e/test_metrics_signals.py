"""Signals for unattended runs: `--metrics-file` and TIERING_PUSHGATEWAY_URL on the commands that move or
delete data (the installed CLI in a subprocess), and `serve`'s /metrics with the same names, reachable without
the API token on a second port (TIERING_METRICS_PORT) or on the main one (TIERING_METRICS_OPEN)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_api import free_port, start_api_server
from tests.e2e.test_archive_cli import env, tiering  # noqa: F401 - the `env` fixture
from tests.helpers import count, insert_job


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def one(text: str, name: str, **labels: str) -> float:
    return values(text)[(name, tuple(sorted(labels.items())))]


class _Recorder(BaseHTTPRequestHandler):
    pushes: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.pushes.append({"method": self.command, "path": self.path, "body": body.decode()})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    pushes: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Recorder", (_Recorder,), {"pushes": pushes}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pushes
    server.shutdown()
    server.server_close()


def test_archive_run_writes_its_textfile_and_pushes_the_same(
    env: dict[str, Any],  # noqa: F811
    pushgateway: tuple[str, list[dict[str, Any]]],
) -> None:
    url, pushes = pushgateway
    prom = env["tmp"] / "textfile" / "tiering.prom"
    prom.parent.mkdir()
    before = time.time()
    r = tiering(env, "archive", "run", "--metrics-file", str(prom), TIERING_PUSHGATEWAY_URL=url)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(env["db"]) as conn:
        archived = count(conn, "tiering_job_index")
    assert archived > 0
    text = prom.read_text()
    assert one(text, "tiering_jobs_total", operation="archive") == archived
    assert one(text, "tiering_jobs_total", operation="flush") == archived
    assert one(text, "tiering_bytes_total", operation="flush") > 0
    assert one(text, "tiering_last_success_timestamp_seconds", operation="archive") >= before
    assert one(text, "tiering_runs_total", operation="archive", outcome="success") == 1
    assert len(pushes) == 1 and pushes[0]["path"] == "/metrics/job/tiering/command/archive_run"
    assert values(pushes[0]["body"]) == values(text)
    success_at = one(text, "tiering_last_success_timestamp_seconds", operation="archive")

    # a failing run (the database is gone) keeps the last success and adds the failure
    r = tiering(env, "archive", "run", "--metrics-file", str(prom),
                TIERING_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")  # fmt: skip
    assert r.returncode != 0
    text = prom.read_text()
    assert one(text, "tiering_last_success_timestamp_seconds", operation="archive") == success_at
    assert one(text, "tiering_last_failure_timestamp_seconds", operation="archive") >= success_at
    assert one(text, "tiering_runs_total", operation="archive", outcome="failure") == 1
    assert one(text, "tiering_jobs_total", operation="archive") == archived


def test_purge_and_erase_write_their_metrics(env: dict[str, Any]) -> None:  # noqa: F811
    prom = env["tmp"] / "retention.prom"
    assert tiering(env, "archive", "run", "--no-purge").returncode == 0
    r = tiering(env, "archive", "purge", "--older-than", "0d", "--yes", "--metrics-file", str(prom))
    assert r.returncode == 0, r.stderr
    with psycopg.connect(env["db"]) as conn:
        purged = conn.execute(
            "SELECT coalesce(sum((counts->>'jobs_purged')::int), 0) FROM tiering_operations WHERE operation = 'purge'"
        ).fetchone()
    assert purged is not None and purged[0] > 0
    assert one(prom.read_text(), "tiering_jobs_total", operation="purge") == purged[0]
    assert one(prom.read_text(), "tiering_bytes_total", operation="purge") > 0

    with psycopg.connect(env["db"]) as conn:
        insert_job(conn, queue="erase_q", status="Pending", payload={"customer": {"id": "erase-me"}})
        conn.commit()
    r = tiering(env, "archive", "erase", "--match", "customer.id=erase-me", "--yes", "--metrics-file", str(prom))
    assert r.returncode == 0, r.stderr
    text = prom.read_text()
    assert one(text, "tiering_jobs_total", operation="erase") == 1
    assert one(text, "tiering_jobs_total", operation="purge") == purged[0], "the purge series are carried on"


def test_serve_metrics_without_token_on_a_second_port(db_url: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    with start_api_server(db_url, tmp_path, {"TIERING_METRICS_PORT": str(metrics_port)}) as srv:
        with srv.client() as api:
            r = api.post("/api/archive/run", json={"flush": False, "wait_seconds": 60})
            assert r.status_code == 200, r.text
        assert httpx.get(srv.base + "/metrics", timeout=10).status_code == 401, "the main port still needs a token"
        r = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert r.status_code == 200
        text = r.text
        assert one(text, "tiering_runs_total", operation="archive", outcome="success") == 1
        assert one(text, "tiering_last_success_timestamp_seconds", operation="archive") > time.time() - 600
        assert one(text, "tiering_database_up") == 1
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/api/archive/stats", timeout=10).status_code == 404


def test_serve_metrics_open_on_the_main_port_when_configured(db_url: str, tmp_path: Path) -> None:
    with start_api_server(db_url, tmp_path, {"TIERING_METRICS_OPEN": "1"}) as srv:
        r = httpx.get(srv.base + "/metrics", timeout=10)
        assert r.status_code == 200 and "tiering_database_up 1.0" in r.text
        assert httpx.get(srv.base + "/api/archive/stats", timeout=10).status_code == 401


def test_the_scheduler_reports_each_run_like_a_cron_job(db_url: str, tmp_path: Path) -> None:
    """`tiering schedule --metrics-file F`: each scheduled run goes through the same report as a cron run."""
    from datetime import UTC, datetime, timedelta

    from tests.helpers import session_for
    from tiering.metrics import report_run
    from tiering.service.app import build_scheduler
    from tiering.settings import Settings

    with psycopg.connect(db_url) as conn:
        for _ in range(3):
            insert_job(conn, queue="sched-metrics")
        conn.commit()
    ctx = session_for(db_url, settings=Settings(database_url=db_url, home=tmp_path, workers=1,
                                                store_url=(tmp_path / "objects").as_uri(),
                                                schedules={"archive": "* * * * *"}))  # fmt: skip
    prom = tmp_path / "schedule.prom"

    def report(task: str, result: dict[str, Any] | None, seconds: float, ok: bool) -> None:
        assert report_run("schedule", [(task, result, seconds, ok)], metrics_file=prom) == []

    scheduler = build_scheduler(ctx, report=report, instance="m")
    now = datetime.now(UTC)
    assert [r.outcome for r in scheduler.tick(now - timedelta(minutes=1))] == ["baseline"]
    assert not prom.exists(), "a baseline tick runs nothing and reports nothing"
    assert [r.outcome for r in scheduler.tick(now)] == ["succeeded"]
    text = prom.read_text()
    assert one(text, "tiering_jobs_total", operation="archive") == 3
    assert one(text, "tiering_jobs_total", operation="flush") == 3
    assert one(text, "tiering_runs_total", operation="archive", outcome="success") == 1
