# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The newest Python the project supports, for the second test run: python3.13 on PATH, else pyenv's.
PYTHON_NEWEST ?= $(shell for p in python3.13 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -1); do "$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
VENV_NEWEST ?= .venv313

.PHONY: demo test test-oldest test-newest browser-tools screenshots install clean

# The demo needs the package alone; the tests need the test extra (pytest, emulators, the CPU torch).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

$(VENV_NEWEST)/.installed-test: pyproject.toml
	@test -n "$(PYTHON_NEWEST)" || { echo "make test: no Python 3.13 found (set PYTHON_NEWEST=/path/to/python3.13)"; exit 1; }
	$(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_NEWEST)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed-test

## Runs the main job on the embedded default: a generated sample store and a local catalog.
demo: $(VENV)/.installed
	$(PY) -m sdoml_sql.demo demo-output

## Runs the whole test suite on the oldest (3.11, .venv) and the newest (3.13, .venv313) Python supported
## (the explorer's browser tests need Debian's chromium and chromium-driver).
test: test-oldest test-newest

browser-tools:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

test-oldest: $(VENV)/.installed-test browser-tools
	$(PY) -m pytest -n 2 --durations=15

test-newest: $(VENV_NEWEST)/.installed-test browser-tools
	$(VENV_NEWEST)/bin/python -m pytest -n 2 --durations=15

## Renews the README's explorer screenshots (docs/images/explorer-*.png); the tests alone write them to a tmp dir.
screenshots: $(VENV)/.installed-test browser-tools
	SDOML_TEST_SCREENSHOTS=docs/images $(PY) -m pytest -n 0 -p no:randomly tests/test_explorer_browser.py

clean:
	rm -rf $(VENV) $(VENV_NEWEST) demo-output .pytest_cache
