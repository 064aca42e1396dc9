"""synthetic: deterministic, fast, the right contrasts, true oblique geometry, consistent anatomy across grids."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import adc_unit_in_mm2s, make_synthetic_case, write_synthetic_case
from StrokeSegLib.io.cases import find_cases
from StrokeSegLib.io.imageio import read_image, read_mask


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def case():
    return make_synthetic_case(seed=0)


def test_deterministic_per_seed_and_fast() -> None:
    start = time.perf_counter()
    a, b, c = make_synthetic_case(seed=1), make_synthetic_case(seed=1), make_synthetic_case(seed=2)
    assert time.perf_counter() - start < 3.0
    for name in ("dwi", "adc", "mask"):
        np.testing.assert_array_equal(_array(getattr(a, name)), _array(getattr(b, name)))
    assert not np.array_equal(_array(a.dwi), _array(c.dwi))


def test_grids_types_and_oblique_geometry(case) -> None:
    assert case.dwi.GetSize() == case.adc.GetSize() == case.mask.GetSize() == (64, 64, 40)
    assert case.dwi.GetSpacing() == (1.5, 1.5, 3.0)
    assert case.dwi.GetPixelID() == case.adc.GetPixelID() == sitk.sitkFloat32
    assert case.mask.GetPixelID() == case.brain_mask.GetPixelID() == sitk.sitkUInt8
    direction = np.array(case.dwi.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(direction) == pytest.approx(1.0)
    assert np.sum(np.abs(direction) > 0.1) > 5  # not axis-aligned
    assert np.linalg.norm(case.dwi.GetOrigin()) > 10
    for other in (case.adc, case.mask, case.brain_mask):
        assert other.GetOrigin() == case.dwi.GetOrigin() and other.GetDirection() == case.dwi.GetDirection()
    straight = make_synthetic_case(oblique=False)
    assert straight.dwi.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_contrasts(case) -> None:
    dwi, adc = _array(case.dwi), _array(case.adc) * case.adc_unit_mm2s
    lesion, brain = _array(case.mask).astype(bool), _array(case.brain_mask).astype(bool)
    assert 50 < lesion.sum() < 0.2 * brain.sum() and not np.any(lesion & ~brain)
    tissue = brain & ~lesion
    assert dwi[lesion].mean() > 1.4 * np.median(dwi[tissue])
    assert np.median(adc[lesion]) == pytest.approx(0.45e-3, rel=0.15)
    assert np.median(adc[tissue]) == pytest.approx(0.8e-3, rel=0.15)
    assert 0.005 < np.mean(adc[brain] > 2.5e-3) < 0.1  # ventricles
    assert np.all(dwi[~brain] == 0) and np.all(adc[~brain] == 0)  # skull-stripped by default


def test_adc_units_scale_values_and_accept_both_spellings() -> None:
    per_milli = _array(make_synthetic_case(adc_units=1e-3).adc)
    per_unit = _array(make_synthetic_case(adc_units=1.0).adc)
    per_micro = _array(make_synthetic_case(adc_units=1e6).adc)
    np.testing.assert_allclose(per_unit * 1e3, per_milli, rtol=1e-5)
    np.testing.assert_allclose(per_micro * 1e-3, per_milli, rtol=1e-5)
    np.testing.assert_array_equal(_array(make_synthetic_case(adc_units=1e3).adc), per_milli)
    assert 0.5 < np.median(per_milli[per_milli > 0]) < 1.5
    assert adc_unit_in_mm2s(1e-6) == adc_unit_in_mm2s(1e6) == pytest.approx(1e-6)
    with pytest.raises(ValueError):
        adc_unit_in_mm2s(0)


def test_shifted_adc_grid_shows_the_same_anatomy(case) -> None:
    shifted = make_synthetic_case(seed=0, adc_shift_mm=(7.0, -5.0, 4.5), adc_spacing=(2.0, 2.0, 2.0))
    assert shifted.adc.GetSpacing() == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(
        np.subtract(shifted.adc.GetOrigin(), case.dwi.GetOrigin()), (7.0, -5.0, 4.5), atol=1e-9
    )
    np.testing.assert_array_equal(_array(shifted.dwi), _array(case.dwi))
    back = _array(sitk.Resample(shifted.adc, case.dwi, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0))
    reference = _array(case.adc)
    covered = back > 0
    agree = np.abs(back - reference)[covered & (reference > 0)] < 0.3  # same tissue class (noise is ~0.03)
    assert covered.mean() > 0.15 and agree.mean() > 0.9
    lesion = _array(case.mask).astype(bool)
    assert np.median(back[lesion & covered]) < 0.6  # the ADC lesion sits where the DWI lesion is


def test_skull_adds_bright_shell_and_zero_background() -> None:
    skull = make_synthetic_case(seed=0, skull=True)
    dwi, brain = _array(skull.dwi), _array(skull.brain_mask).astype(bool)
    shell = (dwi > 0) & ~brain
    assert shell.sum() > 0.3 * brain.sum()
    assert np.percentile(dwi[shell], 95) > np.median(dwi[brain])
    assert dwi[0, 0, 0] == 0 and dwi[-1, -1, -1] == 0 and np.mean(dwi == 0) > 0.2


def test_no_lesion() -> None:
    assert _array(make_synthetic_case(lesion=False).mask).sum() == 0


@pytest.mark.parametrize("layout", ["zenodo", "grand-challenge"])
def test_written_tree_is_found_and_read_back(tmp_path: Path, layout: str, case) -> None:
    written = [write_synthetic_case(case, tmp_path, cid, layout=layout) for cid in ("sub-b", "sub-a_ses-0002")]
    found = find_cases(tmp_path)
    assert [c.case_id for c in found] == ["sub-a_ses-0002", "sub-b_ses-0001"] == sorted(c.case_id for c in written)
    dwi = read_image(found[1].dwi, role="DWI")
    np.testing.assert_allclose(dwi.GetDirection(), case.dwi.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(dwi.GetOrigin(), case.dwi.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(_array(read_mask(found[1].mask)), _array(case.mask))
    with pytest.raises(ValueError):
        write_synthetic_case(case, tmp_path, "sub-c", layout="flat")
