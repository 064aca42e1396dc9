"""ADC onto the DWI grid: identity, physical-space resampling, rigid registration, and refusal when nothing overlaps."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import make_synthetic_case
from StrokeSegLib.common.errors import AlignmentWarning, GeometryError
from StrokeSegLib.common.geometry import Grid, resample_to_grid
from StrokeSegLib.preprocessing import alignment
from StrokeSegLib.preprocessing.alignment import align_to_reference, describe, normalized_mutual_information

SIZE, SPACING = (64, 64, 40), (1.5, 1.5, 3.0)


@pytest.fixture(scope="module")
def case():
    return make_synthetic_case(seed=2, size=SIZE, spacing=SPACING, oblique=True)


def known_motion(reference: sitk.Image, degrees=(5.0, -2.0, 3.0), shift_mm=(4.0, -2.0, 1.5)) -> sitk.Euler3DTransform:
    """A rigid motion about the image centre (reference points -> moving points)."""
    grid = Grid.of(reference)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(tuple(grid.index_to_physical((np.asarray(grid.size) - 1) / 2)[0]))
    transform.SetRotation(*(math.radians(d) for d in degrees))
    transform.SetTranslation(shift_mm)
    return transform


def moved(image: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """The same anatomy after the patient moved by ``transform``: moved(T(p)) == image(p)."""
    return resample_to_grid(image, image, transform=transform.GetInverse())


def max_point_error_mm(estimate: sitk.Transform, truth: sitk.Transform, mask: sitk.Image) -> float:
    """Largest distance between where the two transforms send points of the brain."""
    grid = Grid.of(mask)
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[::50][:, ::-1]
    points = grid.index_to_physical(index)
    return max(float(np.linalg.norm(np.subtract(estimate.TransformPoint(tuple(p)), truth.TransformPoint(tuple(p)))))
               for p in points)


def test_same_grid_passes_through_untouched(case) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = align_to_reference(case.adc, case.dwi)
    assert result.image is case.adc
    assert result.method == "identity" and result.transform is None and result.metric is None
    assert result.overlap == pytest.approx(1.0)
    # Within tolerance (float32 header rounding) is still the same grid.
    nudged = sitk.Image(case.adc)
    nudged.SetOrigin(tuple(np.asarray(case.adc.GetOrigin()) + 2e-5))
    assert align_to_reference(nudged, case.dwi).image is nudged


def test_shifted_grid_is_resampled_in_physical_space() -> None:
    shift = (1.3, -0.8, 0.7)
    shifted = make_synthetic_case(seed=2, size=SIZE, spacing=SPACING, adc_shift_mm=shift, adc_spacing=(2.0, 2.0, 2.5))
    on_grid = make_synthetic_case(seed=2, size=SIZE, spacing=SPACING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = align_to_reference(shifted.adc, shifted.dwi)
    assert result.method == "resample" and result.transform is None
    assert 0.9 < result.overlap < 1.0
    assert Grid.of(result.image) == Grid.of(shifted.dwi)
    # Any DWI voxel centre gets the moving image's value at that same physical point.
    reference = Grid.of(shifted.dwi)
    for index in ([30, 31, 20], [12, 40, 7], [50, 22, 33]):
        point = tuple(reference.index_to_physical(np.asarray(index, float))[0])
        expected = shifted.adc.EvaluateAtPhysicalPoint(point, sitk.sitkLinear)
        assert result.image[index] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # The anatomy lines up with an ADC sampled directly on the DWI grid: lesion dark, brain interior the same.
    aligned = sitk.GetArrayFromImage(result.image)
    direct = sitk.GetArrayFromImage(on_grid.adc)
    lesion = sitk.GetArrayFromImage(shifted.mask).astype(bool)
    interior = sitk.GetArrayFromImage(sitk.BinaryErode(shifted.brain_mask, [3, 3, 2])).astype(bool)
    assert np.median(aligned[lesion]) < 0.6 < np.median(aligned[interior & ~lesion])
    assert np.median(np.abs(aligned - direct)[interior]) < 0.05


def test_rigid_registration_recovers_known_motion(case) -> None:
    truth = known_motion(case.dwi)
    moving = moved(case.adc, truth)
    before = normalized_mutual_information(case.dwi, moving)
    result = align_to_reference(moving, case.dwi, register=True, moving_path="adc.nii.gz")
    assert result.method == "rigid"
    assert max_point_error_mm(result.transform, truth, case.brain_mask) < 1.0
    angles = np.degrees(result.transform.GetParameters()[:3])
    np.testing.assert_allclose(angles, (5.0, -2.0, 3.0), atol=1.0)
    assert result.metric is not None and result.metric < 0
    assert result.similarity > before
    assert Grid.of(result.image) == Grid.of(case.dwi)
    summary = describe(result)
    assert summary["method"] == "rigid" and len(summary["transform"]["parameters"]) == 6


def test_poor_overlap_triggers_registration_with_warning(case) -> None:
    # The header says the ADC sits 40 mm further along the first axis than the DWI, but the anatomy did not move:
    # its box then misses a third of the DWI's brain.
    grid = Grid.of(case.adc)
    offset = grid.matrix[:, 0] * 40.0
    wrong = sitk.Image(case.adc)
    wrong.SetOrigin(tuple(np.asarray(grid.origin) + offset))
    with pytest.warns(AlignmentWarning, match="adc.nii.gz.*rigidly registered"):
        result = align_to_reference(wrong, case.dwi, moving_path="adc.nii.gz", reference_path="dwi.nii.gz")
    assert result.method == "rigid" and result.overlap < 0.9
    # Fixed points map to where the wrong header put the same anatomy: 40 mm along the first axis.
    truth = sitk.TranslationTransform(3, tuple(offset))
    assert max_point_error_mm(result.transform, truth, case.brain_mask) < 1.0
    # Without registration the same image is only resampled, misaligned by design.
    assert align_to_reference(wrong, case.dwi, register=False).method == "resample"


def test_small_shift_of_a_small_field_of_view_is_only_resampled(case) -> None:
    # 12 mm uncovers 12% of this 96 mm box but none of the brain: the headers are trusted, no registration.
    grid = Grid.of(case.adc)
    shifted = sitk.Image(case.adc)
    shifted.SetOrigin(tuple(np.asarray(grid.origin) + grid.matrix[:, 0] * 12.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = align_to_reference(shifted, case.dwi)
    assert result.overlap < 0.9 and result.method == "resample"


def test_failed_registration_falls_back_to_headers(case, monkeypatch) -> None:
    # An optimiser that ends far off (here forced to 15 degrees) matches worse than the headers: result discarded.
    def bad_registration(moving, reference):
        return known_motion(reference, degrees=(15.0, 0.0, 0.0), shift_mm=(0.0, 0.0, 0.0)), -0.1

    monkeypatch.setattr(alignment, "register_rigid", bad_registration)
    with pytest.warns(AlignmentWarning, match="header geometry, which is used instead"):
        result = align_to_reference(case.adc, case.dwi, register=True)
    assert result.method == "resample" and result.transform is None


def test_registration_error_falls_back_to_headers(case, monkeypatch) -> None:
    def failing(moving, reference):
        raise RuntimeError("itk::ExceptionObject\nToo many samples map outside moving image buffer")

    monkeypatch.setattr(alignment, "register_rigid", failing)
    with pytest.warns(AlignmentWarning, match="adc.nii.gz.*failed.*Too many samples"):
        result = align_to_reference(case.adc, case.dwi, register=True, moving_path="adc.nii.gz")
    assert result.method == "resample"


def test_no_overlap_names_both_files(case) -> None:
    far = sitk.Image(case.adc)
    far.SetOrigin((900.0, 900.0, 900.0))
    with pytest.raises(GeometryError, match="adc_far.nii.gz.*dwi_here.nii.gz"):
        align_to_reference(far, case.dwi, moving_path="adc_far.nii.gz", reference_path="dwi_here.nii.gz")


def test_real_case_is_identity(isles_root: Path) -> None:
    folder = isles_root / "sub-strokecase0009" / "ses-0001" / "dwi"
    dwi = sitk.ReadImage(str(folder / "sub-strokecase0009_ses-0001_dwi.nii.gz"))
    adc = sitk.ReadImage(str(folder / "sub-strokecase0009_ses-0001_adc.nii.gz"))
    result = align_to_reference(adc, dwi)
    assert result.method == "identity" and result.image is adc
