# Two commands: `make run` (install, migrate, seed, serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test test-fast bench bench-baseline bench-peers lint fmt worker clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q 'uv>=0.5'

$(BIN)/tradedesk: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

install: $(BIN)/tradedesk

## Serve on 127.0.0.1:8000; embedded PostgreSQL + in-process workers unless DATABASE_URL/REDIS_URL are set.
run: install
	$(BIN)/tradedesk serve --migrate --seed-demo --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

## The whole suite against real PostgreSQL and Redis (DATABASE_URL / REDIS_URL, default: local servers).
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

worker: install
	$(BIN)/tradedesk worker

lint: install
	$(BIN)/ruff check app tests benchmarks migrations

fmt: install
	$(BIN)/ruff format app tests benchmarks migrations

clean:
	rm -rf .tools $(VENV) .data
