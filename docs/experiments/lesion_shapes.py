"""Size and multiplicity of generated lesions against the real library and ISLES 2022.

    python docs/experiments/lesion_shapes.py TREE [--isles ../shared/data/ISLES-2022] --out DIR

Reads a tree written by ``strokeseg-train synth`` (its manifest tells real-library from procedural cases), counts each
case's lesion volume (mL) and 26-connected components on the stored mask, does the same for the bundled library's
masks (1 mm MNI) and, when given, for the expert masks of real ISLES cases, and writes ``lesion_shapes.md`` (a table of
percentiles) and ``lesion_shapes.png`` (volume and component-count distributions).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

from StrokeSegLib.io.cases import find_cases  # noqa: E402
from StrokeSegTrainLib.synth.dataset import read_manifest  # noqa: E402
from StrokeSegTrainLib.synth.lesion_library import BUNDLED_LIBRARY, load_library  # noqa: E402

CUBE = np.ones((3, 3, 3))
PCTS = (5, 25, 50, 75, 95)


def _mask_stats(mask: np.ndarray, voxel_ml: float) -> tuple[float, int, np.ndarray]:
    labels, n = ndimage.label(mask, structure=CUBE)
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    return float(mask.sum() * voxel_ml), int(n), sizes


def _file_stats(path: Path) -> tuple[float, int, np.ndarray]:
    image = sitk.ReadImage(str(path))
    return _mask_stats(sitk.GetArrayViewFromImage(image) > 0, float(np.prod(image.GetSpacing())) / 1000.0)


def collect(tree: Path, isles: Path | None) -> dict[str, list[tuple[float, int, np.ndarray]]]:
    groups: dict[str, list] = {"generated real-library": [], "generated procedural": [], "library (MNI, 1 mm)": []}
    for entry in read_manifest(tree)["cases"]:
        if entry["pattern"] == "none":
            continue
        key = "generated real-library" if entry["pattern"] == "real" else "generated procedural"
        groups[key].append(_file_stats(tree / entry["files"]["mask"]))
    library = load_library(BUNDLED_LIBRARY)
    for i in range(len(library)):
        voxel_ml = float(np.prod(library.spacings[i])) / 1000.0
        groups["library (MNI, 1 mm)"].append(_mask_stats(library.mask(i) > 0, voxel_ml))
    if isles is not None:
        groups["ISLES 2022 (shared cases)"] = [_file_stats(c.mask) for c in find_cases(isles) if c.mask is not None]
    return groups


def report(groups: dict, out: Path) -> str:
    lines = ["| set | cases | volume mL p5 / p25 / p50 / p75 / p95 | components p50 / p95 / max | share with >= 5 "
             "| share of components < 0.1 mL |", "| --- | --- | --- | --- | --- | --- |"]
    for name, rows in groups.items():
        if not rows:
            continue
        vol = np.array([r[0] for r in rows])
        comps = np.array([r[1] for r in rows])
        sizes = np.concatenate([r[2] for r in rows])
        lines.append(f"| {name} | {len(rows)} | {' / '.join(f'{v:.2f}' for v in np.percentile(vol, PCTS))} | "
                     f"{np.median(comps):.0f} / {np.percentile(comps, 95):.0f} / {comps.max()} | "
                     f"{(comps >= 5).mean():.2f} | {(sizes < 0.1).mean():.2f} |")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.logspace(-2, 3, 31)
    for name, rows in groups.items():
        if len(rows) < 5:
            continue
        share = np.full(len(rows), 1.0 / len(rows))
        axes[0].hist([r[0] for r in rows], bins=bins, weights=share, histtype="step", label=name)
        axes[1].hist([min(r[1], 40) for r in rows], bins=np.arange(0, 42, 2), weights=share, histtype="step",
                     label=name)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("lesion volume per case (mL)")
    axes[0].set_ylabel("share of cases")
    axes[1].set_xlabel("26-connected components per case (40 = 40 or more)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lesion_shapes.png", dpi=100)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--isles", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = report(collect(args.tree, args.isles), args.out)
    (args.out / "lesion_shapes.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
