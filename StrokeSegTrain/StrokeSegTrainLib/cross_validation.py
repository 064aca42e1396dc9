"""K-fold cross-validation: train every fold, then pool the held-out predictions into one report.

Each case is validated by exactly one fold (patient-level split), so the pooled ``metrics.csv`` has one row per case
and its ``summary.json`` is the cross-validated estimate of what a user would get on unseen patients, in the same
format as ``strokeseg evaluate``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from StrokeSegLib.common.progress import CancelToken, ProgressCallback, report

from . import distributed
from .config import TrainConfig
from .reports import read_metrics_csv, write_metrics_report
from .trainer import TrainResult, fold_dir, train

log = logging.getLogger("StrokeSegTrainLib")


@dataclass
class CVResult:
    """Pooled rows, the summary written to ``<out>/summary.json``, and each fold's result (None when skipped)."""

    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    folds: dict[int, TrainResult | None] = field(default_factory=dict)


def run_cv(config: TrainConfig, data: str | Path, out: str | Path, folds: list[int] | None = None,
           progress: ProgressCallback | None = None, cancel: CancelToken | None = None, *, device: str = "auto",
           resume: bool = False, cache_dir: str | Path | None = None, show_progress: bool = False,
           command: str | None = None) -> CVResult:
    """Train ``folds`` (default: all) and write the pooled ``metrics.csv`` and ``summary.json`` into ``out`` (rank 0
    pools; under torchrun the other processes return without ``rows`` and ``summary``).

    With ``resume``, finished folds (a ``DONE`` marker) are kept and unfinished ones continue from their checkpoint.
    """
    out = Path(out)
    selected = list(range(config.num_folds)) if folds is None else sorted(set(folds))
    result = CVResult(out=out)
    initialised_here = not distributed.group_exists()
    info, _ = distributed.setup(device)  # one process group for every fold under torchrun
    try:
        for position, fold in enumerate(selected):
            done = (fold_dir(out, fold) / "DONE").is_file()
            if resume and done:
                log.info("fold %d already finished; keeping it", fold)
                result.folds[fold] = None
                continue

            def fold_progress(stage: str, fraction: float, _k: int = position) -> None:
                report(progress, f"Fold {_k + 1}/{len(selected)}: {stage}", fraction)

            result.folds[fold] = train(config, data, out, fold, fold_progress if progress else None, cancel,
                                       device=device, resume=resume, cache_dir=cache_dir,
                                       show_progress=show_progress, command=command)
        if info.is_main:
            pool_folds(out, selected, result)
        distributed.barrier(info)
        return result
    finally:
        if initialised_here:
            distributed.cleanup()


def pool_folds(out: str | Path, folds: list[int], result: CVResult | None = None) -> CVResult:
    """Concatenate the folds' ``validation/metrics.csv`` into ``<out>/metrics.csv`` and ``summary.json``."""
    out = Path(out)
    result = result or CVResult(out=out)
    per_fold: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for fold in folds:
        fold_rows = read_metrics_csv(fold_dir(out, fold) / "validation" / "metrics.csv")
        rows.extend(fold_rows)
        dices = [r["dice"] for r in fold_rows]
        per_fold[str(fold)] = {"n_cases": len(fold_rows), "mean_dice": sum(dices) / len(dices) if dices else None}
    ids = [r["case_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("a case was validated by more than one fold; the folds do not come from one splits.json")
    result.rows = rows
    result.summary = write_metrics_report(rows, out, extra={"folds": per_fold, "pred_dir": str(out),
                                                            "cross_validation": True})
    log.info("cross-validation over folds %s: mean Dice %s over %d cases", folds,
             result.summary["mean"]["dice"], len(rows))
    return result
