# tiering: `make run` tries it on the embedded defaults, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint bench clean image schema-docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Seed demo jobs into an embedded PostgreSQL (./.tiering; asked for with TIERING_EMBEDDED=1, used only when no
# TIERING_DATABASE_URL / DATABASE_URL is set) when its hot table is empty, then archive: hot -> staging -> zstd
# Parquet in ./.tiering/objects, and show the archive's statistics. `.venv/bin/tiering db stop` stops the server.
run: install
	TIERING_EMBEDDED=1 $(BIN)/tiering demo seed --if-empty
	TIERING_EMBEDDED=1 $(BIN)/tiering archive run --reason manual --initiated-by make-run
	-TIERING_EMBEDDED=1 $(BIN)/tiering archive stats

# The same as `run`: demo data on the embedded PostgreSQL, archived.
demo: run

lint: install
	$(BIN)/ruff check tiering tests bench
	$(BIN)/mypy tiering

# Two pytest-xdist workers (PYTEST_WORKERS=0 runs in one process), a module per worker at a time: each worker
# starts its own embedded PostgreSQL and SeaweedFS (random ports, temp dirs), module fixtures are set up once.
PYTEST_WORKERS ?= 2
test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The container image (infra/Containerfile) from a wheelhouse built here: IMAGE=..., BASE=..., CONTAINER_TOOL=...
image: install
	PYTHON=$(BIN)/python IMAGE="$(IMAGE)" BASE="$(BASE)" CONTAINER_TOOL="$(CONTAINER_TOOL)" bash infra/build-image.sh

bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf .tiering bench/out .pytest_cache .mypy_cache .ruff_cache

# Regenerate the docs derived from the column registry (tiering/schema.py COLUMNS).
schema-docs: install
	$(BIN)/python -c 'from pathlib import Path; import tiering.schema as S; \
	  Path("schemas/archive.arrow.json").write_text(S.render_schema_json(), encoding="utf-8"); \
	  p = Path("schemas/archive-schema.md"); p.write_text(S.render_schema_doc(p.read_text(encoding="utf-8")), encoding="utf-8")'
