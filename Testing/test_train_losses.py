"""Focal Tversky and deep supervision: hand-computed values and the behaviour the weights promise."""
from __future__ import annotations

import math

import pytest
import torch

from StrokeSegTrainLib.config import LossConfig
from StrokeSegTrainLib.losses import (
    DeepSupervisionLoss,
    SegmentationLoss,
    deep_supervision_weights,
    focal_tversky,
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
