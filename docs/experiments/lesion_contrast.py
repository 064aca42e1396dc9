"""How bright on DWI and how low on ADC each expert lesion is, relative to the rest of the brain, as markdown.

    python docs/experiments/lesion_contrast.py --gt ROOT --out contrast.md

``ROOT`` is an ISLES 2022 tree with expert masks. A lesion's DWI (ADC) contrast is its mean DWI (ADC) over the
median of the brain outside all lesions; the brain is every voxel with a positive ADC and a DWI above the 20th
percentile of the positive DWI values, which leaves out background and most CSF. No model is involved: this describes
what the lesions a model misses look like. Lesions of 0.1 mL and more get a row each; smaller ones are summarised per
case by the medians of their volumes and contrasts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from StrokeSegLib.evaluation.metrics import check_same_grid, label_lesions
from StrokeSegLib.io.cases import find_cases

#: Lesions below this volume (mL) are summarised per case rather than listed.
ROW_MIN_ML = 0.1
#: Percentile of the positive DWI values below which a voxel is not counted as brain.
BRAIN_DWI_PERCENTILE = 20


def lesion_contrasts(dwi: np.ndarray, adc: np.ndarray, mask: np.ndarray,
                     voxel_ml: float) -> list[tuple[float, float, float]]:
    """(volume mL, mean DWI / brain median, mean ADC / brain median) per 26-connected lesion, largest first."""
    lesion = mask != 0
    positive = dwi[dwi > 0]
    brain = (adc > 0) & (dwi > np.percentile(positive, BRAIN_DWI_PERCENTILE)) & ~lesion
    if not brain.any():
        raise ValueError("no brain voxels outside the lesions to compare with")
    dwi_ref, adc_ref = float(np.median(dwi[brain])), float(np.median(adc[brain]))
    labels, n = label_lesions(lesion)
    rows = []
    for i in range(1, n + 1):
        inside = labels == i
        rows.append((float(inside.sum()) * voxel_ml, float(dwi[inside].mean()) / dwi_ref,
                     float(adc[inside].mean()) / adc_ref))
    return sorted(rows, key=lambda r: -r[0])


def report(gt_root: Path) -> str:
    """The markdown report over every case of ``gt_root`` with an expert mask."""
    lines = ["| case | lesions | lesion mL | DWI / brain | ADC / brain |", "| --- | --- | --- | --- | --- |"]
    for case in find_cases(gt_root):
        if case.mask is None:
            continue
        images = [sitk.ReadImage(str(p)) for p in (case.dwi, case.adc, case.mask)]
        for image, path in zip(images[:2], (case.dwi, case.adc)):
            check_same_grid(images[2], image, case.mask, path)
        dwi, adc, mask = (sitk.GetArrayFromImage(i).astype(np.float64) for i in images)
        rows = lesion_contrasts(dwi, adc, mask, float(np.prod(images[2].GetSpacing())) / 1000.0)
        lines += [f"| {case.case_id} | 1 | {v:.3f} | {d:.2f} | {a:.2f} |" for v, d, a in rows if v >= ROW_MIN_ML]
        small = np.array([r for r in rows if r[0] < ROW_MIN_ML])
        if len(small):
            v, d, a = np.median(small, axis=0)
            lines.append(f"| {case.case_id} | {len(small)} under {ROW_MIN_ML:g} mL (medians) | {v:.3f} | {d:.2f} | "
                         f"{a:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, required=True, help="ISLES 2022 tree with expert masks")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    text = report(args.gt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
