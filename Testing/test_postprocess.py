"""Thresholding, brain restriction, removal of small lesions in mm³, and the lesion table."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.engine.postprocess import lesion_table, lesion_volume_ml, postprocess, remove_small_components


def test_threshold_and_brain_mask() -> None:
    prob = np.zeros((4, 5, 6), dtype=np.float32)
    prob[1, 1, 1] = 0.5
    prob[1, 1, 4] = 0.49
    prob[2, 3, 3] = 0.9
    brain = np.ones_like(prob, dtype=np.uint8)
    brain[2, 3, 3] = 0
    out = postprocess(prob, brain, threshold=0.5, min_lesion_mm3=0, spacing=(1, 1, 1))
    assert out.dtype == np.uint8 and out.shape == prob.shape
    assert out.sum() == 1 and out[1, 1, 1] == 1
    assert postprocess(prob, None, 0.5, 0, (1, 1, 1)).sum() == 2
    assert prob[2, 3, 3] == pytest.approx(0.9)  # inputs untouched


def test_read_only_inputs_accepted() -> None:
    prob = np.full((3, 3, 3), 0.8, dtype=np.float32)
    prob.setflags(write=False)
    brain = np.ones((3, 3, 3), dtype=np.uint8)
    brain.setflags(write=False)
    assert postprocess(prob, brain, 0.5, 0.0, (1, 1, 1)).sum() == 27


def test_small_components_dropped_by_mm3_with_anisotropic_spacing() -> None:
    prob = np.zeros((10, 10, 10), dtype=np.float32)
    prob[1, 1, 1:3] = 1.0  # 2 voxels
    prob[5:7, 5, 5:8] = 1.0  # 6 voxels
    spacing = (0.5, 1.0, 4.0)  # x, y, z: 2 mm³ per voxel
    out = postprocess(prob, None, 0.5, min_lesion_mm3=12.0, spacing=spacing)
    assert out[1, 1, 1:3].sum() == 0  # 4 mm³ < 12
    assert out[5:7, 5, 5:8].sum() == 6  # 12 mm³ kept (the minimum is inclusive)
    # The same voxels with isotropic 1 mm spacing are both below 12 mm³: spacing, not voxel count, decides.
    assert postprocess(prob, None, 0.5, min_lesion_mm3=12.0, spacing=(1, 1, 1)).sum() == 0
    assert postprocess(prob, None, 0.5, min_lesion_mm3=3.0, spacing=spacing).sum() == 8


def test_diagonal_neighbours_are_one_lesion() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = True  # corner-touching only: 26-connected, not 6-connected
    kept = remove_small_components(mask, min_lesion_mm3=3.0, spacing=(1, 1, 1))
    assert kept.sum() == 3
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    assert len(lesion_table(image)) == 1


def test_invalid_arguments() -> None:
    prob = np.zeros((3, 3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="threshold"):
        postprocess(prob, None, 1.5, 0, (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        postprocess(prob, None, 0.5, 10, (1, 0, 1))
    with pytest.raises(ValueError, match="brain mask shape"):
        postprocess(prob, np.ones((3, 3, 4)), 0.5, 0, (1, 1, 1))
    with pytest.raises(ValueError, match="3-D"):
        postprocess(prob[0], None, 0.5, 0, (1, 1, 1))


def test_lesion_table_physical_measures() -> None:
    arr = np.zeros((6, 8, 10), dtype=np.uint8)
    arr[1, 1, 1] = 1  # small lesion, 1 voxel
    arr[3:5, 4:6, 6:9] = 2  # large lesion, 12 voxels (any nonzero label counts as lesion)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.5, 1.0, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    rows = lesion_table(image)
    assert [r["id"] for r in rows] == [1, 2]
    assert [r["voxels"] for r in rows] == [12, 1]
    assert rows[0]["volume_ml"] == pytest.approx(12 * 1.0 / 1000)
    # centre of the big lesion: index (x, y, z) = (7, 4.5, 3.5); x runs along -L because of the direction matrix
    expected = image.TransformContinuousIndexToPhysicalPoint((7.0, 4.5, 3.5))
    assert rows[0]["centroid_lps_mm"] == pytest.approx(list(expected))
    assert rows[0]["centroid_lps_mm"][0] == pytest.approx(10.0 - 7 * 0.5)
    assert rows[1]["centroid_lps_mm"] == pytest.approx([10.0 - 0.5, -19.0, 32.0])
    assert lesion_volume_ml(image) == pytest.approx(13 / 1000)


def test_empty_mask() -> None:
    image = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    assert lesion_table(image) == []
    assert lesion_volume_ml(image) == 0.0
    assert postprocess(np.zeros((4, 4, 4)), None, 0.5, 10.0, (1, 1, 1)).sum() == 0
