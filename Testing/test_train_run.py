"""End-to-end training on tiny synthetic cases: train, validate in native space, export, reload, segment; resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from train_fixtures import CancelInEpoch, single_thread, tiny_config, write_synthetic_root  # noqa: F401

from StrokeSegLib.common.errors import CancelledError, StrokeSegError
from StrokeSegLib.engine.model_file import load_model
from StrokeSegLib.engine.segmentation import SegmentOptions, segment_files
from StrokeSegLib.evaluation.scoring import CSV_COLUMNS
from StrokeSegTrainLib.checkpoint import load_checkpoint
from StrokeSegTrainLib.history import History
from StrokeSegTrainLib.splits import patient_id
from StrokeSegTrainLib.trainer import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_synthetic_root(tmp_path_factory.mktemp("isles"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_tiny_run_trains_validates_exports_and_reloads(data_root, cache_dir, tmp_path) -> None:
    out = tmp_path / "run"
    result = train(tiny_config(), data_root, out, fold=1, device="cpu", cache_dir=cache_dir)
    fold = out / "fold_1"
    assert result.fold_dir == fold and len(result.history) == 2
    for name in ("history.csv", "history.json", "curves.png", "train.log", "checkpoint.pt", "best.pt", "DONE"):
        assert (fold / name).is_file(), name
    rows = json.loads((fold / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["train_loss"]) for r in rows)
    assert {"val_dice", "val_loss", "lr", "val_lesion_f1"} <= set(rows[0])

    splits = json.loads((out / "splits.json").read_text())["folds"]
    val_ids = splits[1]["val"]
    assert {patient_id(c) for c in val_ids}.isdisjoint({patient_id(c) for c in splits[1]["train"]})
    metrics = (fold / "validation" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == ",".join(CSV_COLUMNS) and len(metrics) == 1 + len(val_ids)
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert summary["n_cases"] == len(val_ids)

    state = load_checkpoint(fold / "checkpoint.pt")  # weights_only=True inside
    assert state["epoch"] == 2 and {"optimizer", "scheduler", "sampler", "rng", "history"} <= set(state)

    loaded = load_model(result.model_path)
    assert loaded.metadata.provenance["fold"] == 1
    assert loaded.metadata.provenance["val_cases"] == val_ids
    assert loaded.metadata.patch_size == (16, 16, 16) and not loaded.metadata.network_config.deep_supervision
    # The preprocessing the model was trained with travels in its file, so deployment normalises the ADC alike.
    assert loaded.metadata.preprocess.adc_normalization == "physical"
    best = load_checkpoint(fold / "best.pt")["model"]
    for name, tensor in loaded.network.state_dict().items():
        assert torch.equal(tensor, best[name]), name

    # Validation predicted exactly what `strokeseg segment` with the exported model predicts.
    case_id = val_ids[0]
    subject, session = case_id.split("_")
    case_dir = data_root / subject / session / "dwi"
    seg = segment_files(case_dir / f"{case_id}_dwi.nii.gz", case_dir / f"{case_id}_adc.nii.gz",
                        model=result.model_path, options=SegmentOptions(device="cpu"))
    validated = sitk.ReadImage(str(fold / "validation" / "predictions" / f"{case_id}_msk.nii.gz"))
    assert seg.mask.GetSize() == validated.GetSize()
    assert np.array_equal(sitk.GetArrayFromImage(seg.mask), sitk.GetArrayFromImage(validated))
    assert sitk.GetArrayFromImage(validated).sum() > 0, "an empty mask would make the comparison weak"

    with pytest.raises(StrokeSegError, match="--resume"):
        train(tiny_config(), data_root, out, fold=1, device="cpu", cache_dir=cache_dir)


def test_killed_and_resumed_run_equals_uninterrupted_run(data_root, cache_dir, tmp_path) -> None:
    config = tiny_config(epochs=4, validate_every=2)
    straight = train(config, data_root, tmp_path / "a", fold=0, device="cpu", cache_dir=cache_dir)

    killer = CancelInEpoch(epoch=3, epochs=4)
    with pytest.raises(CancelledError):
        train(config, data_root, tmp_path / "b", 0, killer, killer, device="cpu", cache_dir=cache_dir)
    assert load_checkpoint(tmp_path / "b" / "fold_0" / "checkpoint.pt")["epoch"] == 2
    resumed = train(config, data_root, tmp_path / "b", fold=0, device="cpu", cache_dir=cache_dir, resume=True)

    assert json.dumps(straight.history.without_timing()) == json.dumps(resumed.history.without_timing())
    assert len(History(json.loads((tmp_path / "b" / "fold_0" / "history.json").read_text()))) == 4
    a = load_checkpoint(tmp_path / "a" / "fold_0" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "fold_0" / "checkpoint.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]

    changed = config.with_overrides(batch_size=3)
    with pytest.raises(StrokeSegError, match="batch_size"):
        train(changed, data_root, tmp_path / "b", fold=0, device="cpu", cache_dir=cache_dir, resume=True)


def test_weight_average_of_the_last_epochs_is_validated_and_exported(data_root, cache_dir, tmp_path) -> None:
    """With ``average_last_epochs=2`` of 3, the exported network is the mean of the weights at the end of epochs 2
    and 3 of the very same training trajectory (averaging must not change training itself)."""
    plain = tiny_config(epochs=3, validate_every=3)
    killer = CancelInEpoch(epoch=3, epochs=3)
    with pytest.raises(CancelledError):
        train(plain, data_root, tmp_path / "a", 0, killer, killer, device="cpu", cache_dir=cache_dir)
    after_2 = load_checkpoint(tmp_path / "a" / "fold_0" / "checkpoint.pt")["model"]
    train(plain, data_root, tmp_path / "a", fold=0, device="cpu", cache_dir=cache_dir, resume=True)
    after_3 = load_checkpoint(tmp_path / "a" / "fold_0" / "checkpoint.pt")["model"]

    averaged = train(plain.with_overrides(average_last_epochs=2), data_root, tmp_path / "b", fold=0, device="cpu",
                     cache_dir=cache_dir)
    exported = load_model(averaged.model_path).network.state_dict()
    assert averaged.best_epoch == 3
    differs = False
    for name, tensor in exported.items():
        expected = (after_2[name].float() + after_3[name].float()) / 2
        torch.testing.assert_close(tensor.float(), expected, rtol=1e-5, atol=1e-6)
        differs |= not torch.equal(after_2[name], after_3[name])
    assert differs, "epochs 2 and 3 had the same weights; the test would prove nothing"


def test_weight_average_state_round_trips() -> None:
    from StrokeSegTrainLib.weight_average import WeightAverage

    average = WeightAverage()
    for k in range(1, 4):
        average.update({"w": torch.full((2,), float(k)), "steps": torch.tensor(k)})
    again = WeightAverage.from_state(average.state())
    like = {"w": torch.zeros(2, dtype=torch.float64), "steps": torch.tensor(0)}
    out = again.averaged(like)
    assert out["w"].dtype == torch.float64 and torch.equal(out["w"], torch.full((2,), 2.0, dtype=torch.float64))
    assert int(out["steps"]) == 3  # non-floating entries follow the latest update
