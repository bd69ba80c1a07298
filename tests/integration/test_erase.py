"""Erase (right to deletion) across hot, staging and cold on embedded PostgreSQL and moto server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import insert_job, session_for
from tests.integration.test_purge import BASE, DAY, Spec, committed_keys, duck_rows, live_index, make_jobs, object_keys
from tiering.db.operations import list_operations
from tiering.engine.archive import archive_jobs
from tiering.engine.erase import erase_jobs
from tiering.engine.flush import flush_staged
from tiering.errors import InvalidInputError
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store import open_store


@pytest.fixture
def target(s3_settings_factory: Any, db_url: str) -> Any:
    t = s3_settings_factory("moto_server")
    t.settings = t.settings.with_overrides(database_url=db_url)
    return t


def _payload(i: int, customer: Any) -> dict[str, Any]:
    return {"customer": {"id": customer, "email": f"c{customer}@example.com"}, "n": i, "pad": "y" * 30}


def _world(db_url: str, store: Any, settings: Any) -> dict[str, Any]:
    """Cold: q1 two dates (customer 42 mixed into one object, alone in the other), q2; staging; hot."""
    specs = [
        Spec("q1", "Completed", BASE - 3 * DAY, _payload(0, 42)),
        Spec("q1", "Completed", BASE - 3 * DAY, _payload(1, 7)),
        Spec("q1", "Failed", BASE - 3 * DAY, _payload(2, "42")),
        Spec("q1", "Completed", BASE - 2 * DAY, _payload(3, 42)),
        Spec("q2", "Completed", BASE - 2 * DAY, _payload(4, 8)),
        Spec("q2", "Completed", BASE - 2 * DAY, _payload(5, 420)),
    ]
    cold = make_jobs(db_url, specs, flush=(store, settings))
    staged = make_jobs(
        db_url, [Spec("q1", "Completed", BASE, _payload(6, 42)), Spec("q1", "Dead", BASE, _payload(7, 9))]
    )
    with psycopg.connect(db_url) as conn:
        hot = [
            str(insert_job(conn, queue="q1", status="Pending", payload=_payload(8, 42))),
            str(insert_job(conn, queue="q1", status="Pending", payload=_payload(9, 43))),
        ]
        conn.commit()
    return {"cold": cold, "staged": staged, "hot": hot}


def _everywhere(db_url: str, store: Any, tmp_path: Any) -> dict[str, set[str]]:
    with psycopg.connect(db_url) as conn:
        hot = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs")}
        staged = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
        index = {str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index")}
    cold = set(duck_rows(store, object_keys(store), tmp_path))
    return {"hot": hot, "staging": staged, "cold": cold, "index": index}


def test_erase_by_payload_match_leaves_no_trace(target: Any, db_url: str, tmp_path: Any) -> None:
    store, settings = target.store, target.settings
    w = _world(db_url, store, settings)
    payload_before = duck_rows(store, object_keys(store), tmp_path)
    erased = {w["cold"][0], w["cold"][2], w["cold"][3], w["staged"][0], w["hot"][0]}
    everyone = set(w["cold"]) | set(w["staged"]) | set(w["hot"])

    session = session_for(db_url, store, settings)
    dry = erase_jobs(session, key="customer.id", value="42", dry_run=True, request_ref="REQ-1")
    assert set(dry.locations) == erased and dry.jobs_erased == 5
    assert (dry.objects_deleted, dry.objects_rewritten) == (1, 1)
    assert _everywhere(db_url, store, tmp_path)["cold"] == set(w["cold"])  # dry run changed nothing

    result = erase_jobs(session, key="customer.id", value="42", initiated_by="dpo", request_ref="REQ-1")
    assert result.complete and result.jobs_erased == 5
    assert (result.hot_erased, result.staging_erased, result.cold_erased) == (1, 1, 3)
    assert (result.objects_deleted, result.objects_rewritten) == (1, 1)
    assert result.locations[w["hot"][0]] == ["hot"] and result.locations[w["staged"][0]] == ["staging"]
    where = _everywhere(db_url, store, tmp_path)
    for tier, ids in where.items():
        assert not (ids & erased), tier
    survivors = everyone - erased
    assert where["hot"] | where["staging"] | where["cold"] == survivors
    payload_after = duck_rows(store, object_keys(store), tmp_path)
    assert all(payload_after[j] == payload_before[j] for j in payload_after)
    assert object_keys(store) == committed_keys(db_url) == set(live_index(db_url).values())
    # the audit row names the request and the counts, and holds no payload
    op = list_operations(psycopg.connect(db_url), operation="erase")[0]
    assert op.outcome == "succeeded" and op.initiated_by == "dpo" and op.counts["jobs_erased"] == 5
    assert op.parameters["request_ref"] == "REQ-1" and op.counts["request_ref"] == "REQ-1"
    text = json.dumps([op.parameters, op.counts])
    assert "example.com" not in text and op.parameters["match_value"] == "<not recorded>"


def test_erase_by_id_everywhere_and_other_jobs_survive(target: Any, db_url: str, tmp_path: Any) -> None:
    store, settings = target.store, target.settings
    w = _world(db_url, store, settings)
    targets = [w["cold"][1], w["cold"][5], w["staged"][1], w["hot"][1]]
    before = _everywhere(db_url, store, tmp_path)
    result = erase_jobs(session_for(db_url, store, settings), ids=targets, request_ref="REQ-2")
    assert result.jobs_erased == 4 and result.objects_rewritten == 2 and result.objects_deleted == 0
    after = _everywhere(db_url, store, tmp_path)
    for tier in after:
        assert after[tier] == before[tier] - set(targets), tier
    assert set(live_index(db_url)) == set(w["cold"]) - set(targets)
    # unknown ids are fine; bad ones are refused
    assert erase_jobs(session_for(db_url, store, settings), ids=[targets[0]]).jobs_erased == 0
    with pytest.raises(InvalidInputError):
        erase_jobs(session_for(db_url, store, settings), ids=["not-a-uuid"])


def test_erase_counts_jobs_per_queue_for_the_stats(db_url: str, tmp_path: Path) -> None:
    """The audit row of an erase carries jobs per queue (hot, staging and cold), which stats sum to date."""
    from tiering.engine.stats import get_archival_stats

    with psycopg.connect(db_url) as conn:
        for queue in ("a", "b"):
            for _ in range(3):
                insert_job(conn, queue=queue, payload={"customer": {"id": "c-9"}})
        insert_job(conn, queue="a", payload={"customer": {"id": "c-1"}})
        conn.commit()
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri())
    store = open_store(settings)
    archive_jobs(session_for(db_url), "a", ArchivalPolicy(), ArchivalConfig())
    flush_staged(session_for(db_url, store, settings), ArchivalPolicy(), ArchivalConfig())  # queue a cold, queue b hot
    with psycopg.connect(db_url) as conn:
        insert_job(conn, queue="b", status="Pending", payload={"customer": {"id": "c-9"}})
        conn.commit()

    result = erase_jobs(session_for(db_url, store, settings), key="customer.id", value="c-9", initiated_by="dpo")

    assert result.jobs_by_queue == {"a": 3, "b": 4}
    stats = get_archival_stats(session_for(db_url, settings=settings))
    by_queue = stats["queues"]
    assert by_queue["a"]["jobs_erased_to_date"] == 3
    assert by_queue["b"]["jobs_erased_to_date"] == 4
    # per queue, the last archive and flush runs that moved its jobs (queue b was never archived)
    assert set(by_queue["a"]["last_runs"]) == {"archive", "flush"}
    assert by_queue["a"]["last_runs"]["archive"]["outcome"] == "succeeded"
    assert by_queue["b"]["last_runs"] == {}
