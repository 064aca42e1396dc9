"""Validation exactly as deployment sees it: whole volumes, native space, official ISLES metrics.

A validation Dice computed on patches, or on the resampled 2 mm grid, is not the number a user will get. Each held-out
case is therefore predicted with the same ``sliding_window_predict`` and ``postprocess`` as ``strokeseg segment``,
mapped back onto the DWI's own grid, and scored against the untouched expert mask with ``metrics.case_metrics``. The
validation loss (focal Tversky part only) is computed on the network grid, where the probabilities live.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from StrokeSegLib.common.progress import CancelToken, ProgressCallback, check_cancel, report
from StrokeSegLib.engine.devices import INFERENCE_AMP
from StrokeSegLib.engine.postprocess import postprocess
from StrokeSegLib.engine.sliding_window import sliding_window_predict
from StrokeSegLib.evaluation.metrics import METRIC_KEYS, case_metrics
from StrokeSegLib.io.imageio import write_image

from .config import TrainConfig
from .data_cache import CachedCase
from .losses import focal_tversky_prob


@dataclass
class ValidationResult:
    """Per-case rows (``case_id`` + METRIC_KEYS) and the mean validation loss."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    loss: float = float("nan")
    predictions: dict[str, sitk.Image] = field(default_factory=dict)
    case_losses: list[float] = field(default_factory=list)  # one per row, in the same order

    @classmethod
    def merged(cls, parts: list[ValidationResult], order: list[str]) -> ValidationResult:
        """One result from the parts of a validation shared between processes, rows in ``order`` (case ids)."""
        position = {case_id: index for index, case_id in enumerate(order)}
        pairs = sorted(((row, loss) for part in parts for row, loss in zip(part.rows, part.case_losses, strict=True)),
                       key=lambda pair: position[pair[0]["case_id"]])
        losses = [loss for _, loss in pairs]
        return cls(rows=[row for row, _ in pairs], loss=statistics.fmean(losses) if losses else float("nan"),
                   predictions={k: v for part in parts for k, v in part.predictions.items()}, case_losses=losses)

    def write_predictions(self, folder: str | Path) -> None:
        """``<case_id>_msk.nii.gz`` per kept prediction (the names ``strokeseg evaluate`` reads)."""
        for case_id, mask in self.predictions.items():
            write_image(mask, Path(folder) / f"{case_id}_msk.nii.gz")

    def mean(self, key: str) -> float:
        values = [float(r[key]) for r in self.rows if math.isfinite(float(r[key]))]
        return statistics.fmean(values) if values else float("nan")

    def history_columns(self) -> dict[str, float]:
        """What goes into the epoch's history row."""
        return {"val_loss": self.loss, "val_dice": self.mean("dice"), "val_avd_ml": self.mean("avd_ml"),
                "val_lesion_f1": self.mean("lesion_f1"), "val_alcd": self.mean("alcd")}


def predict_case(network: torch.nn.Module, case: CachedCase, config: TrainConfig, device: torch.device
                 ) -> tuple[torch.Tensor, sitk.Image]:
    """Network-grid probabilities (1, z, y, x) and the post-processed native-space mask (uint8 on the DWI grid)."""
    image = torch.from_numpy(np.array(case.image, dtype=np.float32))  # a writable copy of the memory map
    prob = sliding_window_predict(network, image, patch_size=config.patch_size, overlap=config.val_overlap,
                                  batch_size=config.val_batch_size, device=device, amp=INFERENCE_AMP,
                                  mirror_tta=False)
    native_prob = case.to_native(prob[0].numpy(), interpolator="linear")
    mask = postprocess(sitk.GetArrayViewFromImage(native_prob), np.asarray(case.native_brain),
                       threshold=config.threshold, min_lesion_mm3=config.min_lesion_mm3,
                       spacing=case.native_grid.spacing)
    return prob, case.native_image(mask.astype(np.uint8))


@torch.no_grad()
def validate(network: torch.nn.Module, cases: list[CachedCase], config: TrainConfig, device: torch.device,
             progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
             keep_predictions: bool = False) -> ValidationResult:
    """Score ``network`` on ``cases``; with ``keep_predictions`` also return the native-space masks (a few MB per
    case) so that the caller can write them when this turns out to be the best epoch."""
    result = ValidationResult()
    lc = config.loss
    for index, case in enumerate(cases):
        check_cancel(cancel)
        report(progress, "Validating", index / max(len(cases), 1))
        prob, predicted = predict_case(network, case, config, device)
        target = torch.from_numpy(np.asarray(case.mask, dtype=np.float32))[None, None]
        result.case_losses.append(float(focal_tversky_prob(prob[None], target, lc.alpha, lc.beta, lc.gamma,
                                               lc.focal_convention, lc.smooth, batch_reduction=True)))
        scores = case_metrics(case.native_image(np.asarray(case.native_mask)), predicted)
        result.rows.append({"case_id": case.case_id, **{k: scores[k] for k in METRIC_KEYS}})
        if keep_predictions:
            result.predictions[case.case_id] = predicted
    report(progress, "Validating", 1.0)
    result.loss = statistics.fmean(result.case_losses) if result.case_losses else float("nan")
    return result
