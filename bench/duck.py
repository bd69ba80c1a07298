"""DuckDB with the extension wheels loaded by path (DuckDB cannot download extensions on these machines)."""

from __future__ import annotations

import duckdb

from tiering.engine.analyst import extension_path


def connect(*extensions: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for ext in extensions:
        con.execute(f"LOAD '{extension_path(ext)}'")
    return con
