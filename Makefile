# Two commands: `make bench` (the benchmark) and `make test` (the test suite); `make figure4` rebuilds the report
# with the Conventional vs End2End view's published curves; `make lint` checks style,
# types and the import graph (ruff, mypy, import-linter); `make docs` builds the documentation site into site/.
# Each creates .venv and installs the project (editable, with test extras) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATASET ?= kodak
OUT ?= results/$(notdir $(DATASET))
TARGETS ?= 0.06,0.12,0.25,0.5,0.75
CROP_BPP ?= 0.25
CROP_IMAGE ?= $(if $(filter kodak,$(DATASET)),kodim23,)
BENCH_ARGS ?=
REPORT_ARGS ?=
# Published bitstreams measured with the others (codec published:dir=...); left out, with one line, when absent.
# PUBLISHED= (empty) leaves them out; PUBLISHED=DIR measures another folder.
PUBLISHED ?= ../shared/published/coolchic-3.4.1-kodak

# make train: one checkpoint per λ (CompressAI's λ for qualities 1-4) into $(CKPT)/$(ARCH)/,
# usable with BENCH_CHECKPOINTS=$(CKPT).
ARCH ?= bmshj2018-hyperprior
LAMBDAS ?= 0.0018 0.0035 0.0067 0.0130
DATA ?= $(if $(wildcard ../shared/datasets/train),../shared/datasets/train,datasets/train)
CKPT ?= checkpoints
MINUTES ?= 60
TRAIN_ARGS ?=

.PHONY: bench figure4 test test-fast lint docs perf train venv clean-venv vvc coolchic

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

bench: $(STAMP)
	$(PY) -m bench run --dataset $(DATASET) --out $(OUT) --target-bpp $(TARGETS) \
		$(foreach d,$(PUBLISHED),--published $(d)) $(BENCH_ARGS)
	$(PY) -m bench crops $(OUT) --bpp $(CROP_BPP) $(if $(CROP_IMAGE),--image $(CROP_IMAGE),)
	$(PY) -m bench figure4 $(OUT) $(REPORT_ARGS)

# The report of $(OUT) again, with the Conventional vs End2End view's published curves (make bench ends with it).
figure4: $(STAMP)
	$(PY) -m bench figure4 $(OUT) $(REPORT_ARGS)

test: $(STAMP)
	$(PY) -m pytest

# The tests not marked slow: quick feedback while editing (under a minute on 2 cores).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The documentation site (MkDocs, Material theme) into site/, offline; --strict fails on broken links and
# warnings. The CLI reference page is generated from bench.cli.build_parser() while it builds (docs/hooks.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(PY) -m ruff check bench codecs tests docs
	$(PY) -m mypy
	PYTHONPATH=. $(VENV)/bin/lint-imports

train: $(STAMP)
	for l in $(LAMBDAS); do \
		$(PY) -m bench train --arch $(ARCH) --lambda $$l --data $(DATA) --out $(CKPT)/$(ARCH) --minutes $(MINUTES) $(TRAIN_ARGS) || exit 1; \
	done

perf: $(STAMP)
	$(PY) -m bench.cli.perf --dataset $(DATASET)

# make vvc / make coolchic: build vvenc+vvdec / Cool-chic's decoder from source (VVC_SRC / COOLCHIC_SRC, else
# ../shared/src) once into the per-user tool folder ($$BENCH_TOOLS, default ~/.cache/codec-bench/tools).
vvc: $(STAMP)
	$(PY) -m bench tools build vvc

coolchic: $(STAMP)
	$(PY) -m bench tools build coolchic

clean-venv:
	rm -rf $(VENV)
