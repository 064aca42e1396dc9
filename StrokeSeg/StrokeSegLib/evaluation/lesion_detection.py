"""Which expert lesions a prediction finds, by lesion size: the detail behind lesion-wise F1.

Lesion-wise F1 says how many lesions were missed but not which: a model that finds every infarct above 2 mL and no
embolus under 0.1 mL can have the same F1 as one that misses a few of each. ``strokeseg evaluate`` therefore also lists
every expert lesion with its volume and whether the prediction touches it, and sums them in size bins.

Lesions are 26-connected components (as in :mod:`metrics`); a lesion counts as found when at least one predicted voxel
lies in it, the ISLES 2022 true-positive rule, and a predicted lesion is false when it touches no expert lesion.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..common.lesions import label_lesions

#: Bin edges in mL: lacunar dots and emboli (< 0.1), small (0.1–0.5), medium (0.5–2, 2–10) and large infarcts.
SIZE_EDGES_ML: tuple[float, ...] = (0.1, 0.5, 2.0, 10.0)


@dataclass(frozen=True)
class LesionDetection:
    """One case: each expert lesion's volume and whether it was found, and the predicted lesions that were false."""

    volumes_ml: tuple[float, ...]
    found: tuple[bool, ...]
    predicted_lesions: int
    false_lesions: int


def detect_lesions(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> LesionDetection:
    """Match the 26-connected lesions of two same-shape masks (non-zero = lesion)."""
    g, p = np.asarray(gt) != 0, np.asarray(pred) != 0
    if g.shape != p.shape:
        raise ValueError(f"ground truth shape {g.shape} differs from prediction shape {p.shape}")
    g_labels, n_g = label_lesions(g)
    p_labels, n_p = label_lesions(p)
    index = np.arange(1, n_g + 1)
    sizes = ndimage.sum_labels(g, g_labels, index) if n_g else np.zeros(0)
    hit = ndimage.maximum(p, g_labels, index) if n_g else np.zeros(0)
    touched = np.unique(p_labels[g & p])
    return LesionDetection(
        volumes_ml=tuple(float(s) * voxel_volume_ml for s in np.atleast_1d(sizes)),
        found=tuple(bool(h) for h in np.atleast_1d(hit)),
        predicted_lesions=n_p,
        false_lesions=n_p - int(np.count_nonzero(touched)),
    )


def size_bin_label(low: float | None, high: float | None) -> str:
    """'< 0.1', '0.1–0.5', '≥ 10' (mL)."""
    if low is None:
        return f"< {high:g}"
    return f"≥ {low:g}" if high is None else f"{low:g}–{high:g}"


def detection_by_size(volumes_ml: Sequence[float], found: Sequence[bool],
                      edges_ml: Sequence[float] = SIZE_EDGES_ML) -> list[dict]:
    """Per size bin: ``label, min_ml, max_ml`` (None = open), ``lesions``, ``found``, ``rate`` (None when empty)."""
    volumes, hits = np.asarray(volumes_ml, dtype=float), np.asarray(found, dtype=bool)
    bounds = [None, *edges_ml, None]
    rows = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        inside = np.ones(volumes.shape, bool)
        if low is not None:
            inside &= volumes >= low
        if high is not None:
            inside &= volumes < high
        count, hit = int(inside.sum()), int((inside & hits).sum())
        rows.append({"label": size_bin_label(low, high), "min_ml": low, "max_ml": high, "lesions": count,
                     "found": hit, "rate": hit / count if count else None})
    return rows
