"""Scene-facing logic: volume nodes in, a segmentation node with the lesion out (no Qt, usable from any Slicer Python).

Two ways to run, both ending in the same :meth:`StrokeSegLogic.loadResult`:

* :meth:`StrokeSegLogic.process` runs blocking in this process (scripts, tests, the Segment Editor effect);
* :class:`BackgroundSegmentation` writes the inputs to a temporary folder and builds the ``strokeseg segment`` command
  that the module panel runs in a separate PythonSlicer process (through :mod:`StrokeSegLib.panels.jobs`), so the GUI
  stays responsive and Cancel stops the whole process tree.

``slicer`` is reached only through :mod:`StrokeSegLib.scene.mrml`, imported inside functions, so importing this module
never needs Slicer.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..common.errors import InvalidImageError, StrokeSegError
from ..common.progress import PROGRESS_PREFIX, CancelToken, ProgressCallback, check_cancel, parse_progress_line, report
from ..engine.options import SegmentOptions
from ..engine.postprocess import lesion_table, lesion_volume_ml, lesion_voxels

__all__ = ["PROGRESS_PREFIX", "BackgroundSegmentation", "SegmentOptions", "StrokeSegLogic", "parse_progress_line",
           "summary_text"]

MODULE_DIR = Path(__file__).resolve().parents[2]  # holds StrokeSegLib: put on the child's PYTHONPATH


def _mrml() -> Any:
    from . import mrml

    return mrml


def input_image(node: Any, role: str) -> sitk.Image:
    """A volume node as float32 SimpleITK image, held to the same rules as files read by the command line.

    NaN/inf are kept: the segmentation's input checks repair a few from their neighbours or refuse the volume; a
    volume whose finite voxels are all equal is refused.
    """
    image = _mrml().volume_node_to_sitk(node)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    finite = array[np.isfinite(array)]
    if finite.size == 0 or float(finite.min()) == float(finite.max()):
        raise InvalidImageError(f"{role} volume '{node.GetName()}' is empty: all its voxels are equal.")
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def summary_text(result_report: dict[str, Any] | None) -> str:
    """One line for the panel: volume and count (and which model/device produced them)."""
    if not result_report:
        return ""
    count = int(result_report.get("lesion_count", 0))
    volume = float(result_report.get("lesion_volume_ml", 0.0))
    text = f"Lesion volume {volume:.2f} mL in {count} lesion{'s' * (count != 1)}"
    details = [str(result_report[k]) for k in ("model_id", "device") if result_report.get(k)]
    return text + (f" ({', '.join(details)})" if details else "")


class StrokeSegLogic:
    """Segment acute ischemic stroke lesions from DWI and ADC volume nodes into a segmentation node.

    A plain class (Slicer's ScriptedLoadableModuleLogic imports Qt); ``lastReport`` holds the report of the last run:
    ``lesion_volume_ml``, ``lesion_count``, ``lesions``, ``timings``, ``device``, ``model_id`` and ``voxels``.
    """

    def __init__(self) -> None:
        self.lastReport: dict[str, Any] | None = None

    def process(
        self,
        dwiVolumeNode: Any,
        adcVolumeNode: Any,
        outputSegmentationNode: Any = None,
        *,
        model: Any = None,
        options: SegmentOptions | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **choices: Any,
    ) -> Any:
        """Run the whole pipeline blocking and return the segmentation node (created when None).

        ``options`` (:class:`~StrokeSegLib.engine.options.SegmentOptions`) or its fields as keywords (``device="cpu"``,
        ``threshold=0.4``, ``force=True``...; keywords win). ``force`` segments an input the plausibility checks
        refuse, recording their findings in ``lastReport["input_checks"]``.
        """
        options = SegmentOptions.build(options, **choices)
        if dwiVolumeNode is None or adcVolumeNode is None:
            raise StrokeSegError("Select both a DWI and an ADC volume.")
        from ..engine import segmentation as seg

        report(progress, "Reading volumes", 0.0)
        dwi = input_image(dwiVolumeNode, "DWI")
        adc = input_image(adcVolumeNode, "ADC")
        report(progress, "Reading volumes", 1.0)
        check_cancel(cancel)
        result = seg.segment_images(dwi, adc, model, options, progress, cancel)
        check_cancel(cancel)
        return self.loadResult(result.mask, dwiVolumeNode, outputSegmentationNode, result.report)

    def loadResult(
        self,
        mask: sitk.Image,
        dwiVolumeNode: Any,
        outputSegmentationNode: Any = None,
        resultReport: dict[str, Any] | None = None,
    ) -> Any:
        """Put ``mask`` (on the DWI's world grid) into the lesion segment, replacing an earlier one; record the report.

        A new segmentation node is placed under the DWI's transform so that it follows the DWI if the user moves it.
        """
        mrml = _mrml()
        if outputSegmentationNode is None:
            scene = dwiVolumeNode.GetScene()
            outputSegmentationNode = scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", scene.GenerateUniqueName(f"{dwiVolumeNode.GetName()} stroke lesion")
            )
            if dwiVolumeNode.GetTransformNodeID():
                outputSegmentationNode.SetAndObserveTransformNodeID(dwiVolumeNode.GetTransformNodeID())
        mrml.fill_segmentation_from_labelmap(outputSegmentationNode, mask, dwiVolumeNode)
        full = dict(resultReport or {})
        # The volume is measured on what the segment now holds; the count is the engine's when it gave one.
        if "lesion_count" not in full:
            full["lesion_count"] = len(lesion_table(mask))
        full.update(voxels=lesion_voxels(mask), lesion_volume_ml=lesion_volume_ml(mask))
        full["segmentation_node_id"] = outputSegmentationNode.GetID()
        self.lastReport = full
        return outputSegmentationNode


@dataclass
class BackgroundSegmentation:
    """One ``strokeseg segment`` run in a child process: its inputs on disk, its command, and where results appear."""

    workdir: Path
    dwi_path: Path
    adc_path: Path
    mask_path: Path
    report_path: Path
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    cancel_file: Path | None = None
    owns_workdir: bool = True

    @classmethod
    def prepare(
        cls,
        dwiVolumeNode: Any,
        adcVolumeNode: Any,
        *,
        model: str | Path | None = None,
        options: SegmentOptions | None = None,
        python: str | None = None,
        workdir: str | Path | None = None,
        **choices: Any,
    ) -> BackgroundSegmentation:
        """Write DWI and ADC (world geometry, NRRD keeps the direction exactly) and build the command line.

        ``python`` is the interpreter to run (PythonSlicer inside Slicer; this interpreter by default). ``options`` and
        ``choices``: see :meth:`StrokeSegLogic.process`.
        """
        options = SegmentOptions.build(options, **choices)
        options.check()
        if dwiVolumeNode is None or adcVolumeNode is None:
            raise StrokeSegError("Select both a DWI and an ADC volume.")
        owns = workdir is None
        folder = Path(tempfile.mkdtemp(prefix="strokeseg-")) if workdir is None else Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        job = cls(
            workdir=folder,
            dwi_path=folder / "dwi.nrrd",
            adc_path=folder / "adc.nrrd",
            mask_path=folder / "lesion_mask.nrrd",
            report_path=folder / "report.json",
            cancel_file=folder / "cancel",
            command=[],
            owns_workdir=owns,
        )
        try:
            sitk.WriteImage(input_image(dwiVolumeNode, "DWI"), str(job.dwi_path))
            sitk.WriteImage(input_image(adcVolumeNode, "ADC"), str(job.adc_path))
        except Exception:
            job.cleanup()
            raise
        job.command = build_segment_command(
            python or sys.executable,
            job.dwi_path,
            job.adc_path,
            job.mask_path,
            job.report_path,
            model=model,
            options=options,
            cancel_file=job.cancel_file,
        )
        job.environment = child_environment()
        return job

    def finish(
        self, returncode: int | None, logic: StrokeSegLogic, dwiVolumeNode: Any, outputSegmentationNode: Any = None
    ) -> Any:
        """Load the child's mask into the segmentation; raise with the child's reason when it failed."""
        if returncode != 0 or not self.mask_path.is_file():
            raise StrokeSegError(
                "Segmentation was cancelled." if returncode == 130
                else f"Segmentation failed (exit status {returncode}); see the log for the reason."
            )
        mask = sitk.ReadImage(str(self.mask_path))
        result_report = json.loads(self.report_path.read_text()) if self.report_path.is_file() else {}
        return logic.loadResult(mask, dwiVolumeNode, outputSegmentationNode, result_report)

    def cleanup(self) -> None:
        """Remove the temporary folder (only one this job created)."""
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def build_segment_command(
    python: str,
    dwi_path: str | Path,
    adc_path: str | Path,
    mask_path: str | Path,
    report_path: str | Path,
    *,
    model: str | Path | None = None,
    options: SegmentOptions | None = None,
    cancel_file: str | Path | None = None,
) -> list[str]:
    """``python -m StrokeSegLib.cli segment ...`` with machine-readable progress on stdout (and a cancel file); the
    options are written by :meth:`SegmentOptions.to_argv`, which the child's parser reads back."""
    command = [python, "-m", "StrokeSegLib.cli", "segment", "--dwi", str(dwi_path), "--adc", str(adc_path)]
    command += ["--out", str(mask_path), "--report", str(report_path), "--progress", "machine"]
    if cancel_file is not None:
        command += ["--cancel-file", str(cancel_file)]
    if model:
        command += ["--model", str(model)]
    return command + (options or SegmentOptions()).to_argv()


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment additions for the child: StrokeSegLib's folder first on PYTHONPATH (Slicer adds it only
    in-process)."""
    base = dict(os.environ if base is None else base)
    paths: Sequence[str] = [str(MODULE_DIR)] + [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1"}
