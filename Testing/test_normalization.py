"""Normalisation must not depend on units, on the field of view, or on anything outside the brain mask."""
from __future__ import annotations

import numpy as np
import pytest

from StrokeSegLib.common.errors import InvalidImageError
from StrokeSegLib.preprocessing.normalization import normalize_channel


def brain(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (20, 30, 30)
    zz, yy, xx = np.indices(shape)
    mask = ((zz - 10) / 8.0) ** 2 + ((yy - 15) / 12.0) ** 2 + ((xx - 15) / 12.0) ** 2 < 1.0
    adc = rng.normal(0.8, 0.15, shape)           # 10^-3 mm^2/s
    adc[mask & (xx > 18)] = 0.4                   # a restricted-diffusion "lesion"
    adc[mask & (zz == 10) & (yy == 15)] = 30.0    # a few outliers the clipping must tame
    return adc, mask


def test_output_statistics_inside_and_zero_outside() -> None:
    adc, mask = brain()
    out = normalize_channel(adc, mask)
    assert out.dtype == np.float32 and out.shape == adc.shape
    assert np.all(out[~mask] == 0)
    assert out[mask].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[mask].std() == pytest.approx(1.0, abs=1e-4)
    # Outliers were clipped to the 99.5th percentile before the z-score, so they stay moderate.
    assert out[mask].max() < 10


def test_unit_invariance() -> None:
    adc, mask = brain()
    reference = normalize_channel(adc, mask)
    for scale in (1e-3, 1e3, 1.0 / 7.0):
        np.testing.assert_allclose(normalize_channel(adc * scale, mask), reference, atol=1e-5)
    np.testing.assert_allclose(normalize_channel(adc.astype(np.float32) * np.float32(1e-3), mask), reference,
                               atol=1e-4)


def test_independent_of_voxels_outside_mask_and_field_of_view() -> None:
    adc, mask = brain()
    reference = normalize_channel(adc, mask)
    noisy = adc.copy()
    noisy[~mask] = np.random.default_rng(1).uniform(-1e6, 1e6, (~mask).sum())
    np.testing.assert_array_equal(normalize_channel(noisy, mask), reference)
    padded = np.pad(adc, 7, constant_values=0.0)
    padded_mask = np.pad(mask, 7, constant_values=False)
    np.testing.assert_array_equal(normalize_channel(padded, padded_mask)[7:-7, 7:-7, 7:-7], reference)


def test_percentiles_are_taken_inside_mask() -> None:
    adc, mask = brain()
    out = normalize_channel(adc, mask, lower=10, upper=90)
    inside = adc[mask]
    lo, hi = np.percentile(inside, [10, 90])
    clipped = np.clip(inside, lo, hi)
    np.testing.assert_allclose(out[mask], (clipped - clipped.mean()) / clipped.std(), rtol=1e-5, atol=1e-5)


def test_constant_channel_gives_zeros_and_bad_input_raises() -> None:
    adc, mask = brain()
    assert not normalize_channel(np.full(adc.shape, 3.0), mask).any()
    assert not normalize_channel(np.zeros(adc.shape), mask).any()
    with pytest.raises(InvalidImageError):
        normalize_channel(adc, np.zeros_like(mask))
    with pytest.raises(InvalidImageError):
        normalize_channel(adc, mask[:-1])
    with pytest.raises(ValueError):
        normalize_channel(adc, mask, lower=60, upper=40)


# --- physical ADC ------------------------------------------------------------------------------------------------

from StrokeSegLib.common.errors import AdcUnitWarning  # noqa: E402
from StrokeSegLib.preprocessing.normalization import (  # noqa: E402
    ADC_CENTRE,
    ADC_CLIP_MAX,
    ADC_SCALE,
    TYPICAL_BRAIN_MEDIAN_MM2S,
    detect_adc_unit_mm2s,
    normalize_adc_physical,
)


@pytest.mark.parametrize("unit", [1.0, 1e-3, 1e-6])
def test_physical_adc_is_the_same_in_every_unit_and_keeps_absolute_values(unit: float) -> None:
    adc_e3, mask = brain()
    stored = adc_e3 * (1e-3 / unit)  # the same physical ADC written in this unit
    assert detect_adc_unit_mm2s(stored, mask) == unit
    out = normalize_adc_physical(stored, mask)
    reference = normalize_adc_physical(adc_e3, mask)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    assert np.all(out[~mask] == 0)
    # Absolute meaning survives: the "lesion" at 0.4e-3 mm^2/s maps to (0.4 - centre) / scale on every scan,
    # and the outliers saturate at the clip.
    lesion = mask & (np.indices(mask.shape)[2] > 18) & (adc_e3 == 0.4)
    np.testing.assert_allclose(out[lesion], (0.4 - ADC_CENTRE) / ADC_SCALE, atol=1e-5)
    assert out.max() == pytest.approx((ADC_CLIP_MAX - ADC_CENTRE) / ADC_SCALE, abs=1e-5)


def test_physical_adc_does_not_depend_on_how_much_csf_the_brain_holds() -> None:
    adc, mask = brain()
    more_csf = adc.copy()
    more_csf[mask & (np.indices(mask.shape)[1] < 12)] = 3.0  # ventricles / atrophy
    a, b = normalize_adc_physical(adc, mask), normalize_adc_physical(more_csf, mask)
    untouched = mask & (np.indices(mask.shape)[1] >= 12)
    np.testing.assert_array_equal(a[untouched], b[untouched])
    # A z-score would move every other voxel when CSF is added; the physical mapping must not.
    assert not np.allclose(normalize_channel(adc, mask)[untouched], normalize_channel(more_csf, mask)[untouched])


@pytest.mark.parametrize("scale", [1e-6, 0.05, 50.0, 1e5])
def test_adc_in_an_unknown_unit_is_scaled_from_its_median_with_a_warning_naming_the_file(scale: float) -> None:
    adc, mask = brain()  # median ~0.8; these scales put it between or beyond the three known conventions
    with pytest.warns(AdcUnitWarning, match=r"case/adc\.nii\.gz.*fits none of the known units"):
        out = normalize_adc_physical(adc * scale, mask, path="case/adc.nii.gz")
    # The brain's median lands on a typical value, so tissue stays near the centre and the lesion stays below it.
    median_e3 = TYPICAL_BRAIN_MEDIAN_MM2S * 1e3
    assert np.median(out[mask]) == pytest.approx((median_e3 - ADC_CENTRE) / ADC_SCALE, abs=1e-4)
    lesion = mask & (adc == 0.4)
    assert out[lesion].max() < np.median(out[mask]) - 1.0


def test_adc_without_positive_brain_values_is_refused() -> None:
    adc, mask = brain()
    with pytest.raises(InvalidImageError, match="no positive values"):
        normalize_adc_physical(np.zeros_like(adc), mask, path="x_adc.nii")
