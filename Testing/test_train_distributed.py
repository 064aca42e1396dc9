"""The same `strokeseg-train train` under torchrun with 2 CPU processes (gloo) trains one model with DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from train_fixtures import tiny_config, write_synthetic_root

from StrokeSegLib.engine.model_file import load_model
from StrokeSegTrainLib.checkpoint import load_checkpoint


@pytest.mark.slow
def test_two_gloo_processes(tmp_path) -> None:
    root = write_synthetic_root(tmp_path / "isles")
    (tmp_path / "config.json").write_text(json.dumps(tiny_config(epochs=1, iterations_per_epoch=2).to_dict()))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "StrokeSegTrainLib.cli", "train", "--data", str(root), "--out", str(out),
               "--config", str(tmp_path / "config.json"), "--fold", "0", "--device", "cpu", "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    fold = out / "fold_0"
    state = load_checkpoint(fold / "checkpoint.pt")
    assert state["world_size"] == 2 and state["epoch"] == 1
    log = (fold / "train.log").read_text()
    assert "DDP: model replicas identical on 2 processes" in log
    assert log.count("epoch    1/1") == 1, "only rank 0 may log and write"
    assert done.stdout.count("epoch    1/1") == 1
    row = json.loads((fold / "history.json").read_text())[0]
    assert row["patches_per_second"] > 0
    load_model(fold / "model.safetensors")
