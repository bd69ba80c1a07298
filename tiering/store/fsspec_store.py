"""Every scheme the S3 and local backends do not serve, through fsspec: `memory://` (fast tests), and
`gs://`/`gcs://` (gcsfs), `az://`/`abfs://`/`abfss://` (adlfs) where those packages are installed.

A bucket here is the first path component fsspec sees (`memory://bucket/prefix`, `gs://bucket/prefix`,
`az://container/prefix`). fsspec has no portable user metadata, so, as in the local store, each object's
checksum and metadata live in a sidecar JSON under `<bucket>/.tiering-meta/` (a dot folder: Hive, Athena,
Spark and DuckDB globs skip it). What fsspec cannot do is declared in `capabilities`: no storage classes,
no lifecycle rules, no GLACIER restore; create-only puts are atomic on the memory filesystem (process-local:
a lock makes check-and-write one step), elsewhere a check-then-write (capabilities.conditional_put False).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from tiering.errors import InvalidInputError, StoreError
from tiering.store.base import (
    SHA256_METADATA_KEY,
    DeleteErrorItem,
    DeleteResult,
    ExternalAccess,
    NoLifecycleStore,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    PutResult,
    StoreCapabilities,
    StoreLocation,
    check_sha256,
    sha256_file,
    split_key,
)

log = logging.getLogger(__name__)

META_DIR = ".tiering-meta"
# Schemes fsspec serves for tiering, and the package each needs (None: built into fsspec).
FSSPEC_SCHEMES: dict[str, str | None] = {
    "memory": None,
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}
_ATOMIC_CREATE = {"memory"}  # check-and-write under _CREATE_LOCK is atomic only for a process-local filesystem
_CREATE_LOCK = threading.RLock()
_DUCKDB_SECRET = {"gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
_CHUNK = 1024 * 1024


def fsspec_available(scheme: str) -> str | None:
    """None when fsspec can serve `scheme` here, else what to install."""
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError):
        return FSSPEC_SCHEMES.get(scheme) or f"an fsspec implementation for {scheme}://"
    return None


def _modified(info: Mapping[str, Any]) -> datetime | None:
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class FsspecStore(NoLifecycleStore):
    """A bucket (and key prefix) on any fsspec filesystem."""

    no_lifecycle_reason = (
        "has no lifecycle rules through fsspec: expiration is done by `tiering purge` (schedule it); "
        "storage-class transitions are not available"
    )

    def __init__(self, scheme: str, bucket: str, prefix: str = "", **storage_options: Any) -> None:
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise InvalidInputError(f"{scheme}:// store needs a bucket: {scheme}://bucket/prefix")
        self.scheme = scheme
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.request_count = 0
        self._lock = threading.Lock()
        try:
            self.fs: Any = fsspec.filesystem(scheme, **storage_options)
        except ImportError as exc:
            raise StoreError(f"{scheme}:// needs {FSSPEC_SCHEMES.get(scheme) or 'its fsspec package'}: {exc}") from exc

    # --- identity ------------------------------------------------------------------------------
    @property
    def location(self) -> StoreLocation:
        return StoreLocation(self.scheme, self.bucket, self.prefix)

    def describe(self) -> str:
        return f"{self.location.url} (fsspec {type(self.fs).__name__})"

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(
            supports_lifecycle=False,
            encrypts=False,
            conditional_put=self.scheme in _ATOMIC_CREATE,
            storage_classes=frozenset({"STANDARD"}),
            supports_restore=False,
        )

    def external_access(self, env: Mapping[str, str]) -> ExternalAccess:
        """DuckDB reads gs:// and az:// itself (with its secret); anything else (memory://) through
        this store's fsspec filesystem registered in the DuckDB session."""
        secret = _DUCKDB_SECRET.get(self.scheme)
        if secret == "gcs" and env.get("GCS_ACCESS_KEY_ID") and env.get("GCS_SECRET"):
            return ExternalAccess(
                "gcs",
                {"KEY_ID": env["GCS_ACCESS_KEY_ID"], "SECRET": env["GCS_SECRET"]},
                {"SECRET": "<GCS_SECRET>"},
                filesystem=self.fs,
            )
        if secret == "azure" and env.get("AZURE_STORAGE_CONNECTION_STRING"):
            return ExternalAccess(
                "azure",
                {"CONNECTION_STRING": env["AZURE_STORAGE_CONNECTION_STRING"]},
                {"CONNECTION_STRING": "<AZURE_STORAGE_CONNECTION_STRING>"},
                filesystem=self.fs,
            )
        return ExternalAccess(filesystem=self.fs)

    # --- paths ---------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        parts = split_key(key)
        if parts[0] == META_DIR:
            raise InvalidInputError(f"object key {key!r} uses the reserved folder {META_DIR!r}")
        return f"{self.bucket}/{key}"

    def _meta_path(self, key: str) -> str:
        return f"{self.bucket}/{META_DIR}/{key}.json"

    def _count(self, n: int = 1) -> None:
        with self._lock:
            self.request_count += n

    def _error(self, exc: Exception, action: str, key: str | None = None) -> StoreError:
        what = f"{action} {key!r}" if key is not None else action
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, PermissionError):
            return StoreError(f"{what} failed: access denied by {self.describe()} ({exc}); check the credentials")
        retryable = isinstance(exc, TimeoutError | ConnectionError)
        return StoreError(f"{what} failed at {self.describe()}: {type(exc).__name__}: {exc}", retryable=retryable)

    # --- writing -------------------------------------------------------------------------------
    def _check_class(self, storage_class: str | None) -> str:
        if storage_class and storage_class != "STANDARD":
            log.warning("%s has no storage classes: %s recorded as STANDARD", self.describe(), storage_class)
        return "STANDARD"

    def _write_meta(self, key: str, sha256: str, metadata: Mapping[str, str] | None) -> None:
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        meta[SHA256_METADATA_KEY] = sha256
        written = datetime.now(UTC).isoformat()
        doc = {"sha256": sha256, "storage_class": "STANDARD", "metadata": meta, "written_at": written}
        self._count()
        self.fs.pipe_file(self._meta_path(key), json.dumps(doc).encode())

    def _create_guard(self, create_only: bool) -> contextlib.AbstractContextManager[Any]:
        """Makes exists-check + write one step where that is possible (a process-local filesystem)."""
        return _CREATE_LOCK if create_only and self.scheme in _ATOMIC_CREATE else contextlib.nullcontext()

    def _exists_refused(self, key: str) -> ObjectExistsError:
        return ObjectExistsError(key, f"object {key!r} already exists in {self.describe()}")

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
        path = self._path(key)
        sclass = self._check_class(storage_class)
        actual = hashlib.sha256(data).hexdigest()
        check_sha256(self, key, sha256, actual)
        try:
            with self._create_guard(create_only):
                if create_only and self.fs.exists(path):
                    raise self._exists_refused(key)
                self._count()
                self.fs.pipe_file(path, bytes(data))
            self._write_meta(key, actual, metadata)
        except FileExistsError as exc:
            raise self._exists_refused(key) from exc
        except Exception as exc:
            raise self._error(exc, "write", key) from exc
        return PutResult(key=key, size=len(data), etag=actual[:32], checksum_sha256=actual, storage_class=sclass)

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        storage_class: str | None = None,
        sha256: str | None = None,
        metadata: Mapping[str, str] | None = None,
        create_only: bool = True,
    ) -> PutResult:
        target = self._path(key)
        sclass = self._check_class(storage_class)
        digest = sha256_file(path)
        check_sha256(self, key, sha256, digest, f"file {path}")
        size = 0
        try:
            with self._create_guard(create_only):
                if create_only and self.fs.exists(target):
                    raise self._exists_refused(key)
                self._count()
                with open(path, "rb") as src, self.fs.open(target, "wb") as dst:  # streamed: bounded memory
                    while block := src.read(_CHUNK):
                        dst.write(block)
                        size += len(block)
            self._write_meta(key, digest, metadata)
        except FileExistsError as exc:
            raise self._exists_refused(key) from exc
        except OSError as exc:
            raise self._error(exc, "upload", key) from exc
        return PutResult(key=key, size=size, etag=digest[:32], checksum_sha256=digest, storage_class=sclass)

    # --- reading -------------------------------------------------------------------------------
    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        path = self._path(key)
        start: int | None = None
        end: int | None = None
        if byte_range is not None:
            start, end = byte_range
            if start < 0 or end < start:
                raise InvalidInputError(f"invalid byte range {byte_range!r} for {key!r}")
            if end == start:
                return b""
        self._count()
        try:
            return bytes(self.fs.cat_file(path, start=start, end=end))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key, self.describe()) from exc
        except Exception as exc:
            raise self._error(exc, "read", key) from exc

    def _read_meta(self, key: str) -> dict[str, Any]:
        try:
            self._count()
            doc = json.loads(self.fs.cat_file(self._meta_path(key)))
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        self._count()
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error(exc, "head", key) from exc
        if info.get("type") == "directory":
            return None
        meta = self._read_meta(key)
        sha = meta.get("sha256")
        written = meta.get("written_at")
        modified = _modified(info) or (_modified({"updated": written}) if written else None)
        return ObjectInfo(
            key=key,
            size=int(info.get("size") or 0),
            etag=sha[:32] if sha else None,
            last_modified=modified,
            checksum_sha256=sha,
            metadata=dict(meta.get("metadata") or {}),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
            raise InvalidInputError(f"list prefix {prefix!r} must be relative and must not contain '..'")
        base_dir = prefix.rpartition("/")[0]
        start = f"{self.bucket}/{base_dir}" if base_dir else self.bucket
        self._count()
        try:
            found = self.fs.find(start, detail=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(exc, f"list prefix {prefix!r}") from exc
        root = self.fs._strip_protocol(self.bucket).rstrip("/") + "/"
        items: builtins.list[tuple[str, Mapping[str, Any]]] = []
        for name, info in found.items():
            stripped = self.fs._strip_protocol(name)
            if not stripped.startswith(root) or info.get("type") == "directory":
                continue
            key = stripped[len(root) :]
            if key.startswith(META_DIR + "/") or not key.startswith(prefix):
                continue
            items.append((key, info))
        for key, info in sorted(items, key=lambda kv: kv[0].encode("utf-8")):
            yield ObjectInfo(key=key, size=int(info.get("size") or 0), last_modified=_modified(info))

    def object_lock_possible(self) -> bool:
        return False  # no Object Lock here: nothing is ever retained or held

    # --- deleting ------------------------------------------------------------------------------
    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        result = DeleteResult()
        for n, key in enumerate(keys):
            if n % 1000 == 0:
                self._count()
            try:
                path = self._path(key)
            except InvalidInputError as exc:
                result.errors.append(DeleteErrorItem(key, "InvalidKey", str(exc)))
                continue
            for target in (path, self._meta_path(key)):
                try:
                    self.fs.rm_file(target)
                except FileNotFoundError:
                    pass
                except Exception as exc:  # noqa: BLE001 - reported per key, like S3's DeleteObjects
                    if target == path:
                        result.errors.append(DeleteErrorItem(key, type(exc).__name__, str(exc)))
                        break
            else:
                result.deleted.append(key)
        return result

    # --- setup ---------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        try:
            self._count()
            self.fs.makedirs(self.bucket, exist_ok=True)
        except Exception as exc:
            raise self._error(exc, f"create bucket {self.bucket!r}") from exc

    def check_access(self) -> None:
        self._count()
        try:
            present = self.fs.exists(self.bucket)
        except Exception as exc:
            raise self._error(exc, "access bucket") from exc
        if not present:
            raise StoreError(
                f"bucket {self.bucket!r} does not exist in {self.describe()}; create it or fix TIERING_STORE_URL"
            )
