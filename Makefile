# `make serve` runs the fake; `make test` runs every check. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-server
ARGS ?=

.PHONY: serve test lint typecheck unit e2e bench screenshots image image-test clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing mockserver and its test tools into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# The server alone: only its own dependencies, so a first start is quick.
$(SERVE_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing mockserver into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

serve: $(SERVE_STAMP)
	$(BIN)/mockserver serve $(ARGS)

# The container image from the Dockerfile: docker where an engine runs, else podman on a local base.
image: $(SERVE_STAMP)
	$(BIN)/python scripts/image.py build

# Build the image and run it as a user would: health check, a clip, a restart on /data, the control token.
image-test: $(STAMP)
	$(BIN)/pytest -q tests/test_image.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/vulture mockserver contract --min-confidence 80

typecheck: $(STAMP)
	$(BIN)/mypy

# The fast set while you work (no real servers, browsers or subprocesses, nothing slow): under a minute.
unit: $(STAMP)
	$(BIN)/pytest -m "not e2e and not slow" -q $(ARGS)

# What starts real parts: uvicorn on loopback, redis-server, Chromium, Node.
e2e: $(STAMP)
	$(BIN)/pytest -m e2e $(ARGS)

# Everything: lint, types, every test.
test: lint typecheck
	$(BIN)/pytest $(ARGS)

# The README's pictures, taken by the dashboard's browser tests.
screenshots: $(STAMP)
	MOCKSERVER_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/web/test_dashboard.py

# Not part of `make test`: figures for this machine, printed as ratios against a bare endpoint.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "make bench needs wrk (apt-get install wrk)"; exit 2; }
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
