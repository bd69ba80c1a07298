"""DuckDB with the extension wheels loaded by path (DuckDB cannot download extensions on these machines)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb


def extension_path(name: str) -> str:
    package = {"httpfs": "duckdb_extension_httpfs", "json": "duckdb_extension_json",
               "postgres_scanner": "duckdb_extension_postgres_scanner"}[name]  # fmt: skip
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {package} wheel is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.rglob(f"{name}.duckdb_extension"))
    if not found:
        raise RuntimeError(f"no {name}.duckdb_extension inside {root}")
    return str(found[-1])


def connect(*extensions: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false",
                                 "autoload_known_extensions": "false"})  # fmt: skip
    for ext in extensions:
        con.execute(f"LOAD '{extension_path(ext)}'")
    return con
