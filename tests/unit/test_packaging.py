"""What the wheel declares matches what the code imports, and what it reads at run time is package data."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Declared without being imported by name: the DuckDB extension wheels are found by package name
# (importlib.util.find_spec) and loaded from their files; tzdata is read by zoneinfo (pyarrow, psycopg) in
# images without system time zones; psycopg-pool is the archive session's pool (issue 9 item 3, landing).
NOT_IMPORTED_BY_NAME = {"duckdb-extension-httpfs", "duckdb-extension-json", "tzdata", "psycopg-pool",
                        "duckdb-extension-avro", "duckdb-extension-iceberg",  # loaded from their files
                        "sqlalchemy"}  # pyiceberg's SQL catalog imports it  # fmt: skip


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def declared(*groups: str) -> set[str]:
    names = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for group in groups:
        names |= {_name(r) for r in PYPROJECT["project"]["optional-dependencies"][group] if not r.startswith("tiering")}
    return names


def imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in tiering/ (lazy imports too) -> the files importing."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tiering").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in ("tiering", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_module_is_declared_and_every_declaration_is_used() -> None:
    dists = packages_distributions()
    imported = imported_modules()
    needed: dict[str, set[str]] = {}
    for module, where in imported.items():
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        assert owners, f"{module} (imported in {sorted(where)}) belongs to no installed distribution"
        for owner in owners:
            needed.setdefault(owner, set()).update(where)
    runtime = declared("service", "analyst", "iceberg")
    missing = {d: sorted(w) for d, w in needed.items() if d not in runtime}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    unused = runtime - set(needed) - NOT_IMPORTED_BY_NAME
    assert not unused, f"declared but never imported: {sorted(unused)}"
    assert "click" not in runtime  # typer >= 0.29 vendors its own; tiering imports neither click directly


def test_extras_hold_only_what_their_commands_import() -> None:
    """The base install must not import what only the extras bring (the CLI starts without them)."""
    service, analyst = declared("service") - declared(), declared("analyst") - declared()
    assert service == {"fastapi", "starlette", "pydantic", "uvicorn"}
    assert analyst == {"duckdb", "duckdb-extension-httpfs", "duckdb-extension-json"}
    dists = packages_distributions()
    for module, where in imported_modules().items():
        owners = {d.lower() for d in dists.get(module, [])}
        if owners & service:
            assert all(w.startswith("tiering/service/") or w == "tiering/cli/serve.py" for w in where), (module, where)
        if owners & analyst:
            assert all("analyst" in w for w in where), (module, where)


def test_runtime_files_are_package_data() -> None:
    package_data = set(PYPROJECT["tool"]["setuptools"]["package-data"]["tiering"])
    assert {"policy.schema.json", "sql/*.sql", "sql/hammerwork/*.sql", "service/static/*"} <= package_data
    root = files("tiering")
    assert [m.name for m in sorted((root / "sql").iterdir(), key=lambda r: r.name) if m.name.endswith(".sql")][0] == (
        "0001_core.sql"
    )
    assert (root / "sql" / "hammerwork" / "hammerwork_jobs.sql").is_file()
    assert (root / "policy.schema.json").is_file() and (root / "service" / "static" / "index.html").is_file()
    # schemas/ keeps documentation; its policy schema is a link to the one copy inside the package
    link = ROOT / "schemas" / "policy.schema.json"
    assert link.is_symlink() and link.resolve() == (ROOT / "tiering" / "policy.schema.json").resolve()
    assert not (ROOT / "schemas" / "sql").exists()
    for path in (ROOT / "tiering").rglob("*.py"):
        text = path.read_text()
        assert "parents[2]" not in text or path.name == "openapi.py", f"{path} reads files outside the package"
