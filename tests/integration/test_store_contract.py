"""One contract for every object store: local folder, moto (in-process and server), SeaweedFS, MinIO.

Backend-specific behaviour (lifecycle, GLACIER restore, SSE, HTTP errors) is tested where that
backend exists, always through the same ObjectStore API.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures_s3 import S3Server, StoreTarget
from tiering.errors import ConfigError, InvalidInputError, StoreError
from tiering.lifecycle import LifecycleSpec, diff_rules, merge_rules, render_rules
from tiering.settings import Settings
from tiering.store import (
    LifecycleUnsupportedError,
    ObjectArchivedError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectStore,
    open_store,
    parse_store_url,
)
from tiering.store.local import LocalStore
from tiering.store.s3 import S3Store, parse_restore_header

MB = 1024 * 1024
ODD_KEYS = ["queue=emails/date=2024-01-01/part 0.parquet", "queue=ünï cödé/x=y=z/é €.bin", "queue=a+b/%41 ~!.bin"]


def under(store: ObjectStore) -> str:
    """The list prefix for everything under the store's prefix."""
    return store.prefix + "/" if store.prefix else ""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- basic object operations -------------------------------------------------------------------
def test_put_get_head_roundtrip(any_store: StoreTarget) -> None:
    store = any_store.store
    key = store.key("queue=emails/date=2024-01-01/part-0.parquet")
    assert key.startswith(store.prefix)
    data = os.urandom(10_000)
    result = store.put_bytes(key, data, metadata={"rows": "42"})
    assert result.checksum_sha256 == sha(data)
    assert result.size == len(data)
    assert store.get_bytes(key) == data
    info = store.head(key)
    assert info is not None
    assert info.key == key and info.size == len(data)
    assert info.checksum_sha256 == sha(data)
    assert info.metadata.get("rows") == "42"
    assert info.storage_class == "STANDARD"
    assert not info.archived
    assert info.last_modified is not None
    assert store.head(store.key("nope")) is None
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes(store.key("nope"))


def test_settings_open_the_same_store(any_store: StoreTarget) -> None:
    key = any_store.store.key("x.bin")
    any_store.store.put_bytes(key, b"via fixture")
    other = open_store(any_store.settings)
    assert other.prefix == any_store.store.prefix
    assert other.get_bytes(key) == b"via fixture"
    other.check_access()


def test_byte_ranges(any_store: StoreTarget) -> None:
    store = any_store.store
    key = store.key("r.bin")
    data = bytes(range(256)) * 4
    store.put_bytes(key, data)
    assert store.get_bytes(key, (0, 5)) == data[0:5]
    assert store.get_bytes(key, (100, 356)) == data[100:356]
    assert store.get_bytes(key, (1020, 2000)) == data[1020:]  # clipped at the end
    assert store.get_bytes(key, (7, 7)) == b""
    with pytest.raises(InvalidInputError):
        store.get_bytes(key, (10, 5))


def test_an_objects_tail_comes_with_its_size_in_one_request(any_store: StoreTarget) -> None:
    """get_tail: the last bytes and the object's size (a read-back's footer without a HEAD); one request on S3."""
    store = any_store.store
    key = store.key("t.bin")
    data = os.urandom(5000)
    store.put_bytes(key, data)
    before = store.request_count
    assert store.get_tail(key, 1000) == (data[-1000:], 5000)
    if isinstance(store, (S3Store, LocalStore)):
        assert store.request_count == before + 1
    assert store.get_tail(key, 5000) == (data, 5000)
    assert store.get_tail(key, 9000) == (data, 5000)  # shorter than asked: all of it
    with pytest.raises(InvalidInputError):
        store.get_tail(key, 0)
    with pytest.raises(ObjectNotFoundError):
        store.get_tail(store.key("nope"), 10)


def test_streamed_ranges_join_up_to_the_range(any_store: StoreTarget) -> None:
    store = any_store.store
    key = store.key("s.bin")
    data = os.urandom(5000)
    store.put_bytes(key, data)
    pieces = list(store.get_stream(key, (100, 4100), piece=512))
    assert b"".join(pieces) == data[100:4100]
    if isinstance(store, S3Store):  # handed on as the body arrives, not at its end
        assert len(pieces) >= 8 and all(len(p) <= 512 for p in pieces)
    assert b"".join(store.get_stream(key, (4000, 9000), piece=512)) == data[4000:]  # clipped at the end
    assert b"".join(store.get_stream(key, (7, 7))) == b""
    with pytest.raises(InvalidInputError):
        list(store.get_stream(key, (10, 5)))
    with pytest.raises(ObjectNotFoundError):
        list(store.get_stream(store.key("nope"), (0, 10)))


def test_a_streamed_range_resumes_where_its_body_broke(s3_settings_factory: Any) -> None:
    """A body that breaks off mid-range is read on from its first missing byte by a new ranged GET; past two
    breaks the read fails as a StoreError."""
    import botocore.exceptions as bce

    store = s3_settings_factory("moto_server").store
    key = store.key("b.bin")
    data = os.urandom(3000)
    store.put_bytes(key, data)
    real = store.client.get_object
    ranges: list[str] = []

    class Breaking:
        def __init__(self, body: Any) -> None:
            self.body, self.reads = body, 0

        def read(self, amt: int | None = None) -> bytes:
            self.reads += 1
            if self.reads == 2:
                raise bce.ResponseStreamingError(error=ConnectionResetError("reset by peer"))
            return bytes(self.body.read(amt))

        def close(self) -> None:
            self.body.close()

    def get_object(**params: Any) -> Any:
        ranges.append(params["Range"])
        resp = real(**params)
        return {**resp, "Body": Breaking(resp["Body"])}

    store.client.get_object = get_object  # type: ignore[method-assign]
    assert b"".join(store.get_stream(key, (0, 3000), piece=1000)) == data
    assert ranges == ["bytes=0-2999", "bytes=1000-2999", "bytes=2000-2999"]
    ranges.clear()
    with pytest.raises(StoreError):
        list(store.get_stream(key, (0, 3000), piece=100))  # breaks after 100, 200, 300: a third break fails
    assert ranges == ["bytes=0-2999", "bytes=100-2999", "bytes=200-2999"]


def test_odd_keys(any_store: StoreTarget) -> None:
    store = any_store.store
    keys = [store.key(k) for k in ODD_KEYS]
    for i, key in enumerate(keys):
        store.put_bytes(key, f"v{i}".encode())
    for i, key in enumerate(keys):
        assert store.get_bytes(key) == f"v{i}".encode()
        info = store.head(key)
        assert info is not None and info.size == 2
    listed = [o.key for o in store.list(under(store))]
    assert sorted(listed) == sorted(keys)
    result = store.delete_many(keys)
    assert result.ok and sorted(result.deleted) == sorted(keys)
    assert list(store.list(under(store))) == []


def test_list_is_prefix_scoped_and_ordered(any_store: StoreTarget) -> None:
    store = any_store.store
    names = [
        "queue=b/date=2024-01-02/p.parquet",
        "queue=a/date=2024-01-01/p.parquet",
        "queue=a/date=2024-01-02/p.parquet",
    ]
    for n in names:
        store.put_bytes(store.key(n), n.encode())
    # A sibling prefix that merely starts with the same characters must not leak in.
    if store.prefix:
        store.put_bytes(store.prefix + "-other/x.bin", b"x")
    all_keys = [o.key for o in store.list(under(store))]
    assert all_keys == sorted(store.key(n) for n in names)
    sizes = {o.key: o.size for o in store.list(under(store))}
    assert sizes[store.key(names[0])] == len(names[0])
    only_a = [o.key for o in store.list(store.key("queue=a/"))]
    assert only_a == [store.key(names[1]), store.key(names[2])]
    assert [o.key for o in store.list(store.key("queue=a/date=2024-01-0"))] == only_a
    assert list(store.list(store.key("queue=zzz/"))) == []


def test_create_only(any_store: StoreTarget) -> None:
    store = any_store.store
    key = store.key("once.bin")
    first = store.put_bytes(key, b"first")
    with pytest.raises(ObjectExistsError) as err:
        store.put_bytes(key, b"second")
    assert err.value.key == key
    assert isinstance(err.value, StoreError)
    assert store.get_bytes(key) == b"first"
    # The caller's rule: an existing object with the same checksum means success.
    info = store.head(key)
    assert info is not None and info.checksum_sha256 == first.checksum_sha256
    store.put_bytes(key, b"replaced", create_only=False)
    assert store.get_bytes(key) == b"replaced"


def test_put_file_and_checksums(any_store: StoreTarget, tmp_path: Path) -> None:
    store = any_store.store
    path = tmp_path / "part.parquet"
    data = os.urandom(300_000)
    path.write_bytes(data)
    key = store.key("f/part.parquet")
    result = store.put_file(key, path, sha256=sha(data))
    assert result.checksum_sha256 == sha(data)
    assert store.get_bytes(key) == data
    with pytest.raises(ObjectExistsError):
        store.put_file(key, path)
    # A wrong checksum is refused (locally for bytes, by the server for S3 files) and nothing lands.
    bad_key = store.key("f/bad.bin")
    with pytest.raises(StoreError):
        store.put_bytes(bad_key, b"abc", sha256=sha(b"abd"))
    assert store.head(bad_key) is None
    with pytest.raises(StoreError):
        store.put_file(bad_key, path, sha256=sha(b"something else"))
    assert store.head(bad_key) is None


def test_multipart_upload(any_store: StoreTarget, tmp_path: Path) -> None:
    store = any_store.open_store(
        **({"multipart_threshold": 5 * MB, "multipart_chunksize": 5 * MB} if any_store.is_s3 else {})
    )
    path = tmp_path / "big.bin"
    data = os.urandom(11 * MB)
    path.write_bytes(data)
    key = store.key("big/big.bin")
    before = store.request_count
    result = store.put_file(key, path, metadata={"kind": "big"})
    if any_store.is_s3:
        # HEAD (create-only precheck) + create + 3 parts + complete + HEAD
        assert store.request_count - before >= 6
    assert result.size == len(data)
    assert result.checksum_sha256 == sha(data)
    info = store.head(key)
    assert info is not None and info.size == len(data)
    assert info.checksum_sha256 == sha(data)
    assert info.metadata.get("kind") == "big"
    assert store.get_bytes(key, (5 * MB - 10, 5 * MB + 10)) == data[5 * MB - 10 : 5 * MB + 10]
    with pytest.raises(ObjectExistsError):
        store.put_file(key, path)


def test_delete_many_and_delete(any_store: StoreTarget) -> None:
    store = any_store.store
    keys = [store.key(f"d/{i:03d}.bin") for i in range(10)]
    for k in keys:
        store.put_bytes(k, b"x")
    missing = store.key("d/missing.bin")
    result = store.delete_many([*keys[:6], missing])
    assert result.ok
    assert sorted(result.deleted) == sorted([*keys[:6], missing])  # missing keys count as deleted
    assert [o.key for o in store.list(store.key("d/"))] == keys[6:]
    store.delete(keys[6])
    assert store.head(keys[6]) is None
    assert len(list(store.list(store.key("d/")))) == 3


@pytest.mark.parametrize("backend", ["local", "moto_inprocess"])
def test_delete_many_batches_over_1000(s3_settings_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    store = s3_settings_factory(backend).store
    keys = [store.key(f"many/{i:05d}") for i in range(1001)]
    for k in keys:
        store.put_bytes(k, b"", create_only=False)
    before = store.request_count
    result = store.delete_many(iter(keys))  # any iterable, consumed once
    assert result.ok
    assert len(result.deleted) == 1001 and set(result.deleted) == set(keys)
    assert store.request_count - before == 2  # 1000 + 1
    assert list(store.list(store.key("many/"))) == []


def test_storage_classes(any_store: StoreTarget) -> None:
    store = any_store.store
    key = store.key("ia.bin")
    caps = store.capabilities
    if "STANDARD_IA" not in caps.storage_classes:
        assert caps.storage_classes  # local / MinIO: STANDARD only, the class is ignored or refused
        if not any_store.is_s3:  # local and fsspec stores record every class as STANDARD
            result = store.put_bytes(key, b"x", storage_class="STANDARD_IA")
            assert result.storage_class == "STANDARD"
            info = store.head(key)
            assert info is not None and info.storage_class == "STANDARD"
        return
    result = store.put_bytes(key, b"x" * 1000, storage_class="STANDARD_IA")
    assert result.storage_class == "STANDARD_IA"
    info = store.head(key)
    assert info is not None and info.storage_class == "STANDARD_IA"
    listed = list(store.list(key))
    assert listed[0].storage_class == "STANDARD_IA"
    with pytest.raises(InvalidInputError):
        store.put_bytes(store.key("bad-class.bin"), b"x", storage_class="FROZEN")


# --- ranged Parquet reads ----------------------------------------------------------------------
def _parquet_bytes(row_groups: int, rows_per_group: int) -> tuple[bytes, pa.Table]:
    n = row_groups * rows_per_group
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "payload": pa.array([os.urandom(24).hex() for _ in range(n)], pa.string()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=rows_per_group, compression="zstd")
    return buf.getvalue(), table


def test_open_input_reads_parquet_by_ranges(any_store: StoreTarget) -> None:
    store = any_store.store
    data, table = _parquet_bytes(row_groups=4, rows_per_group=20_000)
    assert len(data) > 2 * MB  # larger than the tail prefetch: ranges matter
    key = store.key("pq/part-0.parquet")
    store.put_bytes(key, data)

    before = store.request_count
    with store.open_input(key, size=len(data)) as fh:
        pf = pq.ParquetFile(fh, pre_buffer=True)
        assert pf.metadata.num_row_groups == 4
        got = pf.read_row_group(1)
    used = store.request_count - before
    assert got.column("id").to_pylist() == list(range(20_000, 40_000))
    assert got.column("payload").to_pylist() == table.column("payload").to_pylist()[20_000:40_000]
    if any_store.is_s3:
        assert used <= 2, f"{used} requests for footer + one row group with a known size"

    before = store.request_count
    with store.open_input(key) as fh:  # size unknown: one HEAD more
        assert pq.ParquetFile(fh, pre_buffer=True).read_row_group(3).num_rows == 20_000
    if any_store.is_s3:
        assert store.request_count - before <= 3

    with store.open_input(key, size=len(data)) as fh:  # whole-file read still correct
        assert pq.read_table(fh).equals(table)
        fh.seek(-4, io.SEEK_END)
        assert fh.read() == b"PAR1"
        fh.seek(0)
        assert fh.read(4) == b"PAR1"


def test_open_input_missing(any_store: StoreTarget) -> None:
    with pytest.raises(ObjectNotFoundError):
        any_store.store.open_input(any_store.store.key("missing.parquet"))


# --- lifecycle ---------------------------------------------------------------------------------
FOREIGN_RULE = {
    "ID": "logs-expiry",
    "Status": "Enabled",
    "Filter": {"Prefix": "logs/"},
    "Expiration": {"Days": 14},
}


def test_lifecycle(any_store: StoreTarget) -> None:
    store = any_store.store
    specs = [
        LifecycleSpec("", [(30, "STANDARD_IA"), (90, "GLACIER")], expiration_days=365),
        LifecycleSpec("queue=emails", [], expiration_days=30),
    ]
    ours = render_rules(specs, store.prefix)
    if store.capabilities.supports_lifecycle is False:  # local, fsspec: no lifecycle rules, declared up front
        assert any_store.name in ("local", "memory", "dictstore")
        with pytest.raises(LifecycleUnsupportedError, match="tiering purge"):
            store.put_lifecycle_rules(ours)
        with pytest.raises(LifecycleUnsupportedError):
            store.get_lifecycle_rules()
        assert store.capabilities.supports_lifecycle is False
        return
    if any_store.name == "seaweedfs":
        assert store.get_lifecycle_rules() == []
        with pytest.raises(LifecycleUnsupportedError, match="NotImplemented") as err:
            store.put_lifecycle_rules(ours)
        assert "transitions" in str(err.value) and any_store.endpoint is not None
        assert any_store.endpoint in str(err.value)
        assert store.capabilities.supports_lifecycle is False
        return
    if any_store.name == "minio":
        pytest.skip("MinIO lifecycle transitions need a configured remote tier")
    store.put_lifecycle_rules([FOREIGN_RULE])
    current = store.get_lifecycle_rules()
    assert [r["ID"] for r in current] == ["logs-expiry"]
    desired = merge_rules(current, ours)
    plan = diff_rules(current, desired)
    assert len(plan.added) == 2 and not plan.removed and len(plan.unchanged) == 1
    store.put_lifecycle_rules(desired)
    after = store.get_lifecycle_rules()
    assert {r["ID"] for r in after} == {
        "logs-expiry",
        f"tiering:{store.prefix}/",
        f"tiering:{store.prefix}/queue=emails/",
    }
    assert not diff_rules(after, desired).has_changes, diff_rules(after, desired).text()
    # Re-rendering with a change replaces only our rule.
    changed = merge_rules(after, render_rules([LifecycleSpec("", [], expiration_days=400)], store.prefix))
    plan = diff_rules(after, changed)
    assert len(plan.changed) == 1 and len(plan.removed) == 1 and len(plan.unchanged) == 1
    store.put_lifecycle_rules(changed)
    assert {r["ID"] for r in store.get_lifecycle_rules()} == {"logs-expiry", f"tiering:{store.prefix}/"}
    store.put_lifecycle_rules([])
    assert store.get_lifecycle_rules() == []


# --- GLACIER restore (moto) --------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["moto_inprocess", "moto_server"])
def test_glacier_restore(s3_settings_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    store = s3_settings_factory(backend).store
    key = store.key("cold/part.parquet")
    data, _ = _parquet_bytes(1, 100)
    store.put_bytes(key, data, storage_class="GLACIER")
    info = store.head(key)
    assert info is not None and info.storage_class == "GLACIER"
    assert info.archived and not info.restore_in_progress
    assert next(iter(store.list(key))).archived
    with pytest.raises(ObjectArchivedError) as err:
        store.get_bytes(key)
    assert err.value.retryable and "restore" in str(err.value)
    with pytest.raises(ObjectArchivedError):
        store.open_input(key)
    assert store.restore_object(key, days=2, tier="Bulk") == "started"
    info = store.head(key)
    assert info is not None and not info.archived and info.restored_until is not None
    assert store.get_bytes(key) == data
    assert store.restore_object(key, days=2) in ("already_restored", "in_progress")
    plain = store.key("warm.bin")
    store.put_bytes(plain, b"x")
    assert store.restore_object(plain) == "not_archived"
    with pytest.raises(InvalidInputError):
        store.restore_object(key, tier="Instant")


def test_parse_restore_header() -> None:
    assert parse_restore_header(None) == (False, None)
    assert parse_restore_header('ongoing-request="true"') == (True, None)
    ongoing, until = parse_restore_header('ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"')
    assert not ongoing and until is not None and until.year == 2012 and until.day == 21


# --- server-side encryption (moto) -------------------------------------------------------------
def test_sse_s3_recorded(s3_settings_factory) -> None:  # type: ignore[no-untyped-def]
    target = s3_settings_factory("moto_inprocess", sse="AES256")
    store = target.store
    assert store.capabilities.encrypts
    result = store.put_bytes(store.key("enc.bin"), b"secret")
    assert result.encryption == "AES256"
    info = store.head(store.key("enc.bin"))
    assert info is not None and info.encryption == "AES256"
    # open_store(settings) applies the same SSE settings
    again = open_store(target.settings)
    again.put_bytes(store.key("enc2.bin"), b"secret")
    info2 = again.head(store.key("enc2.bin"))
    assert info2 is not None and info2.encryption == "AES256"


def test_sse_kms_recorded(s3_settings_factory) -> None:  # type: ignore[no-untyped-def]
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    store = s3_settings_factory("moto_inprocess", sse="aws:kms", sse_kms_key_id=key_id, sse_bucket_key=True).store
    result = store.put_bytes(store.key("kms.bin"), b"secret")
    assert result.encryption == "aws:kms"
    info = store.head(store.key("kms.bin"))
    assert info is not None
    assert info.encryption == "aws:kms" and info.kms_key_id == key_id and info.bucket_key_enabled is True


# --- errors ------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint_is_clear_and_fast() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3Store(
        "bucket",
        "p",
        endpoint_url=endpoint,
        max_attempts=2,
        connect_timeout=1,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    with pytest.raises(StoreError, match="cannot reach") as err:
        store.check_access()
    assert endpoint in str(err.value) and err.value.retryable
    with pytest.raises(StoreError, match="cannot reach"):
        store.get_bytes("p/x")
    assert store.request_count == 4  # each call: one attempt + one retry


@pytest.mark.parametrize("backend", ["moto_server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_missing_bucket(s3_settings_factory, backend: str) -> None:  # type: ignore[no-untyped-def]
    target = s3_settings_factory(backend)
    server: S3Server = target.server
    store = server.store("no-such-bucket-tiering", "p", max_attempts=1)
    with pytest.raises(StoreError, match="does not exist") as err:
        store.check_access()
    assert "no-such-bucket-tiering" in str(err.value) and server.endpoint in str(err.value)
    assert not err.value.retryable
    with pytest.raises(StoreError, match="does not exist"):
        list(store.list("p/"))
    if backend != "seaweedfs":  # SeaweedFS creates a missing bucket on PUT
        with pytest.raises(StoreError, match="does not exist"):
            store.put_bytes("p/x", b"x")
    store.ensure_bucket()
    store.check_access()
    store.put_bytes("p/x", b"x")


def test_missing_local_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "nope")
    with pytest.raises(StoreError, match="does not exist"):
        store.check_access()
    store.ensure_bucket()
    store.check_access()


@pytest.mark.seaweedfs
def test_bad_credentials(seaweedfs: S3Server) -> None:
    bucket = seaweedfs.new_bucket()
    store = S3Store(
        bucket,
        "p",
        endpoint_url=seaweedfs.endpoint,
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key="wrong-secret",
        max_attempts=1,
    )
    with pytest.raises(StoreError, match="access denied") as err:
        store.check_access()
    assert "AWS_SECRET_ACCESS_KEY" in str(err.value) and not err.value.retryable
    with pytest.raises(StoreError, match="access denied"):
        store.put_bytes("p/x", b"x")


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 503 SlowDown `fail` times, then serves `body` for GETs."""

    server: _FlakyServer

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, send_body: bool) -> None:
        self.server.hits += 1
        if self.server.hits <= self.server.fail:
            payload = b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>'
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        if send_body:
            self.wfile.write(self.server.body)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(True)


class _FlakyServer(http.server.ThreadingHTTPServer):
    hits = 0
    fail = 0
    body = b""


@pytest.fixture
def flaky_endpoint() -> Iterator[_FlakyServer]:
    server = _FlakyServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_throttling_and_5xx_are_retried(flaky_endpoint: _FlakyServer) -> None:
    flaky_endpoint.fail, flaky_endpoint.body = 2, b"finally"
    endpoint = f"http://127.0.0.1:{flaky_endpoint.server_address[1]}"
    store = S3Store("bucket", "", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s")
    assert store.get_bytes("some/key") == b"finally"
    assert flaky_endpoint.hits == 3 and store.request_count == 3


def test_persistent_5xx_gives_retryable_error(flaky_endpoint: _FlakyServer) -> None:
    flaky_endpoint.fail = 10**6
    endpoint = f"http://127.0.0.1:{flaky_endpoint.server_address[1]}"
    store = S3Store(
        "bucket", "", endpoint_url=endpoint, max_attempts=2, aws_access_key_id="k", aws_secret_access_key="s"
    )
    with pytest.raises(StoreError, match="SlowDown") as err:
        store.get_bytes("some/key")
    assert err.value.retryable
    assert flaky_endpoint.hits == 2


# --- local store safety and URL parsing ----------------------------------------------------------
@pytest.mark.parametrize(
    "key", ["../x", "a/../../b", "/etc/passwd", "a//b", "", "./a", "a/..", ".tiering-meta/x.json", "a\\..\\b", "a\x00b"]
)
def test_local_store_rejects_escaping_keys(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "root")
    store.ensure_bucket()
    with pytest.raises(InvalidInputError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidInputError):
        store.get_bytes(key)
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()


def test_local_store_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    store = LocalStore(root)
    with pytest.raises(InvalidInputError, match="outside"):
        store.put_bytes("link/x.bin", b"x")
    assert not (outside / "x.bin").exists()


def test_local_store_keeps_only_data_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("q/a.parquet", b"a", metadata={"k": "v"})
    listed = [o.key for o in store.list("")]
    assert listed == ["q/a.parquet"]  # sidecars and temp files are not objects
    assert store.delete_many(["q/a.parquet"]).ok
    assert not (tmp_path / "q").exists()  # empty folders are pruned like S3 "folders"


def test_parse_store_url() -> None:
    assert parse_store_url("s3://bucket/some/prefix/") == ("s3", "bucket", "some/prefix")
    assert parse_store_url("s3://bucket") == ("s3", "bucket", "")
    assert parse_store_url("file:///tmp/objects") == ("file", "/tmp/objects", "")
    assert parse_store_url("file:///tmp/with%20space") == ("file", "/tmp/with space", "")
    for bad in ("gs://bucket/x", "s3:///prefix", "file://otherhost/x", "/plain/path", "http://x/y"):
        with pytest.raises(ConfigError):
            parse_store_url(bad)


def test_open_store_by_scheme(tmp_path: Path) -> None:
    local = open_store(Settings(store_url=(tmp_path / "o").as_uri()))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "o"
    default = open_store(Settings(home=tmp_path / ".tiering"))
    assert isinstance(default, LocalStore) and default.root == (tmp_path / ".tiering" / "objects").resolve()
    s3 = open_store(Settings(store_url="s3://bkt/arch", s3_endpoint_url="http://127.0.0.1:9", sse="AES256"))
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.sse) == ("bkt", "arch", "AES256")
    assert "s3://bkt/arch" in s3.describe() and "http://127.0.0.1:9" in s3.describe()
    with pytest.raises(ConfigError, match="unsupported scheme"):
        open_store(Settings(store_url="ftp://x/y"))


def test_multipart_create_only_race(any_store: StoreTarget, tmp_path: Path) -> None:
    """Another writer lands the key between our pre-check and CompleteMultipartUpload: the
    If-None-Match on the completion must refuse to replace it."""
    if not any_store.is_s3:
        pytest.skip("multipart is S3-only; the local store publishes with os.link (atomic create-only)")
    store = any_store.open_store(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    assert isinstance(store, S3Store)
    other = any_store.open_store()
    key = store.key("race/big.bin")
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(6 * MB))

    def sneak_in(**_: object) -> None:
        other.put_bytes(key, b"the other writer won")

    store.client.meta.events.register_first("before-call.s3.CompleteMultipartUpload", sneak_in)
    with pytest.raises(ObjectExistsError):
        store.put_file(key, path)
    assert other.get_bytes(key) == b"the other writer won"


def test_local_delete_many_on_threads_keeps_each_keys_outcome(tmp_path: Path) -> None:
    """The local store deletes a purge's keys on threads: every key's outcome, in the order given, folders and
    sidecars of deleted objects pruned, a bad key refused alone, a symlinked folder not followed out of the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.parquet").write_bytes(b"keep")
    store = LocalStore(tmp_path / "root")
    store.ensure_bucket()
    keys = [f"archive/queue=q{q}/date=2025-01-{d:02d}/part-0.parquet" for q in range(4) for d in range(1, 29)]
    for key in keys:
        store.put_bytes(key, b"x")
    kept = "archive/queue=q0/date=2025-01-01/other.parquet"
    store.put_bytes(kept, b"y")
    (tmp_path / "root" / "archive" / "link").symlink_to(outside)
    bad = ["../escape.parquet", "archive/link/victim.parquet"]
    asked = [*keys[:50], bad[0], *keys[50:], bad[1]]
    result = store.delete_many(asked)
    assert result.deleted == [k for k in asked if k not in bad]  # order kept, each key once
    assert sorted(e.key for e in result.errors) == sorted(bad)
    assert (outside / "victim.parquet").read_bytes() == b"keep"
    assert [o.key for o in store.list("archive/")] == [kept]
    left = sorted(str(p.relative_to(tmp_path / "root")) for p in (tmp_path / "root").rglob("*") if p.is_dir())
    assert left == [
        ".tiering-meta", ".tiering-meta/archive", ".tiering-meta/archive/queue=q0",
        ".tiering-meta/archive/queue=q0/date=2025-01-01", ".tiering-tmp", "archive", "archive/link",
        "archive/queue=q0", "archive/queue=q0/date=2025-01-01",
    ]  # fmt: skip
