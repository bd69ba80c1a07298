"""Object stores chosen by URL scheme, from a registry (as pyiceberg's load_file_io, litestream's
replica-client factories): `s3://bucket/prefix` (S3Store), `file:///path` (LocalStore), and through
fsspec `memory://bucket/prefix`, `gs://`, `az://`, `abfs://` (FsspecStore, where the fsspec package for
the scheme is installed). The engine never names a backend: it sees only the ObjectStore protocol.

    store = open_store(settings)
    store.put_file(store.key("queue=q/date=2024-01-01/part-0.parquet"), path, sha256=hexdigest)

Adding a backend (one new module; no engine, CLI or API file changes):
1. Subclass `ObjectStore` (tiering/store/base.py): the object calls, `location` (scheme, bucket or root,
   prefix: what the manifest records), `capabilities` (say what it lacks: lifecycle, storage classes,
   restore, conditional puts), `describe()`, `check_access()`/`ensure_bucket()`; override
   `external_access(env)` if analysts' engines need credentials, `analyst_path(key)` if DuckDB names
   objects other than by `uri(key)`.
2. `register_backend(("myscheme",), opener)` with `opener(url: StoreURL, settings, **options)`; give
   `parser=` for URLs that are not scheme://bucket/prefix and `available=` to name a missing package.
3. Run the contract on it: tests/integration/test_store_registry.py shows how (the test-defined DictStore);
   add its SDK to pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from tiering.errors import ConfigError
from tiering.settings import Settings
from tiering.store.base import (
    ALL_STORAGE_CLASSES,
    ARCHIVE_STORAGE_CLASSES,
    DeleteErrorItem,
    DeleteResult,
    ExternalAccess,
    LifecycleUnsupportedError,
    ObjectArchivedError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PutResult,
    RangeReader,
    RestoreOutcome,
    StoreCapabilities,
    StoreLocation,
    sha256_file,
)

__all__ = [
    "ALL_STORAGE_CLASSES",
    "ARCHIVE_STORAGE_CLASSES",
    "DeleteErrorItem",
    "DeleteResult",
    "ExternalAccess",
    "LifecycleUnsupportedError",
    "ObjectArchivedError",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "PutResult",
    "RangeReader",
    "RestoreOutcome",
    "StoreCapabilities",
    "StoreLocation",
    "StoreURL",
    "open_store",
    "parse_store_url",
    "register_backend",
    "registered_schemes",
    "sha256_file",
]


class StoreURL(NamedTuple):
    """A parsed store URL: ("s3", bucket, prefix), ("file", absolute root, ""), ("memory", bucket, prefix)."""

    scheme: str
    bucket: str
    prefix: str


Opener = Callable[..., ObjectStore]  # (url: StoreURL, settings: Settings, **options) -> ObjectStore
Parser = Callable[[str], StoreURL]


@dataclass(frozen=True)
class Backend:
    """One registered backend: the schemes it serves, how to parse its URLs, how to open a store."""

    name: str
    schemes: tuple[str, ...]
    opener: Opener
    parser: Parser
    available: Callable[[str], str | None] = lambda scheme: None  # None, or what to install


_BACKENDS: dict[str, Backend] = {}


def _check_url(url: str) -> None:
    """Refuse what no backend should ever see: control characters and `..` segments (usage errors)."""
    decoded = unquote(url)
    bad = [c for c in decoded if ord(c) < 0x20 or ord(c) == 0x7F]
    if bad:
        raise ConfigError(f"store URL {url!r} contains control characters ({bad[0]!r}); fix TIERING_STORE_URL")
    parts = urlsplit(url)
    segments = [parts.netloc, *unquote(parts.path).replace("\\", "/").split("/")]
    if ".." in segments:
        raise ConfigError(f"store URL {url!r} has a '..' segment; name the bucket and prefix without it")


def _bucket_url(url: str) -> StoreURL:
    """scheme://bucket/prefix, the form every bucket-style backend shares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not parts.netloc:
        raise ConfigError(f"store URL {url!r} has no bucket: use {scheme}://bucket/prefix")
    if parts.query or parts.fragment:
        raise ConfigError(f"store URL {url!r}: query strings are not supported; use {scheme}://bucket/prefix")
    return StoreURL(scheme, parts.netloc, parts.path.strip("/"))


def _s3_url(url: str) -> StoreURL:
    parsed = _bucket_url(url)
    return StoreURL("s3", parsed.bucket, parsed.prefix)


def _file_url(url: str) -> StoreURL:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"store URL {url!r} names host {parts.netloc!r}; use file:///absolute/path (three slashes)")
    path = url2pathname(unquote(parts.path))
    if not path:
        raise ConfigError(f"store URL {url!r} has no path: use file:///absolute/path")
    return StoreURL("file", str(Path(path).absolute()), "")


def _open_s3(url: StoreURL, settings: Settings, **options: Any) -> ObjectStore:
    from tiering.store.s3 import S3Store

    params: dict[str, Any] = {
        "endpoint_url": settings.s3_endpoint_url,
        "region": settings.s3_region,
        "sse": settings.sse,
        "sse_kms_key_id": settings.sse_kms_key_id,
        "sse_bucket_key": settings.sse_bucket_key,
        "connect_timeout": settings.store_connect_timeout,
        "read_timeout": settings.store_read_timeout,
        "deadline": settings.store_deadline,
        "max_attempts": settings.store_max_attempts,
    }
    return S3Store(url.bucket, url.prefix, **(params | options))


def _open_local(url: StoreURL, settings: Settings, **options: Any) -> ObjectStore:
    from tiering.store.local import LocalStore

    return LocalStore(url.bucket, url.prefix, **options)


def _open_fsspec(url: StoreURL, settings: Settings, **options: Any) -> ObjectStore:
    from tiering.store.fsspec_store import FsspecStore

    return FsspecStore(url.scheme, url.bucket, url.prefix, **options)


def _fsspec_available(scheme: str) -> str | None:
    from tiering.store.fsspec_store import fsspec_available

    return fsspec_available(scheme)


def backend_name(opener: Opener) -> str:
    return str(getattr(opener, "__qualname__", None) or type(opener).__name__)


def register_backend(
    schemes: tuple[str, ...] | list[str],
    opener: Opener,
    *,
    parser: Parser = _bucket_url,
    name: str | None = None,
    available: Callable[[str], str | None] | None = None,
) -> None:
    """Serve `schemes` with `opener(url: StoreURL, settings, **options) -> ObjectStore`. `parser` turns
    the URL into a StoreURL (default scheme://bucket/prefix). A later registration of a scheme wins."""
    backend = Backend(
        name or backend_name(opener),
        tuple(s.lower() for s in schemes),
        opener,
        parser,
        available or (lambda scheme: None),
    )
    for scheme in backend.schemes:
        _BACKENDS[scheme] = backend


def registered_schemes() -> list[str]:
    return sorted(_BACKENDS)


def _backend(url: str) -> Backend:
    _check_url(url)
    scheme = urlsplit(url).scheme.lower()
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError(
            f"store URL {url!r}: unsupported scheme {scheme or '(none)'!r}; use s3://bucket/prefix "
            "(AWS S3 or any S3-compatible server via AWS_ENDPOINT_URL), file:///absolute/path, memory://bucket, "
            f"or one of {', '.join(registered_schemes())}"
        )
    missing = backend.available(scheme)
    if missing:
        raise ConfigError(f"store URL {url!r}: {scheme}:// needs {missing} (pip install {missing.split()[0]})")
    return backend


def parse_store_url(url: str) -> StoreURL:
    """(scheme, bucket or root, prefix) for a store URL; ConfigError (exit 2) for anything else."""
    return _backend(url).parser(url)


def open_store(settings: Settings, **options: Any) -> ObjectStore:
    """The store for `settings.resolved_store_url`, by its scheme. `options` go to the backend's
    constructor (S3Store: credentials, max_attempts, connect_timeout, multipart_threshold, ...)."""
    url = settings.resolved_store_url
    backend = _backend(url)
    return backend.opener(backend.parser(url), settings, **options)


register_backend(("s3", "s3a"), _open_s3, parser=_s3_url, name="s3")
register_backend(("file",), _open_local, parser=_file_url, name="local")
register_backend(
    ("memory", "gs", "gcs", "az", "abfs", "abfss"), _open_fsspec, name="fsspec", available=_fsspec_available
)
