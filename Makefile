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

# Retrains the bundled starter ensemble from scratch, on generated data only (never on real scans): the first member
# (starter-stage5) in the five stages of StrokeSegTrain/Resources/recipes/starter.json (about 6 h on 2 CPU cores), the
# second (starter-v3-template) fine-tuned from it by recipes/starter_template_member.json (about 70 min), then the two
# averaged into output/strokeseg-starter.safetensors (the default model is not replaced; `strokeseg models import`
# installs it). `make starter-model` again continues where it stopped.
STARTER_MEMBERS := output/starter-members
starter-model: $(STAMP)
	$(PY) -m StrokeSegTrainLib.cli recipe StrokeSegTrain/Resources/recipes/starter.json --out output/starter --resume \
		--workers 2 --quiet --bundle --bundle-dest $(STARTER_MEMBERS)
	$(PY) -m StrokeSegTrainLib.cli recipe StrokeSegTrain/Resources/recipes/starter_template_member.json \
		--out output/starter-template --init-from $(STARTER_MEMBERS)/starter-stage5.safetensors --resume --workers 2 \
		--quiet --bundle --bundle-dest $(STARTER_MEMBERS)
	$(PY) -m StrokeSegLib.cli models ensemble $(STARTER_MEMBERS)/starter-stage5.safetensors \
		$(STARTER_MEMBERS)/starter-v3-template.safetensors --out output/strokeseg-starter.safetensors \
		--name strokeseg-starter

clean:
	rm -rf $(VENV) output .pytest_cache
