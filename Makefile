# Two commands: `make bench` (the benchmark) and `make test` (the test suite).
# Each creates .venv and installs the project (editable, with test extras) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATASET ?= kodak
OUT ?= results/$(notdir $(DATASET))
BENCH_ARGS ?=
REPORT_ARGS ?=

.PHONY: bench test perf venv clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

bench: $(STAMP)
	$(PY) -m bench run --dataset $(DATASET) --out $(OUT) $(BENCH_ARGS)
	$(PY) -m bench report $(OUT) $(REPORT_ARGS)

test: $(STAMP)
	$(PY) -m pytest

perf: $(STAMP)
	$(PY) -m bench.perf --dataset $(DATASET)

clean-venv:
	rm -rf $(VENV)
