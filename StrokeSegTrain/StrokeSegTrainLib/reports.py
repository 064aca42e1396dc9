"""Validation reports in exactly the format of ``strokeseg evaluate``: ``metrics.csv``, ``summary.json``, plots.

Per-fold and pooled cross-validation results are read by the same tools as an evaluation of deployed predictions, so
the CSV writer and the statistics are taken from :mod:`StrokeSegLib.evaluation.scoring` rather than re-implemented.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from StrokeSegLib.evaluation import scoring
from StrokeSegLib.evaluation.metrics import METRIC_KEYS
from StrokeSegLib.evaluation.scoring import CSV_COLUMNS


def write_metrics_report(rows: list[dict[str, Any]], out_dir: str | Path, extra: dict[str, Any] | None = None,
                         plots: bool = True) -> dict[str, Any]:
    """Write ``metrics.csv`` (columns ``case_id,dice,avd_ml,lesion_f1,alcd,gt_ml,pred_ml``), ``summary.json`` and
    the Dice plots into ``out_dir``; return the summary."""
    summary, _ = scoring.write_metrics_report(
        sorted(rows, key=lambda r: r["case_id"]), out_dir, extra,
        notes="Native-space ISLES 2022 metrics of held-out validation cases, predicted with the deployment "
              "sliding window and post-processing.",
        plots=plots,
    )
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
