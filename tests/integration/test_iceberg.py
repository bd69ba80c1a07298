"""The Iceberg table (opt-in) follows the manifest: flush, purge and erase publish one snapshot each; a step that
committed the manifest but not the table is healed by the next reconcile; nothing exists when not enabled."""

from __future__ import annotations

import json
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from tests.helpers import count, session_for
from tests.integration.test_flush import archive_all, cli_env, seed, spread_archived_at
from tests.integration.test_flush_crash import POLICY_DOC, run_cli
from tests.integration.test_purge import ARCHIVE_ALL, BASE, DAY, Spec, make_jobs
from tiering import schema as S
from tiering.engine import iceberg
from tiering.engine.analyst import athena_ddl, open_duckdb
from tiering.engine.archive import archive_jobs
from tiering.engine.erase import erase_jobs
from tiering.engine.flush import flush_staged
from tiering.engine.purge import purge_archived_jobs
from tiering.engine.query import list_archived_jobs
from tiering.engine.restore import restore_archived_job, restore_archived_jobs
from tiering.engine.verify import verify_archive
from tiering.errors import ConfigError
from tiering.policy import ArchivalConfig
from tiering.settings import Settings
from tiering.store.local import LocalStore

pytest.importorskip("pyiceberg")


@pytest.fixture
def local(tmp_path: Path) -> tuple[LocalStore, Settings]:
    root = tmp_path / "objects"
    root.mkdir()
    return LocalStore(root), Settings(home=tmp_path / "home", store_url=root.as_uri(), iceberg=True)


def listed_ids(url: str, *, tier: str | None = "cold") -> set[str]:
    """What `tiering archive list` shows (every job cold unless `tier` is None)."""
    page = list_archived_jobs(session_for(url), limit=10_000)
    assert page.total == len(page.items)
    if tier is not None:
        assert {j.tier for j in page.items} <= {tier}
    return {j.job_id for j in page.items}


def table_ids(url: str, store: Any, settings: Settings | None = None) -> set[str]:
    """pyiceberg's scan of the current snapshot (through the catalog `settings` name; the SQL catalog by default)."""
    table = iceberg.open_table(session_for(url, store, settings))
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
    table = iceberg.open_table(session_for(db_url, store))
    assert len(table.snapshots()) == 2  # one per flush
    partitions = {(r["queue_name"], r["archived_day"]) for r in
                  table.inspect.partitions().column("partition").to_pylist()}  # fmt: skip
    assert partitions == {("mail", (BASE - 40 * DAY).date()), ("billing/eu ü", (BASE - 40 * DAY).date()),
                          ("mail", BASE.date()), ("reports", BASE.date())}  # fmt: skip

    result = purge_archived_jobs(session_for(db_url, store, settings), BASE - 20 * DAY)
    assert result.jobs_purged == 30
    assert listed_ids(db_url) == table_ids(db_url, store) == set(new)
    assert len(iceberg.open_table(session_for(db_url, store)).snapshots()) == 3

    erased = new[:3]  # their objects are rewritten without them
    erase_jobs(session_for(db_url, store, settings), ids=erased)
    assert listed_ids(db_url) == table_ids(db_url, store) == set(new) - set(erased)
    with open_duckdb(session_for(db_url, store, settings)) as duck:  # DuckDB's iceberg_scan sees the same jobs
        scanned = [r[0] for r in duck.execute("SELECT id FROM archived_jobs_iceberg").fetchall()]
    assert len(scanned) == len(set(scanned)) and set(scanned) == set(new) - set(erased)
    assert iceberg.check(session_for(db_url, store)).in_step
    assert verify_archive(session_for(db_url, store, settings)).ok

    # erased rows survive only in old snapshots, which expire-snapshots drops (the current one stays)
    assert iceberg.expire_snapshots(session_for(db_url, store), timedelta(0)) == 3
    table = iceberg.open_table(session_for(db_url, store))
    assert len(table.snapshots()) == 1
    assert table_ids(db_url, store) == set(new) - set(erased)


def duckdb_ids(url: str, store: Any, settings: Settings) -> set[str]:
    """DuckDB's iceberg_scan of the current snapshot (the `archived_jobs_iceberg` view of `tiering analyst duckdb`)."""
    with open_duckdb(session_for(url, store, settings)) as duck:
        ids = [str(r[0]) for r in duck.execute("SELECT id FROM archived_jobs_iceberg").fetchall()]
    assert len(ids) == len(set(ids)), "DuckDB sees a job twice"
    return set(ids)


def rearchive(url: str, ids: list[str], store: Any, settings: Settings) -> None:
    """Restored jobs finish again and are archived and flushed again (a newer copy in a newer object)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE hammerwork_jobs SET status = 'Completed', completed_at = now() - interval '1 hour' "
            "WHERE id = ANY(%s::uuid[])",
            (ids,),
        )
        conn.commit()
    archive_jobs(session_for(url), None, ARCHIVE_ALL, ArchivalConfig(), "manual", "tester")
    flush_staged(session_for(url, store, settings), ARCHIVE_ALL, ArchivalConfig())


def assert_table_is_the_archive(url: str, store: Any, settings: Settings, expected: set[str]) -> None:
    """pyiceberg's scan, DuckDB's iceberg_scan and `tiering archive list` show exactly the same jobs."""
    assert listed_ids(url) == expected
    assert table_ids(url, store, settings) == expected
    assert duckdb_ids(url, store, settings) == expected
    assert iceberg.check(session_for(url, store, settings)).in_step


def run_the_archive_lifecycle(url: str, store: Any, settings: Settings) -> None:
    """Archive runs, a restore of one job and a bulk restore, a re-archive of restored jobs, a purge, an erase and
    an expiry: after each step the Iceberg table shows exactly what `tiering archive list` shows."""
    old = make_jobs(url, specs(12, ("mail", "billing/eu ü"), BASE - 40 * DAY), flush=(store, settings))
    new = make_jobs(url, specs(18, ("mail", "reports"), BASE), flush=(store, settings))
    live = set(old) | set(new)
    assert_table_is_the_archive(url, store, settings, live)

    one = restore_archived_job(session_for(url, store, settings), new[0])  # one job back to the hot table
    assert one.restored and one.source == "cold"
    live.discard(new[0])
    assert_table_is_the_archive(url, store, settings, live)
    summary = iceberg.open_table(session_for(url, store, settings)).current_snapshot().summary
    assert (summary["total-position-deletes"], summary["total-delete-files"]) == ("1", "1")

    bulk = restore_archived_jobs(session_for(url, store, settings), queue="reports")
    assert bulk.restored == sum(1 for i, j in enumerate(new) if i % 2 == 1)
    live -= {j for i, j in enumerate(new) if i % 2 == 1}
    assert_table_is_the_archive(url, store, settings, live)

    again = [new[1], new[3]]  # restored, finished again, archived again: only the newer copy is in the table
    rearchive(url, again, store, settings)
    live |= set(again)
    assert_table_is_the_archive(url, store, settings, live)

    purged = purge_archived_jobs(session_for(url, store, settings), BASE - 20 * DAY)
    assert purged.jobs_purged == len(old)
    live -= set(old)
    assert_table_is_the_archive(url, store, settings, live)

    erased = sorted(live)[:2]
    erase_jobs(session_for(url, store, settings), ids=erased)
    live -= set(erased)
    assert_table_is_the_archive(url, store, settings, live)
    assert verify_archive(session_for(url, store, settings)).ok

    # erased rows live on only in older snapshots: expiring them leaves the current one, without them
    assert iceberg.expire_snapshots(session_for(url, store, settings), timedelta(0)) > 0
    table = iceberg.open_table(session_for(url, store, settings))
    assert len(table.snapshots()) == 1
    for snapshot in table.snapshots():
        scanned = table.scan(snapshot_id=snapshot.snapshot_id, selected_fields=("id",)).to_arrow()
        assert not set(scanned.column("id").to_pylist()) & set(erased)
    assert_table_is_the_archive(url, store, settings, live)
    # ... and what the expired snapshots named is gone from the store: every manifest, manifest list and delete
    # file left under the table is reached from the kept snapshot
    prefix = iceberg._key_of(store, table.location().rstrip("/") + "/")
    if settings.iceberg_catalog != "rest":  # a REST catalog may keep the metadata outside the store (its own bucket)
        left = {iceberg.file_uri(store, o.key) for o in store.list(prefix) if not o.key.endswith(".metadata.json")}
        assert left and left == iceberg._referenced(table)
    # no manifest copies a job's id (or any identifying column) into its bounds; partition sources and times only
    id_field = table.schema().find_field("id").field_id
    bounded = {table.schema().find_field("archived_at").field_id, table.schema().find_field("queue_name").field_id}
    for manifest in table.current_snapshot().manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            if entry.data_file.content == 0:
                assert id_field not in (entry.data_file.lower_bounds or {})
                assert bounded <= set(entry.data_file.lower_bounds or {})


def test_restored_jobs_leave_the_table(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    run_the_archive_lifecycle(db_url, store, settings)


@pytest.mark.seaweedfs
def test_restored_jobs_leave_the_table_on_seaweedfs(db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory("seaweedfs", iceberg=True)
    run_the_archive_lifecycle(db_url, target.store, target.settings)


def test_glue_catalog_on_moto(db_url: str, s3_settings_factory: Any, request: pytest.FixtureRequest) -> None:
    """TIERING_ICEBERG_CATALOG=glue: the table is registered in (moto's) Glue Data Catalog as Athena reads it, and
    follows the archive through the same steps; nothing goes to the SQL catalog."""
    import boto3

    target = s3_settings_factory("moto_server", iceberg=True)
    settings = target.settings.with_overrides(iceberg_catalog="glue", iceberg_catalog_uri=target.endpoint,
                                              s3_region="us-east-1")  # fmt: skip
    glue = boto3.client("glue", endpoint_url=target.endpoint, region_name="us-east-1")
    request.addfinalizer(lambda: glue.delete_database(Name=iceberg.NAMESPACE))  # moto's Glue outlives the test
    run_the_archive_lifecycle(db_url, target.store, settings)

    registered = glue.get_table(DatabaseName=iceberg.NAMESPACE, Name=iceberg.TABLE_NAME)["Table"]
    assert registered["Parameters"]["table_type"].upper() == "ICEBERG"
    current = iceberg.metadata_location(session_for(db_url, target.store, settings))
    assert registered["Parameters"]["metadata_location"] == current
    assert current.startswith(f"s3://{target.bucket}/")
    with psycopg.connect(db_url) as conn:
        assert count(conn, "pg_tables", "tablename LIKE 'iceberg%%'") == 0
    ddl = athena_ddl(session_for(db_url, target.store, settings))  # Athena reads the Glue table as it is
    assert "table_type ICEBERG" in ddl and 'SELECT count(*) FROM "hammerwork"."archived_jobs";' in ddl
    assert f"-- current metadata: {current}" in ddl
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `archived_jobs_all`" in ddl  # the Hive form stays


def test_rest_catalog(db_url: str, local: tuple[LocalStore, Settings], tmp_path: Path) -> None:
    """TIERING_ICEBERG_CATALOG=rest: every catalog call goes over the Iceberg REST protocol (to the minimal server
    of tests/iceberg_rest.py), through the same archive lifecycle; nothing goes to the SQL catalog."""
    from tests.iceberg_rest import rest_catalog_server

    store, settings = local
    (tmp_path / "rest").mkdir()
    with rest_catalog_server(tmp_path / "rest") as server:
        rest = settings.with_overrides(iceberg_catalog="rest", iceberg_catalog_uri=server.url)
        run_the_archive_lifecycle(db_url, store, rest)
        assert server.requests["createTable"] == 1 and server.requests["createNamespace"] == 1  # created once
        assert server.requests["updateTable"] >= 7  # a commit per step: 2 flushes, 2 restores, re-archive, ...
        assert server.requests["getConfig"] >= 1 and server.requests["loadTable"] >= 7
        loaded = server.catalog.load_table(iceberg.IDENTIFIER)  # the server's own view of the table
        assert loaded.metadata_location == iceberg.metadata_location(session_for(db_url, store, rest))
    with psycopg.connect(db_url) as conn:
        assert count(conn, "pg_tables", "tablename LIKE 'iceberg%%'") == 0


@pytest.mark.seaweedfs
def test_rest_catalog_of_seaweedfs(db_url: str, s3_settings_factory: Any) -> None:
    """A third-party Iceberg REST catalog: SeaweedFS's own (its S3 table buckets; OAuth2 client credentials = the S3
    keys). The table's metadata lives in a table bucket, its data files are the archive objects in the archive
    bucket; the whole lifecycle shows the archive."""
    import boto3

    target = s3_settings_factory("seaweedfs", iceberg=True)
    server = target.server
    assert server is not None and server.iceberg_url
    table_bucket = f"tables-{target.bucket}"
    boto3.client("s3tables", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
                 aws_secret_access_key=server.secret_key, region_name=server.region).create_table_bucket(
        name=table_bucket)  # fmt: skip
    settings = target.settings.with_overrides(
        iceberg_catalog="rest", iceberg_catalog_uri=server.iceberg_url,
        iceberg_catalog_properties={"warehouse": f"s3://{table_bucket}/",
                                    "credential": f"{server.access_key}:{server.secret_key}"},
    )  # fmt: skip
    run_the_archive_lifecycle(db_url, target.store, settings)
    table = iceberg.open_table(session_for(db_url, target.store, settings))
    assert table.metadata_location.startswith(f"s3://{table_bucket}/")
    files = table.inspect.files().column("file_path").to_pylist()
    assert files and all(f.startswith(f"s3://{target.bucket}/") or f.startswith(f"s3://{table_bucket}/") for f in files)
    with psycopg.connect(db_url) as conn:
        assert count(conn, "pg_tables", "tablename LIKE 'iceberg%%'") == 0


def test_rest_catalog_errors_are_config_errors(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    no_url = settings.with_overrides(iceberg_catalog="rest")
    with pytest.raises(ConfigError, match="TIERING_ICEBERG_CATALOG_URI"):
        iceberg.open_table(session_for(db_url, store, no_url))
    plain = Settings(home=settings.home, store_url=settings.store_url)
    make_jobs(db_url, specs(3, ("mail",), BASE), flush=(store, plain))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    down = settings.with_overrides(iceberg_catalog="rest", iceberg_catalog_uri=dead)
    report = verify_archive(session_for(db_url, store, down))  # an unreachable catalog: reported, not a crash
    assert [p.kind for p in report.problems] == ["iceberg_unreadable"]
    make_jobs(db_url, specs(2, ("mail",), BASE))  # staged; the flush commits them, the table is only warned about
    stats = flush_staged(session_for(db_url, store, down), ARCHIVE_ALL, ArchivalConfig())
    assert stats.jobs_flushed == 2
    about_the_table = [w for w in stats.warnings if "Iceberg" in w]
    assert about_the_table and all("Iceberg table not updated" in w for w in about_the_table)


def test_athena_ddl_prints_the_glue_registration(db_url: str, s3_settings_factory: Any) -> None:
    """With the SQL catalog, athena-ddl prints the Glue registration of the current snapshot; run against (moto's)
    Glue, Athena's catalog then holds the table and reads the same jobs."""
    import boto3
    from pyiceberg.catalog.glue import GlueCatalog

    target = s3_settings_factory("moto_server", iceberg=True)
    store, settings = target.store, target.settings
    ids = make_jobs(db_url, specs(9, ("mail", "reports"), BASE), flush=(store, settings))
    restore_archived_job(session_for(db_url, store, settings), ids[0])
    ddl = athena_ddl(session_for(db_url, store, settings))
    commands = [line.removeprefix("--   ") for line in ddl.splitlines() if line.startswith("--   aws glue ")]
    assert [c.split(" --")[0] for c in commands] == ["aws glue create-database", "aws glue create-table"]
    table_input = json.loads(commands[1].split("--table-input ", 1)[1].strip("'"))
    assert commands[1].split("--database-name ", 1)[1].split()[0] == iceberg.NAMESPACE
    database = f"athena_{target.bucket}".replace("-", "_")  # moto's Glue is shared by the tests of this process
    assert table_input["Parameters"]["metadata_location"] == iceberg.metadata_location(session_for(db_url, store))

    glue = boto3.client("glue", endpoint_url=target.endpoint, region_name="us-east-1")
    assert json.loads(commands[0].split("--database-input ", 1)[1].strip("'")) == {"Name": iceberg.NAMESPACE}
    glue.create_database(DatabaseInput={"Name": database})
    glue.create_table(DatabaseName=database, TableInput=table_input)
    athena_side = GlueCatalog("athena", **{"glue.endpoint": target.endpoint, "glue.region": "us-east-1",
                                           "s3.endpoint": target.endpoint, "s3.region": "us-east-1"})  # fmt: skip
    scanned = athena_side.load_table((database, table_input["Name"])).scan(selected_fields=("id",)).to_arrow()
    assert set(scanned.column("id").to_pylist()) == set(ids[1:]) == listed_ids(db_url)


def test_erase_expires_snapshots_past_the_window(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    short = settings.with_overrides(iceberg_snapshot_retention=0.001)
    ids = make_jobs(db_url, specs(8, ("mail",), BASE - DAY), flush=(store, short))
    ids += make_jobs(db_url, specs(4, ("mail",), BASE), flush=(store, short))
    assert len(iceberg.open_table(session_for(db_url, store)).snapshots()) == 2  # flushes expire nothing
    erase_jobs(session_for(db_url, store, short), ids=ids[:1])
    table = iceberg.open_table(session_for(db_url, store))
    assert [s.snapshot_id for s in table.snapshots()] == [table.current_snapshot().snapshot_id]
    assert table_ids(db_url, store) == set(ids[1:]) == listed_ids(db_url)  # the erased job is in no snapshot


def test_a_registry_column_joins_the_table_schema(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    before = make_jobs(db_url, specs(4, ("mail",), BASE - DAY), flush=(store, settings))
    with psycopg.connect(db_url) as conn:  # Hammerwork's DDL for a column it adds to both tables
        conn.execute("ALTER TABLE hammerwork_jobs ADD COLUMN tenant_code VARCHAR(32) DEFAULT 'acme'")
        conn.execute("ALTER TABLE hammerwork_jobs_archive ADD COLUMN tenant_code VARCHAR(32)")
        conn.commit()
    tenant = S.Column("tenant_code", pa.string(), True, "varchar(32)", "Tenant of the job.", "job")
    with S.extra_columns(tenant):
        after = make_jobs(db_url, specs(3, ("mail",), BASE), flush=(store, settings))
        table = iceberg.open_table(session_for(db_url, store))
        field = table.schema().find_field("tenant_code")
        assert field.field_id > max(f.field_id for f in table.schema().fields if f.name != "tenant_code")
        rows = table.scan(selected_fields=("id", "tenant_code")).to_arrow().to_pylist()
    assert {r["id"]: r["tenant_code"] for r in rows} == {**dict.fromkeys(before), **dict.fromkeys(after, "acme")}
    assert iceberg.check(session_for(db_url, store)).in_step


def test_a_registry_type_change_is_refused_with_its_reason(
    db_url: str, local: tuple[LocalStore, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Iceberg field holds one type: if the registry changed `id` from text to a 16-byte UUID, objects written
    before and after could not share the table. The flush still commits; the table step says why it stopped."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import IntegerType, LongType, NestedField, StringType, UUIDType

    old = Schema(NestedField(1, "id", StringType()), NestedField(2, "attempts", IntegerType()))
    assert iceberg.changed_types(old, Schema(NestedField(1, "id", UUIDType()), NestedField(2, "attempts",
                                                                                           LongType()))) == [
        "id: string -> uuid"
    ]  # fmt: skip
    assert iceberg.changed_types(old, Schema(NestedField(1, "id", StringType()))) == []

    store, settings = local
    first = make_jobs(db_url, specs(4, ("mail",), BASE - DAY), flush=(store, settings))
    registry = iceberg.iceberg_schema()
    as_uuid = Schema(*[NestedField(f.field_id, f.name, UUIDType(), required=False) if f.name == "id" else f
                       for f in registry.fields])  # fmt: skip
    monkeypatch.setattr(iceberg, "iceberg_schema", lambda: as_uuid)
    make_jobs(db_url, specs(3, ("mail",), BASE))
    stats = flush_staged(session_for(db_url, store, settings), ARCHIVE_ALL, ArchivalConfig())
    assert stats.jobs_flushed == 3
    assert any("id: string -> uuid" in w and "one type" in w for w in stats.warnings), stats.warnings
    monkeypatch.undo()
    assert table_ids(db_url, store) == set(first)  # untouched, and healed once the registry agrees again
    iceberg.reconcile(session_for(db_url, store))
    assert table_ids(db_url, store) == listed_ids(db_url)


def test_a_failed_publish_is_healed_by_the_next_step(
    db_url: str, local: tuple[LocalStore, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = local
    first = make_jobs(db_url, specs(12, ("mail",), BASE - DAY), flush=(store, settings))

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between the manifest commit and the Iceberg commit")

    monkeypatch.setattr(iceberg, "reconcile", crash)
    second = make_jobs(db_url, specs(8, ("mail", "reports"), BASE))
    stats = flush_staged(session_for(db_url, store, settings), ARCHIVE_ALL, ArchivalConfig())
    assert stats.jobs_flushed == 8  # the manifest committed; the table did not follow
    assert any("Iceberg table not updated" in w for w in stats.warnings)
    monkeypatch.undo()

    difference = iceberg.check(session_for(db_url, store))
    assert len(difference.missing) == len({s.queue for s in specs(8, ("mail", "reports"), BASE)})
    assert not difference.extra
    report = verify_archive(session_for(db_url, store, settings))
    assert [p.kind for p in report.problems] == ["iceberg_behind"]
    assert table_ids(db_url, store) == set(first)

    repaired = verify_archive(session_for(db_url, store, settings), repair=True)
    assert [(p.kind, p.repaired) for p in repaired.problems] == [("iceberg_behind", True)]
    assert table_ids(db_url, store) == listed_ids(db_url) == set(first) | set(second)
    assert verify_archive(session_for(db_url, store, settings)).ok


def test_a_restore_the_table_missed_is_reported_and_repaired(
    db_url: str, local: tuple[LocalStore, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore whose Iceberg step did not run (the process died after the restore committed): verify reports the
    missing delete file, --repair writes it, and the job leaves the table."""
    store, settings = local
    ids = make_jobs(db_url, specs(10, ("mail",), BASE), flush=(store, settings))
    monkeypatch.setattr(iceberg, "reconcile_quietly", lambda *a, **k: [])  # as if killed right after the restore
    assert restore_archived_job(session_for(db_url, store, settings), ids[3]).restored
    monkeypatch.undo()
    assert table_ids(db_url, store) == set(ids)  # the table still shows it
    difference = iceberg.check(session_for(db_url, store))
    assert len(difference.missing) == 1 and "/deletes/" in difference.missing[0] and not difference.extra
    repaired = verify_archive(session_for(db_url, store, settings), repair=True)
    assert [(p.kind, p.repaired) for p in repaired.problems] == [("iceberg_behind", True)]
    assert table_ids(db_url, store) == listed_ids(db_url) == set(ids) - {ids[3]}
    assert duckdb_ids(db_url, store, settings) == set(ids) - {ids[3]}


def test_reconcile_is_one_snapshot_and_idempotent(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    plain = Settings(home=settings.home, store_url=settings.store_url)  # not enabled: flushes publish nothing
    ids = make_jobs(db_url, specs(10, ("a", "b", "c"), BASE), flush=(store, plain))
    result = iceberg.reconcile(session_for(db_url, store))
    assert (result.files_added, result.files_removed, result.files_in_table) == (3, 0, 3)
    again = iceberg.reconcile(session_for(db_url, store))
    assert (again.files_added, again.files_removed, again.snapshot_id) == (0, 0, result.snapshot_id)
    assert len(iceberg.open_table(session_for(db_url, store)).snapshots()) == 1
    assert table_ids(db_url, store) == set(ids)


def test_concurrent_reconcilers_add_each_file_once(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    store, settings = local
    plain = Settings(home=settings.home, store_url=settings.store_url)
    ids = make_jobs(db_url, specs(12, ("a", "b", "c", "d"), BASE), flush=(store, plain))
    iceberg.open_table(session_for(db_url, store))  # created once; the reconcilers race on the commit
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: iceberg.reconcile(session_for(db_url, store)), range(4)))
    assert sum(r.files_added for r in results) == 4  # the losers re-read and found nothing left to add
    assert len(iceberg.open_table(session_for(db_url, store)).snapshots()) == 1
    assert table_ids(db_url, store) == set(ids)


def test_first_uses_at_once_create_the_table_once(db_url: str, local: tuple[LocalStore, Settings]) -> None:
    """Six first uses at the same instant (each opening its own catalog): the catalog's tables, the namespace and
    the table are created once, under tiering's creation lock; nobody fails and no orphan metadata file is left."""
    store, settings = local
    plain = Settings(home=settings.home, store_url=settings.store_url)  # flushed while not enabled
    ids = make_jobs(db_url, specs(6, ("a", "b"), BASE), flush=(store, plain))
    start = threading.Barrier(6)

    def first_use(_: int) -> str:
        start.wait()
        return str(iceberg.open_table(session_for(db_url, store)).metadata_location)

    with ThreadPoolExecutor(6) as pool:
        locations = list(pool.map(first_use, range(6)))
    assert len(set(locations)) == 1
    with psycopg.connect(db_url) as conn:
        assert count(conn, "iceberg_tables") == 1
    metadata_files = list(Path(store.root).rglob("*.metadata.json"))
    assert [p.as_uri() for p in metadata_files] == locations[:1]
    assert iceberg.reconcile(session_for(db_url, store)).files_added == 2
    assert table_ids(db_url, store) == set(ids)


def test_nothing_is_created_when_not_enabled(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    store = LocalStore(root)
    settings = Settings(home=tmp_path / "home", store_url=root.as_uri())
    ids = make_jobs(db_url, specs(6, ("mail",), BASE), flush=(store, settings))
    purge_archived_jobs(session_for(db_url, store, settings), BASE + DAY)
    erase_jobs(session_for(db_url, store, settings), ids=ids[:1])
    assert verify_archive(session_for(db_url, store, settings)).ok
    with open_duckdb(session_for(db_url, store, settings)) as duck:
        views = {r[0] for r in duck.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert "archived_jobs" in views and not any("iceberg" in v for v in views)
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
    assert load_settings({}).iceberg_catalog == "sql"
    rest = load_settings({"TIERING_ICEBERG": "1", "TIERING_ICEBERG_CATALOG": "rest",
                          "TIERING_ICEBERG_CATALOG_URI": "http://127.0.0.1:8181"})  # fmt: skip
    assert (rest.iceberg_catalog, rest.iceberg_catalog_uri) == ("rest", "http://127.0.0.1:8181")
    path.write_text(json.dumps({"iceberg": {"enabled": True, "catalog": "glue", "catalog_uri": "http://127.0.0.1:5000",
                                            "catalog_properties": {"glue.id": "123456789012"},
                                            "snapshot_retention": 3600}}))  # fmt: skip
    glue = load_settings({"TIERING_SETTINGS_FILE": str(path)})
    assert (glue.iceberg, glue.iceberg_catalog, glue.iceberg_catalog_uri) == (True, "glue", "http://127.0.0.1:5000")
    assert glue.iceberg_catalog_properties == {"glue.id": "123456789012"} and glue.iceberg_snapshot_retention == 3600
    with pytest.raises(ConfigError, match="iceberg_catalog"):
        load_settings({"TIERING_ICEBERG_CATALOG": "hive"})
    path.write_text('{"iceberg": {"enabled": true, "catalogue": "glue"}}')
    with pytest.raises(ConfigError, match="catalogue"):
        load_settings({"TIERING_SETTINGS_FILE": str(path)})


# --- real processes: SIGKILL between the manifest commit and the Iceberg commit, and the CLI -----------------
@pytest.fixture
def cli_world(db_url: str, s3_settings_factory: Any, tmp_path: Path) -> dict[str, Any]:
    """A staged backlog over 3 dates (6 queues), a fresh local store, and a `tiering` environment with the table on."""
    target = s3_settings_factory("local")
    seed(db_url, 240)
    archive_all(db_url)
    spread_archived_at(db_url, 3)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY_DOC))
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(target, db_url, home, TIERING_POLICY=str(policy_file), TIERING_ICEBERG="1")
    return {"url": db_url, "store": target.store, "env": env}


@pytest.mark.parametrize("heal", ["archive run", "archive verify --repair"])
def test_sigkill_after_the_manifest_commit_is_healed(heal: str, cli_world: dict[str, Any]) -> None:
    url, store, env = cli_world["url"], cli_world["store"], cli_world["env"]
    killed = run_cli(env, "archive", "run", "--format", "json", fault="committed")  # dies after a round's commit
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    behind = iceberg.check(session_for(url, store))
    assert behind.missing and not behind.extra  # committed in the manifest, not (yet) in the table

    healed = run_cli(env, *heal.split(), "--format", "json")

    assert healed.returncode == 0, healed.stderr[-3000:]
    if heal.startswith("archive verify"):
        kinds = [(p["kind"], p["repaired"]) for p in json.loads(healed.stdout)["problems"]]
        assert ("iceberg_behind", True) in kinds
    assert iceberg.check(session_for(url, store)).in_step
    cold = {j.job_id for j in list_archived_jobs(session_for(url), limit=10_000).items if j.tier == "cold"}
    assert table_ids(url, store) == cold
    if heal == "archive run":
        assert cold == listed_ids(url)  # the whole backlog flushed, all of it in the table


def test_cli_publish_verify_expire(db_url: str, cli_world: dict[str, Any]) -> None:
    url, store, env = cli_world["url"], cli_world["store"], cli_world["env"]
    off = {k: v for k, v in env.items() if k != "TIERING_ICEBERG"}
    plain = Settings(home=Path(env["TIERING_HOME"]), store_url=env["TIERING_STORE_URL"])
    flush_staged(session_for(url, store, plain), ARCHIVE_ALL, ArchivalConfig())  # not enabled: nothing published
    refused = run_cli(off, "archive", "iceberg", "publish")
    assert refused.returncode == 2 and "TIERING_ICEBERG=1" in refused.stderr
    with psycopg.connect(url) as conn:
        assert count(conn, "pg_tables", "tablename LIKE 'iceberg%%'") == 0

    assert run_cli(env, "archive", "iceberg", "verify").returncode == 9  # the table exists now, empty
    published = run_cli(env, "archive", "iceberg", "publish", "--format", "json")
    assert published.returncode == 0, published.stderr
    doc = json.loads(published.stdout)
    with psycopg.connect(url) as conn:
        objects = count(conn, "tiering_manifest", "state = 'committed'")
    assert doc["files_added"] == doc["files_in_table"] == objects and doc["files_removed"] == 0
    assert iceberg.check(session_for(url, store)).in_step
    expired = run_cli(env, "archive", "iceberg", "expire-snapshots", "--older-than", "0s", "--format", "json")
    assert json.loads(expired.stdout) == {"snapshots_expired": 0}  # the only snapshot is the current one
    assert table_ids(url, store) == listed_ids(url)


@pytest.mark.parametrize("backend", ["moto_server", pytest.param("seaweedfs", marks=pytest.mark.seaweedfs)])
def test_table_on_s3(backend: str, db_url: str, s3_settings_factory: Any) -> None:
    target = s3_settings_factory(backend, iceberg=True)
    store, settings = target.store, target.settings
    old = make_jobs(db_url, specs(9, ("mail", "reports"), BASE - 40 * DAY), flush=(store, settings))
    new = make_jobs(db_url, specs(6, ("mail",), BASE), flush=(store, settings))
    assert listed_ids(db_url) == table_ids(db_url, store) == set(old) | set(new)
    assert iceberg.metadata_location(session_for(db_url, store)).startswith(f"s3://{target.bucket}/")
    purge_archived_jobs(session_for(db_url, store, settings), BASE - 20 * DAY)
    assert listed_ids(db_url) == table_ids(db_url, store) == set(new)
    assert verify_archive(session_for(db_url, store, settings)).ok
