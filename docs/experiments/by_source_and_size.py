"""Metrics of an evaluated generated tree by lesion source (real-library vs procedural) and by lesion size, as markdown.

    python docs/experiments/by_source_and_size.py --eval E [--tree TREE] [--pred P] [--out E/by_source_and_size.md]

``E`` is a ``strokeseg evaluate`` output folder (``metrics.csv``, ``lesions.csv``, ``summary.json``); the tree and the
prediction folder default to those its ``summary.json`` names. The source of a case is its ``pattern`` in the tree's
``synth_manifest.json`` (``real``: library lesions, ``none``: lesion-free, else procedural). Three tables:

1. per source: case means of Dice, lesion F1 and AVD, expert lesions found, predicted lesions that are false;
2. per case by the case's total expert lesion volume (case means of Dice and lesion F1);
3. per lesion size bin (``lesion_detection.SIZE_EDGES_ML``), pooled over cases: recall = expert lesions of that size
   touched by the prediction, precision = predicted lesions of that size (their own volume) touching an expert
   lesion, and F1 of the two, overall and per source.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from StrokeSegLib.io.cases import find_cases
from StrokeSegLib.evaluation.lesion_detection import SIZE_EDGES_ML, size_bin_label
from StrokeSegLib.evaluation.metrics import label_lesions
from StrokeSegTrainLib.synth.dataset import read_manifest

#: Case total expert lesion volume bins in mL (lesion-free cases form their own row).
CASE_EDGES_ML: tuple[float, ...] = (2.0, 10.0, 30.0)
SOURCES = ("real-library", "procedural", "no lesion")


def case_sources(tree: Path) -> dict[str, str]:
    """Subject id -> source, from the tree's manifest."""
    names = {"real": "real-library", "none": "no lesion"}
    return {e["case_id"]: names.get(e["pattern"], "procedural") for e in read_manifest(tree)["cases"]}


def size_bin(volume_ml: float, edges: Sequence[float]) -> int:
    """Index of the bin of ``volume_ml`` (bin i holds edges[i-1] <= v < edges[i])."""
    return int(np.searchsorted(edges, volume_ml, side="right"))


def _bin_labels(edges: Sequence[float]) -> list[str]:
    bounds = [None, *edges, None]
    return [size_bin_label(bounds[i], bounds[i + 1]) for i in range(len(edges) + 1)]


def predicted_lesions(pred: Path, gt: Path) -> list[tuple[float, bool]]:
    """Each predicted 26-connected lesion's volume (mL) and whether it touches an expert lesion."""
    pred_image = sitk.ReadImage(str(pred))
    p = sitk.GetArrayFromImage(pred_image) != 0
    g = sitk.GetArrayFromImage(sitk.ReadImage(str(gt))) != 0
    labels, n = label_lesions(p)
    if not n:
        return []
    index = np.arange(1, n + 1)
    voxel_ml = float(np.prod(pred_image.GetSpacing())) / 1000.0
    sizes = ndimage.sum_labels(p, labels, index)
    touches = ndimage.maximum(g, labels, index)
    return [(float(s) * voxel_ml, bool(t)) for s, t in zip(sizes, touches, strict=True)]


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "–"


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def tables(eval_dir: Path, tree: Path, pred_dir: Path) -> str:
    """The three markdown tables (see the module docstring)."""
    source = case_sources(tree)
    subject = {}  # evaluate's case id (sub-X_ses-Y) -> manifest's (sub-X)
    with open(eval_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        subject[row["case_id"]] = row["case_id"].split("_")[0]
    with open(eval_dir / "lesions.csv", newline="") as handle:
        expert = [(r["case_id"], float(r["volume_ml"]), r["found"] == "1") for r in csv.DictReader(handle)]
    masks = {c.case_id: c.mask for c in find_cases(tree) if c.mask is not None}
    predicted = {cid: predicted_lesions(pred_dir / f"{cid}_msk.nii.gz", masks[cid]) for cid in subject}
    src = {cid: source[s] for cid, s in subject.items()}
    groups = ["all", *(s for s in SOURCES[:2] if s in src.values())]  # sources with lesions in this tree

    out = ["| source | cases | Dice | lesion F1 | AVD mL | expert lesions found | predicted lesions false |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in (*SOURCES, "all"):
        chosen = [r for r in rows if name in ("all", src[r["case_id"]])]
        if not chosen:
            continue
        ids = {r["case_id"] for r in chosen}
        found = [f for c, _, f in expert if c in ids]
        pred = [t for c in ids for _, t in predicted[c]]
        out.append(f"| {name} | {len(chosen)} | {_mean([float(r['dice']) for r in chosen])} | "
                   f"{_mean([float(r['lesion_f1']) for r in chosen])} | {_mean([float(r['avd_ml']) for r in chosen])}"
                   f" | {sum(found)}/{len(found)} | {pred.count(False)}/{len(pred)} |")

    case_labels = ["no lesion", *_bin_labels(CASE_EDGES_ML)]
    out += ["", "Dice / lesion F1 (case means, n) by the case's total expert lesion volume (mL):", "",
            "| case volume mL | " + " | ".join(groups) + " |", "| --- " * (len(groups) + 1) + "|"]
    for k, label in enumerate(case_labels):
        cells = []
        for name in groups:
            chosen = [r for r in rows if name in ("all", src[r["case_id"]]) and
                      (0 if float(r["gt_ml"]) == 0 else 1 + size_bin(float(r["gt_ml"]), CASE_EDGES_ML)) == k]
            cells.append(f"{_mean([float(r['dice']) for r in chosen])} / "
                         f"{_mean([float(r['lesion_f1']) for r in chosen])} ({len(chosen)})" if chosen else "–")
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    lesion_labels = _bin_labels(SIZE_EDGES_ML)
    out += ["", "Lesion detection by lesion size (pooled over cases): recall = expert lesions found / expert lesions; "
            "precision = predicted lesions touching an expert lesion / predicted lesions (binned by their own volume):",
            "", "| lesion size mL | source | expert found/total | recall | predicted true/total | precision | F1 |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, label in enumerate(lesion_labels):
        for name in groups:
            found = [f for c, v, f in expert if name in ("all", src[c]) and size_bin(v, SIZE_EDGES_ML) == k]
            pred = [t for c in subject if name in ("all", src[c]) for v, t in predicted[c]
                    if size_bin(v, SIZE_EDGES_ML) == k]
            recall = sum(found) / len(found) if found else float("nan")
            precision = sum(pred) / len(pred) if pred else float("nan")
            f1 = _f1(precision, recall) if found and pred else float("nan")
            out.append(f"| {label} | {name} | {sum(found)}/{len(found)} | {recall:.2f} | {sum(pred)}/{len(pred)} | "
                       f"{precision:.2f} | {f1:.2f} |".replace("nan", "–"))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, required=True, help="strokeseg evaluate output folder")
    parser.add_argument("--tree", type=Path, default=None, help="generated tree (default: the summary's gt_root)")
    parser.add_argument("--pred", type=Path, default=None, help="predictions (default: the summary's pred_dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here as well")
    args = parser.parse_args()
    summary = json.loads((args.eval / "summary.json").read_text())
    text = tables(args.eval, args.tree or Path(summary["gt_root"]), args.pred or Path(summary["pred_dir"]))
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
