"""Purge across staging and cold on embedded PostgreSQL and S3 servers (moto server, moto in-process)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import count, insert_job, session_for
from tiering.db.operations import list_operations
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import (
    MARK_THREADS,
    auto_purge,
    preview_purge_operation,
    purge_archived_jobs,
    purge_archived_jobs_by_queue,
    purge_archived_jobs_by_status,
)
from tiering.errors import SafetyAbort
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store.base import DeleteErrorItem, DeleteResult, ObjectStore

DAY = timedelta(days=1)
SEC = timedelta(seconds=1)
NOW = datetime.now(UTC)
# A fixed noon two years ago: jobs "at" hours around it share one UTC date partition.
BASE = (NOW - 700 * DAY).replace(hour=12, minute=0, second=0, microsecond=0)
ARCHIVE_ALL = ArchivalPolicy(
    archive_completed_after=timedelta(0),
    archive_failed_after=timedelta(0),
    archive_dead_after=timedelta(0),
    archive_timed_out_after=timedelta(0),
)


@dataclass(frozen=True)
class Spec:
    queue: str
    status: str
    archived_at: datetime
    payload: dict[str, Any] | None = None


def make_jobs(db_url: str, specs: Sequence[Spec], *, flush: tuple[ObjectStore, Settings] | None = None) -> list[str]:
    """Insert hot jobs, archive them all, set their archived_at, and (optionally) flush them to cold."""
    ids: list[str] = []
    with psycopg.connect(db_url) as conn:
        for i, s in enumerate(specs):
            payload = s.payload if s.payload is not None else {"n": i, "queue": s.queue, "pad": "x" * 40}
            ids.append(str(insert_job(conn, queue=s.queue, status=s.status, payload=payload, age=DAY)))
        conn.commit()
    archive_jobs(session_for(db_url), None, ARCHIVE_ALL, ArchivalConfig(), "manual", "tester")
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """UPDATE hammerwork_jobs_archive a SET archived_at = u.at
                 FROM unnest(%s::uuid[], %s::timestamptz[]) AS u(id, at) WHERE a.id = u.id""",
            (ids, [s.archived_at for s in specs]),
        )
        conn.commit()
    if flush is not None:
        store, settings = flush
        flush_staged(session_for(db_url, store, settings), ARCHIVE_ALL, ArchivalConfig())
    return ids


def object_keys(store: ObjectStore) -> set[str]:
    return {o.key for o in store.list(store.prefix)}


def read_objects(store: ObjectStore, keys: Iterable[str]) -> pa.Table:
    tables = [pq.read_table(io.BytesIO(store.get_bytes(k))) for k in sorted(keys)]
    return pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.string())})


def duck_rows(store: ObjectStore, keys: Iterable[str], tmp_path: Any) -> dict[str, str]:
    """id -> payload of every row of these objects, read by DuckDB from local copies."""
    files = []
    for i, k in enumerate(sorted(keys)):
        p = tmp_path / f"obj-{i}.parquet"
        p.write_bytes(store.get_bytes(k))
        files.append(str(p))
    if not files:
        return {}
    con = duckdb.connect()
    rows = con.execute("SELECT id, payload FROM read_parquet(?)", [files]).fetchall()
    total = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()
    assert total is not None and total[0] == len(rows)
    return {r[0]: r[1] for r in rows}


def committed_keys(db_url: str) -> set[str]:
    with psycopg.connect(db_url) as conn:
        return {r[0] for r in conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed'")}


def live_index(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        return {
            str(r[0]): r[1]
            for r in conn.execute(
                """SELECT i.job_id, m.key FROM tiering_job_index i JOIN tiering_manifest m ON m.id = i.object_id
                    WHERE i.restored_at IS NULL"""
            )
        }


@pytest.fixture
def target(s3_settings_factory: Any, db_url: str) -> Any:
    t = s3_settings_factory("moto_server")
    t.settings = t.settings.with_overrides(database_url=db_url)
    return t


def _mixed_specs() -> list[Spec]:
    specs: list[Spec] = []
    # q1: day -10 (all old), day -3 (all old), straddling day 0 (hours -2..+2 around BASE)
    for d in (10, 3):
        specs += [Spec("q1", "Completed", BASE - d * DAY + timedelta(minutes=i)) for i in range(4)]
    specs += [Spec("q1", "Completed", BASE + timedelta(hours=h)) for h in (-2, -1, 1, 2)]
    # q2: old, mixed statuses in one object
    specs += [Spec("q2", st, BASE - 5 * DAY + timedelta(minutes=i)) for i, st in enumerate(
        ["Completed", "Failed", "Completed", "Dead", "Failed"])]  # fmt: skip
    # q3: young: never purged
    specs += [Spec("q3", "Completed", NOW - 2 * DAY + timedelta(minutes=i)) for i in range(3)]
    return specs


def test_preview_equals_purge_by_age_with_whole_and_straddling_objects(target: Any, db_url: str, tmp_path: Any) -> None:
    store, settings = target.store, target.settings
    specs = _mixed_specs()
    ids = make_jobs(db_url, specs, flush=(store, settings))
    # plus staged rows that stay in staging
    staged = make_jobs(db_url, [Spec("q1", "Completed", BASE - 20 * DAY), Spec("q4", "Failed", NOW - DAY)])
    before = object_keys(store)
    assert len(before) == 5  # q1 x3 dates, q2, q3
    payload_before = duck_rows(store, before, tmp_path)
    cutoff = BASE  # straddling object: 2 before, 2 after

    preview = preview_purge_operation(session_for(db_url, store, settings), cutoff)
    result = purge_archived_jobs(session_for(db_url, store, settings), cutoff, initiated_by="tester")

    expected_gone = {i for i, s in zip(ids, specs, strict=True) if s.archived_at < cutoff} | {staged[0]}
    assert preview.jobs_to_purge == result.jobs_purged == len(expected_gone) == 16
    assert preview.staging_jobs == result.staging_jobs_purged == 1
    assert preview.objects_to_delete == result.objects_deleted == 3  # q1 day-10, q1 day-3, q2
    assert preview.objects_to_rewrite == result.objects_rewritten == 1
    assert preview.affected_queues == result.affected_queues == ["q1", "q2"]
    assert preview.oldest_affected == BASE - 20 * DAY
    assert preview.newest_affected == BASE - timedelta(hours=1)
    assert result.delete_calls == 2  # one DeleteObjects for the 3 whole objects, one for the replaced object
    assert not result.errors and not result.locked_objects
    # prefixes whose every object went are reported
    assert any(p.endswith("queue=q2/") for p in result.prefixes_purged)
    assert sum("queue=q1/date=" in p for p in result.prefixes_purged) == 2
    # bucket and manifest agree: only the rewritten q1 object and q3 are left
    after = object_keys(store)
    assert after == committed_keys(db_url)
    assert len(after) == 2 and not (after & {k for k in before if "q3" not in k})
    # every surviving job is intact (DuckDB count + payloads), nothing purged survives
    payload_after = duck_rows(store, after, tmp_path)
    survivors = set(ids) - expected_gone
    assert set(payload_after) == survivors
    assert all(payload_after[j] == payload_before[j] for j in survivors)
    assert set(live_index(db_url)) == survivors
    assert {k for k in live_index(db_url).values()} == after
    with psycopg.connect(db_url) as conn:
        assert count(conn, "hammerwork_jobs_archive") == 1  # the young q4 job
        purged = conn.execute(
            "SELECT count(*), count(purged_at) FROM tiering_manifest WHERE state = 'purged'"
        ).fetchone()
        assert purged == (4, 4)
        new = conn.execute(
            "SELECT replaces_id, row_count FROM tiering_manifest WHERE replaces_id IS NOT NULL"
        ).fetchone()
        assert new is not None and new[1] == 2
    # bytes: whole objects and staging exact; the rewrite's saving estimated before, exact after
    assert preview.storage_estimated
    assert abs(preview.storage_to_free - result.storage_freed) <= max(2000, 0.5 * result.storage_freed)
    ops = list_operations(psycopg.connect(db_url), operation="purge")
    assert len(ops) == 1 and ops[0].outcome == "succeeded" and ops[0].counts["jobs_purged"] == 16
    assert ops[0].initiated_by == "tester"


def test_preview_equals_purge_by_queue_and_by_status(target: Any, db_url: str) -> None:
    store, settings = target.store, target.settings
    specs = _mixed_specs()
    ids = make_jobs(db_url, specs, flush=(store, settings))
    cutoff = NOW - 30 * DAY

    p_queue = preview_purge_operation(session_for(db_url, store, settings), cutoff, queue="q1")
    r_queue = purge_archived_jobs_by_queue(session_for(db_url, store, settings), "q1", cutoff)
    assert (p_queue.jobs_to_purge, p_queue.objects_to_delete, p_queue.objects_to_rewrite) == (12, 3, 0)
    assert (r_queue.jobs_purged, r_queue.objects_deleted, r_queue.objects_rewritten) == (12, 3, 0)
    assert p_queue.storage_to_free == r_queue.storage_freed and not p_queue.storage_estimated
    assert any(p.endswith("queue=q1/") for p in r_queue.prefixes_purged)

    p_status = preview_purge_operation(session_for(db_url, store, settings), cutoff, status="Failed")
    r_status = purge_archived_jobs_by_status(session_for(db_url, store, settings), "failed", cutoff)
    assert (p_status.jobs_to_purge, p_status.objects_to_delete, p_status.objects_to_rewrite) == (2, 0, 1)
    assert (r_status.jobs_purged, r_status.objects_deleted, r_status.objects_rewritten) == (2, 0, 1)
    q2_left = {i for i, s in zip(ids, specs, strict=True) if s.queue == "q2" and s.status != "Failed"}
    q3 = {i for i, s in zip(ids, specs, strict=True) if s.queue == "q3"}
    assert set(live_index(db_url)) == q2_left | q3
    table = read_objects(store, object_keys(store))
    assert sorted(table["id"].to_pylist()) == sorted(q2_left | q3)
    assert set(table["status"].to_pylist()) == {"Completed", "Dead"}
    assert object_keys(store) == committed_keys(db_url)


def test_max_jobs_aborts_with_nothing_deleted(target: Any, db_url: str) -> None:
    store, settings = target.store, target.settings
    make_jobs(db_url, _mixed_specs(), flush=(store, settings))
    before = object_keys(store)
    with pytest.raises(SafetyAbort):
        purge_archived_jobs(session_for(db_url, store, settings), NOW, max_jobs=5)
    assert object_keys(store) == before == committed_keys(db_url)
    assert len(live_index(db_url)) == 20
    ops = list_operations(psycopg.connect(db_url), operation="purge")
    assert ops[0].outcome == "failed" and "max-jobs" in (ops[0].error or "")


def test_dry_run_changes_nothing(target: Any, db_url: str) -> None:
    store, settings = target.store, target.settings
    make_jobs(db_url, _mixed_specs(), flush=(store, settings))
    before = object_keys(store)
    result = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY, dry_run=True)
    assert result.preview is not None and result.preview.jobs_to_purge == 17 and result.jobs_purged == 0
    assert object_keys(store) == before and len(live_index(db_url)) == 20


class FailingDeletes(ObjectStore):
    """Delegates to a real store, but DeleteObjects reports AccessDenied for keys containing `poison`."""

    def __init__(self, inner: ObjectStore, poison: str) -> None:
        self._inner = inner
        self.poison = poison
        self.prefix = inner.prefix
        self.request_count = 0
        self.delete_calls = 0

    def __getattribute__(self, name: str) -> Any:
        if name in ("delete_many", "_inner", "poison", "prefix", "request_count", "delete_calls",
                    "__class__", "__dict__", "open_input", "key", "delete"):  # fmt: skip
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_inner"), name)

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        self.delete_calls += 1
        keys = list(keys)
        bad = [k for k in keys if self.poison in k]
        result = self._inner.delete_many([k for k in keys if k not in bad])
        result.errors.extend(DeleteErrorItem(k, "AccessDenied", "injected") for k in bad)
        return result

    # abstract methods (never reached: __getattribute__ delegates)
    put_file = put_bytes = get_bytes = head = list = None  # type: ignore[assignment]
    get_lifecycle_rules = put_lifecycle_rules = restore_object = None  # type: ignore[assignment]
    capabilities = location = describe = ensure_bucket = check_access = None  # type: ignore[assignment]


def test_delete_objects_partial_failure_is_reported_and_manifest_stays_true(target: Any, db_url: str) -> None:
    store, settings = target.store, target.settings
    specs = [Spec(q, "Completed", BASE - d * DAY) for q in ("q1", "q2") for d in (3, 4)]
    ids = make_jobs(db_url, specs, flush=(store, settings))
    failing = FailingDeletes(store, "queue=q2/")
    result = purge_archived_jobs(session_for(db_url, failing, settings), NOW - 30 * DAY)
    assert result.objects_deleted == 2 and result.jobs_purged == 2
    assert len(result.errors) == 2 and {e["code"] for e in result.errors} == {"AccessDenied"}
    assert all("queue=q2/" in e["key"] for e in result.errors)
    assert not any("queue=q2/" in p for p in result.prefixes_purged)
    # the manifest still lists exactly what is in the bucket, and the q2 jobs are still archived
    assert object_keys(store) == committed_keys(db_url)
    assert set(live_index(db_url)) == {i for i, s in zip(ids, specs, strict=True) if s.queue == "q2"}
    ops = list_operations(psycopg.connect(db_url), operation="purge")
    assert ops[0].outcome == "partial" and ops[0].counts["errors"][0]["code"] == "AccessDenied"
    # a later run (errors gone) finishes the job
    again = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert again.jobs_purged == 2 and object_keys(store) == set() == committed_keys(db_url)


def lock_enabled_bucket(store: Any, db_url: str, home: Any) -> tuple[str, Settings]:
    """Point an in-process moto store at a fresh bucket created with Object Lock enabled; its name and settings."""
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    store.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store.bucket = bucket
    return bucket, Settings(home=home, database_url=db_url, store_url=f"s3://{bucket}/{store.prefix}")


def test_object_lock_is_reported_not_skipped(db_url: str, moto_inprocess_store: Any, tmp_path: Any) -> None:
    store = moto_inprocess_store
    client = store.client
    bucket, settings = lock_enabled_bucket(store, db_url, tmp_path)
    specs = [Spec("locked", "Completed", BASE - 3 * DAY), Spec("free", "Completed", BASE - 3 * DAY)]
    make_jobs(db_url, specs, flush=(store, settings))
    locked_key = next(k for k in object_keys(store) if "queue=locked/" in k)
    client.put_object_retention(
        Bucket=bucket, Key=locked_key,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": NOW + 30 * DAY},
    )  # fmt: skip
    preview = preview_purge_operation(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert preview.jobs_to_purge == 1 and [lo.key for lo in preview.locked_objects] == [locked_key]
    result = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert result.jobs_purged == 1 and result.objects_deleted == 1
    assert [lo.key for lo in result.locked_objects] == [locked_key]
    assert result.locked_objects[0].mode == "GOVERNANCE"
    assert locked_key in object_keys(store) and locked_key in committed_keys(db_url)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["locked_objects"][0]["key"] == locked_key


def test_auto_purge_uses_policy_threshold(target: Any, db_url: str) -> None:
    store, settings = target.store, target.settings
    make_jobs(db_url, _mixed_specs(), flush=(store, settings))
    policy = ArchivalPolicy(purge_archived_after=30 * DAY)
    result = auto_purge(session_for(db_url, store, settings), policy, initiated_by="scheduler")
    assert result.jobs_purged == 17 and result.to_dict()["jobs_purged"] == 17
    assert set(live_index(db_url)) and all("q3" in k for k in live_index(db_url).values())
    off = auto_purge(session_for(db_url, store, settings), ArchivalPolicy(purge_archived_after=None))
    assert off.skipped_reason and off.jobs_purged == 0


# --- Object Lock, asked of the bucket once ------------------------------------------------------------


def s3_calls(store: Any) -> list[tuple[str, str | None]]:
    """(operation, key) of every S3 call the store's client makes from now on."""
    calls: list[tuple[str, str | None]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("Key")))

    store.client.meta.events.register("before-parameter-build.s3", record)
    return calls


def locking_bucket(backend: str, s3_settings_factory: Any, db_url: str) -> tuple[Any, Settings]:
    """A store on a fresh bucket created with Object Lock enabled (moto in-process or SeaweedFS)."""
    t = s3_settings_factory(backend)
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    client = t.store.client if t.server is None else t.server.client()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = t.store if t.server is None else t.server.store(bucket)
    store.bucket = bucket
    settings = t.settings.with_overrides(database_url=db_url, store_url=f"s3://{bucket}/{store.prefix}")
    return store, settings


# Two whole objects (q1, two days), one straddling the cutoff BASE (q3: rewritten), one young (q4: kept).
LOCK_SPECS = [Spec("q1", "Completed", BASE - 3 * DAY), Spec("q1", "Completed", BASE - 4 * DAY),
              Spec("q3", "Completed", BASE - timedelta(hours=1)), Spec("q3", "Completed", BASE + timedelta(hours=1)),
              Spec("q4", "Completed", NOW - DAY)]  # fmt: skip


@pytest.mark.parametrize("backend", ["moto_inprocess", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_a_bucket_without_object_lock_is_asked_once_and_whole_objects_get_no_head(
    backend: str, s3_settings_factory: Any, db_url: str
) -> None:
    t = s3_settings_factory(backend)
    store, settings = t.store, t.settings.with_overrides(database_url=db_url)
    ids = make_jobs(db_url, LOCK_SPECS, flush=(store, settings))
    keys = object_keys(store)
    whole = {k for k in keys if "queue=q1/" in k}
    (partial,) = (k for k in keys if "queue=q3/" in k)
    calls = s3_calls(store)
    result = purge_archived_jobs(session_for(db_url, store, settings), BASE)
    assert (result.objects_deleted, result.objects_rewritten, result.jobs_purged) == (2, 1, 3)
    assert not result.errors and not result.locked_objects
    assert [op for op, _ in calls].count("GetObjectLockConfiguration") == 1
    headed = {k for op, k in calls if op == "HeadObject"}
    assert not headed & whole  # deleted whole without a HEAD
    assert partial in headed  # a rewrite still checks that its object is there and readable
    assert object_keys(store) == committed_keys(db_url)
    assert set(live_index(db_url)) == {ids[3], ids[4]}


@pytest.mark.parametrize("backend", ["moto_inprocess", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_in_an_object_lock_bucket_every_object_is_checked_and_a_held_one_is_never_deleted(
    backend: str, s3_settings_factory: Any, db_url: str
) -> None:
    store, settings = locking_bucket(backend, s3_settings_factory, db_url)
    make_jobs(db_url, LOCK_SPECS, flush=(store, settings))
    keys = object_keys(store)
    held = min(k for k in keys if "queue=q1/" in k)
    (retained,) = (k for k in keys if "queue=q3/" in k)
    store.client.put_object_legal_hold(Bucket=store.bucket, Key=held, LegalHold={"Status": "ON"})
    store.client.put_object_retention(
        Bucket=store.bucket, Key=retained, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": NOW + 30 * DAY}
    )
    calls = s3_calls(store)
    result = purge_archived_jobs(session_for(db_url, store, settings), BASE)
    candidates = {k for k in keys if "queue=q4/" not in k}
    assert candidates <= {k for op, k in calls if op == "HeadObject"}
    assert sorted(lo.key for lo in result.locked_objects) == sorted([held, retained])
    assert {lo.key: lo.legal_hold for lo in result.locked_objects} == {held: True, retained: False}
    assert (result.objects_deleted, result.objects_rewritten, result.jobs_purged) == (1, 0, 1)
    assert {held, retained} <= object_keys(store) and {held, retained} <= committed_keys(db_url)
    assert len(object_keys(store)) == 3


def test_object_lock_enabled_after_an_earlier_check_is_seen(
    moto_inprocess_store: Any, db_url: str, tmp_path: Any
) -> None:
    """The bucket's answer is not remembered while it says "no lock": a bucket can get Object Lock later."""
    store = moto_inprocess_store
    settings = Settings(home=tmp_path, database_url=db_url, store_url=f"s3://{store.bucket}/{store.prefix}")
    assert store.object_lock_possible() is False
    store.client.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    store.client.put_object_lock_configuration(
        Bucket=store.bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    )
    assert store.object_lock_possible() is True
    make_jobs(db_url, LOCK_SPECS[:2], flush=(store, settings))
    held = min(object_keys(store))
    store.client.put_object_legal_hold(Bucket=store.bucket, Key=held, LegalHold={"Status": "ON"})
    result = purge_archived_jobs(session_for(db_url, store, settings), BASE)
    assert [lo.key for lo in result.locked_objects] == [held] and result.objects_deleted == 1
    assert object_keys(store) == {held} == committed_keys(db_url)


def test_a_bucket_whose_lock_cannot_be_read_is_checked_object_by_object(
    moto_inprocess_store: Any, db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No permission for GetObjectLockConfiguration: the purge HEADs every object, and a held one stays."""
    import botocore.exceptions as bce

    store = moto_inprocess_store
    bucket, settings = lock_enabled_bucket(store, db_url, tmp_path)
    make_jobs(db_url, LOCK_SPECS[:2], flush=(store, settings))
    held = min(object_keys(store))
    store.client.put_object_legal_hold(Bucket=bucket, Key=held, LegalHold={"Status": "ON"})

    def denied(**_: Any) -> None:
        raise bce.ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "GetObjectLockConfiguration")

    monkeypatch.setattr(store.client, "get_object_lock_configuration", denied)
    assert store.object_lock_possible() is True
    result = purge_archived_jobs(session_for(db_url, store, settings), BASE)
    assert [lo.key for lo in result.locked_objects] == [held] and result.objects_deleted == 1
    assert object_keys(store) == {held} == committed_keys(db_url)


def test_stores_without_object_lock_say_so(tmp_path: Any) -> None:
    from tiering.store.fsspec_store import FsspecStore
    from tiering.store.local import LocalStore

    assert LocalStore(tmp_path).object_lock_possible() is False
    assert FsspecStore("memory", f"b-{uuid.uuid4().hex[:8]}").object_lock_possible() is False


class OrderWatchingDeletes(FailingDeletes):
    """Before each DeleteObjects call, records any of its keys whose manifest row no longer says committed: an
    object must be gone from the bucket before its manifest row says so."""

    def __init__(self, inner: ObjectStore, db_url: str) -> None:
        super().__init__(inner, poison="\0never\0")
        self.__dict__["db_url"] = db_url
        self.__dict__["marked_first"] = []
        self.__dict__["calls"] = []

    def delete_many(self, keys: Iterable[str]) -> DeleteResult:
        keys = list(keys)
        with psycopg.connect(self.__dict__["db_url"]) as conn:
            rows = conn.execute(
                "SELECT key FROM tiering_manifest WHERE key = ANY(%s) AND state <> 'committed'", (keys,)
            )
            self.__dict__["marked_first"].extend(r[0] for r in rows)
        self.__dict__["calls"].append(keys)
        return FailingDeletes.delete_many(self, keys)


def _many_objects(db_url: str, target: Any, days: int) -> list[str]:
    """One object per day of q1: `days` whole objects to purge."""
    specs = [Spec("q1", "Completed", BASE - d * DAY) for d in range(3, 3 + days)]
    return make_jobs(db_url, specs, flush=(target.store, target.settings))


def test_a_pipelined_purge_marks_an_object_only_after_it_is_gone(
    target: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tiering.engine.purge.PIPELINE_BATCH", 2)  # 7 objects: 4 DeleteObjects calls, 2 markers
    _many_objects(db_url, target, 7)
    watching = OrderWatchingDeletes(target.store, db_url)
    result = purge_archived_jobs(session_for(db_url, watching, target.settings), NOW - 30 * DAY)
    calls = watching.__dict__["calls"]
    assert [len(c) for c in calls] == [2, 2, 2, 1] and result.delete_calls == 4
    assert watching.__dict__["marked_first"] == []
    assert result.objects_deleted == 7 and result.jobs_purged == 7 and not result.errors
    assert object_keys(target.store) == set() == committed_keys(db_url) and live_index(db_url) == {}
    assert {"delete_objects", "mark_purged", "plan"} <= set(result.to_dict()["phase_seconds"])


def test_a_failed_mark_stops_the_pipeline_and_the_next_purge_settles_it(
    target: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiering.db import retention as rdb

    monkeypatch.setattr("tiering.engine.purge.PIPELINE_BATCH", 1)  # 9 objects: 9 calls
    _many_objects(db_url, target, 9)
    real_mark = rdb.mark_objects_purged
    marks = {"n": 0}

    def failing_mark(conn: Any, object_ids: Sequence[int]) -> int:
        marks["n"] += 1
        if marks["n"] == 2:
            raise psycopg.OperationalError("injected: the database went away")
        return real_mark(conn, object_ids)

    monkeypatch.setattr(rdb, "mark_objects_purged", failing_mark)
    watching = OrderWatchingDeletes(target.store, db_url)
    with pytest.raises(psycopg.OperationalError):
        purge_archived_jobs(session_for(db_url, watching, target.settings), NOW - 30 * DAY)
    sent = len(watching.__dict__["calls"])
    # no call is sent once the failure is seen: at most MARK_THREADS + 1 batches were deleted beyond the one
    # marked before the failed mark and the failed one itself
    assert sent <= 2 + MARK_THREADS + 1 < 9
    committed = committed_keys(db_url)
    in_bucket = object_keys(target.store)
    assert in_bucket <= committed  # nothing in the bucket lost its committed row
    assert len(committed - in_bucket) <= sent  # gone from the bucket but still committed: only what was sent
    assert watching.__dict__["marked_first"] == []
    monkeypatch.setattr(rdb, "mark_objects_purged", real_mark)
    again = purge_archived_jobs(session_for(db_url, target.store, target.settings), NOW - 30 * DAY)
    assert not again.errors and object_keys(target.store) == set() == committed_keys(db_url)
    assert live_index(db_url) == {}


def _index_tuples_read(conn: psycopg.Connection) -> int:
    """Rows of the job index this transaction has read (sequential or through an index)."""
    row = conn.execute(
        "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables WHERE relname = %s",
        ("tiering_job_index",),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_plan_counts_whole_objects_from_the_manifest_and_the_others_from_the_job_index(
    target: Any, db_url: str
) -> None:
    """An object all of whose rows qualify by its manifest row, and that holds no restored job, is counted from
    the manifest (no job index row read); an object straddling the cutoff, and one holding a restored job's stale
    copy, are counted in the job index; the counts are exact either way and the purge removes what was planned."""
    from tiering.db import retention as rdb
    from tiering.engine.restore import restore_archived_job

    store, settings = target.store, target.settings
    specs = [Spec("q1", "Completed", BASE - 10 * DAY + timedelta(minutes=i)) for i in range(4)]  # whole
    specs += [Spec("q1", "Completed", BASE - 3 * DAY + timedelta(minutes=i)) for i in range(3)]  # whole, 1 restored
    specs += [Spec("q1", "Completed", BASE + timedelta(hours=h)) for h in (-2, -1, 1, 2)]  # straddles BASE
    ids = make_jobs(db_url, specs, flush=(store, settings))
    restored = ids[5]
    assert restore_archived_job(session_for(db_url, store, settings), restored).restored
    keys = {r[0]: r[1] for r in psycopg.connect(db_url).execute("SELECT key, id FROM tiering_manifest")}
    day = {k.split("date=")[1][:10]: object_id for k, object_id in keys.items()}
    old, mid, straddling = (day[(BASE + d * DAY).date().isoformat()] for d in (-10, -3, 0))

    with psycopg.connect(db_url) as conn:
        before = _index_tuples_read(conn)
        only_whole = rdb.purge_candidates(conn, BASE - 5 * DAY, None, None)
        assert [(c.row.id, c.live, c.hits, c.whole) for c in only_whole] == [(old, 4, 4, True)]
        assert (only_whole[0].hit_oldest, only_whole[0].hit_newest) == (BASE - 10 * DAY, BASE - 10 * DAY + 3 * 60 * SEC)
        assert _index_tuples_read(conn) == before  # decided and counted by the manifest row alone
        everything = rdb.purge_candidates(conn, BASE, None, None)
        got = {c.row.id: (c.live, c.hits, c.whole) for c in everything}
        assert got == {old: (4, 4, True), mid: (2, 2, True), straddling: (4, 2, False)}
        assert _index_tuples_read(conn) >= before + 4 + 2  # the straddling and the restored object's live rows
        by_id = {c.row.id: c for c in everything}
        assert (by_id[mid].hit_oldest, by_id[mid].hit_newest) == (BASE - 3 * DAY, BASE - 3 * DAY + 2 * 60 * SEC)

    preview = preview_purge_operation(session_for(db_url, store, settings), BASE)
    result = purge_archived_jobs(session_for(db_url, store, settings), BASE)
    assert preview.jobs_to_purge == result.jobs_purged == result.cold_jobs_purged == 4 + 2 + 2
    assert preview.jobs_by_queue == result.jobs_by_queue == {"q1": 8}
    assert (preview.objects_to_delete, preview.objects_to_rewrite) == (result.objects_deleted, 1) == (2, 1)
    assert preview.oldest_affected == BASE - 10 * DAY and preview.newest_affected == BASE - timedelta(hours=1)
    assert set(live_index(db_url)) == {i for i, s in zip(ids, specs, strict=True) if s.archived_at >= BASE}
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM hammerwork_jobs WHERE id = %s", (restored,)).fetchone() == (1,)


def test_the_jobs_a_rewrite_drops_are_read_for_all_its_objects_at_once(
    target: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rewrite_ids answers, for every object a purge rewrites, the jobs the purge removes (by cutoff and status) and
    the stale copies of restored jobs, in one statement; the purge then rewrites each object without both (here
    one object per batch of rewrite_ids, the second batch read while the first is rewritten)."""
    from tiering.db import retention as rdb
    from tiering.engine import purge
    from tiering.engine.restore import restore_archived_job

    store, settings = target.store, target.settings
    mixed = ["Completed", "Dead", "Dead", "Completed", "Failed"]
    specs = [Spec("q1", st, BASE - 3 * DAY + timedelta(minutes=i)) for i, st in enumerate(mixed)]
    specs += [Spec("q1", st, BASE + timedelta(hours=h)) for h, st in ((-2, "Dead"), (-1, "Completed"), (1, "Dead"))]
    ids = make_jobs(db_url, specs, flush=(store, settings))
    restored = ids[0]
    assert restore_archived_job(session_for(db_url, store, settings), restored).restored
    with psycopg.connect(db_url) as conn:
        object_of = dict(conn.execute("SELECT job_id::text, object_id FROM tiering_job_index").fetchall())
        mid, straddling = object_of[ids[1]], object_of[ids[5]]
        assert mid != straddling
        got = rdb.rewrite_ids(conn, [mid, straddling], BASE, "Dead")
        assert {k: (sorted(h), s) for k, (h, s) in got.items()} == {
            mid: (sorted(ids[1:3]), [restored]),
            straddling: ([ids[5]], []),
        }
        everything = rdb.rewrite_ids(conn, [straddling], BASE, None)
        assert {k: (sorted(h), s) for k, (h, s) in everything.items()} == {straddling: (sorted(ids[5:7]), [])}
        assert rdb.rewrite_ids(conn, [], BASE, None) == {}

    monkeypatch.setattr(purge, "REWRITE_BATCH", 1)
    result = purge_archived_jobs(session_for(db_url, store, settings), BASE, status="Dead")
    assert (result.cold_jobs_purged, result.objects_rewritten, result.objects_deleted) == (3, 2, 0)
    assert sorted((r["jobs_removed"], r["jobs_kept"]) for r in result.rewritten) == [(1, 2), (2, 2)]
    assert result.jobs_by_queue == {"q1": 3}
    left = set(read_objects(store, committed_keys(db_url))["id"].to_pylist())
    assert left == {ids[3], ids[4], ids[6], ids[7]}  # no Dead job before BASE, no stale copy of the restored one
    assert set(live_index(db_url)) == left


def test_marking_purged_removes_only_live_rows_of_those_objects_and_restores_the_plan_setting(
    target: Any, db_url: str
) -> None:
    """mark_objects_purged plans its DELETE without a plain index scan (a bitmap visits each heap page once) and
    puts the session's own setting back for the rest of the transaction (erase's index-pair DELETE runs after it
    in the same transaction); only the live rows of the objects named go, a restored job's row stays."""
    from tiering.db import retention as rdb
    from tiering.engine.restore import restore_archived_job

    store, settings = target.store, target.settings
    specs = [Spec("q1", "Completed", BASE - d * DAY + timedelta(minutes=i)) for d in (3, 4) for i in range(3)]
    ids = make_jobs(db_url, specs, flush=(store, settings))
    assert restore_archived_job(session_for(db_url, store, settings), ids[0]).restored
    with psycopg.connect(db_url) as conn:
        first = conn.execute("SELECT object_id FROM tiering_job_index WHERE job_id = %s", (ids[0],)).fetchone()
        assert first is not None
        for setting in ("on", "off"):
            conn.execute("SELECT set_config('enable_indexscan', %s, true)", (setting,))
            assert rdb.mark_objects_purged(conn, [first[0]]) == 1
            assert conn.execute("SELECT current_setting('enable_indexscan')").fetchone() == (setting,)
            rows = conn.execute(
                "SELECT job_id::text, restored_at IS NOT NULL FROM tiering_job_index ORDER BY 1"
            ).fetchall()
            assert sorted(rows) == sorted([(ids[0], True)] + [(j, False) for j in ids[3:]])
            state = conn.execute("SELECT state FROM tiering_manifest WHERE id = %s", (first[0],)).fetchone()
            assert state == ("purged",)
            conn.rollback()


def test_a_purge_deletes_in_manifest_order_and_its_marks_do_not_wait_for_the_wal_but_erases_do(
    target: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge sends its DeleteObjects calls in manifest id order (objects flushed together are neighbours in
    the job index's heap), not in its plan's (queue, date) order; its marks commit without waiting for their WAL
    (a lost mark is what a crash between a delete and its mark leaves, settled by the next purge), while the
    same pipeline run for an erase keeps each mark durable; the pooled connections keep the server's setting."""
    from tiering.db import retention as rdb
    from tiering.engine.erase import erase_jobs

    monkeypatch.setattr("tiering.engine.purge.PIPELINE_BATCH", 2)
    with psycopg.connect(db_url, autocommit=True) as conn:  # the test server's own default is off (no fsync waits)
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        alter = psycopg.sql.SQL("ALTER DATABASE {} SET synchronous_commit = on")
        conn.execute(alter.format(psycopg.sql.Identifier(name[0])))
    days = (3, 4, 5)
    flush = (target.store, target.settings)
    ids = make_jobs(db_url, [Spec("q2", "Completed", BASE - d * DAY) for d in days], flush=flush)
    make_jobs(db_url, [Spec("q1", "Completed", BASE - d * DAY) for d in days], flush=flush)
    settings_seen: list[str] = []
    real_mark = rdb.mark_objects_purged

    def watching_mark(conn: Any, object_ids: Sequence[int]) -> int:
        settings_seen.append(conn.execute("SELECT current_setting('synchronous_commit')").fetchone()[0])
        return real_mark(conn, object_ids)

    monkeypatch.setattr(rdb, "mark_objects_purged", watching_mark)
    erase_store = OrderWatchingDeletes(target.store, db_url)
    erased = erase_jobs(session_for(db_url, erase_store, target.settings), ids=[ids[0]])
    assert erased.objects_deleted == 1 and settings_seen == ["on"]
    settings_seen.clear()
    with psycopg.connect(db_url) as conn:
        in_id_order = [
            r[0] for r in conn.execute("SELECT key FROM tiering_manifest WHERE state = 'committed' ORDER BY id")
        ]
    assert len(in_id_order) == 5 and in_id_order != sorted(in_id_order)  # the q2 objects were flushed first
    watching = OrderWatchingDeletes(target.store, db_url)
    session = session_for(db_url, watching, target.settings)
    result = purge_archived_jobs(session, NOW - 30 * DAY)
    assert result.objects_deleted == 5 and not result.errors
    assert [k for call in watching.__dict__["calls"] for k in call] == in_id_order
    assert settings_seen == ["off", "off", "off"] and watching.__dict__["marked_first"] == []
    with session.connection() as conn:
        assert conn.execute("SELECT current_setting('synchronous_commit')").fetchone() == ("on",)
    assert object_keys(target.store) == set() == committed_keys(db_url) and live_index(db_url) == {}


def test_a_bulk_purge_analyses_what_it_changed_and_leaves_an_unchanged_staging_alone(
    target: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past planner.BULK_ROWS jobs (here 1) a purge analyses the job index and the manifest (their row counts in
    pg_class are fresh right after it), and staging only when staged rows went."""
    monkeypatch.setattr("tiering.db.planner.BULK_ROWS", 1)
    store, settings = target.store, target.settings
    make_jobs(db_url, [Spec("q1", "Completed", BASE - d * DAY) for d in (3, 4, 5)], flush=(store, settings))
    make_jobs(db_url, [Spec("q1", "Completed", NOW - DAY), Spec("q1", "Completed", BASE - 9 * DAY)])  # staged
    reltuples = "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s)"
    tables = ["hammerwork_jobs_archive", "tiering_job_index", "tiering_manifest"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE hammerwork_jobs_archive")
        conn.execute("DELETE FROM hammerwork_jobs_archive WHERE archived_at < %s", (BASE - 8 * DAY,))
        before = dict(conn.execute(reltuples, (tables,)).fetchall())
    assert before["hammerwork_jobs_archive"] == 2  # analysed with both staged rows; one is gone since
    result = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert (result.cold_jobs_purged, result.staging_jobs_purged, result.objects_deleted) == (3, 0, 3)
    with psycopg.connect(db_url) as conn:
        after = dict(conn.execute(reltuples, (tables,)).fetchall())
        assert after["tiering_job_index"] == 0  # analysed: no live row is left
        assert after["tiering_manifest"] == 3  # analysed: the three purged rows stay
        assert after["hammerwork_jobs_archive"] == 2  # not analysed: the purge removed no staged row
        conn.execute("UPDATE hammerwork_jobs_archive SET archived_at = %s", (BASE - 9 * DAY,))
        conn.commit()
    staged = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert (staged.staging_jobs_purged, staged.cold_jobs_purged) == (1, 0)
    with psycopg.connect(db_url) as conn:
        assert dict(conn.execute(reltuples, (tables,)).fetchall())["hammerwork_jobs_archive"] == 0


def test_staging_is_only_deleted_from_when_the_plan_found_staged_rows(
    target: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge runs its staging DELETE only when its plan counted staged rows to purge (the preview's numbers
    are what it does): a purge of cold objects alone sends none; one with staged rows purges exactly those."""
    from tiering.db import retention as rdb

    store, settings = target.store, target.settings
    make_jobs(db_url, [Spec("q1", "Completed", BASE - 3 * DAY)], flush=(store, settings))
    young = make_jobs(db_url, [Spec("q1", "Completed", NOW - DAY)])  # staged, younger than the cutoff
    real_delete = rdb.delete_staging
    calls: list[datetime] = []

    def counting_delete(conn: Any, cutoff: datetime, queue: str | None, status: str | None) -> dict[str, int]:
        calls.append(cutoff)
        return real_delete(conn, cutoff, queue, status)

    monkeypatch.setattr(rdb, "delete_staging", counting_delete)
    cold_only = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert (cold_only.cold_jobs_purged, cold_only.staging_jobs_purged, calls) == (1, 0, [])
    assert "staging" not in cold_only.phase_seconds
    old = make_jobs(db_url, [Spec("q2", "Failed", BASE - 4 * DAY)])
    with_staged = purge_archived_jobs(session_for(db_url, store, settings), NOW - 30 * DAY)
    assert (with_staged.staging_jobs_purged, with_staged.jobs_by_queue, len(calls)) == (1, {"q2": 1}, 1)
    with psycopg.connect(db_url) as conn:
        left = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
    assert left == set(young) and not set(old) & left
