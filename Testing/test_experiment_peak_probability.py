"""docs/experiments/peak_probability.py: the model card's claim that missed lesions are not seen rests on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from experiment_scripts import load_experiment_script

from StrokeSegLib.common.errors import GeometryError


@pytest.fixture(scope="module")
def peaks():
    return load_experiment_script("peak_probability")


def _write(array: np.ndarray, path: Path, spacing=(2.0, 2.0, 2.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def test_each_lesion_gets_its_own_volume_and_peak(peaks) -> None:
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:4, 1:4, 1:4] = 1          # 27 voxels
    mask[8, 8, 8] = 1                # 1 voxel, apart from the first
    prob = np.full(mask.shape, 0.9, np.float32)  # high outside the lesions: must not count
    prob[1:4, 1:4, 1:4] = 0.2
    prob[2, 2, 2] = 0.6
    prob[8, 8, 8] = 0.004
    rows = peaks.lesion_peaks(mask, {"A": prob}, voxel_ml=0.008)
    assert rows == [(pytest.approx(27 * 0.008), {"A": pytest.approx(0.6)}),
                    (pytest.approx(0.008), {"A": pytest.approx(0.004)})]
    diagonal = np.zeros_like(mask)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1   # corner neighbours: one 26-connected lesion, as in the ISLES metrics
    assert len(peaks.lesion_peaks(diagonal, {"A": prob}, 0.008)) == 1


def test_every_arm_s_peak_in_a_row_belongs_to_the_same_lesion(peaks) -> None:
    """Lesions of equal size: a row pairs each arm's peak inside one lesion, never arm A's of one and B's of another."""
    mask = np.zeros((5, 5, 5), np.uint8)
    mask[0, 0, 0] = mask[4, 4, 4] = 1
    a, b = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, np.float32)
    a[0, 0, 0], a[4, 4, 4] = 0.1, 0.9
    b[0, 0, 0], b[4, 4, 4] = 0.8, 0.2
    pairs = {(round(r["A"], 3), round(r["B"], 3)) for _, r in peaks.lesion_peaks(mask, {"A": a, "B": b}, 0.008)}
    assert pairs == {(0.1, 0.8), (0.9, 0.2)}


def test_a_probability_map_on_another_grid_is_refused(peaks, tmp_path: Path) -> None:
    mask = _write(np.ones((4, 4, 4), np.uint8), tmp_path / "m.nii.gz")
    for name, shape, spacing in (("size", (4, 4, 5), (2.0, 2.0, 2.0)), ("spacing", (4, 4, 4), (2.0, 2.0, 3.0))):
        prob = _write(np.ones(shape, np.float32), tmp_path / f"{name}.nii.gz", spacing)
        with pytest.raises(GeometryError, match="not on the same voxel grid"):
            peaks.case_rows(mask, {"A": prob})
    same = _write(np.ones((4, 4, 4), np.float32), tmp_path / "same.nii.gz")
    assert peaks.case_rows(mask, {"A": same}) == [(pytest.approx(64 * 0.008), {"A": 1.0})]
