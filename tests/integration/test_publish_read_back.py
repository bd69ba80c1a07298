"""The read-back of an upload (publish.check_uploaded) on every store: one request where the store answers an
object's tail with its size, and every mismatch it looked for before is still a VerificationError."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures_s3 import StoreTarget
from tiering.engine import publish
from tiering.errors import VerificationError
from tiering.parquet import WrittenPart
from tiering.store.local import LocalStore
from tiering.store.s3 import S3Store


def pending_for(path: Path, key: str, rows: int, size: int, storage_class: str = "STANDARD") -> publish.Pending:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    written = WrittenPart(path, path.stem, rows, 1, size, size, digest, None, None, None, None, [], 0, pa.table({}))
    return publish.Pending(1, key, "q", storage_class, uuid.uuid4(), 1, written)


def test_a_read_back_checks_size_and_footer_rows_in_one_request(
    any_store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = any_store.store
    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(300)], "n": list(range(300))}), path, row_group_size=100)
    size = path.stat().st_size
    key = store.key("queue=q/date=2024-01-01/part.parquet")
    store.put_file(key, path)

    before = store.request_count
    publish.check_uploaded(store, pending_for(path, key, 300, size))
    if isinstance(store, (S3Store, LocalStore)):
        assert store.request_count == before + 1  # no HEAD beside the footer's GET
    with pytest.raises(VerificationError, match="footer says 300 rows, wrote 301"):
        publish.check_uploaded(store, pending_for(path, key, 301, size))
    with pytest.raises(VerificationError, match=f"reports {size}"):
        publish.check_uploaded(store, pending_for(path, key, 300, size + 1))
    with pytest.raises(VerificationError, match="reports nothing"):
        publish.check_uploaded(store, pending_for(path, store.key("queue=q/missing.parquet"), 300, size))

    monkeypatch.setattr(publish, "READ_BACK_TAIL", 16)  # a footer longer than the tail: read whole after it
    publish.check_uploaded(store, pending_for(path, key, 300, size))
    with pytest.raises(VerificationError, match="footer says 300 rows"):
        publish.check_uploaded(store, pending_for(path, key, 299, size))

    junk = tmp_path / "junk.parquet"
    junk.write_bytes(os.urandom(size))
    junk_key = store.key("queue=q/date=2024-01-01/junk.parquet")
    store.put_file(junk_key, junk)
    with pytest.raises(VerificationError, match="not a Parquet file"):
        publish.check_uploaded(store, pending_for(junk, junk_key, 300, size))
