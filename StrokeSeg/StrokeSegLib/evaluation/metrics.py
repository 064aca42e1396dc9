"""ISLES 2022 metrics for one case, computed in the scan's native space.

Definitions follow the ISLES 2022 challenge (Hernandez Petzsche et al., Sci Data 2022) so that our numbers can be put
beside published ones:

* Dice: ``2|G∩P| / (|G|+|P|)``; 1 when both masks are empty, 0 when exactly one is.
* Absolute volume difference (mL): ``| |G| - |P| | * voxel volume``.
* Lesion-wise F1: lesions are 26-connected components. A ground-truth lesion touched by the prediction (sharing at
  least one voxel) is a true positive, one not touched a false negative; a predicted lesion that touches no
  ground-truth voxel is a false positive. ``F1 = 2TP / (2TP + FP + FN)``; 1 when both masks are empty.
* Absolute lesion count difference: ``|#components(G) - #components(P)|`` at 26-connectivity.

Any non-zero voxel is lesion. The image functions check that both masks share one grid (a prediction resampled to
another grid would silently give wrong numbers) and then call the array functions, which the training loop uses
directly; both paths share one implementation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..common.errors import GeometryError
from ..common.lesions import label_lesions, voxel_volume_ml

METRIC_KEYS: tuple[str, ...] = ("dice", "avd_ml", "lesion_f1", "alcd", "gt_ml", "pred_ml")

# Tolerances for "the same grid": NIfTI stores geometry in float32, so files written by different tools for the same
# grid differ in the last digits. Origin is compared as a fraction of the smallest voxel side.
_SPACING_RTOL = 1e-4
_ORIGIN_VOXEL_FRACTION = 1e-3
_DIRECTION_ATOL = 1e-4


# ----------------------------------------------------------------------------------------------------------- arrays
def _as_bool(array: np.ndarray) -> np.ndarray:
    return np.asarray(array) != 0


def _check_shapes(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise GeometryError(f"ground truth shape {gt.shape} differs from prediction shape {pred.shape}")


def dice_arrays(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two masks given as arrays of the same shape (non-zero = lesion)."""
    g, p = _as_bool(gt), _as_bool(pred)
    _check_shapes(g, p)
    return _dice_bool(g, p)


def _dice_bool(g: np.ndarray, p: np.ndarray) -> float:
    total = int(g.sum()) + int(p.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(g, p).sum()) / total


def volume_difference_ml_arrays(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> float:
    """Absolute lesion volume difference in mL."""
    g, p = _as_bool(gt), _as_bool(pred)
    _check_shapes(g, p)
    return abs(int(g.sum()) - int(p.sum())) * float(voxel_volume_ml)


def _f1_from_labels(g_labels: np.ndarray, n_g: int, p_labels: np.ndarray, n_p: int) -> float:
    if n_g == 0 and n_p == 0:
        return 1.0
    overlap = np.logical_and(g_labels > 0, p_labels > 0)
    tp = len(np.unique(g_labels[overlap]))  # ground-truth lesions touched by the prediction
    fn = n_g - tp
    fp = n_p - len(np.unique(p_labels[overlap]))  # predicted lesions touching no ground truth
    return 2.0 * tp / (2.0 * tp + fp + fn)


def lesion_f1_arrays(gt: np.ndarray, pred: np.ndarray) -> float:
    """Lesion-wise F1 at 26-connectivity (see the module docstring for TP/FP/FN)."""
    g, p = _as_bool(gt), _as_bool(pred)
    _check_shapes(g, p)
    return _f1_from_labels(*label_lesions(g), *label_lesions(p))


def lesion_count_difference_arrays(gt: np.ndarray, pred: np.ndarray) -> int:
    """Absolute difference of the numbers of 26-connected lesions."""
    g, p = _as_bool(gt), _as_bool(pred)
    _check_shapes(g, p)
    return abs(label_lesions(g)[1] - label_lesions(p)[1])


def case_metrics_arrays(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> dict[str, float | int]:
    """All ISLES metrics of one case from arrays (labelling each mask once), keys :data:`METRIC_KEYS`."""
    g, p = _as_bool(gt), _as_bool(pred)
    _check_shapes(g, p)
    if not voxel_volume_ml > 0:
        raise GeometryError(f"voxel volume must be positive, got {voxel_volume_ml} mL")
    g_labels, n_g = label_lesions(g)
    p_labels, n_p = label_lesions(p)
    gt_ml = int(g.sum()) * float(voxel_volume_ml)
    pred_ml = int(p.sum()) * float(voxel_volume_ml)
    return {
        "dice": _dice_bool(g, p),
        "avd_ml": abs(gt_ml - pred_ml),
        "lesion_f1": _f1_from_labels(g_labels, n_g, p_labels, n_p),
        "alcd": abs(n_g - n_p),
        "gt_ml": gt_ml,
        "pred_ml": pred_ml,
    }


# ----------------------------------------------------------------------------------------------------------- images
def _name(path: str | Path | None, role: str) -> str:
    return f"{role} {path}" if path is not None else role


def check_same_grid(
    gt: sitk.Image,
    pred: sitk.Image,
    gt_path: str | Path | None = None,
    pred_path: str | Path | None = None,
) -> None:
    """Raise :class:`GeometryError` unless both images have the same size, spacing, origin and direction.

    Pixel types may differ (a uint16 expert mask against a uint8 prediction is normal).
    """
    a, b = _name(gt_path, "ground truth"), _name(pred_path, "prediction")
    problem = None
    if gt.GetDimension() != pred.GetDimension():
        problem = f"dimension {gt.GetDimension()} vs {pred.GetDimension()}"
    elif gt.GetSize() != pred.GetSize():
        problem = f"size {gt.GetSize()} vs {pred.GetSize()}"
    else:
        sg, sp = np.array(gt.GetSpacing()), np.array(pred.GetSpacing())
        og, op = np.array(gt.GetOrigin()), np.array(pred.GetOrigin())
        dg, dp = np.array(gt.GetDirection()), np.array(pred.GetDirection())
        if not np.allclose(sg, sp, rtol=_SPACING_RTOL, atol=0.0):
            problem = f"spacing {tuple(sg)} vs {tuple(sp)} mm"
        elif np.max(np.abs(og - op)) > _ORIGIN_VOXEL_FRACTION * float(sg.min()):
            problem = f"origin {tuple(og)} vs {tuple(op)} mm"
        elif np.max(np.abs(dg - dp)) > _DIRECTION_ATOL:
            problem = f"direction {tuple(np.round(dg, 5))} vs {tuple(np.round(dp, 5))}"
    if problem is not None:
        raise GeometryError(
            f"{a} and {b} are not on the same voxel grid ({problem}); metrics are computed in native space, "
            "so the prediction must be written on the ground truth's grid",
            path=pred_path,
        )


def _arrays(
    gt: sitk.Image, pred: sitk.Image, gt_path: str | Path | None, pred_path: str | Path | None
) -> tuple[np.ndarray, np.ndarray]:
    check_same_grid(gt, pred, gt_path, pred_path)
    return sitk.GetArrayViewFromImage(gt) != 0, sitk.GetArrayViewFromImage(pred) != 0


def dice(gt: sitk.Image, pred: sitk.Image, gt_path: str | Path | None = None,
         pred_path: str | Path | None = None) -> float:
    """Dice of two masks on the same grid; 1.0 when both are empty."""
    return dice_arrays(*_arrays(gt, pred, gt_path, pred_path))


def volume_difference_ml(gt: sitk.Image, pred: sitk.Image, gt_path: str | Path | None = None,
                         pred_path: str | Path | None = None) -> float:
    """Absolute lesion volume difference in mL, voxel volume taken from the spacing."""
    return volume_difference_ml_arrays(*_arrays(gt, pred, gt_path, pred_path), voxel_volume_ml(gt))


def lesion_f1(gt: sitk.Image, pred: sitk.Image, gt_path: str | Path | None = None,
              pred_path: str | Path | None = None) -> float:
    """Lesion-wise F1 at 26-connectivity; 1.0 when both are empty."""
    return lesion_f1_arrays(*_arrays(gt, pred, gt_path, pred_path))


def lesion_count_difference(gt: sitk.Image, pred: sitk.Image, gt_path: str | Path | None = None,
                            pred_path: str | Path | None = None) -> int:
    """Absolute difference of the numbers of 26-connected lesions."""
    return lesion_count_difference_arrays(*_arrays(gt, pred, gt_path, pred_path))


def case_metrics(gt: sitk.Image, pred: sitk.Image, gt_path: str | Path | None = None,
                 pred_path: str | Path | None = None) -> dict[str, float | int]:
    """All ISLES metrics of one case: ``dice, avd_ml, lesion_f1, alcd, gt_ml, pred_ml``.

    The optional paths only make a :class:`GeometryError` name the files.
    """
    g, p = _arrays(gt, pred, gt_path, pred_path)
    return case_metrics_arrays(g, p, voxel_volume_ml(gt))
