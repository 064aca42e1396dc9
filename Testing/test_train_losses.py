"""Focal Tversky and deep supervision: hand-computed values and the behaviour the weights promise."""
from __future__ import annotations

import math

import pytest
import torch

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegTrainLib.config import LossConfig, TrainConfig
from StrokeSegTrainLib.losses import (
    DeepSupervisionLoss,
    SegmentationLoss,
    deep_supervision_weights,
    focal_tversky,
    small_lesion_weights,
    tversky_index,
)


def test_tversky_index_by_hand() -> None:
    prob = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0]).view(1, 1, 5, 1, 1)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0]).view(1, 1, 5, 1, 1)
    # TP=2, FP=1, FN=2 -> (2 + 1) / (2 + 0.25*1 + 0.85*2 + 1)
    expected = 3.0 / (2 + 0.25 + 1.7 + 1)
    assert tversky_index(prob, target, 0.25, 0.85, smooth=1.0).item() == pytest.approx(expected)


def test_focal_conventions() -> None:
    logits = torch.tensor([5.0, -5.0, 0.0, 2.0]).view(1, 1, 4, 1, 1)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 1, 4, 1, 1)
    ti = tversky_index(torch.sigmoid(logits), target, 0.25, 0.85).item()
    inverse = focal_tversky(logits, target, gamma=2.0, convention="inverse").item()
    power = focal_tversky(logits, target, gamma=2.0, convention="power").item()
    assert inverse == pytest.approx(math.sqrt(1 - ti), rel=1e-5)
    assert power == pytest.approx((1 - ti) ** 2, rel=1e-5)


def test_false_negatives_cost_more_than_false_positives() -> None:
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 2:6, 2:6, 2:6] = 1  # 64 lesion voxels
    perfect = torch.where(target > 0, 10.0, -10.0)
    half_missed = perfect.clone()
    half_missed[..., 2:4, 2:6, 2:6] = -10.0  # 32 false negatives
    over = perfect.clone()
    over[..., 6:8, 2:6, 2:6] = 10.0  # 32 false positives
    loss = SegmentationLoss(LossConfig())
    assert loss(half_missed, target) > loss(over, target) > loss(perfect, target)
    assert loss(perfect, target) < 0.05


def test_combined_terms_add_up() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 4, 4, 4), (torch.rand(2, 1, 4, 4, 4) > 0.7).float()
    base = SegmentationLoss(LossConfig())(logits, target)
    with_bce = SegmentationLoss(LossConfig(bce_weight=0.5))(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert with_bce.item() == pytest.approx(base.item() + 0.5 * bce.item(), rel=1e-5)


def test_deep_supervision_weights_and_targets() -> None:
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., :4, :, :] = 1
    outputs = [torch.full((1, 1, 8, 8, 8), 3.0), torch.full((1, 1, 4, 4, 4), 3.0)]
    base = SegmentationLoss(LossConfig())
    total = DeepSupervisionLoss(base)(outputs, target)
    coarse_target = torch.zeros(1, 1, 4, 4, 4)
    coarse_target[..., :2, :, :] = 1
    expected = 2 / 3 * base(outputs[0], target) + 1 / 3 * base(outputs[1], coarse_target)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert DeepSupervisionLoss(base)(outputs[0], target).item() == pytest.approx(base(outputs[0], target).item())


def _small_and_large_lesion() -> torch.Tensor:
    """A 2-voxel lesion and a 12x12x12 infarct, far apart, in one patch."""
    target = torch.zeros(1, 1, 24, 40, 24)
    target[0, 0, 4, 4, 4:6] = 1
    target[0, 0, 6:18, 20:32, 6:18] = 1
    return target


def test_small_lesion_weights_follow_lesion_size() -> None:
    target = _small_and_large_lesion()
    weights = small_lesion_weights(target, 64.0)
    assert weights[0, 0, 4, 4, 4].item() == pytest.approx(32.0)  # 64 / its 2 voxels
    assert weights[0, 0, 12, 26, 12].item() == pytest.approx(1.0)  # deep inside the large infarct
    assert weights[target == 0].eq(1.0).all()  # background keeps weight 1: no more pressure to predict lesion there
    assert weights[0, 0, 6, 20, 6].item() < 64.0 / 27 + 1e-5  # the large one's corner sees 27 lesion voxels at least


def test_small_lesion_weighting_makes_a_missed_small_lesion_cost_more() -> None:
    target = _small_and_large_lesion()
    perfect = torch.where(target > 0, 8.0, -8.0)
    small_missed = perfect.clone()
    small_missed[0, 0, 4, 4, 4:6] = -8.0
    edge_missed = perfect.clone()
    edge_missed[0, 0, 6, 20:32, 6:8] = -8.0  # 24 edge voxels of the large infarct
    plain = SegmentationLoss(LossConfig(bce_weight=1.0, alpha=0.5, beta=0.5, gamma=1.0))
    weighted = SegmentationLoss(LossConfig(bce_weight=1.0, alpha=0.5, beta=0.5, gamma=1.0, small_lesion_voxels=64))
    # unweighted, missing 24 voxels of the large infarct is worse than missing the whole small lesion; weighted, not
    assert plain(small_missed, target) < plain(edge_missed, target)
    assert weighted(small_missed, target) > weighted(edge_missed, target)
    # the weighting changes the BCE term only, by exactly the weights
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    extra = bce(small_missed, target, weight=small_lesion_weights(target, 64.0)) - bce(small_missed, target)
    difference = weighted(small_missed, target) - plain(small_missed, target)
    assert difference.item() == pytest.approx(extra.item(), rel=1e-4)


def test_small_lesion_weighting_needs_the_bce_term() -> None:
    with pytest.raises(StrokeSegError, match="bce_weight"):
        TrainConfig.from_dict({"loss": {"small_lesion_voxels": 64}}).validate()
    with pytest.raises(StrokeSegError, match="small_lesion_voxels"):
        TrainConfig.from_dict({"loss": {"small_lesion_voxels": -1, "bce_weight": 1}}).validate()
    TrainConfig.from_dict({"loss": {"small_lesion_voxels": 64, "bce_weight": 1}}).validate()
