"""Which expert lesions a prediction finds, by size: matching at 26-connectivity and the size bins."""
from __future__ import annotations

import numpy as np
import pytest

from StrokeSegLib.evaluation.lesion_detection import SIZE_EDGES_ML, detect_lesions, detection_by_size


def test_found_missed_and_false_lesions_are_told_apart() -> None:
    gt = np.zeros((12, 12, 12), np.uint8)
    gt[1:4, 1:4, 1:4] = 1          # 27 voxels, touched by one predicted voxel
    gt[8, 8, 8] = 1                # a single voxel, missed
    gt[5, 5, 5] = gt[6, 6, 6] = 1  # corner neighbours: one lesion at 26-connectivity, touched
    pred = np.zeros_like(gt)
    pred[2, 2, 2] = 1
    pred[6, 6, 6] = pred[6, 6, 7] = 1
    pred[10, 0, 0] = 1             # touches nothing
    result = detect_lesions(gt, pred, voxel_volume_ml=0.008)
    assert sorted(zip(result.volumes_ml, result.found)) == [
        (pytest.approx(0.008), False), (pytest.approx(0.016), True), (pytest.approx(0.216), True)]
    assert result.predicted_lesions == 3 and result.false_lesions == 1


def test_empty_masks_and_shape_mismatch() -> None:
    empty = np.zeros((4, 4, 4), bool)
    result = detect_lesions(empty, empty, 0.001)
    assert result.volumes_ml == () and result.found == () and result.predicted_lesions == 0
    with pytest.raises(ValueError, match="shape"):
        detect_lesions(empty, np.zeros((4, 4, 5), bool), 0.001)


def test_size_bins_are_half_open_and_cover_everything() -> None:
    volumes = [0.05, 0.1, 0.49, 2.0, 9.99, 10.0, 150.0]
    found = [True, False, True, True, False, True, True]
    rows = detection_by_size(volumes, found)
    assert [r["label"] for r in rows] == ["< 0.1", "0.1–0.5", "0.5–2", "2–10", "≥ 10"]
    assert len(rows) == len(SIZE_EDGES_ML) + 1
    assert [(r["found"], r["lesions"]) for r in rows] == [(1, 1), (1, 2), (0, 0), (1, 2), (2, 2)]
    assert rows[2]["rate"] is None and rows[1]["rate"] == 0.5
    assert sum(r["lesions"] for r in rows) == len(volumes)
