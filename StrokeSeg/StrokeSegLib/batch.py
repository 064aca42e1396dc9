"""Segment every case under an ISLES-style root; a bad case is reported and skipped, never fatal.

Outputs ``<out>/<case_id>_msk.nii.gz`` per case, ``volumes.csv`` (one row per case, failures included) and
``batch_report.json``. ``resume`` skips cases whose mask already exists, so an interrupted run can continue.
"""
from __future__ import annotations

import csv
import io
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .atomic import write_json_atomic, write_text_atomic
from .cases import Case, find_cases
from .errors import CancelledError, StrokeSegError
from .imageio import read_mask
from .postprocess import lesion_table, lesion_volume_ml
from .progress import CancelToken, check_cancel
from .segmentation import SegmentOptions, get_model, segment_files

log = logging.getLogger(__name__)

VOLUME_COLUMNS = ("case_id", "status", "lesion_volume_ml", "lesion_count", "seconds", "error")


@dataclass
class CaseOutcome:
    case_id: str
    status: str  # "ok", "skipped" (resume), "failed"
    lesion_volume_ml: float | None = None
    lesion_count: int | None = None
    seconds: float | None = None
    error: str = ""


@dataclass
class BatchReport:
    outcomes: list[CaseOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


def mask_path(out_dir: Path, case_id: str) -> Path:
    """Where the mask of ``case_id`` goes; ``strokeseg evaluate`` looks for the same name."""
    return out_dir / f"{case_id}_msk.nii.gz"


def _summarise_existing(case: Case, path: Path) -> CaseOutcome:
    """Volume and count of a mask written by an earlier run (resume); an unreadable or incomplete file raises."""
    mask = read_mask(path)
    return CaseOutcome(case.case_id, "skipped", lesion_volume_ml(mask), len(lesion_table(mask)))


def run_batch(
    root: str | Path,
    out_dir: str | Path,
    model: object = None,
    options: SegmentOptions | None = None,
    resume: bool = False,
    cancel: CancelToken | None = None,
    show_progress: bool = True,
) -> BatchReport:
    """Segment all cases found under ``root``; returns what happened to each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = find_cases(root)
    options = options or SegmentOptions()
    loaded = get_model(model)  # load once; a bad model file fails the whole batch up front, as it should
    result = BatchReport()
    bar = tqdm(cases, desc="Segmenting", unit="case", disable=not show_progress)
    for case in bar:
        bar.set_postfix_str(case.case_id)
        target = mask_path(out, case.case_id)
        if resume and target.is_file():
            try:
                result.outcomes.append(_summarise_existing(case, target))
                continue
            except (RuntimeError, StrokeSegError) as error:
                log.warning("%s: existing output unreadable or incomplete (%s), segmenting again", target, error)
        try:
            check_cancel(cancel)
            seg = segment_files(case.dwi, case.adc, loaded, options, out_mask=target, cancel=cancel)
            rep = seg.report
            result.outcomes.append(
                CaseOutcome(case.case_id, "ok", rep["lesion_volume_ml"], rep["lesion_count"], rep["timings"]["total_s"])
            )
        except CancelledError:
            raise
        except StrokeSegError as error:
            log.error("%s failed: %s", case.case_id, error)
            result.outcomes.append(CaseOutcome(case.case_id, "failed", error=str(error)))
        except Exception as error:  # noqa: BLE001 - a batch must survive any single bad case
            log.error("%s failed unexpectedly:\n%s", case.case_id, traceback.format_exc())
            result.outcomes.append(CaseOutcome(case.case_id, "failed", error=f"{type(error).__name__}: {error}"))
        write_volumes_csv(out / "volumes.csv", result)
    write_volumes_csv(out / "volumes.csv", result)
    write_json_atomic(
        out / "batch_report.json",
        {"root": str(root), "n_cases": len(cases), "n_failed": len(result.failed), "cases": [o.__dict__ for o in result.outcomes]},
    )
    return result


def write_volumes_csv(path: Path, batch: BatchReport) -> None:
    """One row per case, written atomically after every case so a killed run leaves a valid table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VOLUME_COLUMNS)
    for o in batch.outcomes:
        writer.writerow(
            [
                o.case_id,
                o.status,
                "" if o.lesion_volume_ml is None else f"{o.lesion_volume_ml:.4f}",
                "" if o.lesion_count is None else o.lesion_count,
                "" if o.seconds is None else f"{o.seconds:.2f}",
                o.error,
            ]
        )
    write_text_atomic(path, buffer.getvalue())
