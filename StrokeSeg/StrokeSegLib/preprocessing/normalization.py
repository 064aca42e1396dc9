"""Intensity normalisation of one channel inside the brain mask.

DWI intensities are arbitrary scanner units and ADC comes in 10^-3 or 10^-6 mm^2/s depending on the site, so the
network only ever sees values clipped to robust percentiles and z-scored *inside the brain*: the result does not depend
on units, on how much air the field of view holds, or on what lies outside the mask.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..common.errors import AdcUnitWarning, InvalidImageError
from .preprocess_config import ADC_NORMALIZATIONS  # noqa: F401  (re-exported)


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



#: ADC conventions seen in the wild, as (size of one stored unit in mm^2/s, plausible range of the brain's median ADC
#: in that unit). Normal brain (tissue plus CSF) has a median ADC of about 0.7-1.2e-3 mm^2/s, so the three ranges
#: are three orders of magnitude apart and cannot be confused.
ADC_UNIT_RANGES: tuple[tuple[float, tuple[float, float]], ...] = (
    (1.0, (1e-4, 1e-2)),      # mm^2/s (values around 0.0008)
    (1e-3, (0.1, 10.0)),      # 10^-3 mm^2/s (values around 0.8)
    (1e-6, (100.0, 10000.0)), # 10^-6 mm^2/s (values around 800)
)
#: Physical ADC normalisation: clip to [0, ADC_CLIP_MAX] x 10^-3 mm^2/s (CSF saturates, tissue keeps its detail),
#: then (ADC - ADC_CENTRE) / ADC_SCALE, so normal tissue sits near 0, an infarct (< 0.62) below -0.6 and CSF at +5.
ADC_CLIP_MAX = 2.4
ADC_CENTRE = 0.8
ADC_SCALE = 0.3
#: Typical median ADC of a whole brain (tissue plus CSF), mm^2/s: the scale assumed when no unit fits.
TYPICAL_BRAIN_MEDIAN_MM2S = 0.9e-3


def detect_adc_unit_mm2s(adc: np.ndarray, mask: np.ndarray, path: str | Path | None = None) -> float:
    """Size in mm^2/s of one stored ADC unit (1, 1e-3 or 1e-6), from the median of the positive ADC in the brain.

    Sites store ADC in mm^2/s, 10^-3 or 10^-6 mm^2/s; the value itself is physical, so once the unit is known the
    network can use absolute thresholds (an acute infarct is below about 0.62e-3 mm^2/s on every scanner). A map
    that fits no convention (a vendor's own scaling) is not refused: its scale is inferred by assuming the brain's
    median is typical, with an :class:`AdcUnitWarning` that names the file, because one odd site must not stop a
    batch.
    """
    values = np.asarray(adc)[np.asarray(mask).astype(bool)]
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        raise InvalidImageError("The ADC has no positive values inside the brain mask, so its units cannot be told.",
                                path)
    median = float(np.median(values))
    for unit, (low, high) in ADC_UNIT_RANGES:
        if low <= median < high:
            return unit
    where = f"{path}: " if path is not None else ""
    warnings.warn(AdcUnitWarning(
        f"{where}the ADC's median inside the brain is {median:.4g}, which fits none of the known units (mm^2/s "
        "around 0.0008, 10^-3 mm^2/s around 0.8, 10^-6 mm^2/s around 800); its scale was inferred from that median, "
        "so absolute ADC values are approximate. Is this really an ADC map?"), stacklevel=2)
    return TYPICAL_BRAIN_MEDIAN_MM2S / median


def normalize_adc_physical(adc: np.ndarray, mask: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """ADC in physical units mapped to network input: unit detected, converted to 10^-3 mm^2/s, clipped to
    [0, ADC_CLIP_MAX], centred and scaled; 0 outside ``mask``. Unlike a z-score, this does not depend on how much CSF
    the brain holds, so the same infarct gets the same input value on every scan."""
    adc = np.asarray(adc)
    mask = np.asarray(mask).astype(bool)
    if adc.shape != mask.shape:
        raise InvalidImageError(f"ADC of shape {adc.shape} and brain mask of shape {mask.shape} differ.", path)
    if not mask.any():
        raise InvalidImageError("The brain mask is empty, so the ADC cannot be normalised.", path)
    unit = detect_adc_unit_mm2s(adc, mask, path)
    values = adc[mask].astype(np.float64) * (unit * 1e3)
    values = np.where(np.isfinite(values), values, ADC_CENTRE)
    out = np.zeros(adc.shape, dtype=np.float32)
    out[mask] = ((np.clip(values, 0.0, ADC_CLIP_MAX) - ADC_CENTRE) / ADC_SCALE).astype(np.float32)
    return out
