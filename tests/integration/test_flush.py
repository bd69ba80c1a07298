"""flush_staged end to end: embedded PostgreSQL -> zstd Parquet objects on SeaweedFS, moto server and a local
folder, with the manifest, the job index, storage classes, SSE, verify, awkward queue names and store failures.

The helpers at the top (`archive_all`, `assert_exactly_once`, ...) are shared with test_flush_crash.py and
test_flush_duckdb.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tiering.parquet as pqio
from tests.helpers import count, insert_job, session_for
from tiering import __version__, layout, memory
from tiering.db import manifest as mdb
from tiering.demo import seed_demo_jobs
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.verify import verify_archive
from tiering.errors import StoreError
from tiering.policy import ArchivalConfig, ArchivalPolicy, StorageClassRule
from tiering.schema import SCHEMA_VERSION
from tiering.store.base import ObjectStore

ZERO = timedelta(0)
# Everything terminal is eligible at once (the demo spreads finish times over the last days).
ALL_TERMINAL = ArchivalPolicy(
    archive_completed_after=ZERO, archive_failed_after=ZERO, archive_dead_after=ZERO, archive_timed_out_after=ZERO
)
CONFIG = ArchivalConfig()
TIERING_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiering")
KEY_RE = re.compile(r"^(?:(?P<prefix>.+)/)?queue=(?P<slug>[a-z0-9._-]{1,64})/date=(?P<date>\d{4}-\d{2}-\d{2})/"
                    r"(?P<part>[A-Za-z0-9][A-Za-z0-9._-]*)\.parquet$")  # fmt: skip
STORES = ["local", "moto_server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)]
S3_SERVERS = ["moto_server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)]


# --- shared helpers ----------------------------------------------------------------------------
def seed(url: str, n: int, *, days: int = 20, start: int = 1) -> None:
    with psycopg.connect(url) as conn:
        seed_demo_jobs(conn, n, days=days, start=start)
        conn.commit()


def hot_payloads(url: str) -> dict[str, tuple[str, Any]]:
    """job id -> (queue, payload) of every hot job (before archiving)."""
    with psycopg.connect(url) as conn:
        return {str(r[0]): (r[1], r[2]) for r in conn.execute("SELECT id, queue_name, payload FROM hammerwork_jobs")}


def all_job_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {
            str(r[0])
            for r in conn.execute("SELECT id FROM hammerwork_jobs UNION ALL SELECT id FROM hammerwork_jobs_archive")
        }


def archive_all(url: str, policy: ArchivalPolicy = ALL_TERMINAL) -> int:
    return archive_jobs(session_for(url), None, policy, CONFIG, "manual", "tester").jobs_archived


def spread_archived_at(url: str, days: int = 3) -> None:
    """Give staged rows archived_at on `days` different UTC dates (so flush writes several date partitions)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE hammerwork_jobs_archive"
            " SET archived_at = archived_at - make_interval(days => abs(hashtext(id::text)) %% %s)",
            (days,),
        )
        conn.commit()


def read_object(store: ObjectStore, key: str) -> tuple[pq.ParquetFile, pa.Table]:
    data = store.get_bytes(key)
    pf = pq.ParquetFile(pa.BufferReader(data))
    return pf, pf.read()


@dataclass
class Snapshot:
    hot: list[str]
    staged: list[str]
    committed: list[mdb.ManifestRow]
    pending: list[mdb.ManifestRow]
    index: list[tuple[str, int, int, int]]
    objects: dict[int, tuple[pq.ParquetFile, pa.Table]]
    listed: set[str]

    @property
    def cold_ids(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for _, table in self.objects.values():
            c.update(table.column("id").to_pylist())
        return c


def snapshot(url: str, store: ObjectStore) -> Snapshot:
    with psycopg.connect(url) as conn:
        hot = [str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs")]
        staged = [str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")]
        rows = mdb.manifest_rows(conn, states=("committed", "pending"))
        index = [
            (str(r[0]), int(r[1]), int(r[2]), int(r[3]))
            for r in conn.execute(
                "SELECT job_id, object_id, row_group, row_in_group FROM tiering_job_index WHERE restored_at IS NULL"
            )
        ]
    committed = [r for r in rows if r.state == "committed"]
    pending = [r for r in rows if r.state == "pending"]
    objects = {r.id: read_object(store, r.key) for r in committed}
    listed = {i.key for i in store.list(store.prefix) if i.key.endswith(".parquet")}
    return Snapshot(hot, staged, committed, pending, index, objects, listed)


def assert_exactly_once(url: str, store: ObjectStore, expected: set[str], *, settled: bool = True) -> Snapshot:
    """Every expected job is in exactly one place (hot, staging, one committed object), indexed exactly once
    where its object holds it, and (when `settled`: no flusher died since the last clean run) the bucket
    holds nothing but committed objects and no manifest row is pending."""
    snap = snapshot(url, store)
    everywhere = Counter(snap.hot) + Counter(snap.staged) + snap.cold_ids
    dupes = {j: n for j, n in everywhere.items() if n > 1}
    assert not dupes, f"{len(dupes)} jobs in more than one place, e.g. {list(dupes.items())[:3]}"
    assert set(everywhere) == expected, (
        f"lost {len(expected - set(everywhere))} jobs, {len(set(everywhere) - expected)} unexpected"
    )
    idx = Counter(j for j, *_ in snap.index)
    assert all(n == 1 for n in idx.values()), "a job is indexed twice"
    assert set(idx) == set(snap.cold_ids), "index and committed objects disagree"
    for job_id, object_id, rg, row in snap.index:
        pf, table = snap.objects[object_id]
        offset = sum(pf.metadata.row_group(i).num_rows for i in range(rg))
        assert table.column("id")[offset + row].as_py() == job_id, f"index points {job_id} at the wrong row"
    for r in snap.committed:
        assert snap.objects[r.id][1].num_rows == r.row_count
    committed_keys = {r.key for r in snap.committed}
    assert committed_keys <= snap.listed, f"committed but missing: {sorted(committed_keys - snap.listed)[:3]}"
    if not settled:
        return snap
    assert not snap.pending, f"pending manifest rows left: {[r.key for r in snap.pending]}"
    assert snap.listed == committed_keys, (
        f"orphans {sorted(snap.listed - committed_keys)[:3]}, missing {sorted(committed_keys - snap.listed)[:3]}"
    )
    return snap


def cli_env(target: Any, url: str, home: Path, **extra: str) -> dict[str, str]:
    """Environment for a `tiering` subprocess on this database and store (AWS_* come from the fixture)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERING_")}
    env.update(
        TIERING_DATABASE_URL=url,
        TIERING_STORE_URL=target.settings.resolved_store_url,
        TIERING_HOME=str(home),
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def flush(url: str, target: Any, policy: ArchivalPolicy = ALL_TERMINAL, store: ObjectStore | None = None, **kw: Any):
    session = session_for(url, store or target.store, target.settings)
    return flush_staged(session, policy, CONFIG, initiated_by="tester", **kw)


# --- end to end --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", STORES)
def test_flush_end_to_end(backend: str, db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory(backend)
    store = target.store
    seed(db_url, 400)
    originals = hot_payloads(db_url)
    archived = archive_all(db_url)
    assert archived > 300
    spread_archived_at(db_url, 3)
    with psycopg.connect(db_url) as conn:
        groups = conn.execute(
            "SELECT count(DISTINCT (queue_name, (archived_at AT TIME ZONE 'UTC')::date)) FROM hammerwork_jobs_archive"
        ).fetchone()[0]
        staged_archived_at = {
            str(r[0]): r[1] for r in conn.execute("SELECT id, archived_at FROM hammerwork_jobs_archive")
        }
    assert groups > 10

    stats = flush(db_url, target)

    assert stats.jobs_flushed == archived
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs_archive") == 0
    snap = assert_exactly_once(db_url, store, set(originals))
    assert sum(r.row_count for r in snap.committed) == archived
    assert sorted(stats.keys) == sorted(r.key for r in snap.committed)
    # Small groups are not split: one object per (queue, date) group at the default size target.
    assert len(snap.committed) == groups
    assert len({(r.queue_name, r.partition_date) for r in snap.committed}) == groups

    for r in snap.committed:
        m = KEY_RE.match(r.key)
        assert m, r.key
        assert (m["prefix"] or "") == store.prefix
        assert m["slug"] == r.queue_slug == layout.queue_slug(r.queue_name)
        assert m["date"] == r.partition_date.isoformat()
        # the store's identity: the S3 bucket, or the local store's real root folder (never "")
        assert r.bucket == (target.bucket or str(Path(target.settings.resolved_store_url[len("file://") :])))
        assert r.schema_version == SCHEMA_VERSION
        assert r.storage_class == "STANDARD"
        pf, table = snap.objects[r.id]
        meta = pf.metadata
        # zstd everywhere, microsecond UTC timestamps, payload as JSON text
        codecs = {meta.row_group(g).column(c).compression for g in range(meta.num_row_groups)
                  for c in range(meta.num_columns)}  # fmt: skip
        assert codecs == {"ZSTD"}
        for name in ("created_at", "scheduled_at", "archived_at", "completed_at"):
            assert table.schema.field(name).type == pa.timestamp("us", tz="UTC"), name
        assert table.schema.field("payload").type == pa.string()
        kv = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items()}
        assert kv["tiering.schema_version"] == str(SCHEMA_VERSION)
        assert kv["tiering.version"] == __version__
        assert uuid.UUID(kv["tiering.flush_id"]) == r.flush_id
        assert meta.row_group(0).column(table.schema.get_field_index("created_at")).statistics.has_min_max
        # the real queue name as a column; the partition date is the UTC date of archived_at
        assert set(table.column("queue_name").to_pylist()) == {r.queue_name}
        for row in table.select(["id", "queue_name", "payload", "archived_at"]).to_pylist():
            queue, payload = originals[row["id"]]
            assert row["queue_name"] == queue
            assert json.loads(row["payload"]) == payload
            assert row["archived_at"] == staged_archived_at[row["id"]]
            assert row["archived_at"].astimezone(UTC).date() == r.partition_date
        assert r.min_archived_at == min(table.column("archived_at").to_pylist())
        assert r.max_archived_at == max(table.column("archived_at").to_pylist())
        assert sorted(r.statuses) == sorted(set(table.column("status").to_pylist()))

    report = verify_archive(session_for(db_url, store, target.settings), deep=True)
    assert report.ok and not report.problems, report.to_dict()
    assert report.objects_checked == report.deep_checked == len(snap.committed)


def test_objects_roll_over_at_the_size_target(
    db_url: str, s3_settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pqio, "MIN_ROW_GROUP_ROWS", 20)
    target_bytes = 60_000
    target = s3_settings_factory("moto_server", object_size_target_bytes=target_bytes, row_group_rows=50)
    with psycopg.connect(db_url) as conn:
        for i in range(600):
            insert_job(conn, queue="big", payload={"i": i, "blob": os.urandom(400).hex()})
        for i in range(5):
            insert_job(conn, queue="small", payload={"i": i})
        conn.commit()
    expected = all_job_ids(db_url)
    assert archive_all(db_url) == 605

    flush(db_url, target)

    snap = assert_exactly_once(db_url, target.store, expected)
    big = sorted((r for r in snap.committed if r.queue_name == "big"), key=lambda r: r.key)
    small = [r for r in snap.committed if r.queue_name == "small"]
    assert len(small) == 1 and small[0].row_count == 5  # a small group stays one file
    assert len(big) >= 3, [r.bytes for r in big]
    assert sum(r.row_count for r in big) == 600
    # every part but the last reached the target before rolling over (one ~20 KB row group of 50 rows
    # at a time), and none grew far beyond it
    sizes = [r.bytes for r in sorted(big, key=lambda r: r.row_count, reverse=True)]
    assert all(s >= target_bytes for s in sizes[:-1]), sizes
    assert all(s < 2 * target_bytes for s in sizes), sizes
    assert len({r.flush_id for r in big}) == 1 and len({r.partition_date for r in big}) == 1


def test_row_groups_of_compressible_rows_are_capped_by_arrow_bytes(
    db_url: str, s3_settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows that compress very well would make row groups of many rows (they are sized by compressed bytes);
    settings.row_group_max_bytes cuts them by their Arrow bytes, which bounds what a flush worker holds."""
    monkeypatch.setattr(pqio, "MIN_TARGETED_ROW_GROUP_ROWS", 5)
    cap = 64 * 1024
    target = s3_settings_factory("moto_server", row_group_max_bytes=cap)
    text = "the same sentence, over and over; " * 60  # ~2 KB that zstd makes a few bytes
    with psycopg.connect(db_url) as conn:
        for i in range(600):
            insert_job(conn, queue="verbose", payload={"i": i, "text": text})
        conn.commit()
    expected = all_job_ids(db_url)
    assert archive_all(db_url) == 600

    flush(db_url, target)

    snap = assert_exactly_once(db_url, target.store, expected)
    (row,) = snap.committed
    meta = snap.objects[row.id][0].metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sum(sizes) == 600
    # every row holds over 2 KB of Arrow data, so no row group holds more than cap / 2 KB rows (one row group of
    # the first 2,048 rows, all 600, without the cap)
    assert max(sizes) <= cap // 2000, sizes
    assert len(sizes) >= 600 // (cap // 2000), sizes


def test_each_round_gives_its_freed_memory_back(
    db_url: str, s3_settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tiering.memory: the threshold is fixed before the rounds and malloc's free pages go back after each round
    (what a round freed does not stay resident for the rest of the run)."""
    calls: list[str] = []
    monkeypatch.setattr(memory, "fix_mmap_threshold", lambda: calls.append("fix") or True)
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append("release") or True)
    target = s3_settings_factory("moto_server")
    seed(db_url, 300)
    archive_all(db_url)

    stats = flush(db_url, target, claim_rows=100, workers=1)

    assert stats.jobs_flushed > 0 and stats.rounds >= 3
    assert calls[0] == "fix"
    assert calls.count("release") >= stats.rounds


# --- storage classes and encryption --------------------------------------------------------------
@pytest.mark.parametrize("backend", S3_SERVERS)
def test_storage_classes_follow_policy_rules(backend: str, db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory(backend)
    policy = replace(
        ALL_TERMINAL,
        storage_classes=(
            StorageClassRule("STANDARD_IA", status="Failed"),
            StorageClassRule("ONEZONE_IA", queue="webhooks"),
        ),
    )
    seed(db_url, 300)
    expected = all_job_ids(db_url)
    archive_all(db_url, policy)

    stats = flush(db_url, target, policy)

    snap = assert_exactly_once(db_url, target.store, expected)
    by_class: dict[str, list[mdb.ManifestRow]] = {}
    for r in snap.committed:
        by_class.setdefault(r.storage_class, []).append(r)
        assert target.store.head(r.key).storage_class == r.storage_class, r.key
        assert r.key.endswith(f"-{r.storage_class.lower()}.parquet")
        statuses = set(snap.objects[r.id][1].column("status").to_pylist())
        queues = set(snap.objects[r.id][1].column("queue_name").to_pylist())
        if r.storage_class == "STANDARD_IA":
            assert statuses == {"Failed"}  # first matching rule wins: Failed beats the webhooks rule
        elif r.storage_class == "ONEZONE_IA":
            assert queues == {"webhooks"} and "Failed" not in statuses
        else:
            assert r.storage_class == "STANDARD"
            assert "Failed" not in statuses and "webhooks" not in queues
    assert set(by_class) == {"STANDARD", "STANDARD_IA", "ONEZONE_IA"}
    assert stats.by_storage_class == {c: sum(r.row_count for r in rows) for c, rows in by_class.items()}
    assert any("STANDARD_IA" in w or "128" in w for w in stats.warnings), stats.warnings  # tiny IA objects


def test_sse_is_recorded_and_verified(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server", sse="AES256")
    seed(db_url, 150)
    expected = all_job_ids(db_url)
    archive_all(db_url)

    flush(db_url, target)

    snap = assert_exactly_once(db_url, target.store, expected)
    for r in snap.committed:
        assert r.encryption == "AES256"
        assert target.store.head(r.key).encryption == "AES256"
    assert verify_archive(session_for(db_url, target.store, target.settings)).ok
    # verify notices an object recorded without the encryption the settings require
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE tiering_manifest SET encryption = NULL WHERE id = %s", (snap.committed[0].id,))
        conn.commit()
    report = verify_archive(session_for(db_url, target.store, target.settings))
    assert not report.ok
    assert [(p.kind, p.key) for p in report.problems] == [("encryption_mismatch", snap.committed[0].key)]


# --- verify ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["local", "moto_server"])
def test_verify_reports_missing_and_orphans_and_repairs(
    backend: str, db_url: str, s3_settings_factory: Any, tmp_path: Path
) -> None:
    target = s3_settings_factory(backend)
    store = target.store
    seed(db_url, 200)
    archive_all(db_url)
    flush(db_url, target)
    env = cli_env(target, db_url, tmp_path)
    clean = subprocess.run([TIERING_BIN, "archive", "verify", "--format", "json"], env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["ok"] is True

    with psycopg.connect(db_url) as conn:
        victim = mdb.manifest_rows(conn)[0]
    store.delete(victim.key)  # behind tiering's back
    orphan = layout.object_key(store.prefix, "stray", date(2024, 1, 2), "part-not-ours")
    store.put_bytes(orphan, b"not parquet")
    unrelated = (store.prefix + "/" if store.prefix else "") + "README.txt"
    store.put_bytes(unrelated, b"someone else's file")

    report = verify_archive(session_for(db_url, store, target.settings))
    kinds = {(p.kind, p.key) for p in report.problems}
    assert kinds == {("missing", victim.key), ("orphan", orphan)}, report.to_dict()
    assert not report.ok

    bad = subprocess.run([TIERING_BIN, "archive", "verify", "--format", "json"], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 9, (bad.stdout, bad.stderr)
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False
    assert {(p["kind"], p["key"]) for p in doc["problems"]} == kinds

    repaired = verify_archive(session_for(db_url, store, target.settings), repair=True)
    assert {(p.kind, p.key, p.repaired) for p in repaired.problems} == {
        ("missing", victim.key, False),
        ("orphan", orphan, True),
    }
    assert store.head(orphan) is None
    assert store.head(unrelated) is not None  # not tiering's: never touched
    after = verify_archive(session_for(db_url, store, target.settings))
    assert [(p.kind, p.key) for p in after.problems] == [("missing", victim.key)]


def test_deep_verify_reports_a_replaced_object(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    seed(db_url, 100)
    archive_all(db_url)
    flush(db_url, target)
    with psycopg.connect(db_url) as conn:
        rows = mdb.manifest_rows(conn)
    a, b = rows[0], rows[1]
    # overwrite a's object with b's bytes: size/checksum/rows/index all disagree with a's manifest row
    target.store.delete(a.key)
    target.store.put_bytes(a.key, target.store.get_bytes(b.key))
    report = verify_archive(session_for(db_url, target.store, target.settings), deep=True)
    kinds = {p.kind for p in report.problems if p.key == a.key}
    assert "checksum_mismatch" in kinds and "index_mismatch" in kinds, report.to_dict()
    assert not report.ok


# --- bad input -------------------------------------------------------------------------------------
AWKWARD_QUEUES = [
    "reports/monthly",
    "a/../../etc",
    "k=v/date=2020-01-01",
    "..",
    ".",
    "with space",
    "Ünïcødé-キュー-🚀",
    "UPPER",
    "tab\there",
    "back\\slash",
    "x" * 255,
    "é" * 255,
]


def test_awkward_queue_names_round_trip(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    long300 = "q" * 300
    with psycopg.connect(db_url) as conn:
        # Hammerwork's queue_name is VARCHAR(255); widen it so a 300-character name can exist at all.
        for table in ("hammerwork_jobs", "hammerwork_jobs_archive"):
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN queue_name TYPE varchar(400)")
        ids = {q: [insert_job(conn, queue=q, payload={"q": q, "i": i}) for i in range(3)]
               for q in [*AWKWARD_QUEUES, long300]}  # fmt: skip
        conn.commit()
    expected = {str(i) for v in ids.values() for i in v}
    archive_all(db_url)

    flush(db_url, target)

    snap = assert_exactly_once(db_url, target.store, expected)
    assert {r.queue_name for r in snap.committed} == set(ids)
    slugs = [r.queue_slug for r in snap.committed]
    assert len(set(slugs)) == len(slugs), "two queue names share a slug"
    for r in snap.committed:
        assert layout.is_valid_slug(r.queue_slug) and len(r.queue_slug) <= 64
        assert f"/queue={r.queue_slug}/" in r.key and layout.check_key_under(target.store.prefix, r.key)
        table = snap.objects[r.id][1]
        assert set(table.column("queue_name").to_pylist()) == {r.queue_name}
        assert sorted(table.column("id").to_pylist()) == sorted(str(i) for i in ids[r.queue_name])
        assert {json.loads(p)["q"] for p in table.column("payload").to_pylist()} == {r.queue_name}
    assert verify_archive(session_for(db_url, target.store, target.settings), deep=True).ok


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_nothing_lost(url: str, staged_before: set[str]) -> None:
    with psycopg.connect(url) as conn:
        staged = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
        committed = count(conn, "tiering_manifest", "state = 'committed'")
        indexed = count(conn, "tiering_job_index")
    assert staged == staged_before
    assert committed == 0 and indexed == 0


def test_unreachable_endpoint_is_a_clear_error_and_loses_nothing(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    port = _closed_port()
    dead = type(target.store)(
        target.bucket, "archive", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
        aws_access_key_id="k", aws_secret_access_key="s", max_attempts=2, connect_timeout=1, read_timeout=2,
    )  # fmt: skip
    seed(db_url, 100)
    expected = all_job_ids(db_url)
    archive_all(db_url)
    with psycopg.connect(db_url) as conn:
        staged_before = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}

    with pytest.raises(StoreError) as err:
        flush(db_url, target, store=dead)

    assert f"127.0.0.1:{port}" in str(err.value)
    assert err.value.retryable
    _assert_nothing_lost(db_url, staged_before)
    # the same flush against the real endpoint then finishes, cleaning what the failed one recorded
    flush(db_url, target)
    assert_exactly_once(db_url, target.store, expected)


def test_missing_bucket_is_a_clear_error_and_loses_nothing(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    missing = target.server.store(f"no-such-bucket-{uuid.uuid4().hex[:8]}", "archive", max_attempts=2)
    seed(db_url, 100)
    archive_all(db_url)
    with psycopg.connect(db_url) as conn:
        staged_before = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}

    with pytest.raises(StoreError) as err:
        flush(db_url, target, store=missing)

    assert "NoSuchBucket" in str(err.value) or "does not exist" in str(err.value)
    assert missing.bucket in str(err.value)
    _assert_nothing_lost(db_url, staged_before)


class _Inject5xx:
    """A botocore `before-send` hook: answers the first `times` PutObject requests itself with an S3 error
    (503 SlowDown, 500 InternalError, ...) before they reach the server."""

    ERRORS = [(503, "SlowDown", "Please reduce your request rate."), (500, "InternalError", "We hit a snag.")]

    def __init__(self, times: int) -> None:
        self.times = times
        self.injected = 0
        self.passed = 0
        self.lock = threading.Lock()

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        if request.method != "PUT" or "uploadId" in request.url or "partNumber" in request.url:
            return None
        with self.lock:
            if self.injected >= self.times:
                self.passed += 1
                return None
            status, code, message = self.ERRORS[self.injected % len(self.ERRORS)]
            self.injected += 1
        body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()

        class Raw:
            def stream(self, **_: Any) -> Any:
                yield body

        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, Raw())


def test_s3_5xx_and_throttling_are_retried(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    store = target.store
    hook = _Inject5xx(times=3)
    store.client.meta.events.register_first("before-send.s3.PutObject", hook)
    seed(db_url, 150)
    expected = all_job_ids(db_url)
    archive_all(db_url)

    stats = flush(db_url, target)

    assert hook.injected == 3
    assert hook.passed == stats.objects_written  # each object eventually went through exactly once
    assert_exactly_once(db_url, store, expected)


def test_persistent_5xx_fails_cleanly_and_a_rerun_succeeds(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("moto_server")
    flaky = target.open_store(max_attempts=2)
    hook = _Inject5xx(times=10_000)
    flaky.client.meta.events.register_first("before-send.s3.PutObject", hook)
    seed(db_url, 150)
    expected = all_job_ids(db_url)
    archive_all(db_url)
    with psycopg.connect(db_url) as conn:
        staged_before = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}

    with pytest.raises(StoreError) as err:
        flush(db_url, target, store=flaky)

    assert err.value.retryable
    assert "SlowDown" in str(err.value) or "InternalError" in str(err.value)
    assert hook.injected >= 2 and hook.passed == 0
    _assert_nothing_lost(db_url, staged_before)
    stats = flush(db_url, target)
    assert stats.jobs_flushed == len(staged_before)
    assert_exactly_once(db_url, target.store, expected)


def test_bulk_runs_refresh_planner_statistics(
    db_url: str, s3_settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Archive and flush runs that change many rows ANALYZE what they changed (reltuples -1 = never analysed);
    small runs leave it to autovacuum. Fewer than 50 rows: autovacuum would not analyse these tables itself."""
    from tiering.db import planner

    def analysed(table: str) -> bool:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()
        return row is not None and row[0] >= 0

    tables = [planner.HOT, planner.STAGING, planner.JOB_INDEX, planner.MANIFEST]
    seed(db_url, 40)
    monkeypatch.setattr(planner, "BULK_ROWS", 1_000)
    assert archive_all(db_url) > 0
    assert not any(analysed(t) for t in tables)  # a small run: nothing analysed
    seed(db_url, 40, start=1000)
    monkeypatch.setattr(planner, "BULK_ROWS", 5)
    assert archive_all(db_url) >= 5
    assert analysed(planner.HOT) and analysed(planner.STAGING)
    assert not analysed(planner.JOB_INDEX) and not analysed(planner.MANIFEST)
    target = s3_settings_factory("local")
    assert flush(db_url, target).jobs_flushed >= 5
    assert analysed(planner.JOB_INDEX) and analysed(planner.MANIFEST)
