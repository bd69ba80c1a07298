"""Typed settings, resolved once at the edge (CLI flags > TIERING_* environment > settings file > defaults;
the database URL also from DATABASE_URL, after TIERING_DATABASE_URL, as Hammerwork reads it).

The engine receives a `Settings` object and never reads the environment itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tiering.errors import ConfigError

# Public S3 list prices (USD per GB-month, us-east-1), used only for the labelled *estimate* in stats.
DEFAULT_PRICES_PER_GB_MONTH: dict[str, float] = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "INTELLIGENT_TIERING": 0.023,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
    "REDUCED_REDUNDANCY": 0.023,
}


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    embedded: bool = False  # start an embedded PostgreSQL under home/pg when no database_url is given
    home: Path = Path(".tiering")
    store_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    sse: str | None = None  # None | "AES256" | "aws:kms"
    sse_kms_key_id: str | None = None
    sse_bucket_key: bool = False
    object_size_target_bytes: int = 128 * 1024 * 1024
    row_group_rows: int = 100_000
    # A flush cuts a row group once its rows' Arrow data reaches this many bytes: rows that compress very well
    # (row groups are sized by compressed bytes) would otherwise make row groups of tens of MB, which each worker
    # holds several times over while it sorts and encodes them, so a run's peak memory depended on which queues
    # two workers happened to write at once.
    row_group_max_bytes: int = 8 * 1024 * 1024
    # Rows one flush round claims at most (each of `workers` rounds holds its rows' batches while it writes):
    # bounds a run's memory whatever the backlog, at one commit per round.
    round_rows: int = 100_000
    workers: int = 2
    api_token: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password: str | None = None
    api_open_reads: bool = False
    glacier_restore_tier: str = "Standard"
    glacier_restore_days: int = 1
    pending_grace_seconds: int = 3600
    prices_per_gb_month: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES_PER_GB_MONTH))
    schedules: dict[str, str] = field(default_factory=dict)
    # Deadlines (seconds). A store call makes at most store_max_attempts attempts, each bounded by the
    # connect and read timeouts, and starts none after store_deadline: an endpoint that accepts TCP and
    # never answers fails within store_deadline + store_connect_timeout + store_read_timeout (50 s by default).
    store_connect_timeout: float = 5.0
    store_read_timeout: float = 15.0
    store_deadline: float = 30.0
    store_max_attempts: int = 4
    # The database: connecting gives up after db_connect_timeout (libpq's connect_timeout); dead peers are
    # found by TCP keepalives; db_statement_timeout (0 = none) bounds each statement on the server.
    db_connect_timeout: int = 10
    db_statement_timeout: float = 0.0
    pushgateway_url: str | None = None  # cron runs push their metrics here (tiering.metrics)
    metrics_port: int | None = None  # `serve`: /metrics also on this port, without credentials
    metrics_open: bool = False  # `serve`: /metrics on the main port without credentials
    # `serve`: Host names answered besides loopback ones (comma-separated; "*" = any), against DNS rebinding
    allowed_hosts: str | None = None
    # `serve` admission control: scans (search, bulk restore/erase selection) run on search_workers threads with
    # at most search_queue waiting; more are refused with 429 + Retry-After; each gets request_deadline seconds.
    search_workers: int = 2
    search_queue: int = 4
    request_deadline: float = 30.0
    # A list page's total is counted exactly up to this many matching jobs; past it, the planner's estimate is
    # given and flagged (`total_is_estimate`), so a page costs what the page reads, not the archive's size.
    list_exact_total_up_to: int = 10_000
    # The cold archive also as an Iceberg table (tiering.engine.iceberg): off unless asked for.
    iceberg: bool = False
    # Purge and erase expire the table's snapshots older than this (seconds), so purged or erased rows are named
    # by no snapshot once the window passes (time travel within it).
    iceberg_snapshot_retention: float = 7 * 86400.0
    # Where the table is registered: "sql" (pyiceberg's SQL catalog in tiering's own database, the JDBC catalog's
    # layout), "glue" (AWS Glue Data Catalog, for Athena) or "rest" (an Iceberg REST catalog at
    # iceberg_catalog_uri). For glue, iceberg_catalog_uri overrides the Glue endpoint.
    iceberg_catalog: str = "sql"
    iceberg_catalog_uri: str | None = None
    # More pyiceberg catalog properties (settings file only): a REST catalog's "warehouse", "credential" or
    # "token", Glue's "glue.id", ...
    iceberg_catalog_properties: dict[str, str] = field(default_factory=dict)

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return (self.home.resolve() / "objects").as_uri()

    @property
    def tmp_dir(self) -> Path:
        """Spill space for flush and rewrite parts: under home when it exists (the embedded database's, or an
        explicit TIERING_HOME), else the system's temp folder, so a cron run leaves nothing where it runs."""
        return self.home / "tmp" if self.home.is_dir() else Path(tempfile.gettempdir())

    def with_overrides(self, **overrides: Any) -> Settings:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **clean)


_ENV_NAMES: dict[str, str] = {
    "database_url": "TIERING_DATABASE_URL",
    "embedded": "TIERING_EMBEDDED",
    "home": "TIERING_HOME",
    "store_url": "TIERING_STORE_URL",
    "s3_endpoint_url": "TIERING_S3_ENDPOINT_URL",
    "s3_region": "TIERING_S3_REGION",
    "sse": "TIERING_SSE",
    "sse_kms_key_id": "TIERING_SSE_KMS_KEY_ID",
    "sse_bucket_key": "TIERING_SSE_BUCKET_KEY",
    "object_size_target_bytes": "TIERING_OBJECT_SIZE_TARGET_BYTES",
    "row_group_rows": "TIERING_ROW_GROUP_ROWS",
    "row_group_max_bytes": "TIERING_ROW_GROUP_MAX_BYTES",
    "round_rows": "TIERING_ROUND_ROWS",
    "workers": "TIERING_WORKERS",
    "api_token": "TIERING_API_TOKEN",
    "basic_auth_user": "TIERING_BASIC_AUTH_USER",
    "basic_auth_password": "TIERING_BASIC_AUTH_PASSWORD",
    "api_open_reads": "TIERING_API_OPEN_READS",
    "glacier_restore_tier": "TIERING_GLACIER_RESTORE_TIER",
    "glacier_restore_days": "TIERING_GLACIER_RESTORE_DAYS",
    "pending_grace_seconds": "TIERING_PENDING_GRACE_SECONDS",
    "store_connect_timeout": "TIERING_STORE_CONNECT_TIMEOUT",
    "store_read_timeout": "TIERING_STORE_READ_TIMEOUT",
    "store_deadline": "TIERING_STORE_DEADLINE",
    "store_max_attempts": "TIERING_STORE_MAX_ATTEMPTS",
    "db_connect_timeout": "TIERING_DB_CONNECT_TIMEOUT",
    "db_statement_timeout": "TIERING_DB_STATEMENT_TIMEOUT",
    "pushgateway_url": "TIERING_PUSHGATEWAY_URL",
    "metrics_port": "TIERING_METRICS_PORT",
    "metrics_open": "TIERING_METRICS_OPEN",
    "allowed_hosts": "TIERING_ALLOWED_HOSTS",
    "search_workers": "TIERING_SEARCH_WORKERS",
    "search_queue": "TIERING_SEARCH_QUEUE",
    "request_deadline": "TIERING_REQUEST_DEADLINE",
    "list_exact_total_up_to": "TIERING_LIST_EXACT_TOTAL_UP_TO",
    "iceberg": "TIERING_ICEBERG",
    "iceberg_snapshot_retention": "TIERING_ICEBERG_SNAPSHOT_RETENTION",
    "iceberg_catalog": "TIERING_ICEBERG_CATALOG",
    "iceberg_catalog_uri": "TIERING_ICEBERG_CATALOG_URI",
}


ICEBERG_CATALOGS = ("sql", "glue", "rest")
# The settings file's "iceberg" block: {"enabled": true, "catalog": "glue", "catalog_uri": ..., ...}
_ICEBERG_BLOCK = {
    "catalog": "iceberg_catalog",
    "catalog_uri": "iceberg_catalog_uri",
    "catalog_properties": "iceberg_catalog_properties",
    "snapshot_retention": "iceberg_snapshot_retention",
}


def _iceberg_block(raw: dict[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - {"enabled", *_ICEBERG_BLOCK}
    if unknown:
        raise ConfigError(f"setting 'iceberg': unknown keys {sorted(unknown)}")
    return {_ICEBERG_BLOCK[k]: _coerce(_ICEBERG_BLOCK[k], v) for k, v in raw.items() if k in _ICEBERG_BLOCK}


def _coerce(name: str, raw: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "Path":
            return Path(raw)
        if kind in ("int", "int | None"):
            value = int(raw)
            if value <= 0:
                raise ValueError("must be positive")
            return value
        if kind == "float":  # a duration in seconds; 0 only where it means "none" (db_statement_timeout)
            number = float(raw)
            if not number >= 0 or number == float("inf") or (number == 0 and name != "db_statement_timeout"):
                raise ValueError("must be a positive number of seconds")
            return number
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if name == "iceberg" and isinstance(raw, dict):  # the settings file's {"iceberg": {"enabled": true}}
                return bool(raw.get("enabled", False))
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if kind.startswith("dict"):
            return dict(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} ({exc})") from exc


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional JSON settings file, the TIERING_* environment and overrides."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    settings_file = env.get("TIERING_SETTINGS_FILE")
    if settings_file:
        try:
            data = json.loads(Path(settings_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"settings file {settings_file}: {exc}") from exc
        known = {f.name for f in fields(Settings)}
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"settings file {settings_file}: unknown setting {key!r}")
            values[key] = _coerce(key, raw)
            if key == "iceberg" and isinstance(raw, dict):
                values.update(_iceberg_block(raw))
    for name, env_name in _ENV_NAMES.items():
        if env.get(env_name) not in (None, ""):
            values[name] = _coerce(name, env[env_name])
    if "database_url" not in values and env.get("DATABASE_URL"):  # as Hammerwork and cargo-hammerwork read it
        values["database_url"] = _coerce("database_url", env["DATABASE_URL"])
    if "s3_endpoint_url" not in values and env.get("AWS_ENDPOINT_URL"):
        values["s3_endpoint_url"] = env["AWS_ENDPOINT_URL"]
    for name, raw in overrides.items():
        if raw is not None:
            values[name] = _coerce(name, raw)
    if values.get("iceberg_catalog", "sql") not in ICEBERG_CATALOGS:
        kinds = ", ".join(ICEBERG_CATALOGS)
        raise ConfigError(f"setting 'iceberg_catalog': one of {kinds}, not {values['iceberg_catalog']!r}")
    if values.get("sse") not in (None, "AES256", "aws:kms"):
        raise ConfigError(f"setting 'sse': must be AES256 or aws:kms, not {values['sse']!r}")
    return Settings(**values)
