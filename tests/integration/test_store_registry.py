"""A backend nobody in tiering knows, defined here and registered by URL scheme, passes the store contract
and carries a whole archive -> flush -> verify -> restore -> purge cycle through the engine, with no change
to engine code: the engine sees only the ObjectStore protocol (location, capabilities, the calls).
"""

from __future__ import annotations

import builtins
import hashlib
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tests.integration.test_store_contract as contract
from tests.fixtures_s3 import StoreTarget
from tests.helpers import count, insert_job, session_for
from tiering.engine.analyst import object_locations, open_duckdb
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import purge_archived_jobs
from tiering.engine.restore import restore_archived_job
from tiering.engine.verify import verify_archive
from tiering.errors import ConfigError, InvalidInputError, StoreError
from tiering.layout import analyst_root
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store import (
    DeleteResult,
    LifecycleUnsupportedError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PutResult,
    RestoreOutcome,
    StoreCapabilities,
    StoreLocation,
    StoreURL,
    open_store,
    parse_store_url,
    register_backend,
)
from tiering.store.base import split_key

SCHEME = "dictstore"
# bucket -> key -> (data, metadata, written at); shared by every store opened on the same bucket
_BUCKETS: dict[str, dict[str, tuple[bytes, dict[str, str], datetime]]] = {}
_LOCK = threading.Lock()


class DictStore(ObjectStore):
    """The smallest honest backend: objects in a process-wide dict, no storage classes, no lifecycle."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.request_count = 0

    @property
    def location(self) -> StoreLocation:
        return StoreLocation(SCHEME, self.bucket, self.prefix)

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(
            supports_lifecycle=False,
            encrypts=False,
            conditional_put=True,
            storage_classes=frozenset({"STANDARD"}),
            supports_restore=False,
        )

    def describe(self) -> str:
        return f"dict store {self.location.url}"

    def _objects(self) -> dict[str, tuple[bytes, dict[str, str], datetime]]:
        self.request_count += 1
        if self.bucket not in _BUCKETS:
            raise StoreError(f"bucket {self.bucket!r} does not exist in {self.describe()}")
        return _BUCKETS[self.bucket]

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        storage_class: str | None = None,
        sha256: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = True,
    ) -> PutResult:
        split_key(key)
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise StoreError(f"checksum mismatch for {key!r}", retryable=True)
        with _LOCK:
            objects = self._objects()
            if create_only and key in objects:
                raise ObjectExistsError(key)
            objects[key] = (bytes(data), {**(metadata or {}), "sha256": digest}, datetime.now(UTC))
        return PutResult(key=key, size=len(data), etag=digest[:32], checksum_sha256=digest)

    def put_file(self, key: str, path: str | Path, **kwargs: Any) -> PutResult:
        return self.put_bytes(key, Path(path).read_bytes(), **kwargs)

    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        split_key(key)
        found = self._objects().get(key)
        if found is None:
            raise ObjectNotFoundError(key, self.describe())
        if byte_range is None:
            return found[0]
        start, end = byte_range
        if start < 0 or end < start:
            raise InvalidInputError(f"invalid byte range {byte_range!r}")
        return found[0][start:end]

    def head(self, key: str) -> ObjectInfo | None:
        found = self._objects().get(key)
        if found is None:
            return None
        data, meta, at = found
        return ObjectInfo(key, len(data), last_modified=at, checksum_sha256=meta["sha256"], metadata=meta)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        objects = dict(self._objects())
        for key in sorted((k for k in objects if k.startswith(prefix)), key=lambda k: k.encode()):
            yield ObjectInfo(key, len(objects[key][0]), last_modified=objects[key][2])

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        result = DeleteResult()
        for n, key in enumerate(keys):
            if n % 1000 == 0:
                self.request_count += 1
            with _LOCK:
                _BUCKETS.get(self.bucket, {}).pop(key, None)
            result.deleted.append(key)
        return result

    def get_lifecycle_rules(self) -> builtins.list[dict[str, Any]]:
        raise LifecycleUnsupportedError("dict store: no lifecycle rules; use `tiering purge`")

    def put_lifecycle_rules(self, rules: builtins.list[dict[str, Any]]) -> None:
        raise LifecycleUnsupportedError("dict store: no lifecycle rules; use `tiering purge`")

    def restore_object(self, key: str, days: int = 1, tier: str = "Standard") -> RestoreOutcome:
        if self.head(key) is None:
            raise ObjectNotFoundError(key, self.describe())
        return "not_archived"

    def ensure_bucket(self) -> None:
        _BUCKETS.setdefault(self.bucket, {})

    def check_access(self) -> None:
        self._objects()


def open_dict_store(url: StoreURL, settings: Settings, **options: Any) -> ObjectStore:
    return DictStore(url.bucket, url.prefix)


@pytest.fixture
def registered(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> StoreTarget:
    """The new backend, registered by scheme (tiering.store.register_backend) and opened through Settings."""
    register_backend((SCHEME,), open_dict_store, name="dict")
    bucket = f"b{abs(hash(request.node.nodeid))}"
    _BUCKETS.pop(bucket, None)
    settings = Settings(home=tmp_path_factory.mktemp("home"), store_url=f"{SCHEME}://{bucket}/archive")
    store = open_store(settings)
    store.ensure_bucket()
    return StoreTarget(SCHEME, settings, store)


CONTRACT: list[Callable[..., None]] = [
    contract.test_put_get_head_roundtrip,
    contract.test_settings_open_the_same_store,
    contract.test_byte_ranges,
    contract.test_odd_keys,
    contract.test_list_is_prefix_scoped_and_ordered,
    contract.test_create_only,
    contract.test_put_file_and_checksums,
    contract.test_multipart_upload,
    contract.test_delete_many_and_delete,
    contract.test_storage_classes,
    contract.test_open_input_reads_parquet_by_ranges,
    contract.test_open_input_missing,
    contract.test_lifecycle,
]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda f: f.__name__.removeprefix("test_"))
def test_registered_backend_passes_the_contract(
    check: Callable[..., None], registered: StoreTarget, tmp_path: Path
) -> None:
    assert isinstance(registered.store, DictStore)  # chosen by the URL's scheme, not by name
    args = {"any_store": registered, "tmp_path": tmp_path}
    check(**{name: args[name] for name in inspect.signature(check).parameters})


def test_registered_backend_parses_and_refuses_bad_urls(registered: StoreTarget) -> None:
    assert parse_store_url(f"{SCHEME}://bkt/a/b/") == (SCHEME, "bkt", "a/b")
    with pytest.raises(ConfigError, match="no bucket"):
        parse_store_url(f"{SCHEME}:///x")
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        parse_store_url(f"{SCHEME}://bkt/a/../b")


def test_fsspec_schemes_without_their_package_name_it() -> None:
    for url, package in (("gs://bucket/x", "gcsfs"), ("az://container/x", "adlfs")):
        try:
            __import__(package)
        except ImportError:
            with pytest.raises(ConfigError, match=f"pip install {package}"):
                open_store(Settings(store_url=url))
        else:
            assert parse_store_url(url).bucket in ("bucket", "container")


DAY = timedelta(days=1)
POLICY = ArchivalPolicy(archive_completed_after=DAY, archive_failed_after=DAY)


@pytest.mark.parametrize("backend", [SCHEME, "memory"])
def test_registered_backend_works_through_the_engine(
    db_url: str, backend: str, registered: StoreTarget, s3_settings_factory: Any
) -> None:
    """The test's own backend, and fsspec's memory filesystem (FsspecStore), both through the engine."""
    target = registered if backend == SCHEME else s3_settings_factory("memory")
    store, settings = target.store, target.settings.with_overrides(database_url=db_url)
    assert store.location.scheme == backend
    with psycopg.connect(db_url) as conn:
        ids = [insert_job(conn, queue="mail" if i % 2 else "sms", age=(5 + i % 3) * DAY, payload={"i": i})
               for i in range(12)]  # fmt: skip
        conn.commit()
    archive_jobs(session_for(db_url), None, POLICY, ArchivalConfig())
    stats = flush_staged(session_for(db_url, store, settings), POLICY, ArchivalConfig())
    assert stats.jobs_flushed == 12
    keys = [o.key for o in store.list(store.prefix + "/")]
    assert keys and all(k.startswith("archive/queue=") and k.endswith(".parquet") for k in keys)
    with psycopg.connect(db_url) as conn:
        buckets = {r[0] for r in conn.execute("SELECT DISTINCT bucket FROM tiering_manifest")}
        assert count(conn, "hammerwork_jobs_archive") == 0
    assert buckets == {store.location.bucket}  # the manifest records the backend's own identity
    located = object_locations(session_for(db_url, store))
    assert sorted(located) == sorted(f"{backend}://{store.location.bucket}/{k}" for k in keys)
    assert verify_archive(session_for(db_url, store, settings), deep=True).ok
    if backend == "memory":  # DuckDB cannot read memory:// itself: the store's fsspec filesystem is registered
        con = open_duckdb(session_for(db_url, store, settings))
        assert con.execute("SELECT count(*), count(DISTINCT queue_name) FROM archived_jobs").fetchone() == (12, 2)

    restored = restore_archived_job(session_for(db_url, store, settings), ids[3])
    assert restored.source == "cold" and restored.object_requests > 0
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs", "id = %s AND status = 'Pending'", (ids[3],)) == 1

    purged = purge_archived_jobs(session_for(db_url, store, settings), timedelta(0))
    assert purged.jobs_purged == 11
    # nothing of the archive is left; only the analysts' derived files (their listing) beside it
    left = [o.key for o in store.list(store.prefix + "/")]
    assert all(k.startswith(analyst_root(store.prefix)) for k in left), left
    if backend == "memory":  # ... and that listing names no purged object
        con = open_duckdb(session_for(db_url, store, settings))
        assert con.execute("SELECT count(*) FROM archived_jobs").fetchone() == (0,)
    assert verify_archive(session_for(db_url, store, settings)).ok


def test_local_rows_recorded_without_a_bucket_are_adopted(db_url: str, s3_settings_factory: Any) -> None:
    """Local stores used to record bucket ''; opening the store names their root in those rows, so verify,
    purge and analysts see them again."""
    target = s3_settings_factory("local")
    settings = target.settings.with_overrides(database_url=db_url)
    with psycopg.connect(db_url) as conn:
        for i in range(4):
            insert_job(conn, queue="q", age=5 * DAY, payload={"i": i})
        conn.commit()
    archive_jobs(session_for(db_url), None, POLICY, ArchivalConfig())
    flush_staged(session_for(db_url, target.store, settings), POLICY, ArchivalConfig())
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE tiering_manifest SET bucket = ''")  # what an older tiering wrote
    assert object_locations(session_for(db_url, target.store)) == []  # unseen while unnamed
    store = session_for(db_url, settings=settings).store
    assert store.location.bucket == str(target.store.location.bucket) != ""
    with psycopg.connect(db_url) as conn:
        assert {r[0] for r in conn.execute("SELECT DISTINCT bucket FROM tiering_manifest")} == {store.location.bucket}
    assert len(object_locations(session_for(db_url, store))) == 1
    assert verify_archive(session_for(db_url, store, settings), deep=True).ok
