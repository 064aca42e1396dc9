"""Bundling a trained model under the default id: same weights, new id, verified checksum, found by the registry."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from StrokeSegLib.engine.model_file import load_model
from StrokeSegLib.engine.model_registry import list_models
from StrokeSegTrainLib.cli import main as strokeseg_train


def test_bundle_renames_keeps_weights_and_verifies(tmp_path: Path, tiny_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"mean": {"dice": 0.5}}))
    dest = tmp_path / "models"
    status = strokeseg_train(["bundle", "--model", str(tiny_model), "--id", "strokeseg-starter",
                              "--dest", str(dest), "--provenance", str(summary)])
    assert status == 0
    bundled = load_model(dest / "strokeseg-starter.safetensors")
    source = load_model(tiny_model)
    assert bundled.metadata.model_id == "strokeseg-starter"
    assert bundled.metadata.provenance["evaluation"] == {"mean": {"dice": 0.5}}
    assert bundled.metadata.provenance["bundled_from_sha256"] == source.sha256
    for name, tensor in source.network.state_dict().items():
        assert torch.equal(tensor, bundled.network.state_dict()[name])
    monkeypatch.setattr("StrokeSegLib.engine.model_registry.bundled_dir", lambda: dest)
    monkeypatch.setenv("STROKESEG_HOME", str(tmp_path / "home"))
    entries = {e.model_id: e for e in list_models()}
    assert entries["strokeseg-starter"].sha256_ok


def test_bundle_refuses_a_missing_model(tmp_path: Path) -> None:
    assert strokeseg_train(["bundle", "--model", str(tmp_path / "none.safetensors"), "--id", "x",
                            "--dest", str(tmp_path)]) == 2
