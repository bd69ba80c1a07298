"""A psycopg connection pool for one archive session: connections are reused, never left holding state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from tiering.errors import DatabaseError


def _reset(conn: psycopg.Connection) -> None:
    """A returned connection drops what a session could leak to the next user: advisory locks
    (flush, retention and schedule locks are session-level) and SET parameters."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_unlock_all(); RESET ALL")  # one round trip: this runs after every use
    conn.autocommit = False


class Pool:
    """Connections for the engine: `with pool.connection() as conn:` commits on success, rolls back on error."""

    def __init__(self, url: str, *, max_size: int, application_name: str = "tiering", timeout: float = 60.0) -> None:
        self._pool: ConnectionPool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, max_size),
            kwargs={"application_name": application_name},
            reset=_reset,
            timeout=timeout,
            name="tiering",
            open=True,
        )

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        try:
            cm = self._pool.connection()
            conn = cm.__enter__()
        except PoolTimeout as exc:
            raise DatabaseError(f"no database connection within {self._pool.timeout:g}s: {exc}") from exc
        try:
            if autocommit:
                conn.autocommit = True
            yield conn
        except BaseException as exc:
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            cm.__exit__(None, None, None)

    def close(self) -> None:
        self._pool.close()
