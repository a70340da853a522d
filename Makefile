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

.PHONY: run test lint unit bench clean help

help:
	@echo "make run    serve the gateway on http://127.0.0.1:$(PORT)/v1 (PORT overrides)"
	@echo "make test   lint and run every test"
	@echo "make bench  measure the gateway's overhead"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[local]'
	@touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	@touch $@

run: $(VENV)/.run-deps
	SWITCHBOARD_API_KEYS='$(SWITCHBOARD_API_KEYS)' SWITCHBOARD_ADMIN_KEYS='$(SWITCHBOARD_ADMIN_KEYS)' \
		$(BIN)/switchboard serve --port $(PORT)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check handler tests

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .aws-sam
