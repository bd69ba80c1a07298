"""Analyst access to the cold tier: a DuckDB session over exactly the committed objects, and Athena DDL.

DuckDB lists a whole glob before pruning partitions on S3, and casts numeric-looking partition values, so the
view is built from the manifest's file list with explicit `hive_types`. DuckDB cannot download extensions on
these machines: httpfs and json are loaded from the `.duckdb_extension` files the duckdb-extension-* wheels
install. Athena gets partition projection (date range, queue enum from the manifest's slugs, or injected),
so no crawler or MSCK REPAIR is needed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from tiering import layout
from tiering import schema as S
from tiering.context import Session
from tiering.db import manifest as mdb
from tiering.db import query as qdb
from tiering.errors import ConfigError, InvalidInputError
from tiering.store.base import ObjectStore

VIEW_NAME = "archived_jobs"
EXTENSIONS = ("httpfs", "json")
ICEBERG_EXTENSIONS = ("avro", "iceberg")  # only when the Iceberg table is enabled
ICEBERG_SUFFIX = "_iceberg"
HIVE_TYPES = "{'queue': 'VARCHAR', 'date': 'DATE'}"


def sql_literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def extension_path(name: str) -> Path:
    """The `.duckdb_extension` file shipped by the duckdb-extension-<name> wheel."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"DuckDB extension {name!r} is not installed: pip install duckdb-extension-{name.replace('_', '-')}"
            " (same version as duckdb); DuckDB cannot download extensions here"
        )
    import duckdb

    found: list[Path] = []
    for root in spec.submodule_search_locations:
        found.extend(Path(root).rglob(f"{name}.duckdb_extension"))
    if not found:
        raise ConfigError(f"no {name}.duckdb_extension file inside the {package} package")
    wanted = f"v{duckdb.__version__}"
    for path in found:
        if wanted in path.parts:
            return path
    return sorted(found)[-1]


LISTING_DIR = layout.ANALYST_DIR
FILES_KEY = f"{LISTING_DIR}/files/files.parquet"
SUPERSEDED_KEY = f"{LISTING_DIR}/superseded/superseded.parquet"
# Zero rows with the archive's columns, in a hive path of its own: the file list is never empty, so the views
# bind on a fresh archive too. Athena's projection template (queue=.../date=...) never reaches it.
EMPTY_KEY = f"{LISTING_DIR}/empty/queue=none/date=1970-01-01/empty.parquet"
ENUM_KEY = f"{LISTING_DIR}/athena/queue-enum.json"
RAW_SUFFIX = "_all"
SUPERSEDED_SUFFIX = "_superseded"


@dataclass(frozen=True)
class Listing:
    """What the analysts' views read, derived from the manifest: every committed object, and the rows in them
    that are no longer the job's current copy (restored, or archived again into a newer object)."""

    files: list[str]
    superseded: list[tuple[str, str]]  # (object location as the engine names it, job id)
    slugs: list[str]


def object_locations(session: Session) -> list[str]:
    """Every committed object of this store as DuckDB names it (s3://bucket/key, a local file path, ...)."""
    return listing(session).files


def listing(session: Session) -> Listing:
    store = session.store
    bucket = store.location.bucket
    with session.connection() as conn:
        rows = mdb.manifest_rows(conn, states=("committed",))
        superseded = mdb.superseded_copies(conn)
        slugs = [s for s, _ in qdb.queue_slugs(conn)]
    return Listing(
        files=[store.analyst_path(r.key) for r in rows if r.bucket == bucket],
        superseded=[(store.analyst_path(k), j) for b, k, j in superseded if b == bucket],
        slugs=slugs,
    )


def publish_listing(session: Session) -> list[str]:
    """Write the manifest-derived listing the analysts' SQL reads at query time (after every flush, restore,
    purge and erase, and before printing SQL). Returns warnings (a stale Athena queue enum)."""
    from tiering.parquet import table_bytes

    store = session.store
    current = listing(session)
    empty = store.key(EMPTY_KEY)
    files = pa.table({"location": pa.array([store.analyst_path(empty), *current.files], pa.string())})
    superseded = pa.table(
        {
            "location": pa.array([loc for loc, _ in current.superseded], pa.string()),
            "job_id": pa.array([j for _, j in current.superseded], pa.string()),
        }
    )
    if store.head(empty) is None:
        store.put_bytes(empty, table_bytes(S.ARCHIVE_SCHEMA.empty_table()), create_only=False)
    store.put_bytes(store.key(SUPERSEDED_KEY), table_bytes(superseded), create_only=False)
    store.put_bytes(store.key(FILES_KEY), table_bytes(files), create_only=False)
    with session.connection() as conn:
        mdb.mark_listing_published(conn, store.uri(""))
        conn.commit()
    return stale_enum_warnings(store, current.slugs)


def publish_listing_quietly(session: Session) -> list[str]:
    """publish_listing for the steps that move jobs, once analysts use the listing (the first `tiering analyst`
    command writes it; a store nobody analyses gets no extra objects). A failure is a warning, never the step's."""
    try:
        if not _listing_in_use(session):
            return []
        return publish_listing(session)
    except Exception as exc:  # noqa: BLE001 - the listing is derived data; the next step rewrites it
        return [f"analyst listing not refreshed ({type(exc).__name__}: {exc}); `tiering analyst duckdb` rewrites it"]


def _listing_in_use(session: Session) -> bool:
    with session.connection() as conn:
        return mdb.listing_published(conn, session.store.uri(""))


def publish_superseded_quietly(session: Session) -> None:
    """After a single cold restore, when analysts use the listing (the restore's first look asks): rewrite only
    the superseded rows (one PUT)."""
    try:
        from tiering.parquet import table_bytes

        store = session.store
        current = listing(session)
        superseded = pa.table(
            {
                "location": pa.array([loc for loc, _ in current.superseded], pa.string()),
                "job_id": pa.array([j for _, j in current.superseded], pa.string()),
            }
        )
        store.put_bytes(store.key(SUPERSEDED_KEY), table_bytes(superseded), create_only=False)
    except Exception:  # noqa: BLE001 - derived data: the next flush or analyst command rewrites it
        return


def stale_enum_warnings(store: ObjectStore, slugs: list[str]) -> list[str]:
    """A warning when the queue enum of the last printed Athena DDL lacks queues that now have objects."""
    import json

    info = store.head(store.key(ENUM_KEY))
    if info is None:
        return []
    try:
        recorded = json.loads(store.get_bytes(store.key(ENUM_KEY)))
    except (ValueError, OSError):
        return []
    missing = sorted(set(slugs) - set(recorded.get("values", [])))
    if not missing:
        return []
    return [
        f"Athena's queue enum (table {recorded.get('table')}) lacks {', '.join(missing)}: Athena does not see "
        "those queues until you run `tiering analyst athena-ddl --refresh` and apply its ALTER TABLE"
    ]


def _secret_sql(
    store: ObjectStore, env: Mapping[str, str], show_secrets: bool, *, scope: str | None = None, suffix: str = ""
) -> list[str]:
    """CREATE SECRET from the store's credentials hook; [] when the store needs none (local files). `scope`: the
    same credentials for another bucket of the same endpoint (a secret named with `suffix`)."""
    access = store.external_access(env)
    if access.secret_type is None:
        return []
    opts = [f"TYPE {access.secret_type}"]
    options = dict(access.options)
    if scope is not None and "SCOPE" in options:
        options["SCOPE"] = scope
    for name, value in options.items():
        if isinstance(value, bool):
            opts.append(f"{name} {'true' if value else 'false'}")
            continue
        shown = value if show_secrets or name not in access.sensitive else access.sensitive[name]
        opts.append(f"{name} {sql_literal(shown)}")
    name = f"tiering_{access.secret_type}{suffix}"
    return [f"CREATE OR REPLACE SECRET {name} (\n    " + ",\n    ".join(opts) + "\n);"]


def duckdb_sql(
    session: Session,
    *,
    view: str = VIEW_NAME,
    env: Mapping[str, str] | None = None,
    show_secrets: bool = True,
) -> str:
    """The SQL that sets a DuckDB session up: extensions, S3 secret, and the `archived_jobs` view."""
    env = os.environ if env is None else env
    store = session.store
    if not view.isidentifier():
        raise InvalidInputError(f"view name {view!r} must be a plain identifier")
    lines = ["-- tiering: DuckDB session over the committed archive objects (file list from the manifest)"]
    for name in EXTENSIONS:
        lines.append(f"LOAD {sql_literal(str(extension_path(name)))};")
    lines.extend(_secret_sql(store, env, show_secrets))
    lines += [
        "-- Dates and times in UTC, as Athena has them (CAST(failed_at AS DATE) is the same day in both).",
        "SET TimeZone = 'UTC';",
        "-- Athena's name for reading one JSON field, so the cookbook's queries (docs/analysts.md) run in both.",
        "CREATE OR REPLACE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p);",
    ]
    files_uri = sql_literal(store.analyst_path(store.key(FILES_KEY)))
    superseded_uri = sql_literal(store.analyst_path(store.key(SUPERSEDED_KEY)))
    raw, superseded = view + RAW_SUFFIX, view + SUPERSEDED_SUFFIX
    lines += [
        "-- The object list comes from the listing tiering rewrites after every flush, restore, purge and erase;",
        "-- run this SET again to see objects written since (the views read it each time they are queried).",
        f"SET VARIABLE tiering_files = (SELECT list(location) FROM read_parquet({files_uri}));",  # noqa: S608
        f"-- {raw}: every row of every committed object, restored and re-archived copies included (audits)",
        f'CREATE OR REPLACE VIEW {raw} AS\n  SELECT * EXCLUDE (queue, "date", object_location), queue, "date", '  # noqa: S608
        "object_location\n  FROM read_parquet(getvariable('tiering_files'), "
        f"hive_partitioning = true, hive_types = {HIVE_TYPES}, filename = 'object_location');",
        f"CREATE OR REPLACE VIEW {superseded} AS\n  SELECT location, job_id FROM read_parquet({superseded_uri});",  # noqa: S608
        f"-- {view}: each archived job once, as it is now: restored jobs left out, a job archived again shown once",
        "-- (its newest copy). `date` is the day the job was ARCHIVED, not when it ran or failed.",
        f"CREATE OR REPLACE VIEW {view} AS\n  SELECT * EXCLUDE (object_location) FROM {raw} a\n"  # noqa: S608
        f"   WHERE NOT EXISTS (SELECT 1 FROM {superseded} s WHERE s.location = a.object_location AND s.job_id = a.id);",
    ]
    if session.settings.iceberg:
        lines += _iceberg_sql(session, view, env, show_secrets)
    return "\n".join(lines) + "\n"


def _iceberg_sql(session: Session, view: str, env: Mapping[str, str], show_secrets: bool) -> list[str]:
    """The Iceberg table's current snapshot as `<view>_iceberg` (TIERING_ICEBERG=1): DuckDB's iceberg extension,
    from its wheel like httpfs, reading the metadata file current when the session starts. A catalog that keeps
    the metadata in a bucket of its own (a REST catalog's table bucket) gets the store's secret scoped to it too."""
    from tiering.engine.iceberg import metadata_location

    lines = [f"LOAD {sql_literal(str(extension_path(name)))};" for name in ICEBERG_EXTENSIONS]
    location = metadata_location(session)
    store = session.store
    if location.startswith("s3://") and store.location.scheme == "s3":
        bucket = location.removeprefix("s3://").split("/", 1)[0]
        if bucket != store.location.bucket:
            lines += _secret_sql(store, env, show_secrets, scope=f"s3://{bucket}", suffix="_iceberg")
    lines += [
        f"-- {view}{ICEBERG_SUFFIX}: the Iceberg table hammerwork.archived_jobs as of now: each archived job once, as",
        "-- it is now (restored jobs are position deletes); open a new session to see later snapshots.",
        f"CREATE OR REPLACE VIEW {view}{ICEBERG_SUFFIX} AS\n"  # noqa: S608
        f"  SELECT * FROM iceberg_scan({sql_literal(location)});",
    ]
    return lines


def open_duckdb(session: Session, *, database: str = ":memory:", view: str = VIEW_NAME) -> Any:
    """A DuckDB connection with the session of duckdb_sql() already set up."""
    import duckdb

    conn = duckdb.connect(database, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    access = session.store.external_access(os.environ)
    if access.secret_type is None and access.filesystem is not None:
        conn.register_filesystem(access.filesystem)  # a scheme DuckDB cannot read itself (memory://)
    publish_listing(session)
    conn.execute(duckdb_sql(session, view=view))
    return conn


def athena_ddl(
    session: Session,
    *,
    table: str = VIEW_NAME,
    database: str | None = None,
    queue_projection: str = "auto",
    start_date: date | None = None,
    refresh: bool = False,
) -> str:
    """Athena DDL for the bucket layout with partition projection (no crawler, no MSCK REPAIR): the raw table
    `<table>_all`, the listing table `<table>_superseded`, and the view `<table>` (each job once, as it is now).

    queue_projection: 'enum' (the manifest's slugs), 'injected' (queries must name `queue`), or 'auto'
    (enum when the manifest knows slugs, else injected). refresh=True prints only the ALTER TABLE that brings
    the enum up to date. The enum printed is recorded in the store; flushes warn when it goes stale."""
    import json

    store = session.store
    if not store.external_access({}).athena:
        raise InvalidInputError("athena-ddl needs an S3 store (TIERING_STORE_URL=s3://bucket/prefix); Athena reads S3")
    for ident in (table, database):
        if ident is not None and not ident.replace("_", "a").isalnum():
            raise InvalidInputError(f"{ident!r}: Athena names are letters, digits and underscores")
    if queue_projection not in ("auto", "enum", "injected"):
        raise InvalidInputError("queue_projection must be auto, enum or injected")
    publish_listing(session)
    with session.connection() as conn:
        slugs = [s for s, _ in qdb.queue_slugs(conn)]
        first, _last = qdb.partition_date_range(conn)
    mode = queue_projection if queue_projection != "auto" else ("enum" if slugs else "injected")
    if mode == "enum" and not slugs:
        raise InvalidInputError("no committed objects yet: the queue enum would be empty; use injected")
    location = store.location.url.rstrip("/") + "/"

    def qualified(name: str, quote: str = "`") -> str:
        """DDL names take backticks, DML (the view) double quotes."""
        return f"{quote}{database}{quote}.{quote}{name}{quote}" if database else f"{quote}{name}{quote}"

    raw, superseded = table + RAW_SUFFIX, table + SUPERSEDED_SUFFIX
    if mode == "enum":
        record = {"table": raw, "values": slugs}
        store.put_bytes(store.key(ENUM_KEY), json.dumps(record).encode(), create_only=False)
    if refresh:
        if mode != "enum":
            return f"-- tiering: {raw} uses an injected queue projection; nothing to refresh\n"
        return (
            f"-- tiering: the queue enum of {raw} as of now ({len(slugs)} queues)\n"
            f"ALTER TABLE {qualified(raw)} SET TBLPROPERTIES "
            f"('projection.queue.values'={sql_literal(','.join(slugs))});\n"
        )
    iceberg = _athena_iceberg(session) if session.settings.iceberg else ""
    start = start_date or first or date.today()
    cols = ",\n  ".join(f"`{f.name}` {S.athena_type(f.type)}" for f in S.ARCHIVE_SCHEMA)
    props = {
        "parquet.compression": "ZSTD",
        "projection.enabled": "true",
        "projection.queue.type": mode,
        "projection.date.type": "date",
        "projection.date.format": "yyyy-MM-dd",
        "projection.date.range": f"{start.isoformat()},NOW",
        "projection.date.interval": "1",
        "projection.date.interval.unit": "DAYS",
        "storage.location.template": location + "queue=${queue}/date=${date}/",
    }
    if mode == "enum":
        props["projection.queue.values"] = ",".join(slugs)
    rendered = ",\n  ".join(f"{sql_literal(k)}={sql_literal(v)}" for k, v in props.items())
    dq = '"'
    listing_location = store.location.url.rstrip("/") + "/" + SUPERSEDED_KEY.rsplit("/", 1)[0] + "/"
    return (  # noqa: S608 - names checked above, values are escaped literals
        f"-- tiering: Athena tables over the archive objects. Query the view {table} (each archived job once, as it\n"  # noqa: S608
        f"-- is now); {raw} holds every row of every object (restored and re-archived copies too) for audits.\n"
        "-- `date` is the day a job was ARCHIVED; `date` is reserved in Athena DDL, hence the backticks (in queries\n"
        '-- write "date"). `queue` is the path slug; `queue_name` holds the real queue name.\n'
        + (
            "-- The queue enum is fixed here: new queues stay invisible until you run\n"
            "-- `tiering analyst athena-ddl --refresh` and apply its ALTER TABLE (flushes warn when it is stale).\n"
            if mode == "enum"
            else ""
        )
        + f"CREATE EXTERNAL TABLE IF NOT EXISTS {qualified(raw)} (\n  {cols}\n)\n"  # noqa: S608
        "PARTITIONED BY (`queue` string, `date` date)\n"
        "STORED AS PARQUET\n"
        f"LOCATION {sql_literal(location)}\n"
        f"TBLPROPERTIES (\n  {rendered}\n);\n"
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {qualified(superseded)} (\n  `location` string,\n  `job_id` string\n)\n"
        "STORED AS PARQUET\n"
        f"LOCATION {sql_literal(listing_location)};\n"
        f"CREATE OR REPLACE VIEW {qualified(table, dq)} AS\n"
        f"SELECT a.* FROM {qualified(raw, dq)} a\n"
        f" WHERE NOT EXISTS (SELECT 1 FROM {qualified(superseded, dq)} s\n"
        '                    WHERE s.location = a."$path" AND s.job_id = a.id);\n'
        + iceberg
    )


def athena_iceberg_registration(session: Session) -> dict[str, Any]:
    """The Glue CreateTable input that registers the Iceberg table's CURRENT metadata file (Athena reads Iceberg
    tables through Glue only). Stale after the next commit: the Glue catalog (TIERING_ICEBERG_CATALOG=glue) is
    the registration tiering keeps current."""
    from tiering.engine import iceberg

    return {
        "Name": iceberg.TABLE_NAME,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"table_type": "ICEBERG", "metadata_location": iceberg.metadata_location(session)},
    }


def _athena_iceberg(session: Session) -> str:
    """The Athena form of the Iceberg table (TIERING_ICEBERG=1): already in Glue with the glue catalog, else the
    Glue registration of its current snapshot."""
    import json

    from tiering.engine import iceberg

    db, name = iceberg.NAMESPACE, iceberg.TABLE_NAME
    head = (
        f"-- Iceberg (TIERING_ICEBERG=1): the table {db}.{name} (format v2) over the same objects, each archived job\n"
        "-- once as it is now (restored jobs are position deletes; purges and erases are snapshots).\n"
    )
    if session.settings.iceberg_catalog == "glue":
        location = iceberg.metadata_location(session)
        query = f'SELECT count(*) FROM "{db}"."{name}";'  # noqa: S608 - fixed names, printed as a comment
        return head + (
            "-- tiering registers it in the Glue Data Catalog (table_type ICEBERG) and moves it on every commit,\n"
            f"-- so Athena (engine v3) queries it with no DDL:\n--   {query}\n-- current metadata: {location}\n"
        )
    table_input = json.dumps(athena_iceberg_registration(session))
    kind = session.settings.iceberg_catalog
    return head + (
        f"-- Athena reads Iceberg tables through Glue only, and this one lives in the {kind}\n"
        "-- catalog: set TIERING_ICEBERG_CATALOG=glue to have tiering keep a Glue registration current. A one-off\n"
        "-- registration of the current snapshot (stale after the next flush, purge, erase or restore):\n"
        f"--   aws glue create-database --database-input '{{\"Name\": \"{db}\"}}'\n"
        f"--   aws glue create-table --database-name {db} --table-input '{table_input}'\n"
    )
