"""The session's ADBC connections share one driver database (db/arrow.py ArrowDatabase). The PostgreSQL driver
counts that database's open connections in a plain integer, so connecting and closing from several threads at once
lost updates and a later close failed with "Open connection count underflowed" (a flush's workers, CI). Opening and
closing are serialized per database; these tests hammer both from many threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tiering.db import arrow as arrowdb
from tiering.errors import DatabaseError

THREADS = 8
ROUNDS = 40


def _open_query_close(database: arrowdb.ArrowDatabase, start: threading.Barrier) -> int:
    start.wait()
    seen = 0
    for _ in range(ROUNDS):
        conn = database.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            seen += cur.fetchone()[0]
            cur.close()
        finally:
            conn.close()
    return seen


def test_connections_opened_and_closed_from_many_threads_all_close_cleanly(db_url: str) -> None:
    database = arrowdb.ArrowDatabase(db_url)
    start = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        counts = list(pool.map(lambda _: _open_query_close(database, start), range(THREADS)))
    assert counts == [ROUNDS] * THREADS
    # every connection was counted in and out: the driver lets the database go without complaint
    database.close()
    with pytest.raises(DatabaseError, match="closed"):
        database.connect()


def test_a_connection_left_to_the_garbage_collector_still_closes(db_url: str) -> None:
    database = arrowdb.ArrowDatabase(db_url)
    kept = database.connect()
    dropped = database.connect()
    del dropped  # closed by its __del__, which must take the same path as close()
    cur = kept.cursor()
    cur.execute("SELECT 2")
    assert cur.fetchone()[0] == 2
    cur.close()
    kept.close()
    database.close()


def test_opening_and_closing_wait_for_the_databases_driver_lock(db_url: str) -> None:
    database = arrowdb.ArrowDatabase(db_url)
    conn = database.connect()
    done: dict[str, threading.Event] = {"close": threading.Event(), "open": threading.Event()}
    opened: list[object] = []

    def close_it() -> None:
        conn.close()
        done["close"].set()

    def open_one() -> None:
        opened.append(database.connect())
        done["open"].set()

    with database._lock:  # what a connect or close in another thread holds
        threads = [threading.Thread(target=close_it), threading.Thread(target=open_one)]
        for thread in threads:
            thread.start()
        assert not done["close"].wait(0.3)
        assert not done["open"].wait(0.01)
    for thread in threads:
        thread.join(10)
    assert done["close"].is_set() and done["open"].is_set()
    opened[0].close()  # type: ignore[attr-defined]
    database.close()


def test_a_constraint_refusal_is_recognised_from_either_driver() -> None:
    """IntegrityError (1.13), or a ProgrammingError carrying SQLSTATE 23xxx (1.8 reports a COPY's check or unique
    violation so): both are a refusal the flush quarantines; other errors are not."""
    import adbc_driver_manager as adbc

    code = adbc.AdbcStatusCode.INVALID_ARGUMENT
    assert arrowdb.refused_by_a_constraint(adbc.IntegrityError("dup", status_code=code, sqlstate="23505"))
    assert arrowdb.refused_by_a_constraint(adbc.ProgrammingError("check", status_code=code, sqlstate="23514"))
    assert not arrowdb.refused_by_a_constraint(adbc.ProgrammingError("syntax", status_code=code, sqlstate="42601"))
    assert not arrowdb.refused_by_a_constraint(adbc.OperationalError("gone", status_code=code))
