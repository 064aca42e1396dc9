"""prepare_case on oblique, anisotropic synthetic scans: network grid, exact way back, physical positions, units."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import make_synthetic_case
from StrokeSegLib.common.errors import CancelledError, GeometryError, InvalidImageError
from StrokeSegLib.common.geometry import CANONICAL_FRAME, Grid, resample_to_grid
from StrokeSegLib.preprocessing.prepare import CHANNELS, PreparedCase, PreprocessConfig, prepare_case

SIZE, SPACING = (96, 96, 22), (0.9, 0.9, 4.0)
ADC_SHIFT, ADC_SPACING = (1.1, -0.7, 0.9), (1.2, 1.2, 3.0)


def synthetic(**kwargs):
    arguments = dict(seed=7, size=SIZE, spacing=SPACING, oblique=True)
    arguments.update(kwargs)
    return make_synthetic_case(**arguments)


@pytest.fixture(scope="module")
def shifted_case():
    return synthetic(adc_shift_mm=ADC_SHIFT, adc_spacing=ADC_SPACING)


@pytest.fixture(scope="module")
def prepared(shifted_case) -> PreparedCase:
    # z-scored ADC, so that both channels have mean 0 and standard deviation 1 inside the brain
    # (the default is the physical ADC)
    return prepare_case(shifted_case.dwi, shifted_case.adc, PreprocessConfig(adc_normalization="zscore"))


def centroid_mm(grid: Grid, mask: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask)[:, ::-1].astype(float)
    return grid.index_to_physical(index).mean(axis=0)


def test_config_round_trips_through_json() -> None:
    config = PreprocessConfig(target_spacing=(1.5, 1.5, 2.0), clip_percentiles=(1, 99), register=False,
                              adc_normalization="physical")
    again = PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.target_spacing == (1.5, 1.5, 2.0) and again.clip_percentiles == (1.0, 99.0)
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()
    assert PreprocessConfig(target_spacing=2.0).target_spacing == (2.0, 2.0, 2.0)
    for bad in ({"target_spacing": [2, 0, 2]}, {"clip_percentiles": [90, 10]}, {"register": "yes"},
                {"target_spacings": [2, 2, 2]}, {"adc_normalization": "minmax"}):
        with pytest.raises(ValueError):
            PreprocessConfig.from_dict(bad)


def test_network_input_shape_types_and_statistics(shifted_case, prepared) -> None:
    grid = prepared.network_grid
    assert grid.spacing == (2.0, 2.0, 2.0)
    # The DWI's index axes, only reordered and flipped so that each points along its canonical anatomical axis.
    cos = grid.matrix.T @ Grid.of(shifted_case.dwi).matrix
    assert np.allclose(np.sort(np.abs(cos), axis=1)[:, :2], 0, atol=1e-12) and np.allclose(np.abs(cos).max(1), 1)
    assert np.all(np.diag(CANONICAL_FRAME.T @ grid.matrix) > 0.5)
    assert prepared.native_grid == Grid.of(shifted_case.dwi)
    assert prepared.channels == CHANNELS == ("DWI", "ADC")
    assert prepared.image.dtype == np.float32 and prepared.image.shape == (2, *grid.shape)
    assert prepared.brain_mask.dtype == np.uint8 and prepared.brain_mask.shape == grid.shape
    assert np.isfinite(prepared.image).all()
    brain = prepared.brain_mask.astype(bool)
    assert set(np.unique(prepared.brain_mask)) == {0, 1}
    assert np.all(prepared.image[:, ~brain] == 0)
    np.testing.assert_allclose(prepared.image[:, brain].mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(prepared.image[:, brain].std(axis=1), 1, atol=1e-3)
    assert prepared.alignment.method == "resample"
    assert Grid.of(prepared.native_brain_mask) == prepared.native_grid


def test_round_trip_to_native_is_exactly_the_dwi_grid(shifted_case, prepared) -> None:
    grid = prepared.network_grid
    probability = np.random.default_rng(0).random(grid.shape).astype(np.float16)
    native = prepared.to_native(probability)
    assert Grid.of(native) == Grid.of(shifted_case.dwi)     # equality, not tolerance
    assert native.GetPixelID() == sitk.sitkFloat32
    labels = prepared.to_native(prepared.brain_mask[None], "nearest")
    assert Grid.of(labels) == prepared.native_grid and labels.GetPixelID() == sitk.sitkUInt8
    assert Grid.of(prepared.to_native(prepared.brain_mask > 0, "nearest")) == prepared.native_grid
    image = grid.image_from_array(prepared.image[0])
    assert Grid.of(prepared.to_native(image)) == prepared.native_grid
    with pytest.raises(GeometryError):
        prepared.to_native(np.zeros((3, 4, 5), np.float32))
    # Brain mask there and back agrees with the native mask it came from.
    truth = sitk.GetArrayFromImage(prepared.native_brain_mask).astype(bool)
    back = sitk.GetArrayFromImage(labels).astype(bool)
    assert 2 * (truth & back).sum() / (truth.sum() + back.sum()) > 0.95


def test_lesion_lands_at_its_physical_position_in_both_channels(shifted_case, prepared) -> None:
    grid = prepared.network_grid
    lesion = sitk.GetArrayFromImage(shifted_case.mask).astype(bool)
    expected = centroid_mm(Grid.of(shifted_case.mask), lesion)
    # The lesion is the brightest tissue on DWI and the darkest non-CSF tissue on ADC; find it in network space
    # from intensities alone, away from the brain edge where partial volume with the background mimics it.
    interior = sitk.GetArrayFromImage(sitk.BinaryErode(resample_to_grid(prepared.native_brain_mask, grid, "nearest"),
                                                       [3, 3, 3])).astype(bool)
    dwi_channel, adc_channel = prepared.image
    near = prepared.to_network(shifted_case.mask, "linear") > 0.5
    high = np.percentile(dwi_channel[interior & ~near], 99.5)
    bright = interior & (dwi_channel > high)
    dark = interior & (adc_channel < np.percentile(adc_channel[interior & near], 90)) & \
        (adc_channel < np.percentile(adc_channel[interior & ~near], 0.5))
    half_voxel = 0.5 * max(grid.spacing)
    assert np.linalg.norm(centroid_mm(grid, bright) - expected) < half_voxel
    assert np.linalg.norm(centroid_mm(grid, dark) - expected) < half_voxel
    # Ground-truth masks go to network space and back keeping position and volume.
    for interpolator in ("nearest", "linear"):
        network = prepared.to_network(shifted_case.mask, interpolator) >= 0.5
        assert np.linalg.norm(centroid_mm(grid, network) - expected) < half_voxel
        ratio = network.sum() * np.prod(grid.spacing) / (lesion.sum() * np.prod(SPACING))
        assert 0.85 < ratio < 1.15
        back = sitk.GetArrayFromImage(prepared.to_native(network.astype(np.uint8), "nearest")).astype(bool)
        assert 0.85 < back.sum() / lesion.sum() < 1.15


def test_shifted_adc_matches_adc_sampled_on_the_dwi_grid(shifted_case, prepared) -> None:
    direct = synthetic()
    aligned = prepare_case(direct.dwi, direct.adc)
    assert aligned.alignment.method == "identity"
    np.testing.assert_array_equal(prepared.image[0], aligned.image[0])
    brain = prepared.brain_mask.astype(bool) & aligned.brain_mask.astype(bool)

    def correlation(candidate: PreparedCase) -> float:
        return float(np.corrcoef(candidate.image[1][brain], aligned.image[1][brain])[0, 1])

    # Ignoring the ADC grid's 1.6 mm offset (the header error this step exists to avoid) matches clearly worse.
    ignored = sitk.Image(shifted_case.adc)
    ignored.SetOrigin(tuple(np.asarray(shifted_case.adc.GetOrigin()) - np.asarray(ADC_SHIFT)))
    misaligned = prepare_case(shifted_case.dwi, ignored, PreprocessConfig(register=False))
    assert correlation(prepared) > 0.88                  # measured 0.91 (independent noise, other voxel size)
    assert correlation(prepared) > correlation(misaligned) + 0.08   # measured 0.77


def test_adc_units_do_not_change_the_network_input() -> None:
    results = [prepare_case(c.dwi, c.adc).image for c in (synthetic(adc_units=u) for u in (1e-3, 1.0, 1e-6))]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-4)


def test_rigidly_moved_adc_is_registered_back(shifted_case) -> None:
    case = synthetic()
    grid = Grid.of(case.adc)
    motion = sitk.Euler3DTransform()
    motion.SetCenter(tuple(grid.index_to_physical((np.asarray(grid.size) - 1) / 2)[0]))
    motion.SetRotation(np.radians(4.0), np.radians(-3.0), np.radians(5.0))
    motion.SetTranslation((3.0, -4.0, 2.0))
    moved = resample_to_grid(case.adc, case.adc, transform=motion.GetInverse())
    still = prepare_case(case.dwi, case.adc)
    registered = prepare_case(case.dwi, moved, PreprocessConfig(register=True))
    unregistered = prepare_case(case.dwi, moved, PreprocessConfig(register=False))
    assert registered.alignment.method == "rigid" and unregistered.alignment.method == "identity"
    brain = still.brain_mask.astype(bool)

    def correlation(a: PreparedCase) -> float:
        return float(np.corrcoef(still.image[1][brain], a.image[1][brain])[0, 1])

    assert correlation(registered) > 0.95 > correlation(unregistered) + 0.1


def test_progress_cancel_and_bad_input(shifted_case) -> None:
    stages: list[tuple[str, float]] = []
    prepare_case(shifted_case.dwi, shifted_case.adc, progress=lambda stage, fraction: stages.append((stage, fraction)))
    names = [s for s, _ in stages]
    assert names[0] == "Aligning ADC" and names[-1] == "Normalising"
    assert {"Brain mask", "Resampling"} <= set(names)
    assert all(0.0 <= f <= 1.0 for _, f in stages)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        prepare_case(shifted_case.dwi, shifted_case.adc, cancel=stop)
    flat = sitk.Image([10, 10], sitk.sitkFloat32)
    with pytest.raises(InvalidImageError, match="adc_2d.nii.gz"):
        prepare_case(shifted_case.dwi, flat, adc_path="adc_2d.nii.gz")
