"""`strokeseg models` and `strokeseg evaluate` as a user runs them: exit codes and what lands on disk."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
from StrokeSegLib.cli import main as strokeseg
from StrokeSegLib.engine.model_file import read_metadata, save_model
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig


@pytest.fixture()
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STROKESEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_models_import_list_verify_and_detect_tampering(
    user_home: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert strokeseg(["models", "import", str(tiny_model)]) == 0
    assert strokeseg(["models"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-test" in listing and "checksum ok" in listing
    assert strokeseg(["models", "verify"]) == 0
    # Importing the same file again is harmless; a different file under the same id needs --replace.
    assert strokeseg(["models", "import", str(tiny_model)]) == 0
    other = tmp_path / "other.safetensors"
    network = AttentionUNet3D(NetworkConfig(features=(4, 8, 16)))
    save_model(other, network, read_metadata(tiny_model))
    assert strokeseg(["models", "import", str(other)]) == 2
    assert strokeseg(["models", "import", str(other), "--replace"]) == 0
    installed = next(user_home.rglob("tiny-test.safetensors"))
    data = bytearray(installed.read_bytes())
    data[-1] ^= 0xFF  # flip a weight bit: the checksum must notice
    installed.write_bytes(bytes(data))
    capsys.readouterr()
    assert strokeseg(["models", "verify"]) == 1
    assert "BAD" in capsys.readouterr().out


def test_models_import_refuses_a_non_model_file(user_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bogus = tmp_path / "weights.safetensors"
    bogus.write_bytes(b"\x80\x04not a model")
    assert strokeseg(["models", "import", str(bogus)]) == 2
    assert "weights.safetensors" in capsys.readouterr().err


def test_evaluate_scores_predictions_and_flags_a_missing_one(tmp_path: Path) -> None:
    root, pred = tmp_path / "gt", tmp_path / "pred"
    pred.mkdir()
    for i in range(2):
        case = make_synthetic_case(seed=20 + i, size=(32, 32, 16))
        write_synthetic_case(case, root, f"sub-e{i}_ses-0001")
    truth = sitk.ReadImage(str(next(root.glob("derivatives/sub-e0/ses-0001/*_msk.nii.gz"))))
    sitk.WriteImage(truth, str(pred / "sub-e0_ses-0001_msk.nii.gz"))  # a perfect prediction for case 0 only
    status = strokeseg(["evaluate", "--pred", str(pred), "--gt", str(root), "--out", str(tmp_path / "report")])
    assert status == 1  # a missing prediction is scored as empty, reported, and makes the exit status say so
    rows = {r["case_id"]: r for r in csv.DictReader((tmp_path / "report" / "metrics.csv").read_text().splitlines())}
    assert float(rows["sub-e0_ses-0001"]["dice"]) == 1.0
    assert float(rows["sub-e1_ses-0001"]["dice"]) == 0.0
    assert (tmp_path / "report" / "summary.json").is_file()
