"""Training configuration: partial JSON files override defaults; typos and impossible values are refused early."""
from __future__ import annotations

import json

import pytest

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegTrainLib.config import DEFAULT_PATCH_SIZE, TrainConfig, load_config


def test_defaults_are_the_documented_ones() -> None:
    config = load_config(None)
    assert config.patch_size == DEFAULT_PATCH_SIZE == (64, 96, 96)
    assert (config.loss.alpha, config.loss.beta, config.loss.gamma) == (0.25, 0.85, 2.0)
    assert config.foreground_fraction == 0.33 and config.num_folds == 5 and config.optim.scheduler == "plateau"


def test_partial_file_round_trip(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 7, "loss": {"bce_weight": 0.5}, "patch_size": [32, 64, 64],
                                "network": {"features": [8, 16, 32]}}))
    config = load_config(path)
    assert config.epochs == 7 and config.loss.bce_weight == 0.5 and config.loss.beta == 0.85
    assert config.patch_size == (32, 64, 64) and config.network.features == (8, 16, 32)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("content, message", [
    ({"epoch": 3}, "Unknown key"),
    ({"loss": {"alpah": 0.3}}, "config.loss"),
    ({"patch_size": [30, 64, 64]}, "divisible by 16"),
    ({"optim": {"scheduler": "cosine"}}, "plateau"),
    ({"foreground_fraction": 1.5}, "foreground_fraction"),
    ({"foreground_sampling": "component"}, "foreground_sampling"),
])
def test_bad_files_are_refused(tmp_path, content, message) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(StrokeSegError, match=message):
        load_config(path)


def test_yaml_and_broken_json_are_explained(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("epochs: 3\n")
    with pytest.raises(StrokeSegError, match="JSON"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.json").write_text("{epochs: 3")
    with pytest.raises(StrokeSegError, match="not valid JSON"):
        load_config(tmp_path / "c.json")
