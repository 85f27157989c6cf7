# Vigatra developer entry points. The README's Quick start is `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TOOLS := .tools
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck contracts pytest venv dev-venv test-tools lock bundle clean bench openapi

$(VENV)/.runtime: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

## The main job: the appliance with simulators and seeded data on http://127.0.0.1:8080/login
demo: $(VENV)/.runtime
	$(VENV)/bin/vigatra demo $(if $(PORT),--port $(PORT)) $(DEMO_ARGS)

## Lint, types, layer contracts and the whole suite (SQLite + PostgreSQL + browser + TLS + HSM + EVM).
test: $(VENV)/.dev test-tools lint typecheck contracts pytest

test-tools:
	@packaging/dev/install-test-tools.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check appliance tests bench packaging

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

contracts: $(VENV)/.dev
	$(VENV)/bin/lint-imports

pytest: $(VENV)/.dev
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## offline-wheels/requirements.lock: every runtime dependency pinned with hashes.
lock: $(VENV)/.dev
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras \
		--allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
		--output-file=offline-wheels/requirements.lock pyproject.toml

## docs/openapi.json: the API's published contract, generated from the routes and their schemas.
openapi: $(VENV)/.dev
	$(PY) -m tests.support.openapi docs/openapi.json

## The signed offline release for air-gapped installs (bundles per platform, SBOMs, install.sh).
## RELEASE_KEY: the release's Ed25519 key; without one, a development key is made (never ship with it).
## BUNDLE_ARGS: e.g. --all-targets (CPython 3.11-3.13 on x86_64 and aarch64).
RELEASE_KEY ?= .release-key/vigatra-release.key
BUNDLE_ARGS ?=
bundle: $(VENV)/.dev
	@test -f $(RELEASE_KEY) || { mkdir -p $(dir $(RELEASE_KEY)) && \
		$(PY) packaging/release_sign.py keygen --secret-key $(RELEASE_KEY) --public-key $(RELEASE_KEY:.key=.pub) && \
		echo "made a DEVELOPMENT release key: customers pin the real one (install.sh --trust-key)"; }
	packaging/build-bundle.sh --sign-key $(RELEASE_KEY) $(BUNDLE_ARGS)

bench: $(VENV)/.dev
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
