"""A corrupt staged payload (bad gzip, invalid UTF-8) is quarantined and reported; the flush goes on."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.helpers import count, insert_job, session_for
from tiering.engine.archive import archive_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.verify import verify_archive
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store import open_store


def test_corrupt_payloads_are_quarantined_and_the_rest_is_flushed(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        good = [insert_job(conn, queue="q", payload={"n": i, "text": "x" * 200}) for i in range(20)]
        bad_gzip = insert_job(conn, queue="q")
        bad_utf8 = insert_job(conn, queue="q")
        conn.commit()
    archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig())
    with psycopg.connect(db_url) as conn:
        # what a damaged Hammerwork archive row looks like: gzip magic with garbage, and bytes that are not UTF-8
        conn.execute(
            "UPDATE hammerwork_jobs_archive SET payload = %s WHERE id = %s", (b"\x1f\x8b\x08garbage", bad_gzip)
        )
        conn.execute("UPDATE hammerwork_jobs_archive SET payload = %s WHERE id = %s", (b"\xff\xfe{", bad_utf8))
        conn.commit()
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri())
    store = open_store(settings)

    stats = flush_staged(session_for(db_url, store, settings), ArchivalPolicy(), ArchivalConfig())

    assert stats.jobs_flushed == len(good)
    assert {q["job_id"] for q in stats.quarantined} == {str(bad_gzip), str(bad_utf8)}
    assert stats.to_dict()["quarantined"] == 2
    with psycopg.connect(db_url) as conn:
        staged = {r[0] for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
        quarantined = {r[0] for r in conn.execute("SELECT job_id FROM tiering_quarantine")}
        indexed = {r[0] for r in conn.execute("SELECT job_id FROM tiering_job_index")}
        assert count(conn, "tiering_manifest", "state = 'committed'") == 1
    assert staged == quarantined == {bad_gzip, bad_utf8}  # kept, not lost
    assert indexed == set(good)

    again = flush_staged(session_for(db_url, store, settings), ArchivalPolicy(), ArchivalConfig())
    assert again.jobs_flushed == 0 and again.quarantined == []  # skipped, not retried forever
    assert verify_archive(session_for(db_url, store, settings), deep=True).ok


def test_a_row_the_database_refuses_is_quarantined_and_its_group_goes_on(db_url: str, tmp_path: Path) -> None:
    """Any staged row whose commit a constraint refuses (here an operator's CHECK on the job index; in the wild a
    duplicate or a NULL) is quarantined and reported; the rest of its (queue, day) group is flushed."""
    with psycopg.connect(db_url) as conn:
        good = [insert_job(conn, queue="q", payload={"n": i}) for i in range(30)]
        refused = [insert_job(conn, queue="q", payload={"n": 100 + i, "big": "z" * 6000}) for i in range(2)]
        conn.execute("ALTER TABLE tiering_job_index ADD CONSTRAINT test_small_payloads CHECK (payload_bytes < 5000)")
        conn.commit()
    archive_jobs(session_for(db_url), None, ArchivalPolicy(), ArchivalConfig())
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri())
    store = open_store(settings)

    stats = flush_staged(session_for(db_url, store, settings), ArchivalPolicy(), ArchivalConfig())

    assert stats.jobs_flushed == len(good)
    assert {q["job_id"] for q in stats.quarantined} == {str(j) for j in refused}
    assert all("cannot be committed" in q["reason"] and q["queue"] == "q" for q in stats.quarantined)
    with psycopg.connect(db_url) as conn:
        staged = {r[0] for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
        quarantined = {r[0] for r in conn.execute("SELECT job_id FROM tiering_quarantine")}
        indexed = {r[0] for r in conn.execute("SELECT job_id FROM tiering_job_index")}
        manifest = conn.execute("SELECT state, count(*) FROM tiering_manifest GROUP BY 1").fetchall()
    assert staged == quarantined == set(refused)
    assert indexed == set(good)
    assert manifest == [("committed", 1)]  # the refused round's object and pending row are gone
    assert {o.key for o in store.list(store.prefix)} == set(stats.keys)  # no object of the refused round left
    assert verify_archive(session_for(db_url, store, settings), deep=True).ok
