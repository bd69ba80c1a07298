"""The archive session: settings, a pooled (and migrated) database and the object store, opened once.

Every entry point (CLI, API, scheduler) opens ONE session and hands it to the engine:

    with Session(load_settings()) as session:
        flush_staged(session, policy, config)

Engine functions take the session (or a connection from `session.connection()`) and never connect from a
URL. The database is resolved (embedded PostgreSQL only when no URL is configured), migrated and pooled on
first use, so commands that never touch it (`lifecycle plan`, `--help`) never start it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tiering.settings import Settings

# The database layer (psycopg) is imported on first use, so that `tiering --help` and usage errors start fast.
if TYPE_CHECKING:
    import psycopg

    from tiering.db.pool import Pool
    from tiering.errors import TieringError
    from tiering.policy import ArchivalConfig, ArchivalPolicy
    from tiering.store.base import ObjectStore

# Connections one engine call may hold at once besides its worker threads' (audit row, retention lock,
# work, rewrite's pending row and swap).
_POOL_HEADROOM = 8


class Session:
    """Resolved once per process (or per test); thread-safe; close() releases the pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        database_url: str | None = None,
        store: ObjectStore | None = None,
        application_name: str = "tiering",
    ) -> None:
        self.settings = settings
        self.application_name = application_name
        self._lock = threading.Lock()
        self._url = None
        if database_url is not None:
            from tiering.db.connection import with_timeouts

            self._url = with_timeouts(database_url, settings)
        self._migrated = False
        self._pool: Pool | None = None
        self._arrow_db: Any = None  # tiering.db.arrow.ArrowDatabase, made on first use
        self._store = store
        self._closed = False

    # --- database -----------------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The database this session uses, migrated (resolved and started on first use)."""
        from tiering.db.connection import connect, with_timeouts
        from tiering.db.migrations import migrate

        with self._lock:
            if self._url is None:
                self._url = with_timeouts(resolve_database_url(self.settings), self.settings)
            if not self._migrated:
                with connect(self._url) as conn:  # a direct connection: a bad URL fails now, clearly
                    migrate(conn)
                self._migrated = True
            return self._url

    @property
    def pool(self) -> Pool:
        url = self.database_url
        with self._lock:
            if self._pool is None:
                from tiering.db.pool import Pool

                self._pool = Pool(
                    url, max_size=self.settings.workers + _POOL_HEADROOM, application_name=self.application_name
                )
            return self._pool

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A pooled connection: committed when the block ends, rolled back if it raises."""
        with self.pool.connection(autocommit=autocommit) as conn:
            yield conn

    @contextmanager
    def arrow_connection(self) -> Iterator[Any]:
        """An ADBC connection (Arrow in and out of PostgreSQL) for the flush's bulk reads; not pooled, but the
        session's ADBC connections share one driver database (its type lookups are read once)."""
        from tiering.db import arrow as arrowdb

        url = self.database_url
        with self._lock:
            if self._arrow_db is None:
                self._arrow_db = arrowdb.ArrowDatabase(url)
            database = self._arrow_db
        conn = database.connect()
        try:
            yield conn
        finally:
            conn.close()

    # --- store --------------------------------------------------------------------------------------

    @property
    def store(self) -> ObjectStore:
        """The store given, or the one settings.store_url names (opened on first use)."""
        with self._lock:
            if self._store is not None:
                return self._store
        from tiering.store import open_store

        store = open_store(self.settings)
        if store.location.scheme == "file":  # before local stores recorded their root, they wrote ''
            from tiering.db.manifest import adopt_unnamed_bucket

            with self.connection() as conn:
                adopt_unnamed_bucket(conn, store.location.bucket)
        with self._lock:
            if self._store is None:
                self._store = store
            return self._store

    # --- policy -------------------------------------------------------------------------------------

    def load_policy(self, policy_file: str | None = None) -> tuple[ArchivalPolicy, ArchivalConfig, str]:
        """The policy a run uses: a file if given, else the stored policy, else the defaults."""
        from tiering.db.policies import get_policy_document
        from tiering.policy import ArchivalConfig, ArchivalPolicy, load_policy_file, policy_from_dict

        if policy_file:
            policy, config = load_policy_file(policy_file)
            return policy, config, f"file:{policy_file}"
        with self.connection() as conn:
            document = get_policy_document(conn)
        if document is not None:
            policy, config = policy_from_dict(document, source="stored policy")
            return policy, config, "stored"
        return ArchivalPolicy(), ArchivalConfig(), "defaults"

    # --- the embedded server (tiering db stop | status) ------------------------------------------------------

    def embedded_running(self) -> bool:
        from tiering.db.connection import embedded_running

        return embedded_running(self.settings.home)

    def stop_embedded(self) -> bool:
        """Stop the embedded PostgreSQL under settings.home; True when one was stopped."""
        from tiering.db.connection import stop_embedded

        self.close()
        return stop_embedded(self.settings.home)

    # --- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            arrow_db, self._arrow_db = self._arrow_db, None
        if pool is not None:
            pool.close()
        if arrow_db is not None:
            arrow_db.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_database_url(settings: Settings) -> str:
    """The database URL settings name (tiering.db.connection.resolve_database_url, imported on first use)."""
    from tiering.db.connection import resolve_database_url as resolve

    return resolve(settings)


def translate_error(exc: BaseException) -> TieringError | None:
    """A database error as the user sees it (tiering.db.connection.translate_error); None when it is none."""
    if "psycopg" not in sys.modules:
        return None  # no database error can have been raised before psycopg was imported
    from tiering.db.connection import translate_error as translate

    return translate(exc)


__all__ = ["Session", "translate_error"]  # translate_error: database errors as the user sees them
