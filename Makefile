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
# The browser tests drive Debian's chromium (never a Playwright download). Installed with apt
# as a user would: directly as root, else through sudo where there is one.
SUDO := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && echo sudo)
BROWSER_PACKAGES := chromium fonts-dejavu-core fonts-noto-color-emoji

.PHONY: install install-dev browser demo serve lint test test-all fuzz bench bench-serve clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(VENV)/bin/activate
	@if [ -n "$(TORCH_PINS)" ]; then $(PIP) install -q $(TORCH_PINS); fi
	@touch $@

# The demo clusters and maps its collection, and finds the people in a few photos: the explore and
# faces extras.
$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[explore,faces]'
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

browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || [ -n "$(SUDO)" ]; }; then \
		echo "installing $(BROWSER_PACKAGES) with apt-get (for the browser tests)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			--no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	else echo "note: chromium is not installed and apt-get is not usable here; the browser tests will skip"; fi

# The import-layer contract (pyproject.toml, [tool.importlinter]) first: it takes seconds.
lint: install-dev
	$(VENV)/bin/lint-imports

test: install-dev browser lint
	$(PY) -m pytest -q

test-all: install-dev browser lint
	$(PY) -m pytest -q -m ""

# schemathesis against the live OpenAPI spec, with more examples than the default suite's run.
fuzz: install-dev
	LOOKALIKE_FUZZ_EXAMPLES=300 $(PY) -m pytest -q tests/server/test_fuzz.py

# Serve the demo collection (built by `make demo`) on http://127.0.0.1:8000.
serve: install
	$(PY) -m pip install -q -e '.[server]'
	$(PY) -m lookalike.cli serve --collection $(DEMO_DIR)/demo.lkl

bench: install-dev
	$(PY) benchmarks/bench_index.py

bench-serve: install-dev
	$(PY) benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
