"""The StrokeSeg panel's run, without Qt: idle -> running -> (cancelling) -> idle, driven by a GUI timer.

The module widget (``StrokeSeg.py``) only renders what this says: whether a run is active, the stage and fraction,
and the outcome. Starting writes the inputs and starts ``strokeseg segment`` through
:class:`~StrokeSegLib.panels.jobs.ChildJob` (the launcher-safe runner); :meth:`SegmentationRun.poll` never blocks;
:meth:`SegmentationRun.cancel` asks the child to stop and ends its process tree; :meth:`SegmentationRun.abort`
(scene closing, module cleanup, Slicer quitting) ends it at once and returns to idle, so the panel never stays
stuck on Cancel.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..engine.options import SegmentOptions
from ..scene.logic import BackgroundSegmentation, StrokeSegLogic, summary_text
from .jobs import ChildJob

log = logging.getLogger("strokeseg")


@dataclass
class RunOutcome:
    """How a run ended: ``status`` is "done", "cancelled" or "failed"."""

    status: str
    segmentation: Any = None
    summary: str = ""
    error: str = ""
    details: str = ""


class SegmentationRun:
    """One panel's background segmentation. ``python`` is the interpreter (the PythonSlicer launcher in Slicer)."""

    def __init__(self, logic: StrokeSegLogic | None = None, python: str | Callable[[], str] | None = None,
                 job_factory: Callable[..., ChildJob] = ChildJob) -> None:
        self.logic = logic or StrokeSegLogic()
        self._python = python
        self._job_factory = job_factory
        self.background: BackgroundSegmentation | None = None
        self.job: ChildJob | None = None
        self.stage = ""
        self.fraction = 0.0
        self._dwi: Any = None
        self._output: Any = None

    @property
    def active(self) -> bool:
        """A run is in progress (the button reads Cancel)."""
        return self.job is not None

    @property
    def cancelling(self) -> bool:
        return self.job is not None and self.job.cancelled

    def python(self) -> str | None:
        return self._python() if callable(self._python) else self._python

    def start(self, dwiVolumeNode: Any, adcVolumeNode: Any, outputSegmentationNode: Any = None, *,
              model: str | None = None, options: SegmentOptions | None = None, **choices: Any) -> list[str]:
        """Write the inputs and start the child; returns its command. Raises (and leaves nothing behind) on failure.

        ``options`` / ``choices``: see :meth:`~StrokeSegLib.scene.logic.StrokeSegLogic.process`."""
        if self.active:
            raise RuntimeError("a segmentation is already running")
        background = BackgroundSegmentation.prepare(dwiVolumeNode, adcVolumeNode, model=model, options=options,
                                                    python=self.python(), **choices)
        try:
            job = self._job_factory(background.command, background.environment, cancel_file=background.cancel_file)
            job.start()
        except Exception:
            background.cleanup()
            raise
        self.background, self.job = background, job
        self._dwi, self._output = dwiVolumeNode, outputSegmentationNode
        self.stage, self.fraction = "Starting...", 0.0
        log.info("StrokeSeg: %s", " ".join(background.command))
        return background.command

    def cancel(self) -> None:
        """Ask the child to stop; the process tree is gone within about a second. Returns at once."""
        if self.job is not None:
            self.stage = "Cancelling..."
            self.job.cancel()

    def abort(self) -> None:
        """End the run now and forget it (scene closing, panel cleanup, application exit)."""
        job, background = self.job, self.background
        self.job, self.background, self._dwi, self._output = None, None, None, None
        self.stage, self.fraction = "", 0.0
        if job is not None:
            job.kill()
        if background is not None:
            background.cleanup()

    def poll(self) -> RunOutcome | None:
        """Take the child's progress; once it has ended, load its result into the scene and say how it ended."""
        if self.job is None:
            return None
        update = self.job.poll()
        for line in update.log:
            log.info("StrokeSeg: %s", line)
        if update.progress is not None and not self.job.cancelled:
            self.stage, self.fraction = update.progress
        if not update.done:
            return None
        job, background, dwi, output = self.job, self.background, self._dwi, self._output
        self.job, self.background, self._dwi, self._output = None, None, None, None
        self.stage, self.fraction = "", 0.0
        assert background is not None  # set together with the job
        try:
            if job.cancelled:
                return RunOutcome("cancelled")
            try:
                segmentation = background.finish(update.returncode, self.logic, dwi, output)
            except Exception as error:
                details = "\n".join(job.log_tail[-60:])
                log.error("StrokeSeg failed: %s\n%s", error, details)
                return RunOutcome("failed", error=f"{error}\n\n{job.last_error()}".strip(), details=details)
            return RunOutcome("done", segmentation=segmentation, summary=summary_text(self.logic.lastReport))
        finally:
            background.cleanup()


# ---- choices shown by the panel and the Segment Editor effect ----

_DWI_WORDS = ("dwi", "trace", "b1000", "diffusion")


def guess_inputs(volume_nodes: Iterable[Any]) -> dict[str, Any]:
    """The first scalar volume named like a DWI (dwi/trace/b1000/diffusion) and like an ADC (adc), by role."""
    found: dict[str, Any] = {}
    for node in volume_nodes:
        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        name = (node.GetName() or "").lower()
        role = "adc" if "adc" in name else "dwi" if any(word in name for word in _DWI_WORDS) else None
        if role is not None:
            found.setdefault(role, node)
    return found


def model_choices() -> tuple[list[tuple[str, str]], str | None]:
    """``([(label, path), ...], default path)`` of the installed models, read from their headers only.

    Imports no torch (listing must not load PyTorch into Slicer's process, slow and able to lock files PyTorchUtils may
    need to replace); a damaged model folder gives an empty list and a log line, never an exception.
    """
    try:
        from ..engine.model_registry import DEFAULT_MODEL_ID, list_models

        entries = list_models()
    except Exception as error:  # a broken model folder must not break the panel
        log.warning("StrokeSeg: could not list models: %s", error)
        return [], None
    choices = []
    for entry in entries:
        label = entry.model_id if entry.sha256_ok else f"{entry.model_id} (CHECKSUM MISMATCH)"
        if entry.metadata is not None and entry.metadata.members:
            label += f" (ensemble of {len(entry.metadata.members)})"
        choices.append((f"{label} [{entry.source}]", str(entry.path)))
    default = next((str(e.path) for e in entries if e.model_id == DEFAULT_MODEL_ID), None)
    return choices, default
