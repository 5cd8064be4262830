# Two entry points: `make demo` and `make test`. Both create .venv if needed and install into it.
# On Linux x86_64 torch/torchvision are pinned to releases that a fresh venv can take from
# a local wheel cache where one is configured; the package metadata itself keeps a range.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARCH := $(shell uname -s)-$(shell uname -m)
TORCH_PINS_Linux-x86_64 := torch==2.14.1 torchvision==0.29.1
TORCH_PINS := $(TORCH_PINS_$(ARCH))
DEMO_DIR ?= .cache/demo

.PHONY: install install-dev demo test test-all bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(VENV)/bin/activate
	@if [ -n "$(TORCH_PINS)" ]; then $(PIP) install -q $(TORCH_PINS); fi
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Index real public-domain clip art (Debian's openclipart-png, fetched and cached on first
# run), then search it by text and by example image.
demo: install
	$(PY) tools/demo.py --workdir $(DEMO_DIR)

test: install-dev
	$(PY) -m pytest -q

test-all: install-dev
	$(PY) -m pytest -q -m ""

bench: install-dev
	$(PY) benchmarks/bench_index.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
