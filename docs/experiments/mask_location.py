"""Where the lesion masks of one scan lie: volume, components, centroids in RAS mm, agreement with a reference mask.

    python docs/experiments/mask_location.py --dwi DWI --mask NAME=PATH [--mask NAME=PATH ...] \
        [--reference PATH] [--brain-mask PATH] [--png OUT.png]

For each mask (all on the DWI's grid): volume, 26-connected component count, centroid of the whole mask and of its
largest component in RAS mm, the share inside ``--brain-mask``, and Dice and centroid distance to ``--reference``.
``--png`` draws, per mask, the axial DWI slice through its largest component with the mask in red and the reference
in green, to name the structure by eye.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from StrokeSegLib.scene.coordinates import ijk_to_lps_points, point_lps_to_ras
from StrokeSegLib.evaluation.metrics import dice_arrays, label_lesions


def _array(path: Path) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def centroid_ras(image: sitk.Image, mask_zyx: np.ndarray) -> list[float] | None:
    """Mean position of the mask's voxels in RAS mm (``None`` for an empty mask)."""
    if not mask_zyx.any():
        return None
    ijk = np.argwhere(mask_zyx)[:, ::-1].mean(axis=0)
    lps = ijk_to_lps_points(ijk, image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    return [round(float(v), 1) for v in point_lps_to_ras(lps)]


def describe(image: sitk.Image, mask: np.ndarray, reference: np.ndarray | None, brain: np.ndarray | None) -> dict:
    """The figures listed in the module docstring for one mask."""
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    labels, n = label_lesions(mask)
    row: dict = {"voxels": int(mask.sum()), "ml": round(float(mask.sum()) * voxel_ml, 3), "components": n,
                 "centroid_ras": centroid_ras(image, mask)}
    if n:
        sizes = ndimage.sum_labels(mask, labels, np.arange(1, n + 1))
        largest = labels == 1 + int(np.argmax(sizes))
        row.update(largest_ml=round(float(largest.sum()) * voxel_ml, 3), largest_centroid_ras=centroid_ras(image, largest))
    if brain is not None and mask.any():
        row["inside_brain_mask"] = round(float((mask & brain).sum() / mask.sum()), 3)
    if reference is not None:
        row["dice_to_reference"] = round(dice_arrays(reference, mask), 3)
        here, there = row["centroid_ras"], centroid_ras(image, reference)
        if here and there:
            row["centroid_distance_to_reference_mm"] = round(float(np.linalg.norm(np.subtract(here, there))), 1)
    return row


def draw(dwi: np.ndarray, masks: dict[str, np.ndarray], reference: np.ndarray | None, out: Path) -> None:
    """One panel per mask: the axial slice through its largest component's centre (or the reference's)."""
    fig, axes = plt.subplots(1, len(masks), figsize=(5 * len(masks), 5), squeeze=False)
    for ax, (name, mask) in zip(axes[0], masks.items(), strict=True):
        labels, n = label_lesions(mask)
        focus = labels == 1 + int(np.argmax(ndimage.sum_labels(mask, labels, np.arange(1, n + 1)))) if n else reference
        z = int(np.argwhere(focus)[:, 0].mean()) if focus is not None and focus.any() else dwi.shape[0] // 2
        ax.imshow(dwi[z], cmap="gray", origin="lower")
        ax.contour(mask[z], levels=[0.5], colors="red", linewidths=1)
        if reference is not None and reference[z].any():
            ax.contour(reference[z], levels=[0.5], colors="lime", linewidths=1)
        ax.set_title(f"{name}: slice k={z} (red: mask, green: reference)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dwi", type=Path, required=True)
    parser.add_argument("--mask", action="append", required=True, help="NAME=PATH (repeatable)")
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--brain-mask", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    image, dwi = _array(args.dwi)
    reference = _array(args.reference)[1] != 0 if args.reference else None
    brain = _array(args.brain_mask)[1] != 0 if args.brain_mask else None
    masks = {name: _array(Path(path))[1] != 0 for name, path in (m.split("=", 1) for m in args.mask)}
    if reference is not None:
        print("reference", describe(image, reference, None, brain))
    for name, mask in masks.items():
        print(name, describe(image, mask, reference, brain))
    if args.png is not None:
        draw(dwi, masks, reference, args.png)


if __name__ == "__main__":
    main()
