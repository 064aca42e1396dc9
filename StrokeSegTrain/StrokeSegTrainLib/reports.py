"""Validation reports in exactly the format of ``strokeseg evaluate``: ``metrics.csv``, ``summary.json``, plots.

Per-fold and pooled cross-validation results are read by the same tools as an evaluation of deployed predictions, so
the CSV writer and the statistics are taken from :mod:`StrokeSegLib.evaluation` rather than re-implemented.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from StrokeSegLib.atomic import write_json_atomic, write_text_atomic
from StrokeSegLib.evaluation import CSV_COLUMNS, _csv_text, _stats
from StrokeSegLib.metrics import METRIC_KEYS


def _clean(value: Any) -> Any:
    """NaN/inf become None so that summary.json is strict JSON, as ``strokeseg evaluate`` writes it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_metrics_report(rows: list[dict[str, Any]], out_dir: str | Path, extra: dict[str, Any] | None = None,
                         plots: bool = True) -> dict[str, Any]:
    """Write ``metrics.csv`` (columns ``case_id,dice,avd_ml,lesion_f1,alcd,gt_ml,pred_ml``), ``summary.json`` and
    the Dice plots into ``out_dir``; return the summary."""
    out_dir = Path(out_dir)
    rows = sorted(rows, key=lambda r: r["case_id"])
    with_lesions = [r for r in rows if r["gt_ml"] > 0]
    summary = {
        **_stats(rows),
        "n_cases_with_lesions": len(with_lesions),
        "lesion_cases": _stats(with_lesions),
        "missing": [],
        "failed": [],
        **(extra or {}),
        "notes": "Native-space ISLES 2022 metrics of held-out validation cases, predicted with the deployment "
                 "sliding window and post-processing.",
    }
    summary = _clean(summary)
    write_text_atomic(out_dir / "metrics.csv", _csv_text(rows))
    write_json_atomic(out_dir / "summary.json", summary, allow_nan=False)
    if plots and rows:
        from StrokeSegLib.visualize import dice_histogram_png, dice_vs_volume_png

        dices = [r["dice"] for r in rows]
        dice_histogram_png(out_dir / "dice_histogram.png", dices)
        dice_vs_volume_png(out_dir / "dice_vs_volume.png", [r["gt_ml"] for r in rows], dices)
    return summary


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv`` with numbers parsed (alcd as int)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: unexpected columns {reader.fieldnames}; expected {CSV_COLUMNS}")
        rows = []
        for row in reader:
            parsed: dict[str, Any] = {"case_id": row["case_id"]}
            for key in METRIC_KEYS:
                parsed[key] = int(row[key]) if key == "alcd" else float(row[key])
            rows.append(parsed)
    return rows
