"""Segment every case under an ISLES-style root; a bad case is a failed row with its reason, never fatal.

Outputs ``<out>/<case_id>_msk.nii.gz`` per case and ``volumes.csv`` (one row per case, failures included). Several
runs may share one output folder, at once or one after another:

* ``shard=(i, n)`` takes the i-th of n disjoint parts of the sorted case ids (cluster array jobs);
* each case is claimed before it runs (:mod:`.claims`), so parallel runs never segment a case twice; a case whose row
  was written while this run was going, or by a run still going, is left to that run (rows of runs that ended
  before this one started are an earlier run's: those cases are segmented again unless ``resume``);
* the table is the union of per-case rows (:mod:`.batch_table`), rebuilt after every case.

``resume`` re-reads each existing mask with the normal reader and keeps it only when it reads and lies on the DWI's
grid; anything else is segmented again. The stages of consecutive cases overlap (:mod:`.batch_pipeline`); the masks
and rows are the same as with ``prefetch=0``, the plain loop.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk
import torch
from tqdm import tqdm

from ..common.errors import StrokeSegError
from ..common.geometry import Grid, same_grid
from ..common.progress import CancelToken
from ..engine.devices import resolve_device
from ..engine.model_file import LoadedModel
from ..engine.postprocess import lesion_table, lesion_volume_ml
from ..engine.segmentation import (
    PreparedInputs,
    SegmentOptions,
    finish_prediction,
    get_model,
    predict_prepared,
    prepare_inputs,
    write_outputs,
)
from ..io.cases import Case, IncompleteCase, find_cases, scan_cases
from ..io.imageio import read_image, read_mask
from .batch_pipeline import run_stages
from .batch_table import CaseOutcome, merge_tables, read_row, row_path, state_dir, write_row
from .claims import ClaimRegistry

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """This run's rows, and the cases it left to other runs sharing the folder (case id, why)."""

    outcomes: list[CaseOutcome] = field(default_factory=list)
    elsewhere: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Job:
    entry: Case | IncompleteCase
    settled: bool = False
    error: str = ""
    outcome: CaseOutcome | None = None
    claimed: bool = False
    elsewhere: str = ""
    inputs: PreparedInputs | None = None
    probabilities: torch.Tensor | None = None


def mask_path(out_dir: Path, case_id: str) -> Path:
    """Where the mask of ``case_id`` goes; ``strokeseg evaluate`` looks for the same name."""
    return out_dir / f"{case_id}_msk.nii.gz"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) as ``(I, N)``; a ValueError that says what is expected otherwise."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 2/8), got {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return index, count


def select_shard(entries: list, shard: tuple[int, int] | None) -> list:
    """Entries sorted by case id, every N-th from the I-th: disjoint shards that together are all, stable for a given
    set of cases, and balanced when cases of one site have neighbouring ids."""
    ordered = sorted(entries, key=lambda e: e.case_id)
    if shard is None:
        return ordered
    index, count = shard
    return ordered[index - 1::count]


def existing_mask_outcome(case: Case, path: Path) -> CaseOutcome:
    """A mask from an earlier run as a "skipped" row; raises when the normal reader refuses it or its grid is not the
    DWI's (a truncated, foreign or half-copied file must be segmented again, not counted)."""
    mask = read_mask(path)
    header = sitk.ImageFileReader()
    header.SetFileName(str(case.dwi))
    header.ReadImageInformation()
    if header.GetDimension() == 3:
        dwi_grid = Grid(header.GetSize(), header.GetOrigin(), header.GetSpacing(), header.GetDirection())
        agrees = same_grid(mask, dwi_grid)
    else:  # a 4-D DWI series: the mask lies on its 3-D volume grid
        agrees = tuple(mask.GetSize()) == tuple(header.GetSize()[:3])
    if not agrees:
        raise StrokeSegError(f"its grid {Grid.of(mask)} is not the DWI's ({case.dwi})", path)
    return CaseOutcome(case.case_id, "skipped", lesion_volume_ml(mask), len(lesion_table(mask)))


def run_batch(
    root: str | Path,
    out_dir: str | Path,
    model: str | Path | LoadedModel | None = None,
    options: SegmentOptions | None = None,
    resume: bool = False,
    cancel: CancelToken | None = None,
    show_progress: bool = True,
    shard: tuple[int, int] | None = None,
    prefetch: int = 1,
) -> BatchReport:
    """Segment the cases found under ``root`` (this shard of them) into ``out_dir``; returns what happened to each.

    ``prefetch``: prepared cases that may wait for the network (0: read, predict and write one case after another).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases, incomplete = scan_cases(root)
    if not cases and not incomplete:
        find_cases(root)  # raises the "no cases found, expected layouts" error
    options = options or SegmentOptions()
    options.check()
    resolve_device(options.device)  # like a bad model file, a missing device fails the whole batch up front
    loaded = get_model(model)  # load once
    jobs = [_Job(entry) for entry in select_shard([*cases, *incomplete], shard)]
    result = BatchReport()
    claims = ClaimRegistry(state_dir(out))
    bar = tqdm(total=len(jobs), desc="Segmenting", unit="case", disable=not show_progress)
    try:
        run_stages(
            jobs,
            prepare=lambda job: _prepare(job, out, loaded, options, resume, claims, cancel),
            predict=lambda job: _predict(job, loaded, options, cancel),
            finish=lambda job: _finish(job, out, loaded, options),
            record=lambda job: _record(job, out, claims, result, bar),
            prefetch=prefetch,
            cancel=cancel,
            name=lambda job: job.entry.case_id,
        )
    finally:
        bar.close()
        claims.close()
        merge_tables(out, require_rows=False)
    return result


def _prepare(job: _Job, out: Path, loaded: LoadedModel, options: SegmentOptions, resume: bool,
             claims: ClaimRegistry, cancel: CancelToken | None) -> None:
    case_id = job.entry.case_id
    owner = claims.claim(case_id)
    if owner is not None:
        job.settled, job.elsewhere = True, f"claimed by another run ({owner.describe()})"
        return
    job.claimed = True
    if _done_by_another_run(out, case_id, claims):
        job.settled, job.elsewhere = True, "done by another run that is still going or ended after this one started"
        return
    if isinstance(job.entry, IncompleteCase):
        job.settled, job.error = True, f"incomplete case: {job.entry.reason}"
        return
    case = job.entry
    target = mask_path(out, case_id)
    if resume and target.is_file():
        try:
            job.outcome, job.settled = existing_mask_outcome(case, target), True
            return
        except Exception as error:
            log.warning("%s: existing mask not reusable (%s); segmenting again", target, error)
    dwi = read_image(case.dwi, role="DWI", keep_nonfinite=True)  # the input checks refuse or repair NaN/inf
    adc = read_image(case.adc, role="ADC", keep_nonfinite=True)
    job.inputs = prepare_inputs(dwi, adc, loaded, options, cancel=cancel, dwi_path=case.dwi, adc_path=case.adc)


def _done_by_another_run(out: Path, case_id: str, claims: ClaimRegistry) -> bool:
    """A row written while this run was going, or by a run still going, belongs to a parallel run: leave the case.
    A row older than this run, from a run that has ended, is an earlier run's: the case runs again (or, with
    ``resume``, its mask is checked and kept)."""
    row = read_row(out, case_id)
    if row is None or row.run_id == claims.run_id:
        return False
    try:
        written_ns = row_path(out, case_id).stat().st_mtime_ns
    except FileNotFoundError:
        return False
    return written_ns >= claims.started_ns or claims.run_alive(row.run_id)


def _predict(job: _Job, loaded: LoadedModel, options: SegmentOptions, cancel: CancelToken | None) -> None:
    assert job.inputs is not None
    job.probabilities = predict_prepared(job.inputs, loaded, options, cancel=cancel)


def _finish(job: _Job, out: Path, loaded: LoadedModel, options: SegmentOptions) -> None:
    assert job.inputs is not None and job.probabilities is not None
    seg = finish_prediction(job.inputs, job.probabilities, loaded, options)
    job.inputs = job.probabilities = None  # free the case's arrays before the next one arrives
    write_outputs(seg, out_mask=mask_path(out, job.entry.case_id), like=seg.report["inputs"]["dwi"])
    rep = seg.report
    job.outcome = CaseOutcome(job.entry.case_id, "ok", rep["lesion_volume_ml"], rep["lesion_count"],
                              rep["timings"]["total_s"])


def _record(job: _Job, out: Path, claims: ClaimRegistry, result: BatchReport, bar: tqdm) -> None:
    case_id = job.entry.case_id
    job.inputs = job.probabilities = None
    if job.elsewhere:
        result.elsewhere.append((case_id, job.elsewhere))
        log.info("%s: %s", case_id, job.elsewhere)
    else:
        outcome = job.outcome if job.outcome is not None and not job.error else CaseOutcome(
            case_id, "failed", error=job.error)
        if outcome.status == "failed":
            log.error("%s failed: %s", case_id, outcome.error)
            mask_path(out, case_id).unlink(missing_ok=True)  # an earlier run's mask must not outlive this failure
        outcome.run_id = claims.run_id
        write_row(out, outcome)
        result.outcomes.append(outcome)
        merge_tables(out)
    if job.claimed:
        claims.release(case_id)
    bar.update(1)
    bar.set_postfix_str(case_id)
