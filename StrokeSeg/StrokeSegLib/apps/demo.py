"""The README's main job (`make demo`): run StrokeSeg end to end on a built-in default and say what it did.

1. A generated case (oblique grid, anisotropic voxels, ADC on a shifted grid, known lesion) is written to disk.
2. With a model installed (the bundled starter model, or any in the cache), it is segmented: mask, probability,
   report and an overlay PNG are written, with the lesion volume and the Dice against the known truth.
   Without one, the image pipeline alone runs (read, align, prepare for the network, map back) and the demo checks
   that the mapping back lands exactly on the DWI's grid.
3. The same on the real ISLES case in ``../shared/data`` when that folder exists.
Everything goes to a git-ignored folder (default ``output/demo``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import SimpleITK as sitk

from ..common.errors import StrokeSegError
from ..common.geometry import Grid
from ..common.lesions import voxel_volume_ml
from ..engine.model_registry import resolve_model
from ..evaluation.metrics import case_metrics
from ..evaluation.visualize import overlay_png
from ..io.cases import Case
from ..io.imageio import read_image, read_mask, write_image
from ..preprocessing.prepare import PreprocessConfig, prepare_case
from .phantom import make_synthetic_case

PROJECT_ROOT = Path(__file__).resolve().parents[3]
REAL_CASE_ID = "sub-strokecase0009"


def shared_data_dir() -> Path:
    """``../shared/data`` beside the project (or ``$STROKESEG_SHARED_DATA``)."""
    return Path(os.environ.get("STROKESEG_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def real_case() -> Case | None:
    """The real ISLES case the demo uses when it is present."""
    base = shared_data_dir() / "ISLES-2022"
    stem = f"{REAL_CASE_ID}_ses-0001"
    dwi = base / REAL_CASE_ID / "ses-0001" / "dwi" / f"{stem}_dwi.nii.gz"
    adc = dwi.with_name(f"{stem}_adc.nii.gz")
    mask = base / "derivatives" / REAL_CASE_ID / "ses-0001" / f"{stem}_msk.nii.gz"
    if not (dwi.is_file() and adc.is_file()):
        return None
    return Case(stem, dwi, adc, mask if mask.is_file() else None)


def write_generated_case(out: Path) -> Case:
    """A synthetic case with every geometric difficulty we promise to handle."""
    case = make_synthetic_case(seed=7, oblique=True, adc_shift_mm=(3.0, -2.0, 1.5), adc_units=1e-3)
    folder = out / "generated-case"
    paths = {name: folder / f"generated_{name}.nii.gz" for name in ("dwi", "adc", "msk")}
    write_image(case.dwi, paths["dwi"])
    write_image(case.adc, paths["adc"])
    write_image(case.mask, paths["msk"])
    return Case("generated", paths["dwi"], paths["adc"], paths["msk"])


def segment_case(case: Case, model_path: Path, out: Path) -> None:
    """Segment with the model and report volume and Dice against the known truth."""
    from ..engine.segmentation import segment_images, write_outputs

    folder = out / case.case_id
    mask_path = folder / f"{case.case_id}_msk.nii.gz"
    report_path = folder / f"{case.case_id}_report.json"
    dwi = read_image(case.dwi, role="DWI")  # read once: for the segmentation and for the overlay
    adc = read_image(case.adc, role="ADC")
    result = segment_images(dwi, adc, model_path, dwi_path=case.dwi, adc_path=case.adc)
    write_outputs(result, mask_path, folder / f"{case.case_id}_prob.nii.gz", report_path, like=case.dwi)
    truth = read_mask(case.mask) if case.mask else None
    png = folder / f"{case.case_id}_overlay.png"
    overlay_png(png, dwi, adc, result.mask, truth, title=case.case_id)
    print(f"  mask:    {mask_path}\n  report:  {report_path}\n  overlay: {png}")
    print(f"  lesion volume {result.report['lesion_volume_ml']:.2f} mL, {result.report['lesion_count']} lesion(s), "
          f"{result.report['timings']['total_s']:.1f} s on {result.report['device']}")
    if truth is not None:
        m = case_metrics(truth, result.mask)
        print(f"  against the known truth ({m['gt_ml']:.2f} mL): Dice {m['dice']:.3f}, lesion F1 {m['lesion_f1']:.3f}, "
              f"volume difference {m['avd_ml']:.2f} mL")


def pipeline_case(case: Case, out: Path) -> None:
    """No model yet: run the image pipeline and prove the round trip lands on the DWI's grid."""
    dwi = read_image(case.dwi, role="DWI")
    adc = read_image(case.adc, role="ADC")
    prepared = prepare_case(dwi, adc, PreprocessConfig(), dwi_path=case.dwi, adc_path=case.adc)
    folder = out / case.case_id
    brain = prepared.to_native(prepared.brain_mask, interpolator="nearest")
    brain_path = folder / f"{case.case_id}_brainmask.nii.gz"
    write_image(brain, brain_path)
    exact = Grid.of(brain) == Grid.of(dwi)
    print(f"  ADC alignment: {prepared.alignment.method}; network grid {prepared.network_grid.size} at "
          f"{tuple(round(s, 2) for s in prepared.network_grid.spacing)} mm; channels {prepared.channels}")
    print(f"  brain mask mapped back to the DWI grid: {'exactly the DWI grid' if exact else 'GRID MISMATCH'} "
          f"({int(sitk.GetArrayViewFromImage(brain).sum() * voxel_volume_ml(dwi))} mL) -> {brain_path}")
    truth = read_mask(case.mask) if case.mask else None
    png = folder / f"{case.case_id}_overlay.png"
    overlay_png(png, dwi, adc, None, truth, title=f"{case.case_id}: input and ground truth")
    print(f"  overlay: {png}")
    if not exact:
        raise StrokeSegError("the network-space round trip did not land on the DWI grid", case.dwi)


def run_demo(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    try:
        model_path: Path | None = resolve_model(None)
    except StrokeSegError as error:
        model_path = None
        print(f"No model installed yet ({error}); running the image pipeline only.")
    cases = [write_generated_case(out)]
    real = real_case()
    if real is not None:
        cases.append(real)
    else:
        print(f"Real data not found at {shared_data_dir()}; only the generated case runs.")
    for case in cases:
        print(f"\n== {case.case_id}: {case.dwi}")
        if model_path is not None:
            segment_case(case, model_path, out)
        else:
            pipeline_case(case, out)
    print(f"\nAll outputs are in {out.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="StrokeSeg demo on a built-in default")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "output" / "demo"))
    args = parser.parse_args(argv)
    return run_demo(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
