"""docs/analysts.md: every cookbook query runs in DuckDB over a flushed archive (with the answers the seeded jobs
imply) and parses as Athena SQL."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from tests.helpers import insert_job, session_for
from tiering.engine.analyst import open_duckdb
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.policy import ArchivalConfig, ArchivalPolicy

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
DAY = timedelta(days=1)
POLICY = ArchivalPolicy(archive_completed_after=DAY, archive_failed_after=DAY, archive_dead_after=DAY)
KNOWN = uuid.UUID("3f2b8c1e-9a4d-4c7e-8f00-1234567890ab")


def cookbook() -> dict[str, str]:
    found = dict(re.findall(r"<!-- cookbook: ([\w-]+) -->\s*```sql\n(.*?)```", DOC.read_text(), re.S))
    assert len(found) >= 8, found.keys()
    return found


@pytest.mark.parametrize("name", sorted(cookbook()))
def test_parses_as_athena_sql(name: str) -> None:
    statements = sqlglot.parse(cookbook()[name], read="athena", error_level=ErrorLevel.RAISE)
    assert len(statements) == 1 and statements[0] is not None
    assert statements[0].key == "select"


def test_every_query_answers_in_duckdb(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("local")
    with psycopg.connect(db_url) as conn:
        insert_job(conn, queue="billing", job_id=KNOWN, age=20 * DAY, payload={"customer": {"id": 12345}})
        for i, cid in enumerate((12345, 12345, 777)):
            insert_job(conn, queue="billing", age=(10 + i) * DAY, payload={"customer": {"id": cid}, "i": i})
        for i in range(2):
            insert_job(conn, queue="billing", status="Failed", age=(3 + i) * DAY, payload={"customer": {"id": 42}},
                       error_message="card declined")  # fmt: skip
        insert_job(conn, queue="email", status="Dead", age=5 * DAY, payload={"to": "a@example.com"})
        for _ in range(3):
            insert_job(conn, queue="email", age=2 * DAY, payload={"to": "b@example.com", "body": "x" * 500})
        failed_days = sorted(
            (q, str(d))
            for q, d in conn.execute(
                "SELECT queue_name, (failed_at AT TIME ZONE 'UTC')::date FROM hammerwork_jobs "
                "WHERE status IN ('Failed', 'Dead')"
            )
        )
        conn.commit()
    assert archive_jobs(session_for(db_url), None, POLICY, ArchivalConfig()).jobs_archived == 10
    flush_staged(session_for(db_url, target.store, target.settings), POLICY, ArchivalConfig())
    con = open_duckdb(session_for(db_url, target.store, target.settings))
    q = cookbook()

    def rows(name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = con.execute(q[name]).to_arrow_table().to_pylist()
        return result

    one = rows("find-one-job")
    assert [r["id"] for r in one] == [str(KNOWN)] and one[0]["status"] == "Completed"
    assert [r["id"] for r in rows("find-one-job-pruned")] == [str(KNOWN)]
    assert [r["id"] for r in rows("job-history")] == [str(KNOWN)]

    failures = rows("failures-per-day")
    assert sum(r["failures"] for r in failures) == 3
    assert sorted((r["queue_name"], str(r["failed_on"])) for r in failures for _ in range(r["failures"])) == (
        failed_days
    )

    per_customer = {r["customer_id"]: r["jobs"] for r in rows("payload-field")}
    assert per_customer == {"12345": 3, "777": 1, "42": 2}
    assert len(rows("payload-filter")) == 3

    cost = {r["queue_name"]: r for r in rows("cost-per-queue")}
    assert {k: v["jobs"] for k, v in cost.items()} == {"billing": 6, "email": 4}
    assert sum(v["share_pct"] for v in cost.values()) == pytest.approx(100, abs=0.02)
    assert cost["email"]["payload_chars"] > cost["billing"]["payload_chars"]  # the 500-character bodies

    per_day = rows("archived-per-day")
    assert sum(r["jobs"] for r in per_day) == 10
    assert len({r["archived_on"] for r in per_day}) == 1  # all archived today: `date` is the archive day
