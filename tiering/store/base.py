"""The object-store contract every backend (S3-compatible, local folder, fsspec) honours.

Keys are always full keys inside the bucket (or the local root). A store is opened with a prefix
(`store.prefix`, no leading or trailing slash, may be empty); callers build keys that start with it
(`store.key("queue=x/date=.../part.parquet")` joins them), so the same key is valid in the manifest,
in listings and in every call here.

Every store has an identity, `store.location` (scheme, bucket or root, prefix): the manifest records
its `bucket`, `store.uri(key)` names an object for humans and other engines, and `external_access()`
tells analysts' engines (DuckDB, Athena) how to read it. What a backend cannot do is declared in
`capabilities`, never discovered by probing attributes.

Checksums are SHA-256 as lower-case hex everywhere in this API (S3 wants base64 on the wire; the
S3 backend converts). Every upload also records the hex digest as user metadata `sha256`, so the
checksum survives multipart uploads and servers that do not store S3 checksums.
"""

from __future__ import annotations

import abc
import base64
import binascii
import builtins
import hashlib
import io
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from tiering.errors import InvalidInputError, StoreError
from tiering.policy import STORAGE_CLASSES

# Storage classes S3 knows (one list for the whole tool: tiering.policy.STORAGE_CLASSES).
ALL_STORAGE_CLASSES: frozenset[str] = frozenset(STORAGE_CLASSES)
# Classes whose objects cannot be read until RestoreObject has finished.
ARCHIVE_STORAGE_CLASSES: frozenset[str] = frozenset({"GLACIER", "DEEP_ARCHIVE"})
SHA256_METADATA_KEY = "sha256"
RESTORE_TIERS: frozenset[str] = frozenset({"Standard", "Bulk", "Expedited"})

RestoreOutcome = Literal["started", "in_progress", "already_restored", "not_archived"]


class ObjectExistsError(StoreError):
    """A create-only put found the key already taken (HTTP 412 / local O_EXCL).

    Callers compare checksums: an existing object with the same SHA-256 means an earlier attempt
    already succeeded.
    """

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"object {key!r} already exists (create-only put refused)")
        self.key = key


class ObjectNotFoundError(StoreError):
    """The key does not exist (GET of a missing object)."""

    exit_code = 3
    http_status = 404

    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"object {key!r} not found in {where}")
        self.key = key


class ObjectArchivedError(StoreError):
    """The object sits in GLACIER/DEEP_ARCHIVE and must be restored (RestoreObject) before reading."""

    exit_code = 5
    http_status = 202

    def __init__(self, key: str, where: str) -> None:
        super().__init__(
            f"object {key!r} in {where} is archived (GLACIER/DEEP_ARCHIVE): request a restore first "
            "(`restore_object`), then read it once the restore has completed",
            retryable=True,
        )
        self.key = key


class LifecycleUnsupportedError(StoreError):
    """The store cannot hold (these) lifecycle rules; use tool-driven purge instead."""

    exit_code = 7


@dataclass(frozen=True)
class PutResult:
    """What the server said about a finished upload (recorded in the manifest)."""

    key: str
    size: int
    etag: str | None
    checksum_sha256: str  # hex, always known (computed locally when not given)
    version_id: str | None = None
    encryption: str | None = None  # ServerSideEncryption: "AES256" | "aws:kms" | None
    kms_key_id: str | None = None
    storage_class: str = "STANDARD"


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one object. Fields a listing cannot provide are None."""

    key: str
    size: int
    etag: str | None = None
    storage_class: str = "STANDARD"
    last_modified: datetime | None = None
    archived: bool = False  # needs RestoreObject before it can be read
    restore_in_progress: bool = False
    restored_until: datetime | None = None
    encryption: str | None = None
    kms_key_id: str | None = None
    bucket_key_enabled: bool | None = None
    checksum_sha256: str | None = None  # hex; server checksum or the `sha256` metadata
    version_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    object_lock_mode: str | None = None
    object_lock_retain_until: datetime | None = None
    object_lock_legal_hold: bool | None = None


@dataclass(frozen=True)
class DeleteErrorItem:
    key: str
    code: str
    message: str


@dataclass
class DeleteResult:
    """Per-key outcome of a batch delete: a key is either deleted or has an error."""

    deleted: list[str] = field(default_factory=list)
    errors: list[DeleteErrorItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class StoreCapabilities:
    """What a backend can do, so callers pick a fallback instead of failing late.

    `supports_lifecycle` is None while unknown (custom S3 endpoints: learnt on the first
    lifecycle write).
    """

    supports_lifecycle: bool | None
    encrypts: bool
    conditional_put: bool
    storage_classes: frozenset[str]
    supports_restore: bool


@dataclass(frozen=True)
class StoreLocation:
    """Where a store keeps its objects, independent of the backend's SDK.

    `bucket` is what the manifest records: the S3/GCS bucket or container, or the absolute root folder
    of a local store. `uri(key)` is the object's address as other tools write it (s3://b/k, file:///r/k).
    """

    scheme: str
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None  # custom S3-compatible endpoint; None for AWS and non-S3 stores
    region: str | None = None

    def uri(self, key: str = "") -> str:
        """The address of `key` (a full key, prefix included); of the bucket/root when key is ""."""
        if self.scheme == "file":
            base = Path(self.bucket).as_uri()
            return f"{base}/{quote(key)}" if key else base
        base = f"{self.scheme}://{self.bucket}"
        return f"{base}/{key}" if key else base

    @property
    def url(self) -> str:
        """The store URL itself (scheme, bucket or root, prefix), as TIERING_STORE_URL spells it."""
        return self.uri(self.prefix) if self.prefix else self.uri()


@dataclass(frozen=True)
class ExternalAccess:
    """The credentials hook: how an engine outside tiering (DuckDB, Athena, Trino) reads the objects.

    `secret_type` names a DuckDB secret type ("s3", "gcs", "azure"); None when no secret is needed
    (local files). `options` are that secret's options; the values of `sensitive` options are replaced
    by `<NAME>` placeholders unless the caller asks to show secrets. `filesystem` is an fsspec
    filesystem DuckDB can register in-process when it has no reader of its own for the scheme.
    `athena` says whether Athena can read the location (S3 only).
    """

    secret_type: str | None = None
    options: Mapping[str, str | bool] = field(default_factory=dict)
    sensitive: Mapping[str, str] = field(default_factory=dict)  # option -> placeholder shown instead
    filesystem: Any = None
    athena: bool = False


def split_key(key: str) -> builtins.list[str]:
    """Split a key into path segments, refusing anything that could leave a root or bucket."""
    if not isinstance(key, str) or not key:
        raise InvalidInputError("object key must be a non-empty string")
    if "\x00" in key or "\\" in key:
        raise InvalidInputError(f"object key {key!r} contains a NUL or backslash")
    if key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        raise InvalidInputError(f"object key {key!r} is absolute; keys are relative to the store root")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidInputError(
                f"object key {key!r} has an empty, '.' or '..' segment; it could escape the store root"
            )
    return parts


def sha256_file(path: str | Path, chunk: int = 1024 * 1024) -> str:
    """Hex SHA-256 of a file, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(store: ObjectStore, key: str, expected: str | None, actual: str, source: str = "data") -> None:
    """Refuse a write whose content does not hash to the SHA-256 the caller gave (before anything lands)."""
    if expected is not None and expected.lower() != actual:
        raise StoreError(
            f"checksum mismatch writing {key!r} to {store.describe()}: expected sha256 {expected}, "
            f"{source} has {actual}; nothing was written",
            retryable=True,
        )


def hex_to_b64(hex_digest: str) -> str:
    try:
        raw = bytes.fromhex(hex_digest)
    except ValueError as exc:
        raise StoreError(f"sha256 {hex_digest!r} is not a hex digest") from exc
    if len(raw) != 32:
        raise StoreError(f"sha256 {hex_digest!r} is not 32 bytes long")
    return base64.b64encode(raw).decode("ascii")


def b64_to_hex(value: str | None) -> str | None:
    """Hex form of an S3 base64 checksum; None for composite (multipart, `...-N`) checksums."""
    if not value or "-" in value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def check_tail_length(key: str, length: int) -> None:
    """get_tail's argument check, the same on every store."""
    if length <= 0:
        raise InvalidInputError(f"invalid tail length {length} for {key!r} (> 0)")


class ObjectStore(abc.ABC):
    """A bucket (or folder) holding tiering's objects. Implementations: S3Store, LocalStore, FsspecStore;
    more register by URL scheme (tiering.store.register_backend)."""

    prefix: str
    request_count: int = 0  # requests sent so far (tests and restore reports count them)

    # --- identity ------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def location(self) -> StoreLocation:
        """Scheme, bucket or root, prefix: what the manifest records and what analysts are told."""

    def uri(self, key: str = "") -> str:
        """The address of a full key (s3://bucket/key, file:///root/key, memory://bucket/key)."""
        return self.location.uri(key)

    def analyst_path(self, key: str) -> str:
        """How DuckDB names the object: its URI (local stores override with a plain file path)."""
        return self.uri(key)

    def external_access(self, env: Mapping[str, str]) -> ExternalAccess:
        """The credentials hook for analysts' engines; `env` is the environment to take keys from."""
        return ExternalAccess()

    def key(self, *parts: str) -> str:
        """Join the store prefix and relative parts into a full key ("" parts are skipped)."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    # --- writing -----------------------------------------------------------------------------
    @abc.abstractmethod
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
        """Upload a file. create_only refuses to replace an existing key (ObjectExistsError), so
        two workers flushing the same deterministic key can never overwrite each other."""

    @abc.abstractmethod
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
        """Upload a small object from memory; same semantics as put_file."""

    # --- reading -----------------------------------------------------------------------------
    @abc.abstractmethod
    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        """Read an object or a part of it. byte_range=(start, end) is half-open: bytes start..end-1
        (like a Python slice); an end past the object is clipped."""

    def get_tail(self, key: str, length: int) -> tuple[bytes, int]:
        """(the last `length` bytes of an object, all of it when shorter; the object's size): a read-back of a
        footer that needs no HEAD on a store that answers both in one request (S3's suffix range). Raises
        ObjectNotFoundError when absent, ObjectArchivedError when it must be restored first."""
        check_tail_length(key, length)
        info = self.head(key)
        if info is None:
            raise ObjectNotFoundError(key, self.describe())
        if info.archived:
            raise ObjectArchivedError(key, self.describe())
        return self.get_bytes(key, (max(0, info.size - length), info.size)), info.size

    def get_stream(self, key: str, byte_range: tuple[int, int], piece: int = 256 * 1024) -> Iterator[bytes]:
        """The bytes of `byte_range` (half-open, as get_bytes), in order, in pieces of about `piece` bytes as they
        arrive, from one request: a reader works on the first pieces while the rest are on the wire. A store that
        cannot stream yields the range whole."""
        yield self.get_bytes(key, byte_range)

    def open_input(self, key: str, size: int | None = None, **kwargs: Any) -> RangeReader:
        """A seekable, read-only file object fetching only the ranges it reads. Pass the size
        (from the manifest) to save a HEAD. For Parquet use `pq.ParquetFile(f, pre_buffer=True)`:
        footer + one row group then cost 2 GETs."""
        return RangeReader(self, key, size=size, **kwargs)

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Metadata of one object, None when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """All objects whose key starts with prefix (a full key prefix), in key order, paginated."""

    def object_lock_possible(self) -> bool:
        """Whether an object here may be under S3 Object Lock (a retention date or a legal hold), so that a purge
        or an erase must HEAD each object before deleting it. True unless the backend knows better: S3 asks the
        bucket once; stores without Object Lock say False."""
        return True

    # --- deleting ----------------------------------------------------------------------------
    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        """Delete keys in batches (1000 per request); per-key failures are reported, not raised.
        Deleting a missing key counts as deleted (S3 semantics)."""

    def delete(self, key: str) -> None:
        """Delete one key; raise StoreError if the server refused."""
        result = self.delete_many([key])
        if result.errors:
            err = result.errors[0]
            raise StoreError(f"cannot delete {key!r} in {self.describe()}: {err.code}: {err.message}")

    # --- lifecycle / archive -------------------------------------------------------------------
    @abc.abstractmethod
    def get_lifecycle_rules(self) -> builtins.list[dict[str, Any]]:
        """The bucket's current lifecycle rules (all of them, ours and others'); [] if none."""

    @abc.abstractmethod
    def put_lifecycle_rules(self, rules: builtins.list[dict[str, Any]]) -> None:
        """Replace the bucket's whole lifecycle configuration (merge first: see tiering.lifecycle)."""

    @abc.abstractmethod
    def restore_object(self, key: str, days: int = 1, tier: str = "Standard") -> RestoreOutcome:
        """Ask for a temporary readable copy of a GLACIER/DEEP_ARCHIVE object; idempotent."""

    # --- information ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def capabilities(self) -> StoreCapabilities: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """Human description for messages and `tiering doctor`: URL and endpoint."""

    @abc.abstractmethod
    def ensure_bucket(self) -> None:
        """Create the bucket/root if missing (tests, `make run`); never used in production paths."""

    @abc.abstractmethod
    def check_access(self) -> None:
        """Raise a clear StoreError if the bucket is missing, credentials are bad or the endpoint
        is unreachable; return quietly otherwise."""

    def preflight(self) -> None:
        """What a run checks before it moves any job: the store is reachable, the bucket exists, and we may
        write and delete (a small probe object, named `_tiering-preflight-*` so that Hive-style readers
        such as Athena skip it even if it could not be deleted). Raises StoreError saying which failed."""
        self.check_access()
        key = self.key(f"_tiering-preflight-{uuid.uuid4().hex}.probe")
        try:
            self.put_bytes(key, b"tiering store preflight\n", create_only=False)
        except StoreError as exc:
            raise StoreError(
                f"store preflight: cannot write a probe object to {self.describe()}: {exc}", retryable=exc.retryable
            ) from exc
        result = self.delete_many([key])
        if result.errors:
            err = result.errors[0]
            raise StoreError(
                f"store preflight: cannot delete the probe object {key!r} from {self.describe()} "
                f"({err.code}: {err.message}); tiering needs to delete objects (purge, erase, repair)"
            )


class NoLifecycleStore(ObjectStore):
    """A store without lifecycle rules or archive storage classes (local folder, fsspec): expiration is done by
    `tiering purge`, and no object ever needs a RestoreObject. `no_lifecycle_reason` finishes the error."""

    no_lifecycle_reason = "has no lifecycle rules: expiration is done by `tiering purge` (schedule it)"

    def _no_lifecycle(self) -> LifecycleUnsupportedError:
        return LifecycleUnsupportedError(f"{self.describe()} {self.no_lifecycle_reason}")

    def get_lifecycle_rules(self) -> builtins.list[dict[str, Any]]:
        raise self._no_lifecycle()

    def put_lifecycle_rules(self, rules: builtins.list[dict[str, Any]]) -> None:
        raise self._no_lifecycle()

    def restore_object(self, key: str, days: int = 1, tier: str = "Standard") -> RestoreOutcome:
        if self.head(key) is None:
            raise ObjectNotFoundError(key, self.describe())
        return "not_archived"


class RangeReader(io.RawIOBase):
    """Seekable read-only view of a remote object that fetches byte ranges lazily.

    * The first read touching the last `tail_prefetch` bytes fetches that whole tail in one GET
      (a Parquet footer, even a large one, then costs one request; small objects are read whole).
    * Other misses fetch at least `readahead` bytes from the read position.
    * Fetched blocks are cached (up to `max_cache` bytes, least recently used dropped first).
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        size: int | None = None,
        *,
        readahead: int = 256 * 1024,
        tail_prefetch: int = 1024 * 1024,
        max_cache: int = 256 * 1024 * 1024,
    ) -> None:
        super().__init__()
        self._store = store
        self.key = key
        if size is None:
            info = store.head(key)
            if info is None:
                raise ObjectNotFoundError(key, store.describe())
            if info.archived:
                raise ObjectArchivedError(key, store.describe())
            size = info.size
        self._size = size
        self._pos = 0
        self._readahead = readahead
        self._tail_prefetch = tail_prefetch
        self._max_cache = max_cache
        self._blocks: list[tuple[int, bytes]] = []  # (start, data), most recently used last
        self.fetches = 0

    # io protocol
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        start = self._pos
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        if start >= end:
            return b""
        data = self._read_range(start, end)
        self._pos = end
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    # range cache
    def _cached(self, start: int, end: int) -> bytes | None:
        for i, (bstart, data) in enumerate(self._blocks):
            if bstart <= start and end <= bstart + len(data):
                if i != len(self._blocks) - 1:
                    self._blocks.append(self._blocks.pop(i))
                return data[start - bstart : end - bstart]
        return None

    def _read_range(self, start: int, end: int) -> bytes:
        hit = self._cached(start, end)
        if hit is not None:
            return hit
        tail_start = max(0, self._size - self._tail_prefetch)
        if end > tail_start and start >= tail_start - self._readahead:
            fstart, fend = min(start, tail_start), self._size
        else:
            fstart, fend = start, min(self._size, max(end, start + self._readahead))
        data = self._store.get_bytes(self.key, (fstart, fend))
        self.fetches += 1
        if len(data) != fend - fstart:
            raise StoreError(
                f"short read of {self.key!r} in {self._store.describe()}: asked bytes {fstart}-{fend}, "
                f"got {len(data)} (object changed or truncated?)",
                retryable=True,
            )
        self._blocks.append((fstart, data))
        total = sum(len(d) for _, d in self._blocks)
        while total > self._max_cache and len(self._blocks) > 1:
            total -= len(self._blocks.pop(0)[1])
        return data[start - fstart : end - fstart]
