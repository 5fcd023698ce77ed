# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The torch wheel installed first where none is present: 2.13.0 is the CPU build on disk here,
# and pinning it first keeps pip from pulling a multi-gigabyte CUDA build on a CPU machine.
TORCH  ?= torch==2.13.0

.PHONY: install run test test-integration test-fast lint format clean mutation fuzz-api

$(PY):
	$(PYTHON) -m venv $(VENV)

# --no-compile: pip byte-compiles every file it installs, torch's thousands included (half of a
# fresh install's 2.5 minutes here); Python compiles what is imported, once, when first imported.
# That needs Python allowed to write its byte-code cache: where the environment forbids it
# (PYTHONDONTWRITEBYTECODE=1, as on this machine), every process would compile torch and the
# rest again at import (about 10 s to import the API, 3.5 s from the cache), and the tests start
# hundreds of processes (API servers, workers, epoch writers, the CLI). The cache (__pycache__)
# is git-ignored.
unexport PYTHONDONTWRITEBYTECODE
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --no-compile "$(TORCH)"
	$(PY) -m pip install --no-compile -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# `glidepath up` applies the migrations itself before it serves. `make run PORT=8001` when
# 8000 is taken; `HOST=0.0.0.0` to listen beyond this machine.
HOST ?= 127.0.0.1
PORT ?= 8000

run: install
	$(BIN)/glidepath up --host $(HOST) --port $(PORT)

# Two pytest processes (pytest-xdist), each taking whole test files (and the files that share a
# session stack together: tests/conftest.py): module-scoped stacks stay shared within a file,
# and much of a test's time is waiting on a process it started.
# `test`: unit, API, database, migration, CLI and client tests, on the embedded default AND on
# PostgreSQL + Redis (+ SeaweedFS for S3), in-process (~5 min on 2 cores).
test: install
	$(BIN)/pytest -n 2 --dist loadfile --durations=20 -m "not integration"

# `test-integration`: real processes: `glidepath up`, API servers, Celery workers killed and
# restarted, PostgreSQL and Redis restarts, the dashboard in Chromium (~10 min on 2 cores).
test-integration: install
	$(BIN)/pytest -n 2 --dist loadfile --durations=20 -m integration

# Unit, API, database and client tests on the embedded default (SQLite + file-system broker):
# no PostgreSQL, no Redis, no spawned API or worker processes. About a minute.
test-fast: install
	$(BIN)/pytest -q -m "not postgres and not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Mutation testing (mutmut 3, [tool.mutmut] in pyproject.toml): the pure training core's
# decisions, split and range-test suggestion, and the run fences of the experiments repository,
# against the fast tests (tests/unit, tests/db on SQLite). Hypothesis runs derandomized.
MUTANTS := "service.training.decisions.*" "service.training.split.*" \
	"service.training.range_suggest.*" "service.experiments.repository.x__held__*" \
	$(foreach f,claim heartbeat fence release expired requeue_expired finish cancel,\
	  "service.experiments.repository.xǁExperimentRepositoryǁ$(f)__*")
MUTATION_CHILDREN ?= 2

mutation: install
	HYPOTHESIS_PROFILE=ci $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS) || true
	$(PY) scripts/mutation_score.py $(MUTANTS)

# schemathesis against a real `glidepath api` (embedded default, temp data dir): every check,
# the examples, coverage, fuzzing and stateful phases; fails on any failure (docs/deploy.md).
fuzz-api: install
	scripts/schemathesis.sh

clean:
	rm -rf .glidepath .pytest_cache .mypy_cache .ruff_cache
