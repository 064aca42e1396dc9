"""One segmentation from DWI + ADC to a lesion mask on the DWI's own grid.

This is the single code path shared by ``strokeseg segment``, batch runs, the Slicer Logic and training validation, so
that a number measured anywhere is the number a user gets.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from ..common.atomic import write_json_atomic
from ..common.geometry import Grid
from ..common.progress import CancelToken, ProgressCallback, check_cancel, report
from ..io.imageio import read_image, write_image
from ..preprocessing.input_checks import CheckedInputs, check_inputs, check_same_brain
from ..preprocessing.prepare import PreparedCase, prepare_case
from .devices import INFERENCE_AMP, resolve_device
from .model_file import LoadedModel, load_model
from .model_registry import resolve_model
from .options import SegmentOptions
from .postprocess import lesion_table, lesion_volume_ml, postprocess
from .sliding_window import sliding_window_predict

ModelSpec = str | Path | LoadedModel | None

__all__ = ["ModelSpec", "SegmentOptions", "SegmentationResult", "get_model", "segment_files", "segment_images",
           "write_outputs"]


@dataclass
class SegmentationResult:
    """Mask (uint8) and probability (float32) on the input DWI's exact grid, plus a JSON-able report."""

    mask: sitk.Image
    probability: sitk.Image
    report: dict[str, Any] = field(default_factory=dict)


def get_model(model: ModelSpec, device: str | torch.device = "cpu") -> LoadedModel:
    """Accept a loaded model, a file path, a model id, or ``None`` (the default model)."""
    if isinstance(model, LoadedModel):
        return model
    return load_model(resolve_model(None if model is None else str(model)), device=device)


def _default_batch_size(device: torch.device) -> int:
    return 4 if device.type == "cuda" else 1


@dataclass
class PreparedInputs:
    """A case read and prepared for the network, not yet predicted: what a batch pipeline queues between stages."""

    dwi: sitk.Image  # as checked (NaN/inf repaired)
    prepared: PreparedCase
    checked: CheckedInputs
    timings: dict[str, float]
    dwi_path: str | Path | None = None
    adc_path: str | Path | None = None
    #: Where the network ran (set by :func:`predict_prepared`; the CPU after a GPU out-of-memory fallback).
    device_used: str | None = None


def prepare_inputs(
    dwi: sitk.Image,
    adc: sitk.Image,
    loaded: LoadedModel,
    options: SegmentOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    dwi_path: str | Path | None = None,
    adc_path: str | Path | None = None,
) -> PreparedInputs:
    """Check, align and prepare (the CPU stage before the network) with the model's preprocessing settings.

    The input checks (:func:`.input_checks.check_inputs`) run first: an implausible pair raises
    :class:`.errors.ImplausibleInputError` unless ``options.force``; NaN/inf voxels may be present in ``dwi``/``adc``
    and are refused or repaired there.
    """
    t = time.perf_counter()
    checked = check_inputs(dwi, adc, dwi_path, adc_path, force=options.force)
    dwi, adc = checked.dwi, checked.adc
    timings = {"input_checks_s": time.perf_counter() - t}
    t = time.perf_counter()
    config = loaded.metadata.preprocess_config(register=options.register)
    prepared = prepare_case(dwi, adc, config, dwi_path=dwi_path, adc_path=adc_path, progress=progress, cancel=cancel)
    check_same_brain(checked, prepared.alignment.image, prepared.native_brain_mask, dwi_path, adc_path,
                     force=options.force)
    timings["prepare_s"] = time.perf_counter() - t
    check_cancel(cancel)
    return PreparedInputs(dwi, prepared, checked, timings, dwi_path, adc_path)


def predict_prepared(
    inputs: PreparedInputs,
    loaded: LoadedModel,
    options: SegmentOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """The network stage: sliding-window probabilities (out, z, y, x) on the network grid."""
    t = time.perf_counter()
    device = resolve_device(options.device)
    network = loaded.network.to(device)
    predicted_on: dict[str, Any] = {}
    probabilities = sliding_window_predict(
        network,
        torch.from_numpy(inputs.prepared.image),
        patch_size=tuple(loaded.metadata.patch_size),
        overlap=options.overlap,
        batch_size=options.batch_size or _default_batch_size(device),
        device=device,
        amp=INFERENCE_AMP,
        mirror_tta=options.tta,
        progress=progress,
        cancel=cancel,
        run_info=predicted_on,
    )
    inputs.timings["predict_s"] = time.perf_counter() - t
    inputs.device_used = str(predicted_on["device"])
    check_cancel(cancel)
    return probabilities


def finish_prediction(
    inputs: PreparedInputs,
    probabilities: torch.Tensor,
    loaded: LoadedModel,
    options: SegmentOptions,
    progress: ProgressCallback | None = None,
) -> SegmentationResult:
    """Map the probabilities back onto the DWI grid, threshold and filter them, and build the report."""
    t = time.perf_counter()
    meta, prepared, dwi, timings = loaded.metadata, inputs.prepared, inputs.dwi, inputs.timings
    report(progress, "Post-processing", 0.0)
    probability = prepared.to_native(probabilities[0].numpy(), interpolator="linear")
    native_brain = prepared.native_brain_mask
    threshold = meta.threshold if options.threshold is None else float(options.threshold)
    min_mm3 = meta.min_lesion_mm3 if options.min_lesion_mm3 is None else float(options.min_lesion_mm3)
    mask_array = postprocess(
        sitk.GetArrayViewFromImage(probability),
        sitk.GetArrayViewFromImage(native_brain),
        threshold=threshold,
        min_lesion_mm3=min_mm3,
        spacing=dwi.GetSpacing(),
    )
    mask = sitk.GetImageFromArray(mask_array.astype(np.uint8, copy=False))
    mask.CopyInformation(dwi)
    report(progress, "Post-processing", 1.0)
    timings["postprocess_s"] = time.perf_counter() - t
    timings["total_s"] = sum(timings.get(k, 0.0) for k in
                             ("load_model_s", "input_checks_s", "prepare_s", "predict_s", "postprocess_s"))

    lesions = lesion_table(mask)
    result_report: dict[str, Any] = {
        "lesion_volume_ml": lesion_volume_ml(mask),
        "lesion_count": len(lesions),
        "lesions": lesions,
        "threshold": threshold,
        "min_lesion_mm3": min_mm3,
        "tta": options.tta,
        "device": inputs.device_used,  # the CPU when the GPU ran out of memory
        "model_id": meta.model_id,
        "model_sha256": loaded.sha256,
        "alignment": {
            "method": prepared.alignment.method,
            "metric": prepared.alignment.metric,
            "overlap": prepared.alignment.overlap,
        },
        "grid": asdict(Grid.of(dwi)),
        "inputs": {
            "dwi": None if inputs.dwi_path is None else str(inputs.dwi_path),
            "adc": None if inputs.adc_path is None else str(inputs.adc_path),
        },
        "input_checks": inputs.checked.report(forced=options.force),
        "timings": timings,
    }
    if meta.members:  # an ensemble: which models were averaged
        result_report["model_members"] = [dict(m) for m in meta.members]
    return SegmentationResult(mask=mask, probability=probability, report=result_report)


def segment_images(
    dwi: sitk.Image,
    adc: sitk.Image,
    model: ModelSpec = None,
    options: SegmentOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    dwi_path: str | Path | None = None,
    adc_path: str | Path | None = None,
) -> SegmentationResult:
    """Check, align, prepare, predict and post-process; everything returned lies on ``dwi``'s grid.

    The three stages are separate functions so that a batch run can overlap them across cases (:mod:`.batch_pipeline`)
    and still compute exactly what this function computes.
    """
    options = options or SegmentOptions()
    options.check()
    t0 = time.perf_counter()
    resolve_device(options.device)  # a device this machine lacks is refused before any work
    loaded = get_model(model, device="cpu")
    load_model_s = time.perf_counter() - t0
    inputs = prepare_inputs(dwi, adc, loaded, options, progress, cancel, dwi_path, adc_path)
    inputs.timings = {"load_model_s": load_model_s, **inputs.timings}
    probabilities = predict_prepared(inputs, loaded, options, progress, cancel)
    result = finish_prediction(inputs, probabilities, loaded, options, progress)
    result.report["timings"]["total_s"] = time.perf_counter() - t0
    return result


def segment_files(
    dwi_path: str | Path,
    adc_path: str | Path,
    model: ModelSpec = None,
    options: SegmentOptions | None = None,
    out_mask: str | Path | None = None,
    out_probability: str | Path | None = None,
    out_report: str | Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SegmentationResult:
    """Read, segment, and write the requested outputs atomically (a failure never leaves a half-written file)."""
    (options or SegmentOptions()).check()
    t = time.perf_counter()
    report(progress, "Reading", 0.0)
    dwi = read_image(dwi_path, role="DWI", keep_nonfinite=True)  # the input checks refuse or repair NaN/inf
    adc = read_image(adc_path, role="ADC", keep_nonfinite=True)
    read_s = time.perf_counter() - t
    result = segment_images(dwi, adc, model, options, progress, cancel, dwi_path=dwi_path, adc_path=adc_path)
    result.report["timings"]["read_s"] = read_s
    write_outputs(result, out_mask, out_probability, out_report, like=dwi_path)
    return result


def write_outputs(
    result: SegmentationResult,
    out_mask: str | Path | None = None,
    out_probability: str | Path | None = None,
    out_report: str | Path | None = None,
    like: str | Path | None = None,
) -> None:
    """Write whichever outputs were asked for; ``like`` (the DWI file) lends its header to NIfTI outputs.

    The images go first so that the report, written last, includes their write time.
    """
    t = time.perf_counter()
    if out_mask is not None:
        write_image(result.mask, out_mask, like=like)
    if out_probability is not None:
        write_image(result.probability, out_probability, like=like)
    result.report["timings"]["write_s"] = time.perf_counter() - t
    if out_report is not None:
        result.report["outputs"] = {
            "mask": None if out_mask is None else str(out_mask),
            "probability": None if out_probability is None else str(out_probability),
        }
        write_json_atomic(out_report, result.report)
