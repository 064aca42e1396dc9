# Two commands on a fresh machine: `make demo` (main job on a built-in default) and `make test` (ruff, mypy, then the
# suite).
# Both create the virtual environment first; torch is pinned to the local CPU build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-v1

.PHONY: demo test venv bench clean starter-model

$(STAMP): pyproject.toml requirements-ci.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-ci.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m StrokeSegLib.apps.demo --out output/demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q Testing

bench: $(STAMP)
	$(PY) bench/inference.py

# Retrains the first member of the bundled starter ensemble (starter-stage5) from scratch, on generated data only
# (never on real scans), in the five stages of StrokeSegTrain/Resources/recipes/starter.json (about 6 h on 2 CPU
# cores): stage 1 from random weights, each later stage fine-tuned from the one before on new cases. The result is
# output/starter/stage5/fold_0/model.safetensors (the default model is not replaced); the second member and the
# ensemble are made as docs/experiments/starter-v2/RESULTS_ensemble.md says. `make starter-model` again continues.
starter-model: $(STAMP)
	$(PY) -m StrokeSegTrainLib.cli recipe StrokeSegTrain/Resources/recipes/starter.json --out output/starter --resume --workers 2 --quiet

clean:
	rm -rf $(VENV) output .pytest_cache
