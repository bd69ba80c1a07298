"""Settings from the environment: which database URL wins, and the embedded server only on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiering.db.connection import resolve_database_url
from tiering.errors import ConfigError
from tiering.settings import load_settings


def test_database_url_order() -> None:
    both = load_settings(env={"TIERING_DATABASE_URL": "postgresql://a/x", "DATABASE_URL": "postgresql://b/y"})
    assert both.database_url == "postgresql://a/x"
    assert load_settings(env={"DATABASE_URL": "postgresql://b/y"}).database_url == "postgresql://b/y"
    assert load_settings(env={"TIERING_DATABASE_URL": "", "DATABASE_URL": "postgresql://b/y"}).database_url == (
        "postgresql://b/y"
    )
    flag = load_settings(env={"DATABASE_URL": "postgresql://b/y"}, database_url="postgresql://c/z")
    assert flag.database_url == "postgresql://c/z"
    assert load_settings(env={}).database_url is None


def test_embedded_only_on_request(tmp_path: Path) -> None:
    settings = load_settings(env={"TIERING_HOME": str(tmp_path)})
    assert settings.embedded is False
    with pytest.raises(ConfigError, match="TIERING_DATABASE_URL.*DATABASE_URL.*--embedded.*TIERING_EMBEDDED=1"):
        resolve_database_url(settings, notify=lambda m: pytest.fail(m))
    assert not (tmp_path / "pg").exists()
    assert load_settings(env={"TIERING_EMBEDDED": "1"}).embedded is True
    configured = load_settings(env={"TIERING_EMBEDDED": "1", "DATABASE_URL": "postgresql://b/y"})
    assert resolve_database_url(configured, notify=lambda m: pytest.fail(m)) == "postgresql://b/y"
