"""tiering.metrics: the run series built from engine result documents, their textfile and Pushgateway forms."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tiering.metrics import RunSignals, report_run

RUN_RESULT: dict[str, Any] = {
    "jobs_archived": 120,
    "bytes_original": 50_000,
    "bytes_stored": 9_000,
    "dry_run": False,
    "execution_time_s": 1.5,
    "flush": {"jobs_flushed": 118, "bytes_written": 7_000, "execution_time_s": 0.75},
    "purge": {"jobs_purged": 40, "storage_freed": 3_000, "dry_run": False, "execution_time_s": 0.25},
}


def samples(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str | bytes, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_an_archive_run_counts_its_archive_flush_and_purge() -> None:
    s = RunSignals()
    s.record("archive", RUN_RESULT, 2.5, now=1_000.0)
    text = s.render()
    assert value(text, "tiering_jobs_total", operation="archive") == 120
    assert value(text, "tiering_jobs_total", operation="flush") == 118
    assert value(text, "tiering_jobs_total", operation="purge") == 40
    assert value(text, "tiering_bytes_total", operation="archive") == 50_000
    assert value(text, "tiering_bytes_total", operation="flush") == 7_000
    assert value(text, "tiering_bytes_total", operation="purge") == 3_000
    for op in ("archive", "flush", "purge"):
        assert value(text, "tiering_last_success_timestamp_seconds", operation=op) == 1_000.0
        assert value(text, "tiering_runs_total", operation=op, outcome="success") == 1
    assert value(text, "tiering_last_run_duration_seconds", operation="archive") == 2.5
    assert value(text, "tiering_last_run_duration_seconds", operation="flush") == 0.75
    assert value(text, "tiering_last_run_jobs", operation="flush") == 118


def test_api_and_scheduler_names_map_to_operations_and_dry_runs_count_nothing() -> None:
    s = RunSignals()
    s.record("run", {"jobs_archived": 3, "dry_run": False}, 0.1, now=5.0)
    s.record("purge", {"jobs_purged": 999, "dry_run": True}, 0.1, now=6.0)
    s.record("purge", {"skipped_reason": "no purge age"}, 0.1, now=6.0)
    s.record("restore", {"restored": True, "dry_run": False}, now=7.0)
    s.record("restore", {"restored": 5, "dry_run": False}, now=8.0)
    got = samples(s.render())
    assert got[("tiering_jobs_total", (("operation", "archive"),))] == 3
    assert got[("tiering_jobs_total", (("operation", "restore"),))] == 6
    assert not any(labels == (("operation", "purge"),) for _, labels in got)
    assert got[("tiering_last_success_timestamp_seconds", (("operation", "restore"),))] == 8.0


def test_textfile_carries_counters_on_and_a_failure_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "tiering.prom"
    assert report_run("archive_run", [("archive", RUN_RESULT, 2.0, True)], metrics_file=path, now=100.0) == []
    assert report_run("archive_run", [("archive", RUN_RESULT, 2.0, True)], metrics_file=path, now=200.0) == []
    text = path.read_text()
    assert value(text, "tiering_jobs_total", operation="archive") == 240
    assert value(text, "tiering_runs_total", operation="flush", outcome="success") == 2
    assert value(text, "tiering_last_success_timestamp_seconds", operation="archive") == 200.0

    assert report_run("archive_run", [("archive", None, 3.0, False)], metrics_file=path, now=300.0) == []
    text = path.read_text()
    assert value(text, "tiering_last_success_timestamp_seconds", operation="archive") == 200.0
    assert value(text, "tiering_last_failure_timestamp_seconds", operation="archive") == 300.0
    assert value(text, "tiering_runs_total", operation="archive", outcome="failure") == 1
    assert value(text, "tiering_jobs_total", operation="archive") == 240
    assert not list(tmp_path.glob(".*tmp")), "the temp file is renamed into place"


def test_textfile_that_is_not_prometheus_text_is_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "tiering.prom"
    path.write_text("this is {not prometheus\n")
    problems = report_run("archive_flush", [("flush", {"jobs_flushed": 4}, 1.0, True)], metrics_file=path, now=1.0)
    assert len(problems) == 1 and "afresh" in problems[0]
    assert value(path.read_text(), "tiering_jobs_total", operation="flush") == 4


class _Recorder(BaseHTTPRequestHandler):
    pushes: list[dict[str, Any]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).pushes.append({"method": self.command, "path": self.path, "body": body.decode()})
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT = _record

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("Recorder", (_Recorder,), {"pushes": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.pushes
    server.shutdown()
    server.server_close()


def test_push_posts_the_same_names_under_job_and_command(pushgateway: tuple[str, list[dict[str, Any]]]) -> None:
    url, pushes = pushgateway
    assert report_run("archive_run", [("archive", RUN_RESULT, 2.0, True)], pushgateway_url=url, now=50.0) == []
    assert len(pushes) == 1
    push = pushes[0]
    assert push["method"] == "POST"  # only the families sent are replaced in the group
    assert push["path"] == "/metrics/job/tiering/command/archive_run"
    assert value(push["body"], "tiering_jobs_total", operation="flush") == 118
    assert value(push["body"], "tiering_last_success_timestamp_seconds", operation="archive") == 50.0

    assert report_run("archive_run", [("archive", None, 1.0, False)], pushgateway_url=url, now=60.0) == []
    failed = samples(pushes[1]["body"])
    assert not any(name == "tiering_last_success_timestamp_seconds" for name, _ in failed), (
        "a failed run must not send the success family (the gateway keeps the earlier success)"
    )
    assert failed[("tiering_last_failure_timestamp_seconds", (("operation", "archive"),))] == 60.0


def test_an_unreachable_pushgateway_is_a_problem_not_an_exception() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problems = report_run(
        "archive_run", [("archive", RUN_RESULT, 1.0, True)], pushgateway_url=f"http://127.0.0.1:{port}"
    )
    assert len(problems) == 1 and "cannot push metrics" in problems[0]
