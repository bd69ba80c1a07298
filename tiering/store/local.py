"""A plain local folder behaving like a bucket: same keys, same results, no S3 needed.

Objects are ordinary files at `<root>/<key>` (so DuckDB and friends can read them directly).
Writes go to `<root>/.tiering-tmp/` first and are published atomically (os.link for create-only,
os.replace otherwise). The checksum, user metadata and storage class of each object live in a
sidecar JSON under `<root>/.tiering-meta/`, outside the data tree.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from tiering.errors import InvalidInputError, StoreError
from tiering.store.base import (
    SHA256_METADATA_KEY,
    DeleteErrorItem,
    DeleteResult,
    NoLifecycleStore,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    PutResult,
    StoreCapabilities,
    StoreLocation,
    check_sha256,
    check_tail_length,
    split_key,
)

log = logging.getLogger(__name__)

META_DIR = ".tiering-meta"
DELETE_THREADS = 8
TMP_DIR = ".tiering-tmp"
_RESERVED = {META_DIR, TMP_DIR}


def validate_key(key: str) -> list[str]:
    """Split a key into path segments, refusing anything that could leave the root or touch our sidecars."""
    parts = split_key(key)
    if parts[0] in _RESERVED:
        raise InvalidInputError(f"object key {key!r} uses the reserved folder {parts[0]!r}")
    return parts


class LocalStore(NoLifecycleStore):
    no_lifecycle_reason = (
        "has no lifecycle rules: expiration is done by `tiering purge` (schedule it), storage-class transitions "
        "do not exist on a local folder"
    )

    def __init__(self, root: str | Path, prefix: str = "") -> None:
        self.root = Path(root).expanduser().absolute()
        self.prefix = prefix.strip("/")
        self.request_count = 0
        self._warned_classes: set[str] = set()
        self._root_resolved: Path | None = None

    # --- paths -------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        parts = validate_key(key)
        path = self.root.joinpath(*parts)
        root = self._resolved_root()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise InvalidInputError(f"object key {key!r} resolves outside the store root {self.root}")
        return path

    def _resolved_root(self) -> Path:
        """The root with its symlinks resolved, once it exists (every key's path is checked against it)."""
        if self._root_resolved is None:
            resolved = self.root.resolve()
            if not self.root.exists():
                return resolved  # not yet created: may become a symlink, so not kept
            self._root_resolved = resolved
        return self._root_resolved

    def _meta_path(self, key: str) -> Path:
        parts = validate_key(key)
        return self.root.joinpath(META_DIR, *parts[:-1], parts[-1] + ".json")

    @property
    def location(self) -> StoreLocation:
        return StoreLocation("file", str(self.root), self.prefix)

    def analyst_path(self, key: str) -> str:
        return str(self._path(key))

    def describe(self) -> str:
        return f"local folder {self.root.as_uri()}" + (f" (prefix {self.prefix!r})" if self.prefix else "")

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(
            supports_lifecycle=False,
            encrypts=False,
            conditional_put=True,
            storage_classes=frozenset({"STANDARD"}),
            supports_restore=False,
        )

    # --- writing -------------------------------------------------------------------------------
    def _storage_class(self, storage_class: str | None) -> str:
        if storage_class and storage_class != "STANDARD" and storage_class not in self._warned_classes:
            self._warned_classes.add(storage_class)
            log.warning("local store %s has no storage classes: %s recorded as STANDARD", self.root, storage_class)
        return "STANDARD"

    def _tmp_path(self) -> Path:
        tmp_dir = self.root / TMP_DIR
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir / f"{uuid.uuid4().hex}.part"

    def _publish(self, tmp: Path, target: Path, key: str, create_only: bool) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if create_only:
                try:
                    os.link(tmp, target)
                except FileExistsError as exc:
                    raise ObjectExistsError(key, f"object {key!r} already exists in {self.describe()}") from exc
                tmp.unlink()
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _write_meta(self, key: str, sha256: str, metadata: Mapping[str, str]) -> None:
        meta_path = self._meta_path(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_path()
        tmp.write_text(json.dumps({"sha256": sha256, "storage_class": "STANDARD", "metadata": dict(metadata)}))
        os.replace(tmp, meta_path)

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
        sclass = self._storage_class(storage_class)
        self.request_count += 1
        tmp = self._tmp_path()
        try:
            digest = hashlib.sha256()
            size = 0
            with open(path, "rb") as src, open(tmp, "xb") as dst:
                while block := src.read(1024 * 1024):
                    digest.update(block)
                    dst.write(block)
                    size += len(block)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {key!r} into {self.describe()}: {exc}") from exc
        return self._finish_put(key, tmp, target, digest.hexdigest(), sha256, size, sclass, metadata, create_only)

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
        target = self._path(key)
        sclass = self._storage_class(storage_class)
        self.request_count += 1
        tmp = self._tmp_path()
        try:
            with open(tmp, "xb") as dst:
                dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {key!r} into {self.describe()}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        return self._finish_put(key, tmp, target, actual, sha256, len(data), sclass, metadata, create_only)

    def _finish_put(
        self,
        key: str,
        tmp: Path,
        target: Path,
        actual: str,
        expected: str | None,
        size: int,
        sclass: str,
        metadata: Mapping[str, str] | None,
        create_only: bool,
    ) -> PutResult:
        try:
            check_sha256(self, key, expected, actual)
        except StoreError:
            tmp.unlink(missing_ok=True)
            raise
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        meta[SHA256_METADATA_KEY] = actual
        try:
            self._publish(tmp, target, key, create_only)
            self._write_meta(key, actual, meta)
        except OSError as exc:
            raise StoreError(f"cannot write {key!r} into {self.describe()}: {exc}") from exc
        return PutResult(key=key, size=size, etag=actual[:32], checksum_sha256=actual, storage_class=sclass)

    # --- reading -------------------------------------------------------------------------------
    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        path = self._path(key)
        self.request_count += 1
        try:
            with open(path, "rb") as fh:
                if byte_range is None:
                    return fh.read()
                start, end = byte_range
                if start < 0 or end < start:
                    raise InvalidInputError(f"invalid byte range {byte_range!r} for {key!r}")
                fh.seek(start)
                return fh.read(end - start)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key, self.describe()) from exc
        except OSError as exc:
            raise StoreError(f"cannot read {key!r} from {self.describe()}: {exc}") from exc

    def _info(self, key: str, path: Path, with_meta: bool) -> ObjectInfo:
        st = path.stat()
        sha = None
        metadata: dict[str, str] = {}
        if with_meta:
            try:
                meta = json.loads(self._meta_path(key).read_text())
                sha = meta.get("sha256")
                metadata = dict(meta.get("metadata") or {})
            except (OSError, ValueError):
                pass
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=sha[:32] if sha else None,
            storage_class="STANDARD",
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            checksum_sha256=sha,
            metadata=metadata,
        )

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        check_tail_length(key, length)
        path = self._path(key)
        self.request_count += 1
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(max(0, size - length))
                return fh.read(), size
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key, self.describe()) from exc
        except OSError as exc:
            raise StoreError(f"cannot read {key!r} from {self.describe()}: {exc}") from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        self.request_count += 1
        if not path.is_file():
            return None
        try:
            return self._info(key, path, with_meta=True)
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self.request_count += 1
        if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
            raise InvalidInputError(f"list prefix {prefix!r} must be relative and must not contain '..'")
        base_dir = prefix.rpartition("/")[0]
        start = self.root.joinpath(*base_dir.split("/")) if base_dir else self.root
        if not start.is_dir():
            return
        keys: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d not in _RESERVED]
                rel_dir = ""
            for name in filenames:
                key = f"{rel_dir}/{name}" if rel_dir else name
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys, key=lambda k: k.encode("utf-8")):
            try:
                yield self._info(key, self.root / key, with_meta=False)
            except FileNotFoundError:
                continue

    def object_lock_possible(self) -> bool:
        return False  # no Object Lock here: nothing is ever retained or held

    # --- deleting ------------------------------------------------------------------------------
    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        """Unlinks and folder prunes on DELETE_THREADS threads: each waits on the file system's journal, not the
        CPU (2,920 objects of a 365-day archive on this project's VM disk: unlink 0.7-1.0 s, rmdir of their
        folders 1.0-1.8 s one after the other, 0.66 s on 8 threads). Order and outcome per key as S3's."""
        keys = list(keys)
        self.request_count += -(-len(keys) // 1000)  # one DeleteObjects call per 1000 keys, as S3 counts them
        threads = min(DELETE_THREADS, -(-len(keys) // 32))
        if threads > 1:
            with ThreadPoolExecutor(threads, thread_name_prefix="tiering-unlink") as pool:
                errors = list(pool.map(self._delete_one, keys))
        else:
            errors = [self._delete_one(key) for key in keys]
        result = DeleteResult()
        for key, error in zip(keys, errors, strict=True):
            if error is None:
                result.deleted.append(key)
            else:
                result.errors.append(error)
        return result

    def _delete_one(self, key: str) -> DeleteErrorItem | None:
        try:
            path = self._path(key)
        except InvalidInputError as exc:
            return DeleteErrorItem(key, "InvalidKey", str(exc))
        try:
            meta = self._meta_path(key)
            path.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            self._prune_dirs(path.parent, self.root)
            self._prune_dirs(meta.parent, self.root / META_DIR)
        except IsADirectoryError:
            return None  # a "folder" is no object: nothing to delete
        except OSError as exc:
            return DeleteErrorItem(key, errno.errorcode.get(exc.errno or 0, "OSError"), str(exc))
        return None

    @staticmethod
    def _prune_dirs(directory: Path, stop: Path) -> None:
        """Remove now-empty folders up to (not including) stop, like S3 which has no folders."""
        while directory != stop and stop in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # --- setup ---------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.describe()}: {exc}") from exc

    def check_access(self) -> None:
        if not self.root.is_dir():
            raise StoreError(
                f"{self.describe()} does not exist: create the folder or point TIERING_STORE_URL elsewhere"
            )
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"{self.describe()} is not writable by this user: fix its permissions")

    def preflight(self) -> None:
        # The root is created on the first write anyway; a fresh home has none yet.
        self.ensure_bucket()
        super().preflight()

    def clear(self) -> None:
        """Remove everything (tests only)."""
        shutil.rmtree(self.root, ignore_errors=True)
