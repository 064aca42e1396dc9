"""``strokeseg evaluate``: score a folder of predicted masks against an ISLES 2022 root, in native space.

For every case with an expert mask, the prediction ``<pred_dir>/<case_id>_msk.nii.gz`` (the name the batch runner
writes) is compared with :func:`metrics.case_metrics`. Output, in ``out_dir``:

* ``metrics.csv``: one row per scored case, columns ``case_id,dice,avd_ml,lesion_f1,alcd,gt_ml,pred_ml``;
* ``summary.json``: counts, mean and median of each metric over all scored cases and over cases whose ground truth
  has lesions, the ``missing`` predictions and the ``failed`` cases;
* ``lesions.csv``: every expert lesion, ``case_id,lesion,volume_ml,found`` (:mod:`lesion_detection`), summed by
  size in ``summary.json`` (``lesion_detection``) and drawn in ``lesion_detection.png``;
* ``dice_histogram.png``, ``dice_vs_volume.png`` and ``overlays/<case_id>.png`` (DWI, ADC, masks).

Decisions, so that the numbers mean what they say:

* A **missing** prediction is scored as an *empty* mask (Dice 0 on a lesion case, as the challenge would), listed in
  ``missing`` and warned about; a run stays comparable with others instead of quietly dropping hard cases. When *no*
  prediction exists at all the folder is almost certainly wrong, so that raises :class:`InputFileError`.
* A prediction or mask that cannot be read, or sits on another grid than the ground truth, is a **failed** case: it
  gets no row (no number would be honest), is listed with its error in ``failed``, and the run goes on.
* Masks (expert and predicted) are read by the one mask reader, :func:`.imageio.read_mask`: a voxel is lesion when
  its value is >= 0.5, which on integer-labelled masks ({0, 1}, {0, 255}, several labels) is "any non-zero", and on
  float (soft, resampled) masks does not count a partial-volume rim as lesion.
* An overlay that cannot be drawn (unreadable DWI) is only a warning; the metrics do not depend on it.
"""
from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..common.atomic import write_csv_atomic, write_json_atomic
from ..common.errors import InputFileError, StrokeSegError
from ..common.lesions import voxel_volume_ml
from ..common.progress import CancelToken, ProgressCallback, check_cancel, report
from ..io.imageio import read_mask
from .lesion_detection import LesionDetection, detect_lesions, detection_by_size
from .metrics import METRIC_KEYS, case_metrics

CSV_COLUMNS: tuple[str, ...] = ("case_id",) + METRIC_KEYS
METRICS_CSV = "metrics.csv"
SUMMARY_JSON = "summary.json"
LESIONS_CSV = "lesions.csv"
STAGE = "Evaluating"


class MissingPredictionWarning(UserWarning):
    """Some cases had no prediction file; they were scored as empty predictions."""


class EvaluationWarning(UserWarning):
    """A case failed or a picture could not be drawn; the rest of the evaluation went on."""


@dataclass
class EvaluationReport:
    """What :func:`evaluate` computed and wrote."""

    out_dir: Path
    rows: list[dict] = field(default_factory=list)  # case_id + METRIC_KEYS, one per scored case
    summary: dict = field(default_factory=dict)  # the content of summary.json
    missing: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"case_id", "error"}
    lesions: dict[str, LesionDetection] = field(default_factory=dict)  # case_id -> which expert lesions were found
    overlays: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # non-fatal problems (overlays not drawn)

    @property
    def metrics_csv(self) -> Path:
        return self.out_dir / METRICS_CSV

    @property
    def summary_json(self) -> Path:
        return self.out_dir / SUMMARY_JSON

    @property
    def ok(self) -> bool:
        """True when every case was scored from its own prediction file."""
        return not self.failed and not self.missing


def prediction_path(pred_dir: str | Path, case_id: str) -> Path:
    """Where the prediction of ``case_id`` is expected (the batch runner's ``<case_id>_msk.nii.gz``)."""
    return Path(pred_dir) / f"{case_id}_msk.nii.gz"


def _empty_like(image: sitk.Image) -> sitk.Image:
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    return empty


def _finite_or_none(value: Any) -> Any:
    """NaN/inf become None (recursively) so that summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_metrics_report(rows: list[dict], out_dir: str | Path, extra: dict | None = None, notes: str = "",
                         plots: bool = True) -> tuple[dict, list[Path]]:
    """Write ``metrics.csv``, ``summary.json`` and the Dice plots for per-case metric rows; return (summary, plots).

    The one writer of this format: ``strokeseg evaluate`` and training validation / cross-validation reports both
    use it, so their files are read by the same tools.
    """
    out_dir = Path(out_dir)
    with_lesions = [r for r in rows if r["gt_ml"] > 0]
    summary = _finite_or_none({
        **_stats(rows),
        "n_cases_with_lesions": len(with_lesions),
        "lesion_cases": _stats(with_lesions),
        "missing": [],
        "failed": [],
        **(extra or {}),
        "notes": notes,
    })
    write_csv_atomic(out_dir / METRICS_CSV, CSV_COLUMNS, _metric_rows(rows))
    write_json_atomic(out_dir / SUMMARY_JSON, summary, allow_nan=False)
    pictures: list[Path] = []
    if plots and rows:
        from .visualize import dice_histogram_png, dice_vs_volume_png  # matplotlib only when drawing

        dices = [r["dice"] for r in rows]
        pictures = [dice_histogram_png(out_dir / "dice_histogram.png", dices),
                    dice_vs_volume_png(out_dir / "dice_vs_volume.png", [r["gt_ml"] for r in rows], dices)]
    return summary, pictures


def _stats(rows: list[dict]) -> dict:
    """Mean and median of each metric (None over no cases, so the JSON stays strict)."""
    out: dict = {"n_cases": len(rows), "mean": {}, "median": {}}
    for key in METRIC_KEYS:
        values = [float(r[key]) for r in rows if r[key] is not None and math.isfinite(float(r[key]))]
        out["mean"][key] = statistics.fmean(values) if values else None
        out["median"][key] = statistics.median(values) if values else None
    return out


def _metric_rows(rows: list[dict]) -> Iterator[list]:
    for row in rows:
        # Ten significant digits: far below any meaningful difference, without binary noise like 0.9440000000000001.
        yield [row["case_id"]] + [format(row[k], ".10g") if isinstance(row[k], float) else row[k] for k in METRIC_KEYS]


def _lesion_rows(lesions: dict[str, LesionDetection]) -> Iterator[tuple]:
    for case_id, detection in lesions.items():
        for number, (volume, found) in enumerate(zip(detection.volumes_ml, detection.found), start=1):
            yield (case_id, number, format(volume, ".10g"), int(found))


def lesion_detection_summary(lesions: dict[str, LesionDetection]) -> dict:
    """Expert lesions found, by size bin and in all, and the predicted lesions that touch none."""
    volumes = [v for d in lesions.values() for v in d.volumes_ml]
    found = [f for d in lesions.values() for f in d.found]
    return {
        "expert_lesions": len(volumes),
        "found": int(sum(found)),
        "predicted_lesions": sum(d.predicted_lesions for d in lesions.values()),
        "false_lesions": sum(d.false_lesions for d in lesions.values()),
        "by_size": detection_by_size(volumes, found),
    }


def _draw_overlay(case, out_path: Path, gt: sitk.Image, pred: sitk.Image | None, row: dict) -> None:
    from ..io.imageio import read_image
    from .visualize import overlay_png

    dwi = read_image(case.dwi, role="DWI")
    try:
        adc = read_image(case.adc, role="ADC")
    except StrokeSegError:
        adc = None  # still worth a picture of DWI and masks
    title = (f"{case.case_id}  Dice {row['dice']:.3f}  lesion F1 {row['lesion_f1']:.3f}"
             + ("  (prediction MISSING)" if pred is None else ""))
    overlay_png(out_path, dwi, adc, pred, gt, title=title)


def evaluate(
    pred_dir: str | Path,
    gt_root: str | Path,
    out_dir: str | Path,
    progress: ProgressCallback | None = None,
    *,
    overlays: bool = True,
    cancel: CancelToken | None = None,
) -> EvaluationReport:
    """Score every case with a ground-truth mask under ``gt_root`` against ``pred_dir``; write the report to
    ``out_dir``.

    See the module docstring for how missing and failed cases are treated.
    """
    from ..io.cases import find_cases

    pred_dir, gt_root, out_dir = Path(pred_dir), Path(gt_root), Path(out_dir)
    if not pred_dir.is_dir():
        raise InputFileError("prediction folder not found." if not pred_dir.exists() else
                             "is a file; expected the folder of predicted masks (<case_id>_msk.nii.gz).", pred_dir)
    cases = [c for c in find_cases(gt_root) if c.mask is not None]
    if not cases:
        raise InputFileError(
            "no case has a ground-truth mask (expected derivatives/sub-X/ses-Y/sub-X_ses-Y_msk.nii.gz).", gt_root)
    if not any(prediction_path(pred_dir, c.case_id).is_file() for c in cases):
        raise InputFileError(
            f"none of the {len(cases)} predictions was found "
            f"(expected e.g. {prediction_path(pred_dir, cases[0].case_id).name}); "
            "is this the output folder of strokeseg batch?", pred_dir)

    result = EvaluationReport(out_dir=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(cases):
        check_cancel(cancel)
        report(progress, STAGE, i / len(cases))
        pred_path = prediction_path(pred_dir, case.case_id)
        try:
            assert case.mask is not None  # cases without one were left out above
            gt = read_mask(case.mask)
            if pred_path.is_file():
                pred = read_mask(pred_path)
                scores = case_metrics(gt, pred, gt_path=case.mask, pred_path=pred_path)
            else:
                pred = None
                result.missing.append(case.case_id)
                scores = case_metrics(gt, _empty_like(gt))
        except StrokeSegError as exc:
            result.failed.append({"case_id": case.case_id, "error": str(exc)})
            continue
        row = {"case_id": case.case_id, **scores}
        result.rows.append(row)
        expert = sitk.GetArrayViewFromImage(gt)
        result.lesions[case.case_id] = detect_lesions(
            expert, np.zeros(expert.shape, bool) if pred is None else sitk.GetArrayViewFromImage(pred),
            voxel_volume_ml(gt))
        if overlays:
            out_path = out_dir / "overlays" / f"{case.case_id}.png"
            try:
                _draw_overlay(case, out_path, gt, pred, row)
                result.overlays.append(out_path)
            except (StrokeSegError, RuntimeError) as exc:
                result.notes.append(f"{case.case_id}: overlay not drawn: {exc}")
    report(progress, STAGE, 1.0)

    detection = lesion_detection_summary(result.lesions)
    result.summary, result.plots = write_metrics_report(
        result.rows, out_dir,
        extra={"missing": list(result.missing), "failed": list(result.failed), "pred_dir": str(pred_dir),
               "gt_root": str(gt_root), "lesion_detection": detection},
        notes="Native-space ISLES 2022 metrics; missing predictions are scored as empty masks; "
              "failed cases have no row.",
    )
    write_csv_atomic(out_dir / LESIONS_CSV, ("case_id", "lesion", "volume_ml", "found"), _lesion_rows(result.lesions))
    if result.rows:
        from .visualize import lesion_detection_png  # matplotlib only when drawing

        result.plots.append(lesion_detection_png(out_dir / "lesion_detection.png", detection["by_size"],
                                                 detection["false_lesions"], detection["predicted_lesions"]))
    if result.missing:
        warnings.warn(f"{len(result.missing)} prediction(s) missing in {pred_dir}, scored as empty: "
                      + ", ".join(result.missing), MissingPredictionWarning, stacklevel=2)
    if result.failed:
        warnings.warn(f"{len(result.failed)} case(s) could not be scored: "
                      + "; ".join(f"{f['case_id']}: {f['error']}" for f in result.failed), EvaluationWarning,
                      stacklevel=2)
    return result


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_summary(result: EvaluationReport) -> str:
    """A few plain-text lines for the terminal: the metric table, what was missing or failed, where the files are."""
    s = result.summary
    lesion = s.get("lesion_cases", {"n_cases": 0, "mean": {}, "median": {}})
    lines = [
        f"Evaluated {s.get('n_cases', 0)} case(s), {s.get('n_cases_with_lesions', 0)} with lesions in the ground "
        "truth.",
        f"{'metric':<12}{'mean':>10}{'median':>10}   {'lesion cases: mean':>18}{'median':>10}",
    ]
    names = {"dice": "Dice", "avd_ml": "AVD (mL)", "lesion_f1": "lesion F1", "alcd": "ALCD",
             "gt_ml": "GT (mL)", "pred_ml": "pred (mL)"}
    for key in METRIC_KEYS:
        lines.append(f"{names[key]:<12}{_fmt(s['mean'].get(key)):>10}{_fmt(s['median'].get(key)):>10}   "
                     f"{_fmt(lesion['mean'].get(key)):>18}{_fmt(lesion['median'].get(key)):>10}")
    detection = s.get("lesion_detection")
    if detection and detection["expert_lesions"]:
        bins = ", ".join(f"{b['label']} {b['found']}/{b['lesions']}" for b in detection["by_size"] if b["lesions"])
        lines.append(f"Expert lesions found, by size in mL: {bins}; {detection['false_lesions']} of "
                     f"{detection['predicted_lesions']} predicted lesions touch none")
    if result.missing:
        lines.append(f"MISSING predictions (scored as empty): {', '.join(result.missing)}")
    for failure in result.failed:
        lines.append(f"FAILED {failure['case_id']}: {failure['error']}")
    for note in result.notes:
        lines.append(f"note: {note}")
    lines.append(f"Report: {result.metrics_csv}, {result.summary_json.name}, {LESIONS_CSV}, "
                 + ", ".join(p.name for p in result.plots)
                 + (f", {len(result.overlays)} overlay(s) in {result.out_dir / 'overlays'}" if result.overlays else ""))
    return "\n".join(lines)
