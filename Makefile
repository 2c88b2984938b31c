# pdfqa: every command a person or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch's CPU wheel must be installed before anything that depends on torch: an unpinned torch
# would pull several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: help install run worker migrate test test-fast test-llm lint format typecheck bench eval clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install pdfqa with its dependencies

run: $(STAMP) ## Run the embedded default: API + web chat + worker, local Qdrant under ./data
	$(BIN)/pdfqa serve

worker: $(STAMP) ## Run a separate arq worker (needs a Qdrant server: PDFQA_QDRANT_URL)
	$(BIN)/arq pdfqa.jobs.worker.WorkerSettings

migrate: $(STAMP) ## Create the database if missing and apply migrations
	$(BIN)/pdfqa migrate

test: $(STAMP) ## Run the whole test suite (needs PostgreSQL and Redis)
	$(BIN)/pytest

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest tests/unit

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

typecheck: $(STAMP) ## mypy --strict over src
	$(BIN)/mypy

bench: $(STAMP) ## Ingestion benchmarks on the 10-K filings (prints figures)
	$(BIN)/python -m bench.ingest

clean: ## Remove caches (keeps .venv and ./data)
	rm -rf .mypy_cache .ruff_cache .pytest_cache
