"""From probabilities to the final lesion mask, and per-lesion measurements.

Why millimetres, not voxels: the smallest plausible lesion is a physical size, and scans range from 0.9 mm in-plane to
6 mm slices; a voxel-count minimum would mean different things on different scanners. Why 26-connectivity: lesions
follow oblique vessels, and diagonal neighbours of one infarct must count as one lesion (ISLES counts them so too).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..common.lesions import voxel_volume_ml

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z) in mm, got {tuple(spacing)!r}")
    return values


def remove_small_components(mask: np.ndarray, min_lesion_mm3: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean copy of ``mask`` without 26-connected components smaller than ``min_lesion_mm3``."""
    voxel_mm3 = math.prod(_check_spacing(spacing))
    mask = np.asarray(mask, dtype=bool)
    if min_lesion_mm3 <= 0 or not mask.any():
        return mask.copy()
    labels, count = ndimage.label(mask, structure=_STRUCTURE_26)
    sizes_mm3 = np.bincount(labels.ravel(), minlength=count + 1) * voxel_mm3
    keep = sizes_mm3 >= min_lesion_mm3
    keep[0] = False
    return keep[labels]


def postprocess(
    probability: np.ndarray,
    brain_mask: np.ndarray | None,
    threshold: float,
    min_lesion_mm3: float,
    spacing: Sequence[float],
) -> np.ndarray:
    """Lesion mask (uint8 0/1, same ``(z, y, x)`` shape): ``probability >= threshold`` inside the brain mask, without
    components under ``min_lesion_mm3``. ``spacing`` is SimpleITK's ``(x, y, z)`` in mm. The inputs are not modified
    (read-only views are fine)."""
    probability = np.asarray(probability)
    if probability.ndim != 3:
        raise ValueError(f"probability must be a 3-D (z, y, x) array, got shape {probability.shape}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    if not (math.isfinite(min_lesion_mm3) and min_lesion_mm3 >= 0):
        raise ValueError(f"min_lesion_mm3 must be a number >= 0, got {min_lesion_mm3!r}")
    mask = probability >= threshold
    if brain_mask is not None:
        brain_mask = np.asarray(brain_mask)
        if brain_mask.shape != probability.shape:
            raise ValueError(f"brain mask shape {brain_mask.shape} differs from probability shape {probability.shape}")
        mask &= brain_mask > 0
    return remove_small_components(mask, min_lesion_mm3, spacing).astype(np.uint8)


def _check_mask_image(mask: sitk.Image) -> None:
    if not isinstance(mask, sitk.Image) or mask.GetDimension() != 3:
        raise ValueError("mask must be a 3-D SimpleITK image")


def lesion_table(mask: sitk.Image) -> list[dict[str, Any]]:
    """One JSON-ready row per 26-connected lesion, largest first: ``id`` (1 = largest), ``voxels``, ``volume_ml``,
    ``centroid_lps_mm`` (physical LPS coordinates of the centre of mass, as SimpleITK reports them)."""
    _check_mask_image(mask)
    binary = sitk.Cast(sitk.GetImageFromArray((sitk.GetArrayViewFromImage(mask) > 0).astype(np.uint8)), sitk.sitkUInt8)
    binary.CopyInformation(mask)
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(binary, True), sortByObjectSize=True)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    rows = []
    for label in sorted(stats.GetLabels()):
        rows.append(
            {
                "id": int(label),
                "voxels": int(stats.GetNumberOfPixels(label)),
                "volume_ml": float(stats.GetPhysicalSize(label)) / 1000.0,
                "centroid_lps_mm": [float(c) for c in stats.GetCentroid(label)],
            }
        )
    return rows


def lesion_volume_ml(mask: sitk.Image) -> float:
    """Total lesion volume (voxels > 0) in millilitres."""
    return lesion_voxels(mask) * voxel_volume_ml(mask)


def lesion_voxels(mask: sitk.Image) -> int:
    """Number of lesion voxels (> 0)."""
    _check_mask_image(mask)
    return int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
