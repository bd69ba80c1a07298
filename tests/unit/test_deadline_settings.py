"""Deadline settings (TIERING_STORE_*, TIERING_DB_*): parsed and checked at the edge, carried to every
connection the URL makes, and to the S3 client."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from tiering.db.connection import with_timeouts
from tiering.errors import ConfigError
from tiering.settings import Settings, load_settings
from tiering.store import open_store
from tiering.store.s3 import S3Store


def test_deadline_settings_from_the_environment() -> None:
    s = load_settings({
        "TIERING_STORE_DEADLINE": "2.5", "TIERING_STORE_READ_TIMEOUT": "1", "TIERING_STORE_CONNECT_TIMEOUT": "0.5",
        "TIERING_STORE_MAX_ATTEMPTS": "7", "TIERING_DB_CONNECT_TIMEOUT": "3", "TIERING_DB_STATEMENT_TIMEOUT": "0",
    })  # fmt: skip
    assert (s.store_deadline, s.store_read_timeout, s.store_connect_timeout) == (2.5, 1.0, 0.5)
    assert (s.store_max_attempts, s.db_connect_timeout, s.db_statement_timeout) == (7, 3, 0.0)
    defaults = Settings()
    # the defaults keep an unresponsive endpoint under a minute: deadline + one more attempt's timeouts
    assert defaults.store_deadline + defaults.store_connect_timeout + defaults.store_read_timeout < 60
    assert defaults.db_connect_timeout < 60


@pytest.mark.parametrize(
    "name,value",
    [("TIERING_STORE_DEADLINE", "0"), ("TIERING_STORE_DEADLINE", "-1"), ("TIERING_STORE_READ_TIMEOUT", "soon"),
     ("TIERING_STORE_CONNECT_TIMEOUT", "nan"), ("TIERING_STORE_DEADLINE", "inf"), ("TIERING_DB_CONNECT_TIMEOUT", "0"),
     ("TIERING_DB_STATEMENT_TIMEOUT", "-5"), ("TIERING_STORE_MAX_ATTEMPTS", "0")],
)  # fmt: skip
def test_bad_deadline_settings_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.removeprefix("TIERING_").lower()):
        load_settings({name: value})


def test_the_s3_store_gets_the_deadlines() -> None:
    settings = Settings(store_url="s3://b/p", s3_endpoint_url="http://127.0.0.1:9", store_deadline=4,
                        store_read_timeout=2, store_connect_timeout=1, store_max_attempts=3)  # fmt: skip
    store = open_store(settings)
    assert isinstance(store, S3Store) and store.deadline == 4
    config = store.client.meta.config
    assert (config.read_timeout, config.connect_timeout, config.retries["total_max_attempts"]) == (2, 1, 3)
    assert open_store(settings, max_attempts=1).client.meta.config.retries["total_max_attempts"] == 1  # options win


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@db.internal:5432/hammerwork", "postgres://u@h/db?sslmode=require",
     "postgresql://postgres:@/t?host=/tmp/pg", "host=db.internal dbname=hammerwork user=u"],
)  # fmt: skip
def test_database_url_carries_the_timeouts(url: str) -> None:
    params = conninfo_to_dict(with_timeouts(url, Settings(db_connect_timeout=7, db_statement_timeout=1.5)))
    assert params["connect_timeout"] == "7" and params["keepalives"] == "1"
    assert params["options"] == "-c statement_timeout=1500"
    before = conninfo_to_dict(url)
    assert {k: params[k] for k in before} == before  # nothing the user wrote is changed


def test_database_url_keeps_the_users_own_timeouts() -> None:
    url = "postgresql://h/db?connect_timeout=30&options=-c%20statement_timeout%3D9"
    params = conninfo_to_dict(with_timeouts(url, Settings(db_connect_timeout=7, db_statement_timeout=1)))
    assert params["connect_timeout"] == "30" and params["options"] == "-c statement_timeout=9"
    assert "options" not in conninfo_to_dict(with_timeouts("postgresql://h/db", Settings()))  # none by default
