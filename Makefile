# Two commands on a fresh machine: `make demo` (main job on a built-in default) and `make test` (the suite).
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
	$(PY) -m StrokeSegLib.demo --out output/demo

test: $(STAMP)
	$(PY) -m pytest -q Testing

bench: $(STAMP)
	$(PY) bench/inference.py

# Retrains the bundled starter model from scratch, on generated data only (never on real scans), then evaluates it on
# held-out generated cases (the training run's validation fold) and bundles it as StrokeSegLib/models/strokeseg-starter.
STARTER := output/starter
starter-model: $(STAMP)
	$(PY) -m StrokeSegTrainLib.cli synth --out $(STARTER)/synth --cases 120 --seed 2026 --workers 2 --quiet
	$(PY) -m StrokeSegTrainLib.cli train --data $(STARTER)/synth --out $(STARTER)/run --fold 0 \
		--config StrokeSegTrain/Resources/starter_config.json --quiet
	$(PY) -m StrokeSegTrainLib.cli bundle --model $(STARTER)/run/fold_0/model.safetensors --id strokeseg-starter \
		--provenance $(STARTER)/run/fold_0/validation/summary.json

clean:
	rm -rf $(VENV) output .pytest_cache
