"""The Iceberg table (opt-in) follows the manifest: flush, purge and erase publish one snapshot each; a step that
committed the manifest but not the table is healed by the next reconcile; nothing exists when not enabled."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import count
from tests.integration.test_purge import ARCHIVE_ALL, BASE, DAY, Spec, make_jobs
from tiering.engine import iceberg
from tiering.engine.erase import erase_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import purge_archived_jobs
from tiering.engine.query import list_archived_jobs
from tiering.engine.verify import verify_archive
from tiering.policy import ArchivalConfig
from tiering.settings import Settings
from tiering.store.local import LocalStore

pytest.importorskip("pyiceberg")


@pytest.fixture
def local(tmp_path: Path) -> tuple[LocalStore, Settings]:
    root = tmp_path / "objects"
    root.mkdir()
    return LocalStore(root), Settings(home=tmp_path / "home", store_url=root.as_uri(), iceberg=True)


def listed_ids(url: str) -> set[str]:
    page = list_archived_jobs(url, limit=10_000)
    assert all(j.tier == "cold" for j in page.items)
    assert page.total == len(page.items)
    return {j.job_id for j in page.items}


def table_ids(url: str, store: Any) -> set[str]:
    """pyiceberg's scan of the current snapshot."""
    table = iceberg.open_table(url, store)
    ids = table.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a job is in the table twice"
    return set(ids)


def specs(n: int, queues: tuple[str, ...], day: datetime) -> list[Spec]:
    return [Spec(queues[i % len(queues)], "Completed" if i % 3 else "Failed", day + timedelta(minutes=i))
            for i in range(n)]  # fmt: skip


def test_table_follows_flush_purge_and_erase(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    old = make_jobs(db_url, specs(30, ("mail", "billing/eu ü"), BASE - 40 * DAY), flush=(store, settings))
    new = make_jobs(db_url, specs(20, ("mail", "reports"), BASE), flush=(store, settings))
    assert listed_ids(db_url) == table_ids(db_url, store) == set(old) | set(new)
    table = iceberg.open_table(db_url, store)
    assert len(table.snapshots()) == 2  # one per flush
    partitions = {(r["queue_name"], r["archived_day"]) for r in
                  table.inspect.partitions().column("partition").to_pylist()}  # fmt: skip
    assert partitions == {("mail", (BASE - 40 * DAY).date()), ("billing/eu ü", (BASE - 40 * DAY).date()),
                          ("mail", BASE.date()), ("reports", BASE.date())}  # fmt: skip

    result = purge_archived_jobs(db_url, store, settings, BASE - 20 * DAY)
    assert result.jobs_purged == 30
    assert listed_ids(db_url) == table_ids(db_url, store) == set(new)
    assert len(iceberg.open_table(db_url, store).snapshots()) == 3

    erased = new[:3]  # their objects are rewritten without them
    erase_jobs(db_url, store, settings, ids=erased)
    assert listed_ids(db_url) == table_ids(db_url, store) == set(new) - set(erased)
    assert iceberg.check(db_url, store).in_step
    assert verify_archive(db_url, store, settings).ok

    # erased rows survive only in old snapshots, which expire-snapshots drops (the current one stays)
    assert iceberg.expire_snapshots(db_url, store, timedelta(0)) == 3
    table = iceberg.open_table(db_url, store)
    assert len(table.snapshots()) == 1
    assert table_ids(db_url, store) == set(new) - set(erased)


def test_a_failed_publish_is_healed_by_the_next_step(
    db_url: str, local: tuple[LocalStore, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = local
    first = make_jobs(db_url, specs(12, ("mail",), BASE - DAY), flush=(store, settings))

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between the manifest commit and the Iceberg commit")

    monkeypatch.setattr(iceberg, "reconcile", crash)
    second = make_jobs(db_url, specs(8, ("mail", "reports"), BASE))
    stats = flush_staged(db_url, store, settings, ARCHIVE_ALL, ArchivalConfig())
    assert stats.jobs_flushed == 8  # the manifest committed; the table did not follow
    assert any("Iceberg table not updated" in w for w in stats.warnings)
    monkeypatch.undo()

    difference = iceberg.check(db_url, store)
    assert len(difference.missing) == len({s.queue for s in specs(8, ("mail", "reports"), BASE)})
    assert not difference.extra
    report = verify_archive(db_url, store, settings)
    assert [p.kind for p in report.problems] == ["iceberg_behind"]
    assert table_ids(db_url, store) == set(first)

    repaired = verify_archive(db_url, store, settings, repair=True)
    assert [(p.kind, p.repaired) for p in repaired.problems] == [("iceberg_behind", True)]
    assert table_ids(db_url, store) == listed_ids(db_url) == set(first) | set(second)
    assert verify_archive(db_url, store, settings).ok


def test_reconcile_is_one_snapshot_and_idempotent(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    plain = Settings(home=settings.home, store_url=settings.store_url)  # not enabled: flushes publish nothing
    ids = make_jobs(db_url, specs(10, ("a", "b", "c"), BASE), flush=(store, plain))
    result = iceberg.reconcile(db_url, store)
    assert (result.files_added, result.files_removed, result.files_in_table) == (3, 0, 3)
    again = iceberg.reconcile(db_url, store)
    assert (again.files_added, again.files_removed, again.snapshot_id) == (0, 0, result.snapshot_id)
    assert len(iceberg.open_table(db_url, store).snapshots()) == 1
    assert table_ids(db_url, store) == set(ids)


def test_nothing_is_created_when_not_enabled(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    store = LocalStore(root)
    settings = Settings(home=tmp_path / "home", store_url=root.as_uri())
    ids = make_jobs(db_url, specs(6, ("mail",), BASE), flush=(store, settings))
    purge_archived_jobs(db_url, store, settings, BASE + DAY)
    erase_jobs(db_url, store, settings, ids=ids[:1])
    assert verify_archive(db_url, store, settings).ok
    with psycopg.connect(db_url) as conn:
        assert count(conn, "pg_tables", "tablename LIKE 'iceberg%%'") == 0
    assert not list(root.rglob("*iceberg*"))


def test_settings_enable_it(tmp_path: Path) -> None:
    from tiering.settings import load_settings

    assert load_settings({}).iceberg is False
    assert load_settings({"TIERING_ICEBERG": "1"}).iceberg is True
    path = tmp_path / "settings.json"
    path.write_text('{"iceberg": {"enabled": true}}')
    assert load_settings({"TIERING_SETTINGS_FILE": str(path)}).iceberg is True
