"""Segmentation losses: focal Tversky (optionally plus BCE or soft Dice) and deep supervision.

Stroke lesions are tiny compared with the brain (median ~6 mL of ~1.3 L), so an overlap loss that weighs false
negatives more than false positives is used, as in the reference project (alpha=0.25 on FP, beta=0.85 on FN, gamma=2).
All sums are computed in float32 even under AMP, because half-precision sums over a million voxels lose the lesion.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .config import LossConfig


def _overlap_terms(prob: torch.Tensor, target: torch.Tensor, batch_reduction: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft TP, FP, FN summed over the volume (and the batch when ``batch_reduction``)."""
    dims = tuple(range(prob.ndim)) if batch_reduction else tuple(range(1, prob.ndim))
    tp = (prob * target).sum(dims)
    fp = (prob * (1.0 - target)).sum(dims)
    fn = ((1.0 - prob) * target).sum(dims)
    return tp, fp, fn


def tversky_index(prob: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, smooth: float = 1.0,
                  batch_reduction: bool = True) -> torch.Tensor:
    """TI = (TP + s) / (TP + alpha*FP + beta*FN + s) (Salehi et al. 2017; alpha weighs FP, beta weighs FN)."""
    tp, fp, fn = _overlap_terms(prob.float(), target.float(), batch_reduction)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def focal_tversky(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, beta: float = 0.85,
                  gamma: float = 2.0, convention: str = "inverse", smooth: float = 1.0,
                  batch_reduction: bool = True) -> torch.Tensor:
    """Focal Tversky loss of sigmoid(logits) against a (soft) target in [0, 1].

    Formula: ``FTL = (1 - TI) ** (1 / gamma)`` with ``convention="inverse"`` (the default; Abraham & Khan 2019, "A
    novel focal Tversky loss function with improved attention U-Net for lesion segmentation", ISBI, eq. 4), or
    ``FTL = (1 - TI) ** gamma`` with ``convention="power"`` (the form used by several public implementations).
    TI is defined in :func:`tversky_index` with alpha on false positives and beta on false negatives; note that
    Abraham & Khan name these weights the other way round (their alpha multiplies false negatives).

    With ``batch_reduction`` the sums run over the whole batch ("batch Dice"), so a lesion-free background patch does
    not on its own produce a maximal loss for a handful of false-positive voxels. ``1 - TI`` is clamped at 1e-6 so
    that the fractional power stays differentiable when a batch is segmented perfectly.
    """
    return focal_tversky_prob(torch.sigmoid(logits.float()), target, alpha, beta, gamma, convention, smooth,
                              batch_reduction)


def focal_tversky_prob(prob: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, beta: float = 0.85,
                       gamma: float = 2.0, convention: str = "inverse", smooth: float = 1.0,
                       batch_reduction: bool = True) -> torch.Tensor:
    """:func:`focal_tversky` on probabilities (validation scores whole-volume sliding-window probabilities)."""
    ti = tversky_index(prob, target, alpha, beta, smooth, batch_reduction)
    one_minus = (1.0 - ti).clamp_min(1e-6)
    exponent = 1.0 / gamma if convention == "inverse" else gamma
    return one_minus.pow(exponent).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                   batch_reduction: bool = True) -> torch.Tensor:
    """1 - soft Dice of sigmoid(logits): the symmetric overlap term, for combining with focal Tversky."""
    tp, fp, fn = _overlap_terms(torch.sigmoid(logits.float()), target.float(), batch_reduction)
    return (1.0 - (2 * tp + smooth) / (2 * tp + fp + fn + smooth)).mean()


#: Side of the cube around a lesion voxel in which :func:`small_lesion_weights` counts lesion voxels: lesions up to
#: about this many voxels across are told apart by size; larger ones all weigh 1.
SMALL_LESION_WINDOW = 9


def small_lesion_weights(target: torch.Tensor, small_lesion_voxels: float) -> torch.Tensor:
    """Per-voxel BCE weights for ``target`` (N, 1, z, y, x) in [0, 1]: ``max(1, small_lesion_voxels / n)`` on lesion
    voxels, where ``n`` is the (soft) count of lesion voxels in the voxel's ``SMALL_LESION_WINDOW``-cube (at least 1),
    and 1 elsewhere (soft targets blend the two).

    Lesion-wise F1 counts a two-voxel lesion as much as a large infarct, but in a voxel-wise loss it weighs two voxels'
    worth: the network learns to ignore it. The neighbourhood count stands in for the lesion's size without
    connected components, so it runs on any device without a host round trip, and clustered small lesions (an
    embolic shower) count as one larger lesion. Not differentiated.
    """
    with torch.no_grad():
        t = target.float()
        pad = SMALL_LESION_WINDOW // 2
        count = F.avg_pool3d(t, SMALL_LESION_WINDOW, stride=1, padding=pad, count_include_pad=True)
        count = count * SMALL_LESION_WINDOW ** 3
        boost = (small_lesion_voxels / count.clamp_min(1.0)).clamp_min(1.0)
        return 1.0 + t * (boost - 1.0)


class SegmentationLoss(torch.nn.Module):
    """Focal Tversky + ``bce_weight`` * BCE (small lesions weighted up when ``small_lesion_voxels``) + ``dice_weight`` *
    soft Dice, as set in :class:`LossConfig`."""

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        loss = focal_tversky(logits, target, c.alpha, c.beta, c.gamma, c.focal_convention, c.smooth,
                             c.batch_reduction)
        if c.bce_weight:
            weight = small_lesion_weights(target, c.small_lesion_voxels) if c.small_lesion_voxels else None
            loss = loss + c.bce_weight * F.binary_cross_entropy_with_logits(logits.float(), target.float(),
                                                                            weight=weight)
        if c.dice_weight:
            loss = loss + c.dice_weight * soft_dice_loss(logits, target, c.smooth, c.batch_reduction)
        return loss


def deep_supervision_weights(levels: int) -> list[float]:
    """1, 1/2, 1/4, ... normalised to sum to 1: coarse outputs guide early training without dominating it."""
    raw = [0.5 ** i for i in range(levels)]
    total = sum(raw)
    return [w / total for w in raw]


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Average-pool the target to ``size``: a soft fraction, so lesions smaller than a coarse voxel still count."""
    if tuple(target.shape[2:]) == tuple(size):
        return target
    return F.adaptive_avg_pool3d(target.float(), tuple(int(s) for s in size))  # type: ignore[arg-type]


class DeepSupervisionLoss(torch.nn.Module):
    """Weighted sum of ``base`` over the network's outputs (a tensor, or a list with full resolution first)."""

    def __init__(self, base: torch.nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.base(outputs, target)
        weights = deep_supervision_weights(len(outputs))
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for weight, output in zip(weights, outputs):
            total = total + weight * self.base(output, downsample_target(target, output.shape[2:]))
        return total
