# Two commands on a fresh machine: `make demo` (main job on a built-in default) and `make test` (the suite).
# Both create the virtual environment first; torch is pinned to the local CPU build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-v1

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml requirements-ci.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-ci.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m StrokeSegLib.demo --out output/demo

test: $(STAMP)
	$(PY) -m pytest -q Testing

bench: $(STAMP)
	$(PY) bench/inference.py

clean:
	rm -rf $(VENV) output .pytest_cache
