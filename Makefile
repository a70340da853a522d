# switchboard: `make run` serves the gateway locally, `make test` runs every check.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

# The local gateway key `make run` accepts unless you set your own.
SWITCHBOARD_API_KEYS ?= sb-local-dev
SWITCHBOARD_ADMIN_KEYS ?= sb-local-admin

SAM_VENV ?= .venv-sam
SAM    := $(SAM_VENV)/bin/sam
# SAM and cfn-lint run offline; they still want a region and no telemetry.
SAM_ENV := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} SAM_CLI_TELEMETRY=0

.PHONY: run test lint validate build deploy bench soak clean help

help:
	@echo "make run    serve the gateway on http://127.0.0.1:$(PORT)/v1 (PORT overrides)"
	@echo "make test   lint and run every test"
	@echo "make build  sam build (function and dependency layer)"
	@echo "make deploy sam deploy (CONFIG_ENV=prod for the prod environment in samconfig.toml)"
	@echo "make bench  measure the gateway's overhead"
	@echo "make soak   250 concurrent streams x 8 waves with injected faults: nothing lost, memory flat"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local]'
	@touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	@touch $@

# aws-sam-cli pins its own versions of boto3 and friends, so it gets a virtualenv of its own.
$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip --disable-pip-version-check --quiet install 'aws-sam-cli>=1.130'

run: $(VENV)/.run-deps
	SWITCHBOARD_API_KEYS='$(SWITCHBOARD_API_KEYS)' SWITCHBOARD_ADMIN_KEYS='$(SWITCHBOARD_ADMIN_KEYS)' \
		$(BIN)/switchboard serve --port $(PORT)

# ruff; who may import whom (the layers of ../shared/DESIGN.md, [tool.importlinter] in pyproject.toml); the types.
lint: $(VENV)/.test-deps
	$(BIN)/ruff check handler tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

validate: $(VENV)/.test-deps $(SAM)
	$(SAM_ENV) $(BIN)/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml

# The official Node SDK, pinned by tests/node/package-lock.json. npm ci writes
# node_modules/.package-lock.json, so this reinstalls only when the lock changes.
NODE_TESTS := tests/node
$(NODE_TESTS)/node_modules/.package-lock.json: $(NODE_TESTS)/package-lock.json
	npm ci --prefix $(NODE_TESTS)

test: lint validate $(NODE_TESTS)/node_modules/.package-lock.json
	SWITCHBOARD_SAM=$(SAM) $(BIN)/python -m pytest

build: $(SAM)
	$(SAM_ENV) $(SAM) build

bench: $(VENV)/.test-deps $(SAM)
	$(BIN)/python -m bench.run

soak: $(VENV)/.test-deps
	$(BIN)/python -m bench.soak --streams 250 --waves 8 --json bench/results/soak-latest.json

deploy: build
	$(SAM_ENV) $(SAM) deploy $(if $(CONFIG_ENV),--config-env $(CONFIG_ENV))

clean:
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .ruff_cache .aws-sam $(NODE_TESTS)/node_modules
