"""An archive holding objects written before the per-column encodings changed (PLAIN ids and hashes) beside
objects written now (DELTA_LENGTH_BYTE_ARRAY): restore, get, search, verify, erase and the analysts' DuckDB view
read both alike, and restores read the footer plus one range of the row group (the footer once per process)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.helpers import insert_job, session_for
from tiering import parquet as pqio
from tiering import schema as S
from tiering.engine.analyst import open_duckdb
from tiering.engine.archive import archive_jobs
from tiering.engine.erase import erase_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.query import get_archived_job, search_archived_jobs
from tiering.engine.restore import restore_archived_job
from tiering.engine.verify import verify_archive
from tiering.policy import ArchivalConfig, ArchivalPolicy

DAY = timedelta(days=1)
POLICY = ArchivalPolicy(archive_completed_after=DAY, archive_failed_after=DAY, archive_dead_after=DAY,
                        archive_timed_out_after=DAY)  # fmt: skip


def _seed_and_flush(db_url: str, target: Any, start: int, n: int) -> dict[uuid.UUID, dict[str, Any]]:
    jobs: dict[uuid.UUID, dict[str, Any]] = {}
    with psycopg.connect(db_url) as conn:
        for i in range(start, start + n):
            payload = {"customer": {"id": 777 if i % 4 == 0 else 1000 + i}, "n": i}
            jid = insert_job(conn, queue="billing", status=("Completed", "Failed")[i % 2], payload=payload,
                             trace_id=f"{i:032x}", batch_id=uuid.UUID(int=i + 1), age=(30 + i % 5) * DAY)  # fmt: skip
            jobs[jid] = payload
        conn.commit()
    archive_jobs(session_for(db_url), None, POLICY, ArchivalConfig(), "manual", "tester")
    stats = flush_staged(session_for(db_url, target.store, target.settings), POLICY, ArchivalConfig())
    assert stats.jobs_flushed == n
    return jobs


def _objects(db_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(db_url) as conn:
        return [(k, b) for k, b in conn.execute("SELECT key, bytes FROM tiering_manifest WHERE state = 'committed'")]


def _id_encodings(target: Any, key: str, size: int) -> set[str]:
    with target.store.open_input(key, size=size) as fh:
        meta = pq.ParquetFile(fh).metadata
    return {e for rg in range(meta.num_row_groups) for e in meta.row_group(rg).column(0).encodings}


def test_old_and_new_objects_read_alike(db_url: str, s3_settings_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target = s3_settings_factory("moto_server")
    with monkeypatch.context() as m:  # the writer as it was: ids and hashes PLAIN
        m.setattr(S, "DELTA_LENGTH_COLUMNS", ())
        old = _seed_and_flush(db_url, target, 0, 24)
    ((old_key, old_size),) = _objects(db_url)
    new = _seed_and_flush(db_url, target, 100, 24)
    new_key, new_size = next(o for o in _objects(db_url) if o[0] != old_key)
    assert "DELTA_LENGTH_BYTE_ARRAY" not in _id_encodings(target, old_key, old_size)
    assert "DELTA_LENGTH_BYTE_ARRAY" in _id_encodings(target, new_key, new_size)
    everything = {**old, **new}

    # search finds the jobs of both objects, and nothing else
    found = search_archived_jobs(session_for(db_url, target.store), "customer.id", "777")
    want = {str(j) for j, p in everything.items() if p["customer"]["id"] == 777}
    assert {i.job_id for i in found.items} == want and len(want) == 12
    assert found.objects_scanned == 2 and 0 < found.bytes_read < old_size + new_size

    # get and restore one job of each object: the archived values come back, at most 3 requests each
    for jobs in (old, new):
        jid = next(iter(jobs))
        job = get_archived_job(session_for(db_url, target.store), jid)
        assert job.payload == jobs[jid] and job.record is not None
        assert job.record["id"] == str(jid) and set(job.record) == set(S.ARCHIVE_SCHEMA.names)
        target.store.request_count = 0
        restored = restore_archived_job(session_for(db_url, target.store, target.settings), jid)
        assert restored.source == "cold" and restored.restored
        assert 1 <= restored.object_requests <= 3
        with psycopg.connect(db_url) as conn:
            hot = conn.execute("SELECT payload, trace_id, batch_id, status FROM hammerwork_jobs WHERE id = %s",
                               (jid,)).fetchone()  # fmt: skip
        assert hot is not None and hot[0] == jobs[jid] and hot[3] == "Pending"
        n = jobs[jid]["n"]
        assert hot[1] == f"{n:032x}" and hot[2] == uuid.UUID(int=n + 1)

    # the footer of an object is read once per process: a second restore from it costs the row group read alone
    second = list(new)[1]
    target.store.request_count = 0
    again = restore_archived_job(session_for(db_url, target.store, target.settings), second)
    assert again.restored and again.object_requests == 1
    assert pqio.cached_footer((target.store.uri(new_key), new_size), lambda: None) is not None

    # verify (deep) reads both kinds of object; the analysts' view shows every id as UUID text once
    report = verify_archive(session_for(db_url, target.store, target.settings), deep=True)
    assert report.ok and report.deep_checked == 2, report.to_dict()
    con = open_duckdb(session_for(db_url, target.store, target.settings))
    ids = {r[0] for r in con.execute("SELECT id FROM archived_jobs").fetchall()}
    restored_ids = {str(next(iter(old))), str(next(iter(new))), str(second)}
    assert ids == {str(j) for j in everything} - restored_ids

    # erase one job of the old object: the object is rewritten without it, the rest still restores
    victim = list(old)[2]
    erased = erase_jobs(session_for(db_url, target.store, target.settings), ids=[str(victim)])
    assert erased.to_dict()["complete"] is True
    assert restore_archived_job(session_for(db_url, target.store, target.settings), list(old)[3]).restored
    gone = search_archived_jobs(session_for(db_url, target.store), "n", str(old[victim]["n"]))
    assert gone.items == []
