# Surge: `make help` lists the targets. `make run` and `make test` set up everything they need.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# protos/ is the proto root (the buf module, see buf.yaml): a file's path under it matches its
# package, and the Python modules generated from it land in the package loyalty/v1/.
PROTO_SRC := $(wildcard protos/loyalty/v1/*.proto)
PROTO_STAMP := loyalty/v1/.generated

.PHONY: help setup system-deps run stop test check format protos protos-clean migrate rebuild-cache rules-check

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

system-deps: ## Install redis-server, PostgreSQL and promtool from apt when missing
	@scripts/system-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

$(PROTO_STAMP): $(PROTO_SRC) $(VENV)/.installed
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTO_SRC)
	@touch $@

protos: $(PROTO_STAMP) ## Generate the Python package loyalty/v1/ and its stubs from protos/ (never edit the output)

# Also removes what the layout before buf generated beside the protos.
protos-clean:
	rm -f loyalty/v1/*_pb2*.py loyalty/v1/*_pb2*.pyi $(PROTO_STAMP) \
		protos/loyalty/v1/*_pb2*.py protos/loyalty/v1/*_pb2*.pyi protos/loyalty/v1/.generated

setup: system-deps $(VENV)/.installed protos ## Install everything (venv, packages, Redis, PostgreSQL) and generate protos

run: setup ## Serve on 127.0.0.1:50051; starts a local Redis + PostgreSQL under .data/ unless REDIS_URL/DATABASE_URL are set
	$(BIN)/surge serve

stop: ## Stop the local Redis and PostgreSQL that `make run` started (says what it stopped)
	@if [ -x $(BIN)/surge ]; then $(BIN)/surge stack stop; \
	else echo "nothing to stop: $(VENV) is not set up, so nothing was started"; fi

migrate: setup ## Apply database migrations (DATABASE_URL/REDIS_URL, or a running `make run` stack)
	$(BIN)/surge migrate

rebuild-cache: setup ## Rebuild Redis from PostgreSQL without overwriting live counters (URLs or a running stack)
	$(BIN)/surge rebuild-cache

PROFILE ?= ci
.PHONY: loadtest loadtest-chaos
loadtest: setup ## Locust surge + audit; PROFILE=ci|surge, CHAOS=1 kills the server mid-surge, REDIS=cluster
	$(BIN)/python -m loadtest.run --profile $(PROFILE) $(if $(filter 1,$(CHAOS)),--chaos) \
		$(if $(filter cluster,$(REDIS)),--redis cluster) $(LOADTEST_ARGS)

loadtest-chaos: setup ## The load test with the server SIGKILLed and restarted mid-surge
	$(BIN)/python -m loadtest.run --profile $(PROFILE) --chaos $(LOADTEST_ARGS)

.PHONY: loadtest-lottery
loadtest-lottery: setup ## Lottery profile: thousands draw from few prizes, then its audit; CHAOS=1 kills the server
	$(BIN)/python -m loadtest.lottery $(if $(filter 1,$(CHAOS)),--chaos) $(LOTTERY_ARGS)

SOAK_MINUTES ?= 10
.PHONY: soak
soak: setup ## Redis memory under a steady surge: keys and bytes per 10k calls (SOAK_MINUTES=10)
	$(BIN)/python -m loadtest.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# Its own variable: PROFILE belongs to the load test (ci|surge).
BENCH_PROFILE ?= full
.PHONY: bench bench-quick bench-cluster bench-scale
bench: setup ## Benchmarks side by side: bare and Surge floors, redeem, refusals, hot item, naive peer, flash-sale mix (full, ~8 min)
	$(BIN)/python -m bench.run --profile $(BENCH_PROFILE) --out results/bench $(BENCH_ARGS)

bench-cluster: setup ## Surge on one Redis vs a local 3+3 Redis Cluster side by side, and the capacity ceilings (~7 min; not in CI)
	$(BIN)/python -m bench.cluster --profile $(BENCH_PROFILE) --out results/bench $(BENCH_ARGS)

SCALE_ARGS ?=
bench-scale: setup ## Cost as the data grows: 10^3 vs 10^6 members, 10 vs 10^4 campaigns (COPY), sweeper on 10^5 holds (~10-15 min; not in CI)
	$(BIN)/python -m bench.scale --out results/bench $(SCALE_ARGS)

bench-quick: setup ## The quick benchmark profile (about a minute and a half of load; what CI runs)
	$(BIN)/python -m bench.run --profile quick --out results/bench $(BENCH_ARGS)

test: setup rules-check ## Run the whole test suite against real Redis and PostgreSQL
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The redemption, idempotency, sweeper, rebuild and ledger tests again, with the service's
# Redis a real Redis Cluster (3 primaries + 3 replicas on loopback, tests/local_cluster.py).
CLUSTER_TESTS ?= tests/cluster tests/flashsale tests/points
.PHONY: test-cluster
test-cluster: setup ## The redemption and ledger tests with Redis a real local Redis Cluster
	SURGE_TEST_REDIS=cluster $(BIN)/pytest -q $(CLUSTER_TESTS) $(PYTEST_ARGS)

rules-check: system-deps ## Validate and unit-test the Prometheus rules with promtool
	promtool check rules ops/prometheus/surge-rules.yml
	promtool test rules ops/prometheus/surge-rules.test.yml

check: setup ## ruff format check, ruff lint, mypy, buf lint, buf breaking (BUF_AGAINST=<commit> to pick the base), hadolint
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/buf lint
	scripts/buf-breaking.sh $(BIN)/buf
	$(BIN)/hadolint deploy/Containerfile

format: setup ## Apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
