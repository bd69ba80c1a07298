"""Object stores chosen by URL scheme: `s3://bucket/prefix` (S3Store) or `file:///path` (LocalStore).

store = open_store(settings)
store.put_file(store.key("queue=q/date=2024-01-01/part-0.parquet"), path, sha256=hexdigest)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from tiering.errors import ConfigError
from tiering.settings import Settings
from tiering.store.base import (
    ALL_STORAGE_CLASSES,
    ARCHIVE_STORAGE_CLASSES,
    DeleteErrorItem,
    DeleteResult,
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
    sha256_file,
)

__all__ = [
    "ALL_STORAGE_CLASSES",
    "ARCHIVE_STORAGE_CLASSES",
    "DeleteErrorItem",
    "DeleteResult",
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
    "open_store",
    "parse_store_url",
    "sha256_file",
]


def parse_store_url(url: str) -> tuple[str, str, str]:
    """("s3", bucket, prefix) or ("file", absolute path, "") for a store URL; ConfigError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("s3", "s3a"):
        if not parts.netloc:
            raise ConfigError(f"store URL {url!r} has no bucket: use s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ConfigError(f"store URL {url!r}: query strings are not supported; use s3://bucket/prefix")
        return "s3", parts.netloc, parts.path.strip("/")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"store URL {url!r} names host {parts.netloc!r}; use file:///absolute/path (three slashes)"
            )
        path = url2pathname(unquote(parts.path))
        if not path:
            raise ConfigError(f"store URL {url!r} has no path: use file:///absolute/path")
        return "file", str(Path(path).absolute()), ""
    raise ConfigError(
        f"store URL {url!r}: unsupported scheme {parts.scheme or '(none)'!r}; use s3://bucket/prefix "
        "(AWS S3 or any S3-compatible server via AWS_ENDPOINT_URL) or file:///absolute/path"
    )


def open_store(settings: Settings, **options: Any) -> ObjectStore:
    """The store for `settings.resolved_store_url`. `options` go to the backend's constructor
    (S3Store: credentials, max_attempts, connect_timeout, multipart_threshold, ...)."""
    kind, location, prefix = parse_store_url(settings.resolved_store_url)
    if kind == "file":
        from tiering.store.local import LocalStore

        return LocalStore(location, prefix, **options)
    from tiering.store.s3 import S3Store

    return S3Store(
        location,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        sse=settings.sse,
        sse_kms_key_id=settings.sse_kms_key_id,
        sse_bucket_key=settings.sse_bucket_key,
        **options,
    )
