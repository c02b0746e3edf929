# One obvious way to run each thing. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACTS_DIR ?= $(CURDIR)/artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
export ARTIFACTS_DIR

LINTED := models app tests bench tools

.PHONY: install demo demo-experiment serve build-sim build-goodbooks test test-fast typecheck docker-test openapi lint fmt \
	bench-build bench-serve bench-memory bench-own-models bench-experiment bench-batch bench-ingest bench-soak bench-milvus bench-dask clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

# Every remedy of the paper on its simulation: the models fitted on transformed matrices and the model
# trained against cosine, beside the closed forms; evaluated on held-out data.
SIM_BUILD := --dataset simulation --out $(ARTIFACTS_DIR) --precompute-neighbours 100 --preprocess ips,standardized --train cosine-mf --evaluate

# Fit the paper's simulation once (if no version is published yet), then serve it.
demo: install
	@test -s $(ARTIFACTS_DIR)/CURRENT || $(PY) -m models.build $(SIM_BUILD)
	$(PY) -m app --host $(HOST) --port $(PORT)

# An online experiment end to end: simulated users click on what the API shows them (ground-truth
# probabilities), and the reports say which metric wins (bench/experiment_traffic.py).
demo-experiment: install
	@test -s $(ARTIFACTS_DIR)/CURRENT || $(PY) -m models.build $(SIM_BUILD)
	$(PY) bench/experiment_traffic.py --artifacts $(ARTIFACTS_DIR)

serve: install
	$(PY) -m app --host $(HOST) --port $(PORT)

build-sim: install
	$(PY) -m models.build $(SIM_BUILD)

build-goodbooks: install
	$(PY) -m models.build --dataset goodbooks --input ../shared/data/goodbooks --out $(ARTIFACTS_DIR) --k 64 --lambda-denoising 5000 --lambda-weight-decay 30 --precompute-neighbours 100 --train als --evaluate

# Everything but the Docker stack: lint, format check, type check, then every test.
test: install lint typecheck
	$(PY) -m pytest -q -m "not docker"

# The unit and job tests, in-process, in seconds (no server processes, no slow builds).
test-fast: install
	$(PY) -m pytest -q -m "not slow and not docker" tests/unit tests/job

typecheck: install
	$(PY) -m mypy

# The docker-compose stack end to end (tests/docker/test_stack.py): image build, offline job, API,
# a new version picked up without restart, teardown. Starts a private Docker engine for the run.
docker-test: install
	REQUIRE_DOCKER=1 ../shared/container/with-docker $(PY) -m pytest -q -s -m docker tests/docker

# Rewrite tests/openapi.json (the reviewed public contract) from the app, after a deliberate API change;
# review and commit the diff: tests/api/test_contract.py fails while the served schema differs from it.
openapi: install
	$(PY) tests/openapi_schema.py

lint: install
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

fmt: install
	$(PY) -m ruff format $(LINTED)
	$(PY) -m ruff check --fix $(LINTED)

bench-build: install
	$(PY) bench/build_vs_als.py

bench-ingest: install
	$(PY) bench/ingestion.py

bench-serve: install
	$(PY) bench/serve_vs_constant.py

bench-memory: install
	$(PY) bench/worker_memory.py

bench-own-models: install
	$(PY) bench/own_models_cost.py

bench-experiment: install
	$(PY) bench/experiment_overhead.py

bench-batch: install
	$(PY) bench/batch_queries.py

# /similar-items from FAISS, from the Milvus backend and from a direct pymilvus loop (bench/README.md#milvus).
bench-milvus: install
	$(PY) bench/milvus_vs_faiss.py

# The Dask engine at 2M, 8M and 32M interactions: step times and memory (docs/scale-out.md#cost-model).
bench-dask: install
	$(PY) bench/dask_scaling.py

# 10 minutes of load at 80 % of the measured maximum, a new version published every 30 s (bench/README.md#soak).
bench-soak: install
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
