# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Runs the main job on the embedded default: a generated sample store and a local catalog.
demo: $(STAMP)
	$(PY) -m sdoml_sql.demo demo-output

## Runs the whole test suite (the explorer's browser tests need Debian's chromium and chromium-driver).
test: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
	$(PY) -m pytest -n 2 --durations=15

clean:
	rm -rf $(VENV) demo-output .pytest_cache
