"""Statistics equal counts computed independently (SQL and the objects themselves); every operation is audited."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import psycopg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.helpers import session_for
from tests.integration.test_purge import ARCHIVE_ALL, BASE, DAY, NOW, Spec, make_jobs
from tiering.db.operations import list_operations
from tiering.engine.erase import erase_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import purge_archived_jobs
from tiering.engine.stats import get_archival_stats
from tiering.policy import ArchivalConfig


@pytest.fixture
def target(s3_settings_factory: Any, db_url: str) -> Any:
    t = s3_settings_factory("moto_server")
    t.settings = t.settings.with_overrides(database_url=db_url)
    return t


def test_stats_equal_independent_counts_and_every_operation_is_audited(target: Any, db_url: str) -> None:
    store, settings = target.store, target.settings
    q1_specs = [Spec("q1", "Completed", BASE - d * DAY) for d in (1, 2, 2, 3)] + [
        Spec("q1", "Completed", NOW - 2 * DAY)
    ]
    q2_specs = [Spec("q2", "Failed", BASE - d * DAY) for d in (1, 1, 5)]
    specs = q1_specs + q2_specs
    ids = make_jobs(db_url, q1_specs, flush=(store, settings))
    ids += make_jobs(db_url, q2_specs)
    # q2 goes to STANDARD_IA (the policy's default class for this flush)
    policy = replace(ARCHIVE_ALL, default_storage_class="STANDARD_IA")
    flush_staged(session_for(db_url, store, settings), policy, ArchivalConfig(), initiated_by="tester")
    make_jobs(db_url, [Spec("q1", "Completed", NOW - DAY), Spec("q3", "Dead", NOW - DAY)])  # stays staged
    session = session_for(db_url, store, settings)
    purged = purge_archived_jobs(session, BASE - 2.5 * DAY, initiated_by="tester")  # q1 d3, q2 d5
    assert purged.jobs_purged == 2
    erase_jobs(session, ids=[ids[0]], request_ref="REQ-9")  # rewrites q1 day -1 (now empty: delete)

    stats = json.loads(json.dumps(get_archival_stats(session_for(db_url, settings=settings))))  # JSON-ready

    # independent: the bucket and the objects' rows
    objects = list(store.list(store.prefix))
    tables = {o.key: pq.read_table(io.BytesIO(store.get_bytes(o.key))) for o in objects}
    heads = {o.key: store.head(o.key) for o in objects}
    by_class: dict[str, dict[str, int]] = {}
    for key, t in tables.items():
        info = heads[key]
        assert info is not None
        c = by_class.setdefault(info.storage_class, {"jobs": 0, "objects": 0, "bytes": 0, "orig": 0})
        c["jobs"] += t.num_rows
        c["objects"] += 1
        c["bytes"] += info.size
        orig = pc.coalesce(t["original_payload_size"], pc.binary_length(t["payload"]).cast("int32"))
        c["orig"] += int(pc.sum(orig).as_py() or 0)
    assert set(stats["tiers"]["cold_by_storage_class"]) == set(by_class) == {"STANDARD", "STANDARD_IA"}
    for cls, c in by_class.items():
        s = stats["tiers"]["cold_by_storage_class"][cls]
        assert (s["jobs"], s["objects"], s["stored_bytes"], s["original_bytes"]) == (
            c["jobs"], c["objects"], c["bytes"], c["orig"])  # fmt: skip
        assert s["compression_ratio"] == round(c["bytes"] / c["orig"], 4)
        cost = stats["estimated_monthly_cost"]["by_storage_class"][cls]
        expected = round(c["bytes"] / 1024**3 * settings.prices_per_gb_month[cls], 6)
        assert cost["estimated_usd_per_month"] == expected
    assert "ESTIMATE" in stats["estimated_monthly_cost"]["label"]
    cold_jobs = sum(c["jobs"] for c in by_class.values())
    assert stats["tiers"]["cold"]["jobs"] == cold_jobs == len(specs) - 2 - 1
    # independent: staging by SQL
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), sum(octet_length(payload)), min(archived_at) FROM hammerwork_jobs_archive"
        ).fetchone()
    assert row is not None
    assert stats["tiers"]["staging"]["jobs"] == row[0] == 2
    assert stats["tiers"]["staging"]["stored_bytes"] == row[1]
    assert stats["tiers"]["staging"]["oldest_archived_at"] == row[2].isoformat()
    assert stats["total"]["jobs"] == cold_jobs + 2
    # per queue, purged and erased to date
    q1 = sum(t.filter(pc.equal(t["queue_name"], "q1")).num_rows for t in tables.values())
    assert stats["queues"]["q1"]["cold"]["jobs"] == q1 and stats["queues"]["q3"]["staging"]["jobs"] == 1
    assert stats["total"]["jobs_purged_to_date"] == 2 and stats["total"]["jobs_erased_to_date"] == 1
    assert stats["queues"]["q1"]["jobs_erased_to_date"] == 1  # the erase of ids[0] (a q1 job)
    assert stats["queues"]["q2"]["jobs_purged_to_date"] == 1
    only_q2 = get_archival_stats(session_for(db_url, settings=settings), queue="q2")
    assert list(only_q2["queues"]) == ["q2"] and only_q2["tiers"]["cold"]["jobs"] == 2
    # last runs with durations, from the audit trail
    for op in ("archive", "flush", "purge", "erase"):
        run = stats["last_runs"][op]
        assert run["outcome"] == "succeeded" and run["duration_s"] is not None and run["duration_s"] >= 0
    # every operation left its audit row
    with psycopg.connect(db_url) as conn:
        ops = list_operations(conn, limit=1000)
    kinds = [o.operation for o in ops]
    assert kinds.count("archive") == 3 and kinds.count("flush") == 2
    assert kinds.count("purge") == 1 and kinds.count("erase") == 1
    assert all(o.finished_at is not None for o in ops)
    erase_op = next(o for o in ops if o.operation == "erase")
    assert erase_op.parameters["request_ref"] == "REQ-9" and erase_op.counts["jobs_erased"] == 1
