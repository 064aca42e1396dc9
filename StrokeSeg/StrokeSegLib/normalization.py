"""Intensity normalisation of one channel inside the brain mask.

DWI intensities are arbitrary scanner units and ADC comes in 10^-3 or 10^-6 mm^2/s depending on the site, so the
network only ever sees values clipped to robust percentiles and z-scored *inside the brain*: the result does not depend
on units, on how much air the field of view holds, or on what lies outside the mask.
"""
from __future__ import annotations

import numpy as np

from .errors import InvalidImageError


def normalize_channel(array: np.ndarray, mask: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip ``array`` to its [lower, upper] percentiles inside ``mask``, z-score with the mask's mean and std, and
    set voxels outside the mask to 0. Returns float32 of the same shape; a constant channel becomes all zeros."""
    array = np.asarray(array)
    mask = np.asarray(mask).astype(bool)
    if array.shape != mask.shape:
        raise InvalidImageError(f"Channel of shape {array.shape} and brain mask of shape {mask.shape} differ.")
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"Percentiles must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}.")
    out = np.zeros(array.shape, dtype=np.float32)
    if not mask.any():
        raise InvalidImageError("The brain mask is empty, so the image cannot be normalised.")
    # float64 for the statistics: float32 sums over a million voxels lose the digits that unit-invariance needs.
    values = array[mask].astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, np.median(values[finite]) if finite.any() else 0.0)
    lo, hi = np.percentile(values, [lower, upper])
    values = np.clip(values, lo, hi)
    mean = values.mean()
    std = values.std()
    # A (nearly) constant channel carries no information; scale-relative guard so tiny ADC units are not mistaken.
    if not np.isfinite(std) or std <= 1e-12 * max(abs(mean), abs(hi), abs(lo), np.finfo(np.float64).tiny):
        return out
    out[mask] = ((values - mean) / std).astype(np.float32)
    return out
