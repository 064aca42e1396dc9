"""How much a mask changes when the same ADC is delivered on another grid (rotated, other spacing).

    python docs/experiments/adc_other_grid.py --data TREE --out OUT --model strokeseg-starter [--model M2 ...] \
        [--limit 12] [--angle 15] [--axis 1 1 1] [--spacing 1.5]

For the first ``--limit`` cases of ``TREE`` (sorted ids), the ADC is resampled with SimpleITK onto a grid rotated by
``--angle`` degrees about the physical ``--axis`` with isotropic ``--spacing`` mm, covering the whole original box
(physical space kept, linear interpolation, 0 outside): the same physical content on another grid, as a site that
exports its ADC separately may deliver it. Two trees are written under ``OUT`` (``original/``: links to the files,
``rotated/``: the DWI and mask linked, the ADC rotated), each model segments both with ``strokeseg batch`` and the
masks are scored with ``strokeseg evaluate``, so every model the CLI accepts (file or installed id) runs unchanged.
Writes ``OUT/adc_other_grid.csv``: per model and case, Dice between the two masks (consistency), each mask's Dice
against the expert mask when there is one, and both predicted volumes; prints the means per model.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from StrokeSegLib.io.cases import Case, find_cases
from StrokeSegLib.evaluation.metrics import dice_arrays


def rotation_matrix(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """Rodrigues' rotation about the unit vector along ``axis`` (physical LPS coordinates)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = math.radians(degrees)
    return np.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * cross @ cross


def rotated_grid(image: sitk.Image, rotation: np.ndarray, spacing: float) -> sitk.Image:
    """``image`` resampled (linear) onto a grid whose axes are its own rotated by ``rotation``, covering its box."""
    direction = rotation @ np.asarray(image.GetDirection()).reshape(3, 3)
    size = np.asarray(image.GetSize())
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.where(bits, size - 0.5, -0.5)])
               for bits in np.ndindex(2, 2, 2)]
    local = np.asarray(corners) @ direction  # coordinates along the new axes (direction's columns)
    low, high = local.min(axis=0), local.max(axis=0)
    new_size = [int(math.ceil(n)) for n in (high - low) / spacing]
    origin = direction @ (low + spacing / 2)
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), new_size, sitk.Transform(), sitk.sitkLinear,
                         origin.tolist(), [spacing] * 3, direction.ravel().tolist(), 0.0, sitk.sitkFloat32)


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(source.resolve())


def build_trees(cases: list[Case], root: Path, out: Path, rotation: np.ndarray, spacing: float) -> None:
    """``out/original`` and ``out/rotated`` with each case's files at their paths relative to ``root``."""
    for case in cases:
        for tree in ("original", "rotated"):
            _link(case.dwi, out / tree / case.dwi.relative_to(root))
            if case.mask is not None:
                _link(case.mask, out / tree / case.mask.relative_to(root))
        _link(case.adc, out / "original" / case.adc.relative_to(root))
        rotated = out / "rotated" / case.adc.relative_to(root)
        if not rotated.exists():
            rotated.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(rotated_grid(sitk.ReadImage(str(case.adc)), rotation, spacing), str(rotated), True)


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "StrokeSegLib.cli", *args], check=True)


def _read(path: Path) -> tuple[np.ndarray, float] | None:
    if not path.is_file():
        return None
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image) != 0, float(np.prod(image.GetSpacing())) / 1000.0


def _gt_dice(eval_dir: Path) -> dict[str, float]:
    metrics = eval_dir / "metrics.csv"
    if not metrics.is_file():
        return {}
    with open(metrics, newline="") as handle:
        return {row["case_id"]: float(row["dice"]) for row in csv.DictReader(handle)}


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).stem if model.endswith(".safetensors") else model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="case tree (ISLES layout)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True, help="model file or installed id (repeatable)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (sorted ids)")
    parser.add_argument("--angle", type=float, default=15.0, help="rotation in degrees (default 15)")
    parser.add_argument("--axis", type=float, nargs=3, default=(1.0, 1.0, 1.0), help="rotation axis (LPS)")
    parser.add_argument("--spacing", type=float, default=1.5, help="isotropic spacing of the new grid in mm")
    args = parser.parse_args()
    root = args.data.resolve()
    cases = sorted(find_cases(root), key=lambda c: c.case_id)[:args.limit]
    build_trees(cases, root, args.out, rotation_matrix(tuple(args.axis), args.angle), args.spacing)
    rows = []
    for model in args.model:
        name = _slug(model)
        gt = {}
        for tree in ("original", "rotated"):
            pred = args.out / name / tree
            _cli("batch", str(args.out / tree), "--out", str(pred), "--model", model, "--resume")
            if any(c.mask is not None for c in cases):
                # exit status 1 when a case has no mask or failed; the table says which
                subprocess.run([sys.executable, "-m", "StrokeSegLib.cli", "evaluate", "--pred", str(pred), "--gt",
                                str(args.out / tree), "--out", str(args.out / name / f"eval_{tree}")], check=False)
            gt[tree] = _gt_dice(args.out / name / f"eval_{tree}")
        for case in cases:
            masks = [_read(args.out / name / tree / f"{case.case_id}_msk.nii.gz") for tree in ("original", "rotated")]
            row: dict[str, object] = {"model": model, "case_id": case.case_id}
            if None not in masks:
                (a, voxel_ml), (b, _) = masks
                row.update(consistency_dice=round(dice_arrays(a, b), 4), pred_ml_original=round(float(a.sum()) * voxel_ml, 3),
                           pred_ml_rotated=round(float(b.sum()) * voxel_ml, 3))
            for tree in ("original", "rotated"):
                if case.case_id in gt[tree]:
                    row[f"gt_dice_{tree}"] = round(gt[tree][case.case_id], 4)
            rows.append(row)
            print(row, flush=True)
    fields = ["model", "case_id", "consistency_dice", "gt_dice_original", "gt_dice_rotated", "pred_ml_original",
              "pred_ml_rotated"]
    with open(args.out / "adc_other_grid.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for model in args.model:
        mine = [r for r in rows if r["model"] == model]
        means = {k: np.mean([float(r[k]) for r in mine if k in r]) for k in fields[2:5] if any(k in r for r in mine)}
        print(model, {k: round(float(v), 3) for k, v in means.items()})


if __name__ == "__main__":
    main()
