"""docs/experiments/lesion_contrast.py: the contrast figures in high-resolution/RESULTS.md rest on it."""
from __future__ import annotations

import numpy as np
import pytest
from experiment_scripts import load_experiment_script


@pytest.fixture(scope="module")
def contrast():
    return load_experiment_script("lesion_contrast")


def test_contrast_is_each_lesion_s_mean_over_the_brain_median_outside_the_lesions(contrast) -> None:
    dwi = np.zeros((12, 12, 12))
    adc = np.zeros_like(dwi)
    dwi[1:11, 1:11, 1:11], adc[1:11, 1:11, 1:11] = 100.0, 0.8   # brain; the zero border is background
    dwi[8:11, 1:11, 1:11], adc[8:11, 1:11, 1:11] = 10.0, 3.0     # dim, CSF-like: 30 % of the head, not brain
    mask = np.zeros(dwi.shape, np.uint8)
    mask[2:5, 2:5, 2:5] = 1                                       # 27 voxels: twice as bright, ADC at 60 %
    dwi[2:5, 2:5, 2:5], adc[2:5, 2:5, 2:5] = 200.0, 0.48
    mask[6, 8, 8] = 1                                             # 1 voxel: 1.5x, ADC at 90 %
    dwi[6, 8, 8], adc[6, 8, 8] = 150.0, 0.72
    rows = contrast.lesion_contrasts(dwi, adc, mask, voxel_ml=0.008)
    assert rows == [pytest.approx((27 * 0.008, 2.0, 0.6)), pytest.approx((0.008, 1.5, 0.9))]


def test_a_case_with_no_brain_outside_the_lesions_is_refused(contrast) -> None:
    dwi, adc = np.ones((4, 4, 4)), np.ones((4, 4, 4))
    with pytest.raises(ValueError, match="no brain voxels"):
        contrast.lesion_contrasts(dwi, adc, np.ones((4, 4, 4), np.uint8), 0.008)
