# Two commands: `make run` (install, migrate, seed, serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

DESK_SOURCES := $(wildcard desk/src/*.ts desk/src/*.css desk/src/views/*.ts) desk/index.html desk/package.json \
	desk/package-lock.json desk/vite.config.ts desk/tsconfig.json

.PHONY: install desk run test test-fast bench bench-reference bench-all bench-peers fuzz loadtest cluster lint fmt worker clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q 'uv>=0.5'

$(BIN)/tradedesk: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --extra uvicorn
	@touch $@

install: $(BIN)/tradedesk

## The desk (web front-end at /desk), rebuilt when its sources change; needs Node.js and npm. Without npm the
## API still runs and /desk answers 503 saying how to build it.
app/static/desk/index.html: $(DESK_SOURCES)
	@if command -v npm >/dev/null 2>&1; then \
	  cd desk && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent; \
	else echo "npm not found: the desk front-end (/desk) is not built"; fi

desk: app/static/desk/index.html

## Serve on 127.0.0.1:8000; embedded PostgreSQL + in-process workers unless DATABASE_URL/REDIS_URL are set.
run: install desk
	LOG_FORMAT=$${LOG_FORMAT:-console} $(BIN)/tradedesk serve --migrate --seed-demo --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

## The whole suite against real PostgreSQL and Redis (DATABASE_URL / REDIS_URL, default: local servers), in two
## passes (docs/TESTING.md): everything not marked `serial` on TEST_WORKERS pytest-xdist processes, a test file
## per process at a time, then the `serial` tests in one process. Both passes always run; the exit status fails
## if either did. Bytecode caches stay on for the run (PYTHONDONTWRITEBYTECODE would make each of its many
## server, worker and CLI processes compile every module again).
TEST_WORKERS ?= 3
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -p no:cacheprovider
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: install desk
	status=0; \
	$(PYTEST) $(PARALLEL) -m "not serial" || status=1; \
	$(PYTEST) -m serial || status=1; \
	exit $$status

test-fast: install
	status=0; \
	$(PYTEST) $(PARALLEL) -m "not slow and not serial" || status=1; \
	$(PYTEST) -m "serial and not slow" || status=1; \
	exit $$status

## Latency gate: hot endpoints and pure cores, this tree against the commit in benchmarks/REFERENCE measured
## in the same run (a temporary git worktree; two pytest processes taking turns call by call; benchmarks/gate.py).
## GATE_ARGS passes options, e.g. GATE_ARGS="--inject-candidate orders_list_sleep_ms=2" (the gate's self-test).
bench: install
	$(BIN)/python -m benchmarks.gate run $(GATE_ARGS)

## Move the gate's reference to HEAD (a deliberate step: review and commit benchmarks/REFERENCE on its own).
bench-reference: install
	$(BIN)/python -m benchmarks.gate set-reference

## Every benchmark (engine, parser, risk core, gate set), for the numbers in docs/BENCHMARKS.md.
bench-all: install
	$(BIN)/python -m pytest benchmarks -p no:xdist -p no:cacheprovider -q --benchmark-columns=median,min,max,rounds

## Side by side under granian: Tradedesk vs FastAPI+Pydantic+SQLAlchemy ORM vs a raw ASGI+asyncpg floor
## (placement spread over ACCOUNTS accounts, one bot each; ACCOUNTS=1 queues every client on one row lock).
bench-peers: install
	$(BIN)/python -m benchmarks.peers.run_peers --db-url $${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} \
	  --duration $${DURATION:-10} --concurrency $${CONCURRENCY:-32} --accounts $${ACCOUNTS:-32}

## Deep schemathesis run (make test runs a bounded one).
fuzz: install
	SCHEMATHESIS_MAX_EXAMPLES=$${EXAMPLES:-50} $(BIN)/python -m pytest tests/integration/test_schemathesis.py -q -p no:cacheprovider

## Load against a running server: make loadtest KEY=... [SCENARIO=mix CONCURRENCY=32 DURATION=10]
loadtest: install desk
	$(BIN)/tradedesk loadtest --url $${URL:-http://127.0.0.1:8000} --api-key "$$KEY" --scenario $${SCENARIO:-mix} \
	  --concurrency $${CONCURRENCY:-32} --duration $${DURATION:-10}

## Two API processes (8001, 8002) and two workers on DATABASE_URL/REDIS_URL (Ctrl-C stops all).
cluster: install
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { echo "set DATABASE_URL and REDIS_URL"; exit 2; }
	$(BIN)/tradedesk db upgrade
	trap 'kill 0' INT TERM EXIT; \
	$(BIN)/tradedesk serve --port 8001 & $(BIN)/tradedesk serve --port 8002 & \
	$(BIN)/tradedesk worker & $(BIN)/tradedesk worker & wait

worker: install
	$(BIN)/tradedesk worker

lint: install
	$(BIN)/ruff check app tests benchmarks migrations

fmt: install
	$(BIN)/ruff format app tests benchmarks migrations

clean:
	rm -rf .tools $(VENV) .data
