"""Margins of the input checks (StrokeSegLib.preprocessing.input_checks) on correct pairs and on the mix-ups they must
refuse.

Correct pairs: the real scans in ../shared/data (ISLES 2022 cases 0002, 0003, 0009 and the non-stripped subject02)
and every case of a generated folder (``strokeseg-train synth``). Mix-ups: built from the real scans (b=0 as DWI,
swapped, ADC as DWI, expert mask as DWI, another patient's ADC with and without this DWI's header). Prints one line
per pair (verdict and measures) and the extremes over the correct pairs.

    PYTHONPATH=StrokeSeg:StrokeSegTrain python -m StrokeSegTrainLib.cli synth --out /tmp/reliab_gen --cases 24 \\
        --seed 777 --workers 1
    PYTHONPATH=StrokeSeg:StrokeSegTrain python bench/input_checks_calibration.py --generated /tmp/reliab_gen
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import SimpleITK as sitk

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.io.imageio import read_image
from StrokeSegLib.preprocessing.input_checks import check_inputs, check_same_brain
from StrokeSegLib.preprocessing.prepare import PreprocessConfig, prepare_case

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _isles(case: str, kind: str) -> Path:
    return (DATA / "ISLES-2022" / f"sub-strokecase{case}" / "ses-0001" / "dwi"
            / f"sub-strokecase{case}_ses-0001_{kind}.nii.gz")


def _mask(case: str) -> Path:
    return (DATA / "ISLES-2022" / "derivatives" / f"sub-strokecase{case}" / "ses-0001"
            / f"sub-strokecase{case}_ses-0001_msk.nii.gz")


def _judge(dwi: sitk.Image, adc: sitk.Image, dwi_path: Path, adc_path: Path) -> tuple[str, dict]:
    """Run the checks as segment_images does (content, then alignment, then the match)."""
    try:
        checked = check_inputs(dwi, adc, dwi_path, adc_path)
        prepared = prepare_case(checked.dwi, checked.adc, PreprocessConfig())
        check_same_brain(checked, prepared.alignment.image, prepared.native_brain_mask, dwi_path, adc_path)
        return "pass", checked.measures
    except StrokeSegError as error:
        reasons = [line.split(": ", 1)[-1][:60] for line in str(error).splitlines()[1:-1]]
        forced = check_inputs(dwi, adc, dwi_path, adc_path, force=True)
        if not forced.findings:
            prepared = prepare_case(forced.dwi, forced.adc, PreprocessConfig())
            check_same_brain(forced, prepared.alignment.image, prepared.native_brain_mask, force=True)
        return "REFUSED: " + " | ".join(reasons), forced.measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=Path, default=None, help="a strokeseg-train synth folder")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    subject = DATA / "acute-dwi-nonstripped" / "subject02"
    correct = [(f"real {c}", _isles(c, "dwi"), _isles(c, "adc")) for c in ("0002", "0003", "0009")]
    correct.append(("real subject02", subject / "dwi.nii.gz", subject / "adc.nii.gz"))
    if args.generated:
        for folder in sorted(args.generated.glob("sub-*")):
            stem = folder / "ses-0001" / "dwi" / f"{folder.name}_ses-0001"
            correct.append((f"generated {folder.name}", Path(f"{stem}_dwi.nii.gz"), Path(f"{stem}_adc.nii.gz")))
    mistakes = [("b=0 as DWI subject02", subject / "b0.nii.gz", subject / "adc.nii.gz"),
                ("swapped subject02", subject / "adc.nii.gz", subject / "dwi.nii.gz")]
    for c in ("0002", "0003", "0009"):
        mistakes += [(f"swapped {c}", _isles(c, "adc"), _isles(c, "dwi")),
                     (f"ADC as DWI {c}", _isles(c, "adc"), _isles(c, "adc")),
                     (f"mask as DWI {c}", _mask(c), _isles(c, "adc"))]
    mistakes += [(f"other patient {a}+{b}", _isles(a, "dwi"), _isles(b, "adc")) for a, b in
                 (("0002", "0003"), ("0003", "0002"), ("0009", "0002"))]

    extremes: dict[str, list[float]] = {}
    for name, dwi_path, adc_path in correct + mistakes:
        dwi = read_image(dwi_path, "DWI", keep_nonfinite=True)
        adc = read_image(adc_path, "ADC", keep_nonfinite=True)
        verdict, measures = _judge(dwi, adc, dwi_path, adc_path)
        print(f"{name:28s} {verdict[:90]:90s} {measures}", flush=True)
        if (name, dwi_path, adc_path) in correct:
            for key, value in measures.items():
                if isinstance(value, (int, float)):
                    extremes.setdefault(key, []).append(float(value))
    for name, dwi_path, adc_path in [(f"other patient, same header {a}+{b}", _isles(a, "dwi"), _isles(b, "adc"))
                                     for a, b in (("0002", "0003"), ("0003", "0002"))]:
        dwi = read_image(dwi_path, "DWI", keep_nonfinite=True)
        adc = read_image(adc_path, "ADC", keep_nonfinite=True)
        adc.CopyInformation(dwi)
        verdict, measures = _judge(dwi, adc, dwi_path, adc_path)
        print(f"{name:28s} {verdict[:90]:90s} {measures}", flush=True)
    print("correct pairs:", {k: (round(min(v), 4), round(max(v), 4)) for k, v in extremes.items()})


if __name__ == "__main__":
    main()
