"""Same scan, same mask: the network sees every scan in one canonical axis order, whatever order it was stored in.

Each case is stored again with its index axes permuted and flipped (``sitk.PermuteAxes`` / ``sitk.Flip`` keep every
voxel at its physical position), and loaded through Slicer's reader (which reverses the slice axis of these files);
the masks are compared in physical space, voxel by voxel, after an exact reordering onto the original grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.apps.phantom import make_synthetic_case
from StrokeSegLib.common.geometry import (
    CANONICAL_FRAME,
    Grid,
    canonical_axes,
    canonical_grid,
    coincident_axes,
    resample_to_grid,
)
from StrokeSegLib.engine.segmentation import SegmentOptions, segment_files, segment_images
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

BUNDLED = (Path(__file__).resolve().parents[1] / "StrokeSeg" / "StrokeSegLib" / "models"
           / "strokeseg-starter.safetensors")
ISLES_DWI = "sub-strokecase0009/ses-0001/dwi/sub-strokecase0009_ses-0001_dwi.nii.gz"
ISLES_ADC = "sub-strokecase0009/ses-0001/dwi/sub-strokecase0009_ses-0001_adc.nii.gz"

#: (axis order, flips) of PermuteAxes then Flip: x/y swapped, slices reversed, everything reordered and reversed.
STORAGES = [((1, 0, 2), (False, False, False)), ((0, 1, 2), (False, False, True)),
            ((2, 0, 1), (True, True, False)), ((1, 2, 0), (True, False, True))]


def restored(image: sitk.Image, order, flips) -> sitk.Image:
    return sitk.Flip(sitk.PermuteAxes(image, list(order)), list(flips))


def on_grid_exactly(mask: sitk.Image, grid: Grid) -> np.ndarray:
    """A mask moved onto ``grid`` whose voxels are the mask's own in another order: a copy, never an interpolation."""
    assert coincident_axes(mask, grid) is not None, "the two grids should hold the same voxels"
    return sitk.GetArrayFromImage(resample_to_grid(mask, grid, "nearest"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, make_tiny_model) -> Path:
    # 2 mm like the synthetic case below, so the canonical grid holds the scan's own voxels.
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors", "tiny-canonical",
                           preprocess=PreprocessConfig(target_spacing=(2.0, 2.0, 2.0), adc_normalization="zscore"),
                           patch_size=(16, 32, 32), threshold=0.5)


def test_every_storage_order_gets_the_same_canonical_grid_and_the_same_voxels() -> None:
    dwi = make_synthetic_case(seed=3, size=(30, 26, 14), spacing=(1.7, 1.3, 3.1), oblique=True).dwi
    reference = canonical_grid(dwi, (2.0, 2.0, 2.0))
    frame_cos = np.diag(CANONICAL_FRAME.T @ reference.matrix)
    assert np.all(frame_cos > 0.8), "each canonical axis points along its anatomical axis, obliquity kept"
    for order, flips in STORAGES:
        stored = restored(dwi, order, flips)
        assert canonical_grid(stored, (2.0, 2.0, 2.0)) == reference  # equality: origin and size from the box
        # At the scan's own spacing the canonical grid holds the scan's voxels: a copy, no interpolation.
        own = canonical_grid(stored, _own_spacing(dwi))
        assert own == canonical_grid(dwi, _own_spacing(dwi))
        copied = sitk.GetArrayFromImage(resample_to_grid(stored, own, "nearest"))
        assert np.array_equal(copied, sitk.GetArrayFromImage(resample_to_grid(dwi, own, "nearest")))
        assert np.array_equal(on_grid_exactly(resample_to_grid(stored, own, "nearest"), Grid.of(dwi)),
                              sitk.GetArrayFromImage(dwi))


def _own_spacing(image: sitk.Image) -> tuple[float, float, float]:
    """The image's spacing in canonical axis order."""
    axes = canonical_axes(image)
    return tuple(image.GetSpacing()[a] for a in axes.order)  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (1.6, 1.6, 3.5)], ids=["coinciding", "resampled"])
def test_synthetic_case_in_any_storage_order_gives_the_same_mask(tiny: Path, spacing) -> None:
    case = make_synthetic_case(seed=11, size=(40, 36, 20) if spacing[2] == 2.0 else (50, 44, 12), spacing=spacing,
                               oblique=True)
    options = SegmentOptions(device="cpu", threshold=0.5)
    expected = sitk.GetArrayFromImage(segment_images(case.dwi, case.adc, tiny, options).mask)
    assert 0 < expected.sum() < expected.size, "the tiny model should mark some voxels (else the test proves little)"
    for order, flips in STORAGES:
        result = segment_images(restored(case.dwi, order, flips), restored(case.adc, order, flips), tiny, options)
        assert np.array_equal(on_grid_exactly(result.mask, Grid.of(case.dwi)), expected), (order, flips)


@pytest.mark.slow
def test_bundled_model_gives_the_same_mask_in_any_storage_order() -> None:
    case = make_synthetic_case(seed=5, size=(56, 56, 30), spacing=(2.0, 2.0, 2.0), oblique=True)
    options = SegmentOptions(device="cpu")
    expected = sitk.GetArrayFromImage(segment_images(case.dwi, case.adc, BUNDLED, options).mask)
    assert expected.sum() > 0, "the bundled model should find the synthetic lesion"
    for order, flips in STORAGES[:2]:
        result = segment_images(restored(case.dwi, order, flips), restored(case.adc, order, flips), BUNDLED, options)
        assert np.array_equal(on_grid_exactly(result.mask, Grid.of(case.dwi)), expected), (order, flips)


# ---- Slicer's reader and the MRML adapter against segment_files on the same file ----


def slicer_loaded_mask(scene, dwi_path: Path, adc_path: Path, model: Path, threshold: float | None) -> sitk.Image:
    """Load both files as Slicer's Add Data does, run the module logic, export the lesion segment on the DWI node."""
    slicer = pytest.importorskip("slicer")
    from StrokeSegLib.scene import mrml
    from StrokeSegLib.scene.logic import StrokeSegLogic

    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    dwi = volumes.AddArchetypeVolume(str(dwi_path), "dwi", 0)
    adc = volumes.AddArchetypeVolume(str(adc_path), "adc", 0)
    assert dwi is not None and adc is not None
    seg = StrokeSegLogic().process(dwi, adc, model=model, device="cpu", threshold=threshold)
    return mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)


@pytest.mark.slow
def test_slicer_loaded_synthetic_files_give_the_segment_files_mask(scene, tiny: Path, tmp_path: Path) -> None:
    case = make_synthetic_case(seed=11, size=(40, 36, 20), spacing=(2.0, 2.0, 2.0), oblique=True)
    dwi_path, adc_path = tmp_path / "dwi.nii.gz", tmp_path / "adc.nii.gz"
    # Stored left-handed like the ISLES files (slices reversed), which Slicer's reader turns back: another index order.
    sitk.WriteImage(sitk.Flip(case.dwi, [False, False, True]), str(dwi_path))
    sitk.WriteImage(sitk.Flip(case.adc, [False, False, True]), str(adc_path))
    expected = segment_files(dwi_path, adc_path, tiny, SegmentOptions(device="cpu", threshold=0.5)).mask
    assert sitk.GetArrayFromImage(expected).sum() > 0
    loaded = slicer_loaded_mask(scene, dwi_path, adc_path, tiny, 0.5)
    assert Grid.of(loaded) != Grid.of(expected), "Slicer should have loaded this file in another index order"
    assert np.array_equal(on_grid_exactly(loaded, Grid.of(expected)), sitk.GetArrayFromImage(expected))


@pytest.mark.slow
@pytest.mark.realdata
def test_isles_case_through_slicer_and_in_another_storage_order_gives_the_same_bundled_mask(
        scene, isles_root: Path) -> None:
    dwi_path, adc_path = isles_root / ISLES_DWI, isles_root / ISLES_ADC
    expected_image = segment_files(dwi_path, adc_path, BUNDLED, SegmentOptions(device="cpu")).mask
    expected = sitk.GetArrayFromImage(expected_image)
    assert expected.sum() > 50, "the bundled model finds this case's lesion"
    # Slicer reverses this file's slice axis; the mask must still be the same voxels.
    loaded = slicer_loaded_mask(scene, dwi_path, adc_path, BUNDLED, None)
    assert Grid.of(loaded) != Grid.of(expected_image), "Slicer should have loaded this file in another index order"
    assert np.array_equal(on_grid_exactly(loaded, Grid.of(expected_image)), expected)
    # x and y swapped, slices reversed.
    dwi, adc = sitk.ReadImage(str(dwi_path)), sitk.ReadImage(str(adc_path))
    order, flips = (1, 0, 2), (False, True, True)
    result = segment_images(restored(dwi, order, flips), restored(adc, order, flips), BUNDLED,
                            SegmentOptions(device="cpu"))
    assert np.array_equal(on_grid_exactly(result.mask, Grid.of(expected_image)), expected)
