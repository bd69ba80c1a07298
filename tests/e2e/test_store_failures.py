"""Failures a cron run meets before or while it touches the store or the database, through the installed
`tiering` executable: a missing bucket stops `archive run` before any job moves (exit 7); a store URL with
control characters or `..` segments is a usage error (exit 2); an S3 endpoint or a PostgreSQL server that
accepts TCP and never answers fails within the configured deadline (exit 7 / exit 8), not after minutes.

The probes' durations are printed (`-s` shows them) for the notes; they are never asserted: the only bound
is the subprocess timeout, far above the configured deadlines.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.fixtures_s3 import S3Server
from tests.helpers import count, insert_job, session_for
from tiering.engine.archive import archive_jobs
from tiering.policy import ArchivalConfig, ArchivalPolicy

TIERING_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiering")
PROBE_TIMEOUT = 120  # generous: the deadlines below are 2-3 s; a hang would take minutes


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_", "DATABASE_URL"))}
    env.update(TIERING_HOME=str(tmp_path / "home"), TIERING_INITIATED_BY="e2e", NO_COLOR="1",
               AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    return env


def tiering(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run([TIERING_BIN, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=PROBE_TIMEOUT)  # fmt: skip
    elapsed = time.monotonic() - started
    said = out.stderr.strip()[-300:]
    print(f"\n[probe] tiering {' '.join(args)}: exit {out.returncode} after {elapsed:.1f} s: {said}")
    return out, elapsed


def _hot_jobs(db_url: str, n: int = 20) -> set[uuid.UUID]:
    with psycopg.connect(db_url) as conn:
        ids = {insert_job(conn, queue="mail", age=timedelta(days=30)) for _ in range(n)}
        conn.commit()
    return ids


def _counts(db_url: str) -> tuple[int, int, int]:
    with psycopg.connect(db_url) as conn:
        return (count(conn, "hammerwork_jobs"), count(conn, "hammerwork_jobs_archive"),
                count(conn, "tiering_manifest"))  # fmt: skip


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (an endpoint that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# --- store preflight -----------------------------------------------------------------------------------
def test_run_with_a_missing_bucket_exits_7_with_nothing_moved(db_url: str, moto_server: S3Server,
                                                              tmp_path: Path) -> None:  # fmt: skip
    _hot_jobs(db_url)
    before = _counts(db_url)
    env = _base_env(tmp_path) | {
        "TIERING_DATABASE_URL": db_url,
        "TIERING_STORE_URL": "s3://no-such-bucket-tiering/archive",
        "AWS_ENDPOINT_URL": moto_server.endpoint,
    }
    out, _ = tiering(env, "archive", "run")
    assert out.returncode == 7, out.stderr
    assert "no-such-bucket-tiering" in out.stderr and "does not exist" in out.stderr
    assert _counts(db_url) == before  # hot table unchanged, nothing staged, no manifest row
    assert before[0] == 20 and before[1] == 0


class _RefusingS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint where the bucket exists and lists, but PUT (mode "write") or DeleteObjects (mode
    "delete") is denied, as an IAM policy without s3:PutObject or s3:DeleteObject would answer."""

    server: _RefusingServer

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _denied(self) -> None:
        self._send(403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                   Content_Type="application/xml")  # fmt: skip

    def do_HEAD(self) -> None:  # noqa: N802 - HeadBucket
        self._send(200)

    def do_GET(self) -> None:  # noqa: N802 - ListObjectsV2
        body = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name>'
                b"<KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>")
        self._send(200, body, Content_Type="application/xml")

    def do_PUT(self) -> None:  # noqa: N802 - PutObject
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls.append("PUT")
        if self.server.mode == "write":
            self._denied()
        else:
            self._send(200, ETag='"0123"')

    def do_POST(self) -> None:  # noqa: N802 - DeleteObjects
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.calls.append("DELETE")
        errors = "".join(f"<Error><Key>{k}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                         for k in re.findall(r"<Key>(.*?)</Key>", body))  # fmt: skip
        self._send(200, f"<DeleteResult>{errors}</DeleteResult>".encode(), Content_Type="application/xml")


class _RefusingServer(http.server.ThreadingHTTPServer):
    mode = "write"
    calls: list[str]


@pytest.mark.parametrize("mode,what", [("write", "cannot write a probe object"),
                                       ("delete", "cannot delete the probe object")])  # fmt: skip
def test_run_when_the_store_refuses_writes_or_deletes_exits_7_with_nothing_moved(
    db_url: str, tmp_path: Path, mode: str, what: str
) -> None:
    server = _RefusingServer(("127.0.0.1", 0), _RefusingS3)
    server.mode, server.calls = mode, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _hot_jobs(db_url)
        before = _counts(db_url)
        env = _base_env(tmp_path) | {
            "TIERING_DATABASE_URL": db_url,
            "TIERING_STORE_URL": "s3://bucket/archive",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}",
        }
        out, _ = tiering(env, "archive", "run")
        assert out.returncode == 7, out.stderr
        assert "store preflight" in out.stderr and what in out.stderr and "AccessDenied" in out.stderr
        assert _counts(db_url) == before
        assert server.calls == (["PUT"] if mode == "write" else ["PUT", "DELETE"])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "url,why",
    [
        ("s3://bucket/archive/../other", "'..' segment"),
        ("s3://bucket/a%2F..%2Fb", "'..' segment"),
        ("s3://bucket/arch\x01ive", "control characters"),
        ("s3://bucket/arch%0Aive", "control characters"),
        ("file:///tmp/../etc/objects", "'..' segment"),
    ],
)
def test_store_url_with_control_characters_or_dotdot_is_a_usage_error(db_url: str, tmp_path: Path, url: str,
                                                                      why: str) -> None:  # fmt: skip
    _hot_jobs(db_url, 5)
    before = _counts(db_url)
    env = _base_env(tmp_path) | {"TIERING_DATABASE_URL": db_url, "TIERING_STORE_URL": url}
    out, _ = tiering(env, "archive", "run")
    assert out.returncode == 2, out.stderr
    assert why in out.stderr and "store URL" in out.stderr
    assert "unexpected" not in out.stderr
    assert _counts(db_url) == before


# --- deadlines -------------------------------------------------------------------------------------------
def _silent_s3_env(tmp_path: Path, db_url: str, silent: SilentServer) -> dict[str, str]:
    return _base_env(tmp_path) | {
        "TIERING_DATABASE_URL": db_url,
        "TIERING_STORE_URL": "s3://bucket/archive",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.port}",
        "TIERING_STORE_CONNECT_TIMEOUT": "1",
        "TIERING_STORE_READ_TIMEOUT": "1",
        "TIERING_STORE_DEADLINE": "3",
        "TIERING_STORE_MAX_ATTEMPTS": "50",  # only the deadline can stop the retries
    }


@pytest.mark.parametrize("command", [("archive", "verify"), ("archive", "flush"), ("archive", "run")])
def test_unresponsive_s3_endpoint_fails_within_the_deadline(db_url: str, tmp_path: Path, silent: SilentServer,
                                                            command: tuple[str, ...]) -> None:  # fmt: skip
    _hot_jobs(db_url)
    if command[1] == "flush":  # something staged to upload
        archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig())
    before = _counts(db_url)
    out, _elapsed = tiering(_silent_s3_env(tmp_path, db_url, silent), *command)
    assert out.returncode == 7, out.stderr
    assert "within the 3 s deadline" in out.stderr and f"127.0.0.1:{silent.port}" in out.stderr
    assert silent.accepted  # it really reached the endpoint
    if command[1] != "flush":
        assert _counts(db_url) == before  # run: stopped by the preflight; verify: read-only
    else:
        assert _counts(db_url)[1] == before[1]  # still staged: nothing lost


def test_unresponsive_database_fails_within_the_connect_timeout(tmp_path: Path, silent: SilentServer) -> None:
    env = _base_env(tmp_path) | {
        "TIERING_DATABASE_URL": f"postgresql://tiering@127.0.0.1:{silent.port}/hammerwork",
        "TIERING_STORE_URL": (tmp_path / "objects").as_uri(),
        "TIERING_DB_CONNECT_TIMEOUT": "2",
    }
    out, _elapsed = tiering(env, "archive", "list")
    assert out.returncode == 8, out.stderr
    assert "cannot connect to the database" in out.stderr and "timeout" in out.stderr
    assert silent.accepted
