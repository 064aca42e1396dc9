"""How close a model came to each expert lesion: its size and the model's peak probability inside it, as markdown.

    python docs/experiments/peak_probability.py --gt ROOT --prob ARM=DIR [--prob ARM=DIR ...] --out peaks.md

``ROOT`` is an ISLES 2022 tree (expert masks under ``derivatives/``); each ``DIR`` holds ``<case_id>_prob.nii.gz``
probability maps on the expert mask's grid (``strokeseg segment --prob``). A lesion missed at a peak of 0.4 is a
threshold away from being found; one missed at 0.001 is not seen at all, which is what tells a resolution or
calibration problem from a model that never learnt what the lesion looks like. Lesions are 26-connected components,
as in the ISLES metrics. One table row per expert lesion, sizes in mL, then counts of lesions by peak per size bin.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from StrokeSegLib.evaluation.lesion_detection import SIZE_EDGES_ML, size_bin_label
from StrokeSegLib.evaluation.metrics import check_same_grid, label_lesions
from StrokeSegLib.io.cases import find_cases

#: Peak probability bands counted per size bin (the shipped threshold is 0.5).
PEAK_EDGES: tuple[float, ...] = (0.01, 0.1, 0.5)


def lesion_peaks(mask: np.ndarray, probs: dict[str, np.ndarray],
                 voxel_ml: float) -> list[tuple[float, dict[str, float]]]:
    """Per 26-connected lesion of ``mask``, largest first: its volume (mL) and each arm's peak probability inside it.

    The lesions are labelled once, so every arm's peak in a row belongs to the same lesion (lesions of equal size
    included)."""
    labels, n = label_lesions(mask != 0)
    if not n:
        return []
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * voxel_ml
    peaks = {arm: ndimage.maximum(prob, labels, index) for arm, prob in probs.items()}
    return [(float(sizes[i]), {arm: float(p[i]) for arm, p in peaks.items()})
            for i in np.argsort(-sizes, kind="stable")]


def case_rows(gt_path: Path, prob_paths: dict[str, Path]) -> list[tuple[float, dict[str, float]]]:
    """:func:`lesion_peaks` of one case's expert mask; refuses (GeometryError) maps not on the mask's grid."""
    gt_image = sitk.ReadImage(str(gt_path))
    probs = {}
    for arm, path in prob_paths.items():
        image = sitk.ReadImage(str(path))
        check_same_grid(gt_image, image, gt_path, path)
        probs[arm] = sitk.GetArrayFromImage(image)
    voxel_ml = float(np.prod(gt_image.GetSpacing())) / 1000.0
    return lesion_peaks(sitk.GetArrayFromImage(gt_image), probs, voxel_ml)


def _bin(value: float, edges: tuple[float, ...]) -> int:
    return int(np.searchsorted(edges, value, side="right"))


def report(gt_root: Path, prob_dirs: dict[str, Path]) -> str:
    """The markdown report over every case of ``gt_root`` that has an expert mask and all arms' maps."""
    arms = list(prob_dirs)
    lines = ["| case | lesion mL | " + " | ".join(f"{a} peak" for a in arms) + " |",
             "| --- | --- | " + " | ".join("---" for _ in arms) + " |"]
    size_labels = [size_bin_label(lo, hi) for lo, hi in zip((None, *SIZE_EDGES_ML), (*SIZE_EDGES_ML, None))]
    peak_labels = [size_bin_label(lo, hi) for lo, hi in zip((None, *PEAK_EDGES), (*PEAK_EDGES, None))]
    counts = {a: np.zeros((len(size_labels), len(peak_labels)), int) for a in arms}
    for case in find_cases(gt_root):
        if case.mask is None:
            continue
        maps = {a: d / f"{case.case_id}_prob.nii.gz" for a, d in prob_dirs.items()}
        if not all(p.exists() for p in maps.values()):
            continue
        for size, peaks in case_rows(Path(case.mask), maps):
            lines.append(f"| {case.case_id} | {size:.3f} | " + " | ".join(f"{peaks[a]:.3f}" for a in arms) + " |")
            for a in arms:
                counts[a][_bin(size, SIZE_EDGES_ML), _bin(peaks[a], PEAK_EDGES)] += 1
    for a in arms:
        lines += ["", f"Expert lesions by size (mL, rows) and {a}'s peak probability inside them (columns):", "",
                  "| size mL | " + " | ".join(peak_labels) + " |",
                  "| --- | " + " | ".join("---" for _ in peak_labels) + " |"]
        lines += [f"| {s} | " + " | ".join(str(v) for v in counts[a][i]) + " |" for i, s in enumerate(size_labels)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, required=True, help="ISLES 2022 tree with expert masks")
    parser.add_argument("--prob", action="append", required=True, help="ARM=DIR of <case_id>_prob.nii.gz maps")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    dirs = dict(item.split("=", 1) for item in args.prob)
    text = report(args.gt, {a: Path(d) for a, d in dirs.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
