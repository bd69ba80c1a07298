# tiering: `make run` tries it on the embedded defaults, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Seed demo jobs into an embedded PostgreSQL (./.tiering) when its hot table is empty, then archive:
# hot -> staging -> zstd Parquet in ./.tiering/objects, and show the archive's statistics.
run: install
	$(BIN)/tiering demo seed --if-empty
	$(BIN)/tiering archive run --reason manual --initiated-by make-run
	-$(BIN)/tiering archive stats

lint: install
	$(BIN)/ruff check tiering tests bench
	$(BIN)/mypy tiering

test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf .tiering bench/out .pytest_cache .mypy_cache .ruff_cache
