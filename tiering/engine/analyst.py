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
from datetime import date
from pathlib import Path
from typing import Any

from tiering import schema as S
from tiering.db import manifest as mdb
from tiering.db import query as qdb
from tiering.db.connection import connect
from tiering.errors import ConfigError, InvalidInputError
from tiering.settings import Settings
from tiering.store.base import ObjectStore

VIEW_NAME = "archived_jobs"
EXTENSIONS = ("httpfs", "json")
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


def object_locations(url: str, store: ObjectStore) -> list[str]:
    """Every committed object of this store as DuckDB names it (s3://bucket/key, a local file path, ...)."""
    with connect(url) as conn:
        rows = mdb.manifest_rows(conn, states=("committed",))
    bucket = store.location.bucket
    return [store.analyst_path(r.key) for r in rows if r.bucket == bucket]


def _secret_sql(store: ObjectStore, env: Mapping[str, str], show_secrets: bool) -> list[str]:
    """CREATE SECRET from the store's credentials hook; [] when the store needs none (local files)."""
    access = store.external_access(env)
    if access.secret_type is None:
        return []
    opts = [f"TYPE {access.secret_type}"]
    for name, value in access.options.items():
        if isinstance(value, bool):
            opts.append(f"{name} {'true' if value else 'false'}")
            continue
        shown = value if show_secrets or name not in access.sensitive else access.sensitive[name]
        opts.append(f"{name} {sql_literal(shown)}")
    name = f"tiering_{access.secret_type}"
    return [f"CREATE OR REPLACE SECRET {name} (\n    " + ",\n    ".join(opts) + "\n);"]


def duckdb_sql(
    url: str,
    store: ObjectStore,
    settings: Settings,
    *,
    view: str = VIEW_NAME,
    env: Mapping[str, str] | None = None,
    show_secrets: bool = True,
) -> str:
    """The SQL that sets a DuckDB session up: extensions, S3 secret, and the `archived_jobs` view."""
    env = os.environ if env is None else env
    if not view.isidentifier():
        raise InvalidInputError(f"view name {view!r} must be a plain identifier")
    lines = ["-- tiering: DuckDB session over the committed archive objects (file list from the manifest)"]
    for name in EXTENSIONS:
        lines.append(f"LOAD {sql_literal(str(extension_path(name)))};")
    lines.extend(_secret_sql(store, env, show_secrets))
    files = object_locations(url, store)
    if files:
        listing = ",\n    ".join(sql_literal(f) for f in files)
        head = f"CREATE OR REPLACE VIEW {view} AS\n  SELECT * FROM read_parquet"  # noqa: S608 - escaped literals
        lines.append(f"{head}([\n    {listing}\n  ], hive_partitioning = true, hive_types = {HIVE_TYPES});")
    else:
        cols = ", ".join(f'NULL::{S.duckdb_type(f.type)} AS "{f.name}"' for f in S.ARCHIVE_SCHEMA)
        lines.append("-- no committed objects yet: an empty view with the archive's columns")
        lines.append(f'CREATE OR REPLACE VIEW {view} AS SELECT {cols}, NULL::VARCHAR AS queue, NULL::DATE AS "date" '
                     "WHERE false;")  # fmt: skip
    return "\n".join(lines) + "\n"


def open_duckdb(
    url: str, store: ObjectStore, settings: Settings, *, database: str = ":memory:", view: str = VIEW_NAME
) -> Any:
    """A DuckDB connection with the session of duckdb_sql() already set up."""
    import duckdb

    conn = duckdb.connect(database, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    access = store.external_access(os.environ)
    if access.secret_type is None and access.filesystem is not None:
        conn.register_filesystem(access.filesystem)  # a scheme DuckDB cannot read itself (memory://)
    conn.execute(duckdb_sql(url, store, settings, view=view))
    return conn


def athena_ddl(
    url: str,
    store: ObjectStore,
    settings: Settings,
    *,
    table: str = VIEW_NAME,
    database: str | None = None,
    queue_projection: str = "auto",
    start_date: date | None = None,
) -> str:
    """CREATE EXTERNAL TABLE for the bucket layout with partition projection (no crawler, no MSCK REPAIR).

    queue_projection: 'enum' (the manifest's slugs), 'injected' (queries must name `queue`), or 'auto'
    (enum when the manifest knows slugs, else injected)."""
    if not store.external_access({}).athena:
        raise InvalidInputError("athena-ddl needs an S3 store (TIERING_STORE_URL=s3://bucket/prefix); Athena reads S3")
    for ident in (table, database):
        if ident is not None and not ident.replace("_", "a").isalnum():
            raise InvalidInputError(f"{ident!r}: Athena names are letters, digits and underscores")
    if queue_projection not in ("auto", "enum", "injected"):
        raise InvalidInputError("queue_projection must be auto, enum or injected")
    with connect(url) as conn:
        slugs = [s for s, _ in qdb.queue_slugs(conn)]
        first, _last = qdb.partition_date_range(conn)
    mode = queue_projection if queue_projection != "auto" else ("enum" if slugs else "injected")
    if mode == "enum" and not slugs:
        raise InvalidInputError("no committed objects yet: the queue enum would be empty; use injected")
    location = store.location.url.rstrip("/") + "/"
    name = f"`{database}`.`{table}`" if database else f"`{table}`"
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
    return (
        "-- tiering: Athena table over the archive objects; `date` is reserved in Athena DDL, hence the backticks\n"
        '-- (in queries write "date"). `queue` is the path slug; `queue_name` holds the real queue name.\n'
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n  {cols}\n)\n"
        "PARTITIONED BY (`queue` string, `date` date)\n"
        "STORED AS PARQUET\n"
        f"LOCATION {sql_literal(location)}\n"
        f"TBLPROPERTIES (\n  {rendered}\n);\n"
    )
