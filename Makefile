# One obvious way to run each thing. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACTS_DIR ?= $(CURDIR)/artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
export ARTIFACTS_DIR

.PHONY: install demo serve build-sim build-goodbooks test docker-test openapi lint fmt bench-build bench-serve clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

# Fit the paper's simulation once (if no version is published yet), then serve it.
demo: install
	@test -s $(ARTIFACTS_DIR)/CURRENT || $(PY) -m models.build --dataset simulation --out $(ARTIFACTS_DIR) --precompute-neighbours 100
	$(PY) -m app --host $(HOST) --port $(PORT)

serve: install
	$(PY) -m app --host $(HOST) --port $(PORT)

build-sim: install
	$(PY) -m models.build --dataset simulation --out $(ARTIFACTS_DIR) --precompute-neighbours 100

build-goodbooks: install
	$(PY) -m models.build --dataset goodbooks --input ../shared/data/goodbooks --out $(ARTIFACTS_DIR) --k 64 --lambda-denoising 5000 --lambda-weight-decay 30 --precompute-neighbours 100

test: install
	$(PY) -m ruff check models app tests bench
	$(PY) -m pytest -q -m "not docker"

# The docker-compose stack end to end (tests/docker/test_stack.py): image build, offline job, API,
# a new version picked up without restart, teardown. Starts a private Docker engine for the run.
docker-test: install
	REQUIRE_DOCKER=1 ../shared/container/with-docker $(PY) -m pytest -q -s -m docker tests/docker

# Rewrite tests/openapi.json (the reviewed public contract) from the app, after a deliberate API change;
# review and commit the diff: tests/test_contract.py fails while the served schema differs from it.
openapi: install
	$(PY) tests/openapi_schema.py

lint: install
	$(PY) -m ruff check models app tests bench

fmt: install
	$(PY) -m ruff check --fix models app tests bench

bench-build: install
	$(PY) bench/build_vs_als.py

bench-serve: install
	$(PY) bench/serve_vs_constant.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
