"""ISLES 2022 metrics against cases small enough to count by hand."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.common.errors import GeometryError
from StrokeSegLib.evaluation.metrics import (
    METRIC_KEYS,
    case_metrics,
    case_metrics_arrays,
    check_same_grid,
    dice,
    dice_arrays,
    lesion_count_difference,
    lesion_f1,
    lesion_f1_arrays,
    volume_difference_ml,
)

SHAPE = (6, 8, 10)  # (z, y, x)


def image(array: np.ndarray, spacing=(1.0, 1.0, 1.0), pixel=np.uint8) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(array).astype(pixel))
    img.SetSpacing(spacing)
    img.SetOrigin((-10.0, 20.0, 5.0))
    return img


def empty() -> np.ndarray:
    return np.zeros(SHAPE, np.uint8)


def test_both_empty_is_perfect():
    m = case_metrics(image(empty()), image(empty()))
    assert m == {"dice": 1.0, "avd_ml": 0.0, "lesion_f1": 1.0, "alcd": 0, "gt_ml": 0.0, "pred_ml": 0.0}
    assert tuple(m) == METRIC_KEYS


def test_empty_gt_nonempty_pred():
    pred = empty()
    pred[1, 1, 1] = 1
    pred[4, 5, 5:8] = 1  # a second, separate lesion of 3 voxels
    m = case_metrics(image(empty()), image(pred))
    assert m["dice"] == 0.0
    assert m["lesion_f1"] == 0.0  # 2 false positives, nothing else
    assert m["alcd"] == 2
    assert m["pred_ml"] == pytest.approx(4e-3)
    assert m["avd_ml"] == pytest.approx(4e-3)


def test_nonempty_gt_empty_pred():
    gt = empty()
    gt[2:4, 2:4, 2:4] = 1
    m = case_metrics(image(gt), image(empty()))
    assert m["dice"] == 0.0 and m["lesion_f1"] == 0.0 and m["alcd"] == 1
    assert m["gt_ml"] == pytest.approx(8e-3)


def test_face_touching_boxes_are_one_lesion():
    gt = empty()
    gt[1:3, 1:3, 1:3] = 1
    gt[1:3, 1:3, 3:5] = 1  # shares a face with the first box
    pred = empty()
    pred[0, 0, 0] = 1  # two isolated voxels in opposite corners: two predicted lesions
    pred[5, 7, 9] = 1
    assert lesion_count_difference(image(gt), image(pred)) == 1  # 1 gt lesion (not 2) vs 2 predicted


def test_diagonal_pair_is_one_lesion_at_26_connectivity():
    gt = empty()
    gt[2, 2, 2] = 1
    gt[3, 3, 3] = 1  # touches only at a corner: 2 lesions at 6-connectivity, 1 at 26
    pred = empty()
    pred[2, 2, 2] = 1  # touches the (single) lesion
    assert lesion_f1(image(gt), image(pred)) == 1.0
    assert lesion_count_difference(image(gt), image(pred)) == 0
    from scipy import ndimage

    assert ndimage.label(gt)[1] == 2  # the 6-connected view really sees two, so the test can tell them apart


def test_lesion_f1_counts_by_hand():
    gt = empty()
    gt[1, 1, 1:3] = 1  # lesion A: hit
    gt[1, 6, 6:8] = 1  # lesion B: missed (FN)
    gt[4, 1, 8] = 1  # lesion C: hit by a prediction that also spills over
    pred = empty()
    pred[1, 1, 2:4] = 1  # overlaps A by one voxel -> TP
    pred[4, 1, 7:9] = 1  # overlaps C -> TP
    pred[5, 6, 1] = 1  # touches nothing -> FP
    # TP=2, FN=1, FP=1 -> F1 = 4 / (4 + 1 + 1)
    assert lesion_f1(image(gt), image(pred)) == pytest.approx(4 / 6)
    assert lesion_f1_arrays(gt, pred) == pytest.approx(4 / 6)


def test_one_prediction_touching_two_gt_lesions_counts_two_tp():
    gt = empty()
    gt[2, 2, 1] = 1
    gt[2, 2, 5] = 1
    pred = empty()
    pred[2, 2, 1:6] = 1  # a bar bridging both
    assert lesion_f1(image(gt), image(pred)) == 1.0
    assert lesion_count_difference(image(gt), image(pred)) == 1


def test_partial_overlap_dice_by_hand():
    gt = empty()
    gt[2, 2, 1:5] = 1  # 4 voxels
    pred = empty()
    pred[2, 2, 3:9] = 1  # 6 voxels, 2 shared
    assert dice(image(gt), image(pred)) == pytest.approx(2 * 2 / (4 + 6))
    assert dice_arrays(gt, pred) == pytest.approx(0.4)


def test_volume_difference_with_anisotropic_spacing():
    gt = empty()
    gt[0:2, 0:3, 0:4] = 1  # 24 voxels
    pred = empty()
    pred[0, 0, 0:5] = 1  # 5 voxels
    spacing = (0.5, 1.0, 3.0)  # x, y, z in mm -> 1.5 mm^3 per voxel
    gt_img, pred_img = image(gt, spacing), image(pred, spacing)
    assert volume_difference_ml(gt_img, pred_img) == pytest.approx(19 * 1.5 / 1000)
    m = case_metrics(gt_img, pred_img)
    assert m["gt_ml"] == pytest.approx(0.036)
    assert m["pred_ml"] == pytest.approx(0.0075)


def test_pixel_types_may_differ_and_any_nonzero_is_lesion():
    gt = empty()
    gt[1, 1, 1:3] = 1
    pred = empty().astype(np.float32)
    pred[1, 1, 1] = 0.2
    pred[1, 1, 2] = 7.0
    assert dice(image(gt, pixel=np.uint16), image(pred, pixel=np.float32)) == 1.0


def test_image_and_array_variants_agree():
    rng = np.random.default_rng(3)
    gt = (rng.random(SHAPE) > 0.8).astype(np.uint8)
    pred = (rng.random(SHAPE) > 0.7).astype(np.uint8)
    spacing = (0.9, 0.9, 2.5)
    from_images = case_metrics(image(gt, spacing), image(pred, spacing))
    from_arrays = case_metrics_arrays(gt, pred, 0.9 * 0.9 * 2.5 / 1000)
    assert from_images == pytest.approx(from_arrays)


@pytest.mark.parametrize(
    "change",
    [
        lambda img: img.SetSpacing((1.0, 1.0, 1.1)),
        lambda img: img.SetOrigin((-10.0, 20.0, 5.5)),
        lambda img: img.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)),
    ],
    ids=["spacing", "origin", "direction"],
)
def test_grid_mismatch_raises_geometry_error_naming_files(change):
    gt, pred = image(empty()), image(empty())
    change(pred)
    with pytest.raises(GeometryError, match=r"gt_mask\.nii\.gz.*pred_mask\.nii\.gz"):
        case_metrics(gt, pred, gt_path="gt_mask.nii.gz", pred_path="pred_mask.nii.gz")


def test_size_mismatch_raises():
    with pytest.raises(GeometryError, match="size"):
        dice(image(empty()), image(np.zeros((6, 8, 9), np.uint8)))


def test_tiny_float32_geometry_noise_is_tolerated():
    gt, pred = image(empty()), image(empty())
    pred.SetOrigin((-10.0 + 1e-6, 20.0, 5.0 - 1e-6))
    pred.SetSpacing((1.0 + 1e-7, 1.0, 1.0))
    check_same_grid(gt, pred)  # does not raise
