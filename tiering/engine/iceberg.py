"""The cold archive as an Apache Iceberg table (format v2) over the Parquet objects tiering already writes.

Opt-in (`TIERING_ICEBERG=1`). The manifest stays the source of truth; the table follows it: `reconcile` makes
the current snapshot's data files exactly the manifest's committed objects of this store (files added without
copying, files no longer committed removed) and its position-delete files the job index's restored jobs (one
file per object with restored jobs), in ONE Iceberg snapshot. Flush, purge, erase and restore call it after their
own commits, so a crash between the two commits is healed by the next reconcile (any later step,
`tiering archive iceberg publish` or `verify --repair`); `check` reports the difference.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tiering import layout, schema
from tiering.context import Session
from tiering.db import manifest as mdb
from tiering.errors import ConfigError
from tiering.store.base import ObjectStore

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

NAMESPACE = "hammerwork"
TABLE_NAME = "archived_jobs"
IDENTIFIER = (NAMESPACE, TABLE_NAME)
FORMAT_VERSION = 2
COMMIT_ATTEMPTS = 5  # concurrent reconcilers: the loser of an Iceberg commit re-reads and tries again
PARTITION_FIELD_ID_BASE = 1000
# The snapshot summary records which manifest state it mirrors.
SUMMARY_OBJECTS = "tiering.committed-objects"
# Position-delete files (the rows of restored jobs) live in the table location's data/ folder (the one an S3 table
# bucket lets writers use besides metadata/).
DELETES_DIR = "data/deletes"


def iceberg_schema() -> Any:
    """Hammerwork's columns (the registry, in order) with field ids 1..n. Every field is optional: files written
    before a column joined the registry lack it, and Iceberg reads a missing optional column as null."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.table.name_mapping import NameMapping

    arrow = pa.schema([f.with_nullable(True) for f in schema.ARCHIVE_SCHEMA])
    fields: list[dict[str, Any]] = []
    next_id = 1
    for f in arrow:
        if pa.types.is_list(f.type):
            element = {"field-id": next_id + 1, "names": ["element"]}
            fields.append({"field-id": next_id, "names": [f.name], "fields": [element]})
            next_id += 2
        else:
            fields.append({"field-id": next_id, "names": [f.name]})
            next_id += 1
    return pyarrow_to_schema(arrow, name_mapping=NameMapping.model_validate(fields))


def partition_spec(iceberg: Any) -> Any:
    """Queue (identity on the real queue name) and UTC day of archived_at: the same partitions as the object keys
    (`queue=<slug>/date=<day>`), which hold exactly one queue and one archive day each."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform, IdentityTransform

    return PartitionSpec(
        PartitionField(
            source_id=iceberg.find_field("queue_name").field_id,
            field_id=PARTITION_FIELD_ID_BASE,
            transform=IdentityTransform(),
            name="queue_name",
        ),
        PartitionField(
            source_id=iceberg.find_field("archived_at").field_id,
            field_id=PARTITION_FIELD_ID_BASE + 1,
            transform=DayTransform(),
            name="archived_day",
        ),
    )


def file_uri(store: ObjectStore, key: str) -> str:
    """The data file path Iceberg records for an object: what pyiceberg's, DuckDB's and Java's FileIO open."""
    loc = store.location
    if loc.scheme == "file":
        return f"file://{loc.bucket.rstrip('/')}/{key}"
    if loc.scheme == "s3":
        return f"s3://{loc.bucket}/{key}"
    raise ConfigError(f"the Iceberg table supports local and S3 stores, not {loc.scheme}://")


def _io_properties(store: ObjectStore) -> dict[str, str]:
    loc = store.location
    props: dict[str, str] = {}
    if loc.scheme == "s3":
        if loc.endpoint_url:
            props["s3.endpoint"] = loc.endpoint_url
            props["s3.force-virtual-addressing"] = "false"
        if loc.region:
            props["s3.region"] = loc.region
    return props


_CATALOGS: dict[tuple[Any, ...], Catalog] = {}
_CATALOGS_LOCK = threading.Lock()


def catalog(session: Session) -> Catalog:
    """The configured catalog (settings.iceberg_catalog), opened once per process and configuration."""
    settings, store = session.settings, session.store
    warehouse = file_uri(store, layout.iceberg_root(store.prefix))
    properties = {**_io_properties(store), **settings.iceberg_catalog_properties}
    key = (settings.iceberg_catalog, settings.iceberg_catalog_uri, session.database_url, warehouse,
           tuple(sorted(properties.items())))  # fmt: skip
    with _CATALOGS_LOCK:
        found = _CATALOGS.get(key)
    if found is not None:
        return found
    opened = _open_catalog(session, warehouse, properties)
    with _CATALOGS_LOCK:
        return _CATALOGS.setdefault(key, opened)


def _open_catalog(session: Session, warehouse: str, properties: dict[str, str]) -> Catalog:
    from tiering.db import iceberg as idb

    settings = session.settings
    kind = settings.iceberg_catalog
    try:
        if kind == "glue":
            from pyiceberg.catalog.glue import GlueCatalog

            glue = dict(properties)
            region = properties.get("s3.region") or settings.s3_region
            if region:
                glue.setdefault("glue.region", region)
            if settings.iceberg_catalog_uri:
                glue["glue.endpoint"] = settings.iceberg_catalog_uri
            return GlueCatalog(idb.CATALOG_NAME, **glue)
        if kind == "rest":
            from pyiceberg.catalog.rest import RestCatalog

            if not settings.iceberg_catalog_uri:
                raise ConfigError("the REST catalog needs its URL: set TIERING_ICEBERG_CATALOG_URI")
            rest = {"warehouse": warehouse, **properties}
            return RestCatalog(idb.CATALOG_NAME, uri=settings.iceberg_catalog_uri, **rest)
    except ImportError as exc:
        raise ConfigError(f"the Iceberg {kind} catalog needs pip install 'tiering[iceberg]' ({exc})") from None
    with session.connection() as conn:
        present = idb.catalog_tables_exist(conn)
    if present:
        return idb.open_catalog(session.database_url, warehouse, create_tables=False, **properties)
    with idb.create_lock(session):  # concurrent first uses would race on CREATE TABLE
        return idb.open_catalog(session.database_url, warehouse, create_tables=True, **properties)


def open_table(session: Session) -> Table:
    """The table, created (with its namespace, and the SQL catalog's tables) on first use. Creation and schema
    evolution run under tiering's creation lock: two processes starting at once create it once."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    found = catalog(session)
    try:
        table = found.load_table(IDENTIFIER)
    except (NoSuchTableError, NoSuchNamespaceError):
        table = _create_table(session, found)
    return _with_registry_columns(session, found, table)


def _create_table(session: Session, found: Catalog) -> Table:
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchNamespaceError, NoSuchTableError

    from tiering.db.iceberg import create_lock

    warehouse = file_uri(session.store, layout.iceberg_root(session.store.prefix))
    with create_lock(session):
        try:
            return found.load_table(IDENTIFIER)  # created by another process while this one waited
        except (NoSuchTableError, NoSuchNamespaceError):
            pass
        try:
            found.create_namespace(NAMESPACE)
        except NamespaceAlreadyExistsError:
            pass
        iceberg = iceberg_schema()
        # A REST catalog places its tables itself (SeaweedFS's, like AWS S3 Tables, only inside its table bucket);
        # the data files stay the archive objects wherever the metadata lives.
        rest = session.settings.iceberg_catalog == "rest"
        return found.create_table(
            IDENTIFIER,
            schema=iceberg,
            partition_spec=partition_spec(iceberg),
            location=None if rest else f"{warehouse}/{NAMESPACE}/{TABLE_NAME}",
            properties={
                "format-version": str(FORMAT_VERSION),
                # our files carry no Iceberg field ids: readers map columns by name
                "schema.name-mapping.default": iceberg.name_mapping.model_dump_json(),
                "write.metadata.delete-after-commit.enabled": "true",
                "write.metadata.previous-versions-max": "100",
                **metrics_properties(),
            },
        )


# Columns whose min/max the table's manifests record (for pruning): states, counts and times. Every other column
# records none: bounds of ids, keys, trace ids or error text would copy a job's values into metadata files that
# outlive an erase (a manifest names the bounds of every file it ever listed).
_BOUNDED = ("queue_name", "status", "priority", "priority_weight", "attempts", "max_attempts", "archival_reason")


def metrics_properties() -> dict[str, str]:
    bounded = sorted({n for n in _BOUNDED if n in schema.ARCHIVE_SCHEMA.names} | schema.TIMESTAMP_COLUMNS)
    return {"write.metadata.metrics.default": "none", **{f"write.metadata.metrics.column.{n}": "full" for n in bounded}}


def metadata_location(session: Session) -> str:
    """The current metadata file: what engines without a catalog (DuckDB's iceberg_scan) read."""
    return str(open_table(session).metadata_location)


# The type changes Iceberg allows in place (the spec's type promotions, the ones an Arrow registry can express).
_PROMOTIONS = {("int", "long"), ("float", "double")}


def changed_types(current: Any, wanted: Any) -> list[str]:
    """Registry columns whose Iceberg type differs from the table's field of that name in a way Iceberg cannot
    promote (e.g. string -> uuid): one field id holds one type, so old and new objects cannot share it."""
    have = {f.name: f for f in current.fields}
    changed = []
    for f in wanted.fields:
        old = have.get(f.name)
        if old is not None and str(old.field_type) != str(f.field_type):
            if (str(old.field_type), str(f.field_type)) not in _PROMOTIONS:
                changed.append(f"{f.name}: {old.field_type} -> {f.field_type}")
    return changed


def _missing_columns(table: Table) -> bool:
    wanted = iceberg_schema()
    if changed := changed_types(table.schema(), wanted):
        raise ConfigError(
            f"the column registry changed the type of {', '.join(changed)}: an Iceberg field keeps one type, so "
            "objects written before and after cannot share the table; rewrite the older objects to the new type "
            "(or drop the table and `tiering archive iceberg publish` once every object has the new type)"
        )
    have = {f.name for f in table.schema().fields}
    return not all(f.name in have for f in wanted.fields)


def _stale_properties(table: Table) -> dict[str, str]:
    wanted = metrics_properties()
    return {k: v for k, v in wanted.items() if table.properties.get(k) != v}


def _with_registry_columns(session: Session, found: Catalog, table: Table) -> Table:
    """A column that joined the registry (Hammerwork added it) joins the table's schema, with a new field id and a
    name-mapping entry; older files read it as null. A table created by an earlier tiering gets today's metrics
    properties (new files' bounds follow them)."""
    from tiering.db.iceberg import create_lock

    if not _missing_columns(table) and not _stale_properties(table):
        return table
    with create_lock(session):
        table = found.load_table(IDENTIFIER)  # another process may have evolved it meanwhile
        if _missing_columns(table):
            with table.update_schema() as update:
                update.union_by_name(iceberg_schema())
        if stale := _stale_properties(table):
            with table.transaction() as tx:
                tx.set_properties(stale)
            table = found.load_table(IDENTIFIER)
    return table


def _committed_uris(session: Session) -> dict[str, mdb.ManifestRow]:
    store = session.store
    with session.connection() as conn:
        rows = mdb.manifest_rows(conn)
    bucket = store.location.bucket
    return {file_uri(store, r.key): r for r in rows if r.bucket == bucket}


@dataclass(frozen=True)
class _WantedDeletes:
    """The position-delete file one object needs: the rows (row group, row in group) of its restored jobs."""

    data_uri: str
    rows: tuple[tuple[int, int], ...]


def _wanted_deletes(session: Session, table: Table, wanted: dict[str, mdb.ManifestRow]) -> dict[str, _WantedDeletes]:
    """Delete-file path -> what it holds, for every committed object with restored jobs. The path is derived from
    the object and its restored rows, so comparing paths tells whether the table shows what is archived now."""
    from tiering.db.iceberg import restored_rows

    store = session.store
    with session.connection() as conn:
        restored = restored_rows(conn, store.location.bucket)
    found: dict[str, _WantedDeletes] = {}
    base = f"{table.location().rstrip('/')}/{DELETES_DIR}"
    for key, rows in restored.items():
        uri = file_uri(store, key)
        if uri not in wanted:
            continue
        digest = hashlib.sha256(f"{uri}\n{rows}".encode()).hexdigest()[:40]
        found[f"{base}/{digest}.parquet"] = _WantedDeletes(uri, tuple(rows))
    return found


def _current_files(table: Table) -> tuple[dict[str, Any], dict[str, Any]]:
    """The current snapshot's data files and position-delete files, by path."""
    from pyiceberg.manifest import DataFileContent

    data: dict[str, Any] = {}
    deletes: dict[str, Any] = {}
    snapshot = table.current_snapshot()
    if snapshot is None:
        return data, deletes
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            f = entry.data_file
            (data if f.content == DataFileContent.DATA else deletes)[f.file_path] = f
    return data, deletes


@dataclass
class Difference:
    """What the current snapshot lacks (`missing`) and holds beyond the manifest (`extra`), as file paths: data files
    (the committed objects) and position-delete files (one per object with restored jobs)."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    snapshot_id: int | None = None

    @property
    def in_step(self) -> bool:
        return not self.missing and not self.extra


@dataclass
class ReconcileResult:
    files_added: int = 0
    files_removed: int = 0
    delete_files_added: int = 0
    delete_files_removed: int = 0
    snapshot_id: int | None = None
    files_in_table: int = 0
    restored_jobs_deleted: int = 0
    execution_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "execution_time_s": round(self.execution_time_s, 3)}


def check(session: Session) -> Difference:
    """Compare the current snapshot with the manifest's committed objects and the job index's restored jobs
    (nothing written)."""
    table = open_table(session)
    wanted = _committed_uris(session)
    wanted_deletes = _wanted_deletes(session, table, wanted)
    current, current_deletes = _current_files(table)
    snapshot = table.current_snapshot()
    return Difference(
        missing=sorted(set(wanted) - set(current)) + sorted(set(wanted_deletes) - set(current_deletes)),
        extra=sorted(set(current) - set(wanted)) + sorted(set(current_deletes) - set(wanted_deletes)),
        snapshot_id=snapshot.snapshot_id if snapshot else None,
    )


def reconcile(session: Session) -> ReconcileResult:
    """Make the current snapshot's data files the manifest's committed objects, and its position-delete files the
    job index's restored jobs, in one snapshot (none when they already agree). Idempotent: it heals any earlier step
    that committed the manifest (or a restore) but not the table."""
    from tiering.db.iceberg import publish_lock

    started = time.perf_counter()
    with publish_lock(session):
        result = _reconcile(session)
    result.execution_time_s = time.perf_counter() - started
    return result


def _write_delete_file(session: Session, table: Table, path: str, data_file: Any, row: mdb.ManifestRow,
                       want: _WantedDeletes) -> Any:  # fmt: skip
    """Write one object's position-delete file (positions from its footer's row-group sizes) and return its entry."""
    from tiering import parquet
    from tiering.engine.iceberg_commit import position_delete_file

    with session.store.open_input(row.key, size=row.bytes) as fh:
        starts = parquet.row_group_starts(fh)
    positions = sorted(starts[group] + at for group, at in want.rows)
    body = parquet.position_deletes_bytes(want.data_uri, positions)
    with table.io.new_output(path).create(overwrite=True) as out:  # content-named: a retry writes the same bytes
        out.write(body)
    return position_delete_file(path, data_file, positions, len(body))


def _reconcile(session: Session) -> ReconcileResult:
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    from tiering.engine.iceberg_commit import TableChange

    result = ReconcileResult()
    for attempt in range(COMMIT_ATTEMPTS):  # another writer of the catalog (not tiering) may commit meanwhile
        table = open_table(session)
        wanted = _committed_uris(session)
        wanted_deletes = _wanted_deletes(session, table, wanted)
        current, current_deletes = _current_files(table)
        add = sorted(set(wanted) - set(current))
        remove = [current[p] for p in sorted(set(current) - set(wanted))]
        add_deletes = sorted(set(wanted_deletes) - set(current_deletes))
        remove_deletes = [current_deletes[p] for p in sorted(set(current_deletes) - set(wanted_deletes))]
        result.files_in_table = len(wanted)
        result.restored_jobs_deleted = sum(len(w.rows) for w in wanted_deletes.values())
        if not add and not remove and not add_deletes and not remove_deletes:
            snapshot = table.current_snapshot()
            result.snapshot_id = snapshot.snapshot_id if snapshot else None
            break
        new_files = [parquet_file_to_data_file(table.io, table.metadata, path) for path in add]
        for data_file in new_files:  # the default spec, as pyiceberg's writers assume (its property is left unset)
            data_file.spec_id = table.metadata.default_spec_id
        data_files = {**current, **{f.file_path: f for f in new_files}}
        new_deletes = [
            _write_delete_file(session, table, path, data_files[wanted_deletes[path].data_uri],
                               wanted[wanted_deletes[path].data_uri], wanted_deletes[path])
            for path in add_deletes
        ]  # fmt: skip
        summary = {SUMMARY_OBJECTS: str(len(wanted))}
        try:
            with table.transaction() as tx:
                if remove or new_deletes or remove_deletes:
                    with TableChange(tx, add_data=new_files, remove_data=remove, add_deletes=new_deletes,
                                     remove_deletes=remove_deletes, snapshot_properties=summary):  # fmt: skip
                        pass
                else:
                    with tx.update_snapshot(snapshot_properties=summary).fast_append() as producer:
                        for data_file in new_files:
                            producer.append_data_file(data_file)
        except CommitFailedException:
            if attempt + 1 == COMMIT_ATTEMPTS:
                raise
            continue
        result.files_added, result.files_removed = len(add), len(remove)
        result.delete_files_added, result.delete_files_removed = len(new_deletes), len(remove_deletes)
        snapshot = table.current_snapshot()
        result.snapshot_id = snapshot.snapshot_id if snapshot else None
        break
    return result


def reconcile_quietly(session: Session, *, expire: bool = False) -> list[str]:
    """reconcile for the steps that change the manifest, when the table is enabled; `expire` (purge, erase) then
    drops snapshots older than settings.iceberg_snapshot_retention. A failure is a warning, never the step's: the
    manifest committed, and the next reconcile publishes it."""
    settings = session.settings
    if not settings.iceberg:
        return []
    try:
        reconcile(session)
        if expire:
            expire_snapshots(session, timedelta(seconds=settings.iceberg_snapshot_retention))
        return []
    except Exception as exc:  # noqa: BLE001 - derived data; the next step or `verify --repair` re-publishes
        message = (
            f"Iceberg table not updated ({type(exc).__name__}: {exc}); "
            "the next step or `tiering archive iceberg publish` publishes it"
        )
        log.warning("%s", message)
        log.debug("Iceberg reconcile failed", exc_info=True)
        return [message]


def expire_snapshots(session: Session, older_than: timedelta) -> int:
    """Drop snapshots older than `older_than` (never the current one), so files purged or erased from the store
    are named by no snapshot once the window passes; returns how many were dropped."""
    from tiering.db.iceberg import publish_lock

    with publish_lock(session):
        return _expire(session, older_than)


def _expire(session: Session, older_than: timedelta) -> int:
    table = open_table(session)
    current = table.current_snapshot()
    cutoff = datetime.now(UTC) - older_than
    cutoff_ms = cutoff.timestamp() * 1000
    keep = current.snapshot_id if current is not None else None
    old = [s.snapshot_id for s in table.snapshots() if s.timestamp_ms < cutoff_ms and s.snapshot_id != keep]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
        table = open_table(session)
    _remove_orphans(session, table)
    return len(old)


def _key_of(store: ObjectStore, uri: str) -> str | None:
    """The store key of a file URI Iceberg records (file_uri's inverse); None when it is not in this store."""
    head = file_uri(store, "")
    return uri[len(head) :] if uri.startswith(head) else None


def _referenced(table: Table) -> set[str]:
    """Every file a snapshot still kept reaches: manifest lists, manifests and position-delete files."""
    from pyiceberg.manifest import ManifestContent

    found: set[str] = set()
    for snapshot in table.snapshots():
        found.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in found:
                continue
            found.add(manifest.manifest_path)
            if manifest.content == ManifestContent.DELETES:
                entries = manifest.fetch_manifest_entry(table.io, discard_deleted=True)
                found.update(e.data_file.file_path for e in entries)
    return found


def _remove_orphans(session: Session, table: Table) -> int:
    """Delete the table's manifests, manifest lists and delete files that no kept snapshot reaches (those of expired
    snapshots, and of a commit that crashed), so what an expired snapshot named is gone from the store too. Runs
    under the publish lock: no tiering commit is writing files meanwhile. Metadata JSON files are pyiceberg's
    (at most 100 kept)."""
    store = session.store
    prefix = _key_of(store, table.location().rstrip("/") + "/")
    if prefix is None:
        return 0
    referenced = _referenced(table)
    orphans = [
        info.key for info in store.list(prefix)
        if (info.key.endswith(".avro") or info.key.startswith(f"{prefix}{DELETES_DIR}/"))
        and file_uri(store, info.key) not in referenced
    ]  # fmt: skip
    if orphans:
        result = store.delete_many(orphans)
        if result.errors:
            log.warning("Iceberg: %d orphan files not deleted (%s)", len(result.errors), result.errors[0])
    return len(orphans)
