"""No single payload blocks a bulk operation (issue 12.2).

Staged rows with bad gzip, bad zstd, invalid UTF-8, NaN and 10,000-level nesting, and cold rows with NaN and
10,000-level nesting: erase (dry run and real) matches what it can and names the unreadable ids; search skips
and counts them; show and restore refuse that one job with a clear error (CLI exit 10, never "Aborted");
bulk restore skips them; erase by id removes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import insert_job, session_for
from tiering.engine.archive import archive_jobs
from tiering.engine.erase import erase_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.query import get_archived_job, search_archived_jobs
from tiering.engine.restore import restore_archived_job, restore_archived_jobs
from tiering.errors import CorruptPayloadError
from tiering.policy import ArchivalConfig, ArchivalPolicy
from tiering.settings import Settings
from tiering.store import open_store

TIERING_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tiering")
DEEP = '{"customer": {"id": 42}, "deep": ' + "[" * 10_000 + "1" + "]" * 10_000 + "}"
NAN = '{"customer": {"id": 42}, "score": NaN}'
STAGED_DAMAGE: dict[str, tuple[bytes, bool]] = {
    "bad_gzip": (b"\x1f\x8b\x08garbage-customer-id-42", True),
    "bad_zstd": (b"\x28\xb5\x2f\xfd-not-a-frame", True),
    "bad_utf8": (b'{"customer": {"id": 42}, "x": "\xff\xfe"}', False),
    "nan": (NAN.encode(), False),
    "deep": (DEEP.encode(), False),
}


def _insert(url: str, n: int, customer: int, queue: str = "q") -> list[str]:
    with psycopg.connect(url) as conn:
        ids = [str(insert_job(conn, queue=queue, payload={"customer": {"id": customer}, "n": i})) for i in range(n)]
        conn.commit()
    return ids


def _damage(url: str, job_id: str, data: bytes, compressed: bool) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE hammerwork_jobs_archive SET payload = %s, payload_compressed = %s WHERE id = %s",
            (data, compressed, job_id),
        )
        conn.commit()


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> dict[str, Any]:
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri(), database_url=db_url)
    store = open_store(settings)
    policy, config = ArchivalPolicy(), ArchivalConfig()
    # cold: good jobs of customers 42 and 7, and two that flush cannot refuse (valid UTF-8) but nobody can parse
    cold_good = _insert(db_url, 3, 42) + _insert(db_url, 3, 7)
    cold_bad = _insert(db_url, 2, 0)
    archive_jobs(session_for(db_url), None, policy, config)
    _damage(db_url, cold_bad[0], DEEP.encode(), False)
    _damage(db_url, cold_bad[1], NAN.encode(), False)
    flush_staged(session_for(db_url, store, settings), policy, config)
    # staging: good jobs, and one of every kind of damage
    staged_good = _insert(db_url, 2, 42) + _insert(db_url, 2, 7)
    staged_bad = dict(zip(STAGED_DAMAGE, _insert(db_url, len(STAGED_DAMAGE), 0), strict=True))
    archive_jobs(session_for(db_url), None, policy, config)
    for name, (data, compressed) in STAGED_DAMAGE.items():
        _damage(db_url, staged_bad[name], data, compressed)
    with psycopg.connect(db_url) as conn:
        cold = {str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index WHERE restored_at IS NULL")}
    assert set(cold_bad) <= cold and set(cold_good) <= cold  # the unparsable rows did reach the cold tier
    return {
        "url": db_url, "store": store, "settings": settings, "tmp": tmp_path,
        "cold_good": cold_good, "cold_bad": cold_bad, "staged_good": staged_good, "staged_bad": staged_bad,
    }  # fmt: skip


def test_erase_matches_what_it_can_and_names_the_unreadable(world: dict[str, Any]) -> None:
    url, store, settings = world["url"], world["store"], world["settings"]
    wanted = set(world["cold_good"][:3]) | set(world["staged_good"][:2])
    unreadable = set(world["cold_bad"]) | set(world["staged_bad"].values())

    dry = erase_jobs(session_for(url, store, settings), key="customer.id", value="42", dry_run=True)
    assert set(dry.locations) == wanted
    assert set(dry.unreadable_payloads) == unreadable
    assert not dry.complete  # a match among the unreadable cannot be ruled out

    real = erase_jobs(session_for(url, store, settings), key="customer.id", value="42")
    assert set(real.locations) == wanted and real.jobs_erased == len(wanted)
    assert set(real.unreadable_payloads) == unreadable and not real.complete
    doc = real.to_dict()
    assert {u["job_id"] for u in doc["unreadable_payload_jobs"]} == unreadable
    assert all(u["reason"] for u in doc["unreadable_payload_jobs"])
    after = search_archived_jobs(session_for(url, store), "customer.id", "42")
    assert after.items == []

    by_id = erase_jobs(session_for(url, store, settings), ids=sorted(unreadable))  # unreadable payloads still go by id
    assert by_id.complete and by_id.jobs_erased == len(unreadable)
    with psycopg.connect(url) as conn:
        left = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs_archive")}
        left |= {str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index")}
    assert not left & unreadable
    assert erase_jobs(session_for(url, store, settings), key="customer.id", value="7", dry_run=True).complete


def test_search_skips_and_counts_unreadable_payloads(world: dict[str, Any]) -> None:
    url, store = world["url"], world["store"]
    found = search_archived_jobs(session_for(url, store), "customer.id", "42")
    assert {i.job_id for i in found.items} == set(world["cold_good"][:3]) | set(world["staged_good"][:2])
    # every damaged row holds the prefilter's text (or cannot be decompressed to check it): all are counted
    assert found.unreadable_payloads == len(world["cold_bad"]) + len(world["staged_bad"])
    assert found.to_dict()["stats"]["unreadable_payloads"] == found.unreadable_payloads
    # another key: the rows its prefilter keeps are parsed; the unreadable among them are counted, not raised
    every = search_archived_jobs(session_for(url, store), "n", "1")
    assert {i.job_id for i in every.items} >= {world["cold_good"][1], world["staged_good"][1]}
    assert every.unreadable_payloads >= 3  # the deep rows (they hold "1") and the undecompressable ones


def test_show_and_restore_refuse_one_job_clearly(world: dict[str, Any]) -> None:
    url, store, settings = world["url"], world["store"], world["settings"]
    for job_id in [*world["cold_bad"], *world["staged_bad"].values()]:
        with pytest.raises(CorruptPayloadError, match=job_id):
            get_archived_job(session_for(url, store), job_id, with_payload=True)
        assert get_archived_job(session_for(url), job_id, with_payload=False).job_id == job_id  # metadata still reads
        with pytest.raises(CorruptPayloadError, match=job_id):
            restore_archived_job(session_for(url, store, settings), job_id)
    bulk = restore_archived_jobs(session_for(url, store, settings), queue="q")
    skipped = {s["job_id"] for s in bulk.skipped}
    assert skipped == set(world["cold_bad"]) | set(world["staged_bad"].values())
    assert bulk.restored == len(world["cold_good"]) + len(world["staged_good"])
    with psycopg.connect(url) as conn:
        hot = {str(r[0]) for r in conn.execute("SELECT id FROM hammerwork_jobs")}
    assert hot == set(world["cold_good"]) | set(world["staged_good"])


def test_cli_show_restore_and_erase_on_unreadable_payloads(world: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_"))}
    env.update(
        TIERING_DATABASE_URL=world["url"],
        TIERING_STORE_URL=world["settings"].store_url,
        TIERING_HOME=str(world["tmp"] / "home"),
        NO_COLOR="1",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TIERING_BIN, *args], env=env, capture_output=True, text=True, timeout=120)

    bad_gzip, deep_cold = world["staged_bad"]["bad_gzip"], world["cold_bad"][0]
    for job_id in (bad_gzip, deep_cold, world["staged_bad"]["bad_utf8"]):
        shown = cli("archive", "show", job_id, "--payload")
        assert shown.returncode == 10, (shown.returncode, shown.stderr)
        assert job_id in shown.stderr and "Aborted" not in shown.stderr and "unexpected" not in shown.stderr
        restored = cli("archive", "restore", job_id, "--format", "json")
        assert restored.returncode == 10, (restored.returncode, restored.stderr)
        assert "Aborted" not in restored.stderr and "unexpected" not in restored.stderr
    dry = cli("archive", "erase", "--match", "customer.id=42", "--dry-run", "--format", "json")
    assert "Aborted" not in dry.stderr and "unexpected" not in dry.stderr, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["unreadable_payloads"] == len(world["cold_bad"]) + len(world["staged_bad"])
    assert doc["complete"] is False
    uuid.UUID(doc["unreadable_payload_jobs"][0]["job_id"])
