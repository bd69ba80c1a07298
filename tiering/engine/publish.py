"""One publish step for every object tiering writes (flush parts, and the rewrites of purge and erase).

1. `record_pending`: the object's manifest row goes in as *pending* (the writer holds its flush lock) BEFORE the
   upload, so an object in the bucket is always accounted for: a crash leaves a pending row whose lock is free,
   and the next flush (or `verify --repair`) removes both;
2. `upload`: a create-only put with the SHA-256 and the provenance metadata (`provenance`, the one place it is
   defined); an identical object left by a retry of this very upload is accepted; then the read-back: the
   store's size, and the footer's row count unless the object is archived (GLACIER cannot be read back);
3. `record_upload`: the store's etag and encryption go on the pending row.
The caller then commits (a flush: manifest rows, job index and staged rows in one transaction; a rewrite: the
swap) or, when it gives up, `discard`s what it published.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from tiering import __version__
from tiering import parquet as pqio
from tiering.db import manifest as mdb
from tiering.errors import VerificationError
from tiering.parquet import WrittenPart
from tiering.store.base import (
    ARCHIVE_STORAGE_CLASSES,
    ObjectArchivedError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectStore,
    PutResult,
)


@dataclass(frozen=True)
class Pending:
    """A written part whose manifest row is pending: where it goes and what it is."""

    manifest_id: int
    key: str
    queue_name: str
    storage_class: str
    flush_id: uuid.UUID
    schema_version: int
    written: WrittenPart
    replaces_key: str | None = None


def provenance(
    flush_id: uuid.UUID, schema_version: int, sha256: str, replaces_key: str | None = None
) -> dict[str, str]:
    """The object metadata every object tiering writes carries (S3 user metadata, the local store's sidecar)."""
    metadata = {
        "tiering-schema-version": str(schema_version),
        "tiering-version": __version__,
        "tiering-flush-id": str(flush_id),
        "sha256": sha256,
    }
    if replaces_key is not None:
        metadata["tiering-replaces"] = replaces_key
    return metadata


def record_pending(
    meta: psycopg.Connection,
    store: ObjectStore,
    written: WrittenPart,
    *,
    flush_id: uuid.UUID,
    key: str,
    queue_name: str,
    queue_slug: str,
    partition_date: date,
    storage_class: str,
    schema_version: int,
    replaces_id: int | None = None,
    replaces_key: str | None = None,
    bucket: str | None = None,
) -> Pending:
    """Step 1: the pending manifest row (on `meta`, an autocommit connection, so it is visible at once)."""
    values: dict[str, Any] = {
        "flush_id": flush_id,
        "bucket": store.location.bucket if bucket is None else bucket,
        "key": key,
        "queue_name": queue_name,
        "queue_slug": queue_slug,
        "partition_date": partition_date,
        **pqio.manifest_fields(written),
        "storage_class": storage_class,
        "schema_version": schema_version,
    }
    if replaces_id is not None:
        values["replaces_id"] = replaces_id
    manifest_id = mdb.insert_pending(meta, values)
    return Pending(manifest_id, key, queue_name, storage_class, flush_id, schema_version, written, replaces_key)


def upload(store: ObjectStore, pending: Pending, *, read_back: bool = True) -> PutResult:
    """Step 2: create-only upload with checksum and provenance, then the read-back. Thread-safe (no database)."""
    result = put(store, pending)
    if read_back:
        check_uploaded(store, pending)
    return result


def put(store: ObjectStore, pending: Pending) -> PutResult:
    """The create-only put with checksum and provenance (a retry's identical object is accepted)."""
    written = pending.written
    metadata = provenance(pending.flush_id, pending.schema_version, written.sha256, pending.replaces_key)
    try:
        result = store.put_file(
            pending.key, written.path, storage_class=pending.storage_class, sha256=written.sha256, metadata=metadata
        )
    except ObjectExistsError:
        # A retry of this very upload: accept it only if the object is the one we wrote.
        info = store.head(pending.key)
        if info is None or info.size != written.bytes or (info.checksum_sha256 not in (None, written.sha256)):
            raise
        result = PutResult(pending.key, info.size, info.etag, written.sha256, None, info.encryption, info.kms_key_id)
    return result


READ_BACK_TAIL = 1024 * 1024  # what a read-back of the footer fetched before (RangeReader's tail prefetch)


def check_uploaded(store: ObjectStore, pending: Pending) -> None:
    """The read-back: the store holds an object of our size whose footer has the rows we wrote. One request (the
    object's tail and its size) where the store can, instead of a HEAD and a GET: a partial purge's rewrites
    were bound by the store client's CPU per request."""
    written = pending.written
    if pending.storage_class not in ARCHIVE_STORAGE_CLASSES:
        try:
            tail, size = store.get_tail(pending.key, READ_BACK_TAIL)
        except ObjectNotFoundError:
            raise VerificationError(f"uploaded {pending.key} but the store reports nothing") from None
        except ObjectArchivedError:
            pass  # archived by the bucket's own rules: checked by its HEAD, as an archive class is
        else:
            if size != written.bytes:
                raise VerificationError(f"uploaded {pending.key} but the store reports {size}")
            try:
                rows = pqio.footer_rows_in_tail(tail, size)
            except ValueError as exc:
                raise VerificationError(f"{pending.key}: {exc}") from None
            if rows is None:  # a footer longer than the tail
                with store.open_input(pending.key, size=written.bytes) as fh:
                    rows = pqio.footer_rows(fh)
            if rows != written.rows:
                raise VerificationError(f"{pending.key}: footer says {rows} rows, wrote {written.rows}")
            return
    info = store.head(pending.key)
    if info is None or info.size != written.bytes:
        raise VerificationError(f"uploaded {pending.key} but the store reports {info.size if info else 'nothing'}")
    if info.archived:
        return  # GLACIER/DEEP_ARCHIVE objects cannot be read back without a restore
    with store.open_input(pending.key, size=written.bytes) as fh:
        rows = pqio.footer_rows(fh)
    if rows != written.rows:
        raise VerificationError(f"{pending.key}: footer says {rows} rows, wrote {written.rows}")


def record_upload(meta: psycopg.Connection, pending: Pending, result: PutResult) -> None:
    """Step 3: what the store answered goes on the pending row."""
    mdb.update_upload(
        meta,
        pending.manifest_id,
        {"etag": result.etag, "encryption": result.encryption, "kms_key_id": result.kms_key_id},
    )


def discard(meta: psycopg.Connection, store: ObjectStore, pending: Pending, *, uploaded: bool) -> int:
    """Undo a publish the caller will not commit: the object (if uploaded) and its pending row; returns the
    DeleteObjects calls made."""
    calls = 0
    if uploaded:
        store.delete_many([pending.key])
        calls = 1
    mdb.delete_pending(meta, pending.manifest_id)
    return calls
