# Every target bootstraps .venv when it is missing (or when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARCH := $(shell uname -m)
# The torch / torchvision pair that pip finds on this kind of machine's disk.
ifeq ($(ARCH),x86_64)
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
else
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
endif

.PHONY: install train test bench lint docs format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev,sweep,report]' $(TORCH_PINS)
	touch $(STAMP)

## Train on the embedded default data set (scikit-learn digits). Extra overrides: make train ARGS="smoothing=gamma smoothing.gamma=0.8"
train: $(STAMP)
	$(PY) train.py $(ARGS)

## The test suite (CPU, no network): TEST_WORKERS pytest-xdist processes, each with one torch thread
## (tests/conftest.py); one more than the cores, since many tests wait on processes of their own (DDP ranks,
## killed runs, SLURM jobs): on two cores, three workers took 347 s where two took 365 s.
## PYTHONDONTWRITEBYTECODE emptied: the workers and the tests' processes keep the compiled (and assertion-
## rewritten) modules in __pycache__/ instead of compiling them again each time.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(ARGS)

## Benchmarks: results in bench/results/ and bench/RESULTS.md.
bench: $(STAMP)
	$(PY) bench/run_all.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## The docs site (mkdocs.yml, docs/), warnings as errors: open site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache site
