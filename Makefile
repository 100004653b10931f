# storepulse developer commands. `make help` lists them; CI calls `make test`.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## Install system packages (apt) and the venv from requirements.lock (idempotent)
	@scripts/setup.sh

.PHONY: demo
demo: setup ## Set up, then run the local stack, worker, exporter and synthetic traffic (Ctrl-C stops)
	$(BIN)/storepulse demo

.PHONY: test
test: setup ## Set up, then run lint, type checks and the whole test suite against real services
	$(MAKE) --no-print-directory lint typecheck
	# Four pytest workers on two cores: most integration time is spent waiting (group joins,
	# scrapes, for: timers, a live page), not computing (1.1 of the 2 cores busy on average with
	# three); each worker starts its own broker and redis-server. Whole files per worker, the
	# files with slow tests first (tests/conftest.py): with the minutes-long ones handed out
	# last the suite took 13.6 min.
	$(BIN)/pytest -q -n 4 --dist loadfile

.PHONY: unit
unit: setup ## Fast unit tests only
	$(BIN)/pytest -q tests/unit

.PHONY: lint
lint: ## ruff check and format check
	$(BIN)/ruff check streams producers storepulse tests grafana scripts
	$(BIN)/ruff format --check streams producers storepulse tests grafana scripts

.PHONY: fmt
fmt: ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix streams producers storepulse tests grafana scripts
	$(BIN)/ruff format streams producers storepulse tests grafana scripts

.PHONY: typecheck
typecheck: ## mypy --strict on the source packages
	$(BIN)/mypy

# pip-compile (pip-tools, in the dev extra) resolves the ranges of pyproject.toml to exact
# versions with the hashes of every file PyPI has for them: requirements.lock (dev and local
# extras: setup.sh, CI) and requirements-runtime.lock (no extra: the Dockerfile), the second
# constrained by the first so both name the same versions. The index and find-links options
# of this machine's pip configuration stay out of the files. `make lock LOCK_UPGRADE=` keeps
# the current pins and only resolves what pyproject.toml newly asks for;
# `make lock LOCK_UPGRADE='--upgrade-package NAME'` moves one package.
LOCK_UPGRADE ?= --upgrade
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: lock
lock: ## Re-resolve requirements.lock and requirements-runtime.lock to the newest versions pyproject.toml allows
	@SKIP_APT=1 scripts/setup.sh
	$(PIP_COMPILE) $(LOCK_UPGRADE) --extra dev --extra local -o requirements.lock pyproject.toml
	$(PIP_COMPILE) -c requirements.lock -o requirements-runtime.lock pyproject.toml

.PHONY: schema
schema: ## Regenerate docs/event.schema.json from the event models
	$(PY) -m streams.contract.schema > docs/event.schema.json

.PHONY: dashboards
dashboards: ## Regenerate grafana/dashboards/*.json from grafana/build.py
	$(PY) grafana/build.py

.PHONY: bench
bench: setup ## Throughput and latency benchmark on the local stack; writes bench-results.json
	$(BIN)/storepulse bench

.PHONY: stack-up
stack-up: setup ## Start the local stack (broker, redis, prometheus, alertmanager) in the background
	$(BIN)/storepulse stack up

.PHONY: stack-down
stack-down: ## Stop the local stack
	$(BIN)/storepulse stack down

.PHONY: up
up: ## docker compose: infra and app (needs Docker and a .env made from .env.example)
	docker compose --profile infra --profile app up -d

.PHONY: down
down: ## docker compose down
	docker compose --profile infra --profile app down

.PHONY: clean
clean: ## Remove caches and the local stack state (stops the stack first)
	-$(BIN)/storepulse stack down
	rm -rf .storepulse .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
