"""Erase is linearizable with every other operation (issue 12.1).

Each interleaving seeds fresh jobs of one customer in all three tiers (cold, staging, hot and eligible), then
runs `erase --match customer.id=C` against a concurrent flush (paused at each fault point the flush crash tests
use, then released or crashed there), archive run, purge or restore. Afterwards every object in the bucket is
read (committed, pending and orphaned alike) together with the hot and staging tables: when erase says
complete, no job of that customer is left anywhere, and every job that was not erased keeps its index row.
"""

from __future__ import annotations

import io
import json
import random
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.helpers import insert_job, session_for
from tests.integration.test_purge import ARCHIVE_ALL, BASE, DAY, Spec, lock_enabled_bucket, make_jobs
from tiering import codec
from tiering.engine.archive import archive_jobs
from tiering.engine.erase import EraseResult, erase_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import purge_archived_jobs
from tiering.engine.restore import restore_archived_jobs
from tiering.engine.verify import verify_archive
from tiering.policy import ArchivalConfig
from tiering.settings import Settings
from tiering.store import open_store
from tiering.store.base import ObjectStore

POINTS = ("claimed", "uploading", "uploaded", "committed")
VARIANTS: list[tuple[str, str | None, bool]] = [("flush", p, crash) for p in POINTS for crash in (False, True)] + [
    ("run", None, False),
    ("purge", None, False),
    ("restore", None, False),
]
INTERLEAVINGS = 55


def _payload(customer: int, n: int) -> dict[str, Any]:
    return {"customer": {"id": customer}, "n": n, "pad": "p" * 20}


def _seed(url: str, store: ObjectStore, settings: Settings, i: int, customer: int) -> None:
    """Cold (flushed), staged and hot-but-eligible jobs; half of them belong to `customer`."""
    q = f"q{i % 3}"
    cold = [Spec(q, "Completed", BASE - (i % 5) * DAY, _payload(customer if k % 2 else -1, k)) for k in range(4)]
    make_jobs(url, cold, flush=(store, settings))
    staged = [Spec(q, "Completed", BASE - (i % 4) * DAY, _payload(customer if k % 2 else -2, k)) for k in range(4)]
    make_jobs(url, staged)
    with psycopg.connect(url) as conn:
        for k in range(4):
            insert_job(
                conn, queue=q, status="Completed", age=timedelta(days=2), payload=_payload(customer if k % 2 else -3, k)
            )
        conn.commit()


def _leftovers(url: str, store: ObjectStore, customer: int) -> dict[str, set[str]]:
    """Every job of `customer` still anywhere: hot, staging, and every object the bucket holds."""
    out: dict[str, set[str]] = {"hot": set(), "staging": set(), "cold": set()}
    with psycopg.connect(url) as conn:
        for (jid,) in conn.execute(
            "SELECT id FROM hammerwork_jobs WHERE payload #> '{customer,id}' = to_jsonb(%s::int)", (customer,)
        ):
            out["hot"].add(str(jid))
        for jid, data in conn.execute("SELECT id, payload FROM hammerwork_jobs_archive"):
            doc = json.loads(codec.decode(bytes(data)))
            if doc.get("customer", {}).get("id") == customer:
                out["staging"].add(str(jid))
    for info in store.list(store.prefix):
        table = pq.read_table(io.BytesIO(store.get_bytes(info.key)), columns=["id", "payload"])
        for jid, text in zip(table["id"].to_pylist(), table["payload"].to_pylist(), strict=True):
            if json.loads(text).get("customer", {}).get("id") == customer:
                out["cold"].add(f"{jid}@{info.key}")
    return out


def _index_covers_committed(url: str, store: ObjectStore) -> None:
    """Every row of every committed object has its index row: no survivor lost its index entry."""
    with psycopg.connect(url) as conn:
        objects = conn.execute("SELECT id, key FROM tiering_manifest WHERE state = 'committed'").fetchall()
        for object_id, key in objects:
            indexed = {
                str(r[0])
                for r in conn.execute("SELECT job_id FROM tiering_job_index WHERE object_id = %s", (object_id,))
            }
            table = pq.read_table(io.BytesIO(store.get_bytes(key)), columns=["id"])
            rows = {str(uuid.UUID(str(j))) for j in table["id"].to_pylist()}
            assert rows <= indexed, f"{key}: {len(rows - indexed)} rows without an index row"


class _Pause:
    """A crash hook that stops the first flush round reaching `point` until released, then (optionally) dies."""

    def __init__(self, point: str, crash: bool) -> None:
        self.point, self.crash = point, crash
        self.reached, self.release = threading.Event(), threading.Event()
        self._once = threading.Lock()
        self._fired = False

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        with self._once:
            if self._fired:
                return
            self._fired = True
        self.reached.set()
        self.release.wait(30)
        if self.crash:
            raise RuntimeError(f"injected crash at {point}")


def _interleave(db_url: str, store: ObjectStore, settings: Settings, i: int, rng: random.Random) -> EraseResult:
    """Seed interleaving `i`, run its concurrent operation and the erase of its customer; the erase's result."""
    customer = 100_000 + i
    kind, point, crash = VARIANTS[i % len(VARIANTS)]
    config = ArchivalConfig()
    _seed(db_url, store, settings, i, customer)
    if kind in ("flush", "run"):
        make_jobs(db_url, [Spec(f"q{i % 3}", "Completed", BASE, _payload(customer, 9))])
    errors: list[BaseException] = []
    result: list[EraseResult] = []

    def other(hook: Any = None) -> None:
        try:
            if kind == "flush":
                flush_staged(session_for(db_url, store, settings), ARCHIVE_ALL, config, claim_rows=3, crash_hook=hook)
            elif kind == "run":
                archive_jobs(session_for(db_url), None, ARCHIVE_ALL, config, "Automatic", "run", workers=2)
                flush_staged(session_for(db_url, store, settings), ARCHIVE_ALL, config, claim_rows=3)
            elif kind == "purge":
                purge_archived_jobs(session_for(db_url, store, settings), timedelta(days=699), initiated_by="purge")
            else:
                restore_archived_jobs(session_for(db_url, store, settings), queue=f"q{i % 3}", initiated_by="restore")
        except RuntimeError as exc:
            if "injected crash" not in str(exc):
                errors.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def erase() -> None:
        try:
            result.append(erase_jobs(session_for(db_url, store, settings), key="customer.id", value=str(customer)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pause = _Pause(point, crash) if point else None
    mover = threading.Thread(target=other, kwargs={"hook": pause})
    eraser = threading.Thread(target=erase)
    mover.start()
    if pause is not None:
        pause.reached.wait(30)
        eraser.start()
        threading.Event().wait(rng.uniform(0.05, 0.4))
        pause.release.set()
    else:
        threading.Event().wait(rng.uniform(0.0, 0.08))
        eraser.start()
    mover.join(120)
    eraser.join(120)
    assert not mover.is_alive() and not eraser.is_alive(), f"interleaving {i} ({kind}) hung"
    assert not errors, (i, kind, point, crash, errors)
    return result[0]


@pytest.mark.timeout(1200)
def test_erase_is_linearizable_with_run_flush_purge_restore(db_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri(), database_url=db_url, workers=2)
    store = open_store(settings)
    rng = random.Random(1212)
    outcomes: list[tuple[int, str, str | None, bool]] = []
    for i in range(INTERLEAVINGS):
        kind, point, crash = VARIANTS[i % len(VARIANTS)]
        result = _interleave(db_url, store, settings, i, rng)
        left = _leftovers(db_url, store, 100_000 + i)
        outcomes.append((i, kind, point, crash))
        assert result.complete, (i, kind, point, crash, result.to_dict())
        assert left == {"hot": set(), "staging": set(), "cold": set()}, (i, kind, point, crash, left)
        _index_covers_committed(db_url, store)
    print("interleavings:", outcomes)
    # a final clean flush; then the archive is consistent: every object matches the manifest and the index
    flush_staged(session_for(db_url, store, settings), ARCHIVE_ALL, ArchivalConfig())
    report = verify_archive(session_for(db_url, store, settings), deep=True)
    assert report.ok, report.to_dict()


def test_a_move_tiering_does_not_order_is_caught_by_the_final_check(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hammerwork's own archiver takes no tiering lock: it copies a matching hot job into staging while the erase
    scans the cold tier. The final check reads staging again, finds the copy, and a second pass erases it."""
    from tests.helpers import hammerwork_archive_copy
    from tiering.engine import erase as erase_mod

    settings = Settings(home=tmp_path, store_url=(tmp_path / "objects").as_uri(), database_url=db_url)
    store = open_store(settings)
    _seed(db_url, store, settings, 0, 4242)
    with psycopg.connect(db_url) as conn:
        hot = uuid.UUID(str(insert_job(conn, queue="q0", status="Completed", payload=_payload(4242, 77))))
        conn.commit()
    real_scan = erase_mod._scan_object
    copied: list[bool] = []

    def scan_and_meanwhile_copy(*args: Any, **kwargs: Any) -> list[str]:
        if not copied:
            with psycopg.connect(db_url) as conn:  # Hammerwork's archiver, mid-erase
                hammerwork_archive_copy(conn, hot)
                conn.commit()
            copied.append(True)
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(erase_mod, "_scan_object", scan_and_meanwhile_copy)
    result = erase_jobs(session_for(db_url, store, settings), key="customer.id", value="4242")

    assert copied and result.passes == 2, result.to_dict()
    assert result.complete and not result.remaining
    assert _leftovers(db_url, store, 4242) == {"hot": set(), "staging": set(), "cold": set()}


def test_a_match_kept_by_an_object_lock_is_reported_and_keeps_its_index_row(
    db_url: str, moto_inprocess_store: Any, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    store = moto_inprocess_store
    bucket, settings = lock_enabled_bucket(store, db_url, tmp_path)
    locked = make_jobs(db_url, [Spec("locked", "Completed", BASE, _payload(55, 1))], flush=(store, settings))
    free = make_jobs(db_url, [Spec("free", "Completed", BASE, _payload(55, 2))], flush=(store, settings))
    locked_key = next(i.key for i in store.list(store.prefix) if "queue=locked/" in i.key)
    store.client.put_object_retention(
        Bucket=bucket, Key=locked_key,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=30)},
    )  # fmt: skip

    result = erase_jobs(session_for(db_url, store, settings), key="customer.id", value="55")

    assert not result.complete and result.passes == 1  # explained by the lock: no pointless re-scans
    assert [lo.key for lo in result.locked_objects] == [locked_key]
    assert set(result.remaining) == set(locked) and result.jobs_erased == 1
    with psycopg.connect(db_url) as conn:
        indexed = {str(r[0]) for r in conn.execute("SELECT job_id FROM tiering_job_index")}
    assert set(locked) <= indexed and not set(free) & indexed  # the kept job is still findable
