# Two commands on a fresh machine: `make demo` (main job on a built-in default) and `make test` (ruff, then the suite).
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
	$(PY) -m ruff check .
	$(PY) -m pytest -q Testing

bench: $(STAMP)
	$(PY) bench/inference.py

# Retrains the bundled starter model from scratch, on generated data only (never on real scans), in five stages:
# 1. 120 cases (seed 2026, without the receive-coil profile, bright cortex and eddy currents, which the generator
#    gained after this stage was fixed), trained from random weights (about 95 min on 2 CPU cores);
# 2. 240 new cases (seed 2027, half of them with the receive-coil profile, none with bright cortex), fine-tuned from
#    stage 1 (about 70 min);
# 3. 360 new cases (seed 2028, half with the receive-coil profile, half with patches of bright normal cortex),
#    fine-tuned from stage 2 (about 70 min);
# 4. 360 new cases (seed 2029, the generator's defaults: receive coil, bright cortex and eddy-current
#    misregistration of the b=0 image, each in half), fine-tuned from stage 3 (about 70 min);
# 5. 360 new cases (seed 2032, the defaults plus mirror-symmetric bright cortex with mildly low ADC in half),
#    fine-tuned from stage 4 (about 65 min).
# Each stage is evaluated on its own held-out generated cases; stage 5's model is bundled as
# StrokeSegLib/models/strokeseg-starter.safetensors.
STARTER := output/starter
# Stages 1-5 were generated before real library lesions and ADCs on other grids existed; this reproduces them.
PROCEDURAL := StrokeSegTrain/Resources/synth_procedural.json
starter-model: $(STAMP)
	$(PY) -m StrokeSegTrainLib.cli synth --config $(PROCEDURAL) --out $(STARTER)/synth1 --cases 120 --seed 2026 \
		--p-receive-coil 0 --p-bright-cortex 0 --p-eddy-misregistration 0 --workers 2 --quiet
	$(PY) -m StrokeSegTrainLib.cli train --data $(STARTER)/synth1 --out $(STARTER)/stage1 --fold 0 \
		--config StrokeSegTrain/Resources/starter_config.json --quiet
	$(PY) -m StrokeSegTrainLib.cli synth --config $(PROCEDURAL) --out $(STARTER)/synth2 --cases 240 --seed 2027 \
		--p-bright-cortex 0 --p-eddy-misregistration 0 --workers 2 --quiet
	$(PY) -m StrokeSegTrainLib.cli train --data $(STARTER)/synth2 --out $(STARTER)/stage2 --fold 0 \
		--config StrokeSegTrain/Resources/starter_finetune_config.json \
		--init-from $(STARTER)/stage1/fold_0/model.safetensors --quiet
	$(PY) -m StrokeSegTrainLib.cli synth --config $(PROCEDURAL) --out $(STARTER)/synth3 --cases 360 --seed 2028 \
		--p-eddy-misregistration 0 --workers 2 --quiet
	$(PY) -m StrokeSegTrainLib.cli train --data $(STARTER)/synth3 --out $(STARTER)/stage3 --fold 0 \
		--config StrokeSegTrain/Resources/starter_finetune_config.json \
		--init-from $(STARTER)/stage2/fold_0/model.safetensors --quiet
	$(PY) -m StrokeSegTrainLib.cli synth --config $(PROCEDURAL) --out $(STARTER)/synth4 --cases 360 --seed 2029 --workers 2 --quiet
	$(PY) -m StrokeSegTrainLib.cli train --data $(STARTER)/synth4 --out $(STARTER)/stage4 --fold 0 \
		--config StrokeSegTrain/Resources/starter_finetune_config.json \
		--init-from $(STARTER)/stage3/fold_0/model.safetensors --quiet
	$(PY) -m StrokeSegTrainLib.cli synth --config $(PROCEDURAL) --out $(STARTER)/synth5 --cases 360 --seed 2032 --p-symmetric-cortex 0.5 \
		--workers 2 --quiet
	$(PY) -m StrokeSegTrainLib.cli train --data $(STARTER)/synth5 --out $(STARTER)/stage5 --fold 0 \
		--config StrokeSegTrain/Resources/starter_finetune_config.json \
		--init-from $(STARTER)/stage4/fold_0/model.safetensors --quiet
	$(PY) -m StrokeSegTrainLib.cli bundle --model $(STARTER)/stage5/fold_0/model.safetensors --id strokeseg-starter \
		--provenance $(STARTER)/stage5/fold_0/validation/summary.json

clean:
	rm -rf $(VENV) output .pytest_cache
