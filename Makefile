# authgate: `make run` starts the server, `make test` runs every check, `make test-fast`
# every check but the slow tests (real server processes, browsers, the schemathesis run).
# Both create or update the virtual environment in .venv first and are idempotent.
# Every install takes its versions from constraints.txt (the tested set).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
PROJECT_FILES := pyproject.toml setup.py clients/python/pyproject.toml clients/python/setup.py constraints.txt
WHEELHOUSE ?= dist/wheelhouse
IMAGE ?= localhost/authgate:latest
CONTAINER ?= podman
# pytest-xdist workers for `make test`/`make test-fast` (`make test PYTEST_WORKERS=0`:
# one process, no xdist); tests/conftest.py keeps each file, and tests/browser and
# tests/client, on one worker, and gives each worker a Redis database of its own.
PYTEST_WORKERS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

.PHONY: run test test-fast pytest-fast lint typecheck pytest bench wheelhouse image lock test-sdk-lowest clean

run: $(RUNTIME_STAMP)
	$(BIN)/authgate serve

test: $(DEV_STAMP) lint typecheck pytest

test-fast: $(DEV_STAMP) lint typecheck pytest-fast

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_XDIST)

pytest-fast: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_XDIST) -m "not slow"

bench: $(DEV_STAMP)
	$(BIN)/python bench/run.py

# Wheels of authgate and authgate-sdk and of everything they need (constraints.txt),
# for an install without an index: the container image is built from them.
wheelhouse:
	scripts/build-wheelhouse $(WHEELHOUSE)

# The container image, built from a wheelhouse (BASE_IMAGE: any Debian-based image with
# python3 and its venv module; default python:3.11-slim-bookworm). CONTAINER=docker works too.
image:
	CONTAINER=$(CONTAINER) scripts/container-image --tag $(IMAGE) \
		$(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))

# The SDK's tests with the oldest releases its dependency ranges allow (CI runs it).
test-sdk-lowest:
	scripts/test-sdk-lowest

# Renew constraints.txt: the newest releases pyproject.toml's ranges allow, resolved in
# a scratch environment. Review the diff, then `make test`.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet --upgrade pip
	build/lock-venv/bin/pip install --quiet -e ./clients/python -e '.[dev]'
	{ sed -n '/^#/p;/^$$/q' constraints.txt; echo; \
	  build/lock-venv/bin/pip freeze --exclude-editable; echo; \
	  sed -n '/^# Kept by `make lock`/,$$p' constraints.txt; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf build/lock-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# authgate-sdk is installed from this tree too (clients/python, editable), never from
# an index: both editable installs point at src/.
# In a .venv made before authgate-sdk split off, pip writes authgate-sdk's
# authgate-client script and then removes it with the old authgate that owned it:
# reinstall authgate-sdk alone then.
$(RUNTIME_STAMP): $(PROJECT_FILES) | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ./clients/python -e .
	test -x $(BIN)/authgate-client || $(BIN)/pip install --quiet --no-deps --force-reinstall -e ./clients/python
	touch $@

$(DEV_STAMP): $(PROJECT_FILES) | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e './clients/python[guard,keyring]' -e '.[dev]'
	test -x $(BIN)/authgate-client || $(BIN)/pip install --quiet --no-deps --force-reinstall -e ./clients/python
	touch $@ $(RUNTIME_STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
