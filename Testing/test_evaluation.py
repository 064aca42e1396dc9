"""evaluate(): report files on a small synthetic ISLES tree, missing and failed cases, and real ground truth."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.common.errors import InputFileError
from StrokeSegLib.evaluation.metrics import case_metrics
from StrokeSegLib.evaluation.scoring import (
    CSV_COLUMNS,
    EvaluationWarning,
    MissingPredictionWarning,
    evaluate,
    format_summary,
    prediction_path,
)

SHAPE = (10, 24, 20)  # (z, y, x)
SPACING = (1.5, 1.5, 3.0)


def write(array: np.ndarray, path: Path, spacing=SPACING) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin((-12.0, 8.0, -30.0))
    sitk.WriteImage(img, str(path))
    return path


def add_case(root: Path, subject: str, gt: np.ndarray, seed: int) -> str:
    """A Zenodo-layout case: DWI and ADC under sub-X/ses-0001/dwi, the mask under derivatives."""
    case_id = f"sub-{subject}_ses-0001"
    rng = np.random.default_rng(seed)
    head = np.zeros(SHAPE, np.float32)
    head[1:-1, 3:-3, 3:-3] = 100 + 10 * rng.standard_normal((SHAPE[0] - 2, SHAPE[1] - 6, SHAPE[2] - 6))
    dwi = head + 80 * gt
    adc = np.where(head > 0, 0.8 - 0.4 * gt, 0).astype(np.float32)
    folder = root / f"sub-{subject}" / "ses-0001" / "dwi"
    write(dwi.astype(np.float32), folder / f"{case_id}_dwi.nii.gz")
    write(adc, folder / f"{case_id}_adc.nii.gz")
    write(gt.astype(np.uint16), root / "derivatives" / f"sub-{subject}" / "ses-0001" / f"{case_id}_msk.nii.gz")
    return case_id


def box(z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[z, y, x] = 1
    return mask


@pytest.fixture()
def tree(tmp_path):
    """Four cases: a partial hit, a missing prediction, an empty ground truth, and a prediction on a wrong grid."""
    root, preds = tmp_path / "isles", tmp_path / "preds"
    gt_a = box(slice(3, 6), slice(8, 14), slice(6, 12))
    gt_a[8, 20, 16] = 1  # a second, small lesion that the prediction misses
    a = add_case(root, "a", gt_a, 1)
    write(box(slice(4, 7), slice(10, 16), slice(6, 12)), prediction_path(preds, a))
    b = add_case(root, "b", box(slice(2, 4), slice(5, 9), slice(5, 9)), 2)  # no prediction written
    c = add_case(root, "c", np.zeros(SHAPE, np.uint8), 3)
    write(np.zeros(SHAPE, np.uint8), prediction_path(preds, c))
    d = add_case(root, "d", box(slice(3, 5), slice(8, 12), slice(8, 12)), 4)
    write(np.zeros(SHAPE, np.uint8), prediction_path(preds, d), spacing=(1.0, 1.0, 1.0))
    return root, preds, {"a": a, "b": b, "c": c, "d": d}


def assert_real_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert float(pixels[..., :3].std()) > 0.02, f"{path} is blank"


def test_evaluate_writes_consistent_report(tree, tmp_path):
    root, preds, ids = tree
    stages = []
    out = tmp_path / "report"
    with pytest.warns(MissingPredictionWarning, match=ids["b"]), pytest.warns(EvaluationWarning, match=ids["d"]):
        result = evaluate(preds, root, out, progress=lambda stage, f: stages.append(f))
    assert stages[-1] == 1.0

    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "case_id,dice,avd_ml,lesion_f1,alcd,gt_ml,pred_ml"
    assert tuple(lines[0].split(",")) == CSV_COLUMNS
    rows = {r["case_id"]: r for r in csv.DictReader(lines)}
    assert sorted(rows) == [ids["a"], ids["b"], ids["c"]]  # d failed: no row

    def read(p):
        return sitk.ReadImage(str(p))

    gt_a = read(root / "derivatives" / "sub-a" / "ses-0001" / f"{ids['a']}_msk.nii.gz")
    expected = case_metrics(gt_a, read(prediction_path(preds, ids["a"])))
    for key, value in expected.items():
        assert float(rows[ids["a"]][key]) == pytest.approx(value, rel=1e-9)
    # Partial hit checked by hand: gt 108+1 voxels, pred 108, overlap z 4-5, y 10-13, x 6-11 = 2*4*6 = 48 voxels;
    # 1 of 2 gt lesions found.
    assert expected["dice"] == pytest.approx(2 * 48 / (109 + 108))
    assert expected["lesion_f1"] == pytest.approx(2 / 3) and expected["alcd"] == 1
    assert float(rows[ids["b"]]["dice"]) == 0.0 and float(rows[ids["b"]]["pred_ml"]) == 0.0
    assert float(rows[ids["b"]]["gt_ml"]) == pytest.approx(32 * 1.5 * 1.5 * 3.0 / 1000)
    assert float(rows[ids["c"]]["dice"]) == 1.0 and float(rows[ids["c"]]["lesion_f1"]) == 1.0

    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary
    assert summary["n_cases"] == 3 and summary["n_cases_with_lesions"] == 2
    dices = [float(rows[k]["dice"]) for k in rows]
    assert summary["mean"]["dice"] == pytest.approx(np.mean(dices))
    assert summary["median"]["dice"] == pytest.approx(np.median(dices))
    assert summary["lesion_cases"]["n_cases"] == 2
    assert summary["lesion_cases"]["mean"]["dice"] == pytest.approx((expected["dice"] + 0.0) / 2)
    assert summary["missing"] == [ids["b"]]
    assert [f["case_id"] for f in summary["failed"]] == [ids["d"]]
    assert "same voxel grid" in summary["failed"][0]["error"] and "_msk.nii.gz" in summary["failed"][0]["error"]
    assert not result.ok

    # Every expert lesion of the scored cases, found or not: a's box (108 voxels) is touched, a's single voxel is not,
    # b's 32 voxels have no prediction at all; the voxel is 1.5 x 1.5 x 3 mm = 0.00675 mL.
    lesions = list(csv.DictReader((out / "lesions.csv").read_text().splitlines()))
    assert sorted((r["case_id"], round(float(r["volume_ml"]), 5), r["found"]) for r in lesions) == sorted([
        (ids["a"], 0.729, "1"), (ids["a"], 0.00675, "0"), (ids["b"], 0.216, "0")])
    detection = summary["lesion_detection"]
    assert (detection["expert_lesions"], detection["found"]) == (3, 1)
    assert (detection["predicted_lesions"], detection["false_lesions"]) == (1, 0)
    assert [(b["found"], b["lesions"]) for b in detection["by_size"]][:3] == [(0, 1), (0, 1), (1, 1)]

    for name in ("dice_histogram.png", "dice_vs_volume.png", "lesion_detection.png"):
        assert_real_png(out / name)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(f"{ids[k]}.png" for k in "abc")
    assert_real_png(out / "overlays" / f"{ids['a']}.png")
    assert not list(out.rglob(".*tmp*"))

    text = format_summary(result)
    assert "Evaluated 3 case(s), 2 with lesions" in text
    assert f"MISSING predictions (scored as empty): {ids['b']}" in text
    assert f"FAILED {ids['d']}" in text
    assert f"{np.mean(dices):.3f}" in text
    assert "Expert lesions found, by size in mL: < 0.1 0/1, 0.1–0.5 0/1, 0.5–2 1/1; 0 of 1 predicted" in text


def test_wrong_prediction_folder_is_refused(tree, tmp_path):
    root, _, _ = tree
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(InputFileError, match="none of the 4 predictions"):
        evaluate(empty, root, tmp_path / "out")
    with pytest.raises(InputFileError, match="not found"):
        evaluate(tmp_path / "absent", root, tmp_path / "out")


def test_root_without_masks_is_refused(tmp_path):
    root = tmp_path / "isles"
    add_case(root, "x", np.zeros(SHAPE, np.uint8), 0)
    shutil.rmtree(root / "derivatives")
    (tmp_path / "preds").mkdir()
    with pytest.raises(InputFileError, match="ground-truth mask"):
        evaluate(tmp_path / "preds", root, tmp_path / "out")


@pytest.mark.realdata
def test_ground_truth_against_itself_on_real_cases(isles_root, tmp_path):
    from StrokeSegLib.io.cases import find_cases

    preds = tmp_path / "preds"
    preds.mkdir()
    cases = [c for c in find_cases(isles_root) if c.mask is not None]
    for case in cases:
        shutil.copy(case.mask, prediction_path(preds, case.case_id))
    result = evaluate(preds, isles_root, tmp_path / "report")
    assert len(result.rows) == 3 and result.ok
    assert all(r["dice"] == 1.0 and r["lesion_f1"] == 1.0 and r["avd_ml"] == 0.0 for r in result.rows)
    by_id = {r["case_id"]: r for r in result.rows}
    assert by_id["sub-strokecase0009_ses-0001"]["gt_ml"] == pytest.approx(523 * 8 / 1000)
    assert by_id["sub-strokecase0002_ses-0001"]["gt_ml"] == pytest.approx(118 * 8 / 1000)
    assert len(result.overlays) == 3
    assert_real_png(result.overlays[0])
