"""PNG pictures for people: a case overlay on the slice that matters, and evaluation plots.

Pictures are drawn with matplotlib's object API on an Agg canvas (no pyplot state, no GUI backend), so this works
headless, from worker threads and inside Slicer, and every file is written atomically.

Orientation of the overlay (documented because scans are often oblique): we never resample the scan for a picture.
We show one *index* slice of the image: the slice axis is the image axis whose direction cosine is closest to the
physical superior-inferior axis, so for an oblique scan the picture is the acquired plane nearest to axial, not a
true axial cut. Of the two in-plane axes, the one closest to anterior-posterior becomes the rows and the other the
columns; rows are flipped so that anterior is at the top, and columns so that the patient's right is on the left of
the picture (radiological convention, as in Slicer's red view). Pixels are drawn with the true aspect ratio from the
spacing. Orientation letters (R, L, A, P) are printed on the picture.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.artist import Artist
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..common.atomic import atomic_path
from ..common.errors import InvalidImageError
from ..common.geometry import resample_to_grid, same_grid

GT_COLOUR = "#00e000"
PRED_COLOUR = "#ff2a2a"
_PANEL_INCHES = 3.6


@dataclass(frozen=True)
class ViewAxes:
    """How an image's index axes (SimpleITK x, y, z order) map onto the picture."""

    slice_axis: int
    row_axis: int
    col_axis: int
    flip_rows: bool
    flip_cols: bool
    plane: str  # "axial" when the slice axis is mostly S-I; otherwise the plane actually shown


def view_axes(image: sitk.Image) -> ViewAxes:
    """Choose the slice, row and column index axes that give the radiological near-axial view described above."""
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)  # column k: LPS direction of index axis k
    slice_axis = int(np.argmax(np.abs(d[2, :])))
    rest = [k for k in range(3) if k != slice_axis]
    row_axis = max(rest, key=lambda k: (abs(d[1, k]), -k))
    col_axis = rest[0] if rest[1] == row_axis else rest[1]
    # LPS: +y is posterior, so row index must grow towards posterior (anterior on top); +x is the patient's left, so
    # column index must grow towards the left (patient's right on the picture's left).
    dominant = int(np.argmax(np.abs(d[:, slice_axis])))
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[dominant]
    return ViewAxes(slice_axis, row_axis, col_axis, bool(d[1, row_axis] < 0), bool(d[0, col_axis] < 0), plane)


def _volume_xyz(image: sitk.Image) -> np.ndarray:
    """The voxel array in SimpleITK index order (x, y, z), so axis k is index axis k."""
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def _orient(plane: np.ndarray, axes: ViewAxes) -> np.ndarray:
    """Turn a 2-D array over the two in-plane index axes (increasing axis order) into picture rows and columns."""
    if axes.row_axis > axes.col_axis:
        plane = plane.T
    if axes.flip_rows:
        plane = plane[::-1, :]
    if axes.flip_cols:
        plane = plane[:, ::-1]
    return plane


def slice_picture(volume_xyz: np.ndarray, axes: ViewAxes, index: int) -> np.ndarray:
    """The 2-D picture (rows, columns) of index slice ``index``, oriented as in the module docstring."""
    return _orient(np.take(volume_xyz, index, axis=axes.slice_axis), axes)


def _crop_box(foreground_xyz: np.ndarray, axes: ViewAxes, margin: int = 4) -> tuple[slice, slice]:
    """Rows and columns covering everything non-zero in any slice, so a skull-stripped head is not lost in black."""
    footprint = _orient(np.asarray(foreground_xyz.any(axis=axes.slice_axis)), axes)
    if not footprint.any():
        return slice(None), slice(None)
    rows, cols = np.nonzero(footprint.any(axis=1))[0], np.nonzero(footprint.any(axis=0))[0]
    return (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
            slice(max(cols[0] - margin, 0), cols[-1] + margin + 1))


def _on_grid(image: sitk.Image | None, reference: sitk.Image, interpolator: str) -> sitk.Image | None:
    """The image on the DWI grid: unchanged when it already is, else resampled in physical space (for display only)."""
    if image is None or same_grid(image, reference, tol=1e-3):
        return image
    return resample_to_grid(image, reference, interpolator=interpolator)


def _window(volume: np.ndarray) -> tuple[float, float]:
    """Display range from percentiles of the non-zero voxels (skull-stripped scans are mostly zeros)."""
    values = volume[np.isfinite(volume) & (volume != 0)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(min(low, 0.0)), float(high if high > low else low + 1.0)


def lesion_slice(mask_xyz: np.ndarray | None, axes: ViewAxes, size_along: int) -> int:
    """Index of the slice with the largest lesion area; the middle slice when there is no lesion."""
    if mask_xyz is None or not mask_xyz.any():
        return size_along // 2
    other = tuple(k for k in range(3) if k != axes.slice_axis)
    return int(np.argmax(mask_xyz.sum(axis=other)))


def _label_orientation(ax) -> None:
    style = dict(color="white", fontsize=8, fontweight="bold", transform=ax.transAxes, ha="center", va="center")
    ax.text(0.5, 0.97, "A", **style)
    ax.text(0.5, 0.03, "P", **style)
    ax.text(0.03, 0.5, "R", **style)
    ax.text(0.97, 0.5, "L", **style)


def overlay_png(
    path: str | Path,
    dwi: sitk.Image,
    adc: sitk.Image | None,
    prediction: sitk.Image | None,
    ground_truth: sitk.Image | None = None,
    title: str = "",
) -> Path:
    """Write a PNG of DWI, ADC and the lesion masks on the near-axial slice with the largest lesion area.

    The slice is chosen over prediction ∪ ground truth so that misses and false positives both get a chance to be
    seen; the title gives the slice index and both whole-volume lesion volumes. ADC and masks not on the DWI grid
    are resampled onto it for display.
    """
    if dwi.GetDimension() != 3:
        raise InvalidImageError(f"overlay needs a 3-D DWI, got {dwi.GetDimension()}-D")
    adc = _on_grid(adc, dwi, "linear")
    prediction = _on_grid(prediction, dwi, "nearest")
    ground_truth = _on_grid(ground_truth, dwi, "nearest")
    axes = view_axes(dwi)
    voxel_ml = float(np.prod(dwi.GetSpacing())) / 1000.0
    spacing = dwi.GetSpacing()

    dwi_xyz = _volume_xyz(dwi).astype(np.float32)
    adc_xyz = None if adc is None else _volume_xyz(adc).astype(np.float32)
    pred_xyz = None if prediction is None else _volume_xyz(prediction) != 0
    gt_xyz = None if ground_truth is None else _volume_xyz(ground_truth) != 0
    masks = [m for m in (pred_xyz, gt_xyz) if m is not None]
    union = np.logical_or.reduce(masks) if masks else None
    n_slices = dwi.GetSize()[axes.slice_axis]
    index = lesion_slice(union, axes, n_slices)

    foreground = dwi_xyz != 0
    if union is not None:
        foreground = foreground | union
    rows, cols = _crop_box(foreground, axes)

    def picture(volume_xyz: np.ndarray) -> np.ndarray:
        return slice_picture(volume_xyz, axes, index)[rows, cols]

    panels: list[tuple[str, np.ndarray, tuple[float, float]]] = [("DWI", dwi_xyz, _window(dwi_xyz))]
    if adc_xyz is not None:
        panels.append(("ADC", adc_xyz, _window(adc_xyz)))
    panels.append(("DWI + lesion masks", dwi_xyz, panels[0][2]))

    shown = picture(dwi_xyz)
    pixel_aspect = spacing[axes.row_axis] / spacing[axes.col_axis]  # height / width of one pixel
    panel_h = _PANEL_INCHES * shown.shape[0] * pixel_aspect / shown.shape[1]
    panel_h = float(np.clip(panel_h, 1.5, 3 * _PANEL_INCHES))
    fig = Figure(figsize=(_PANEL_INCHES * len(panels), panel_h + 1.0), dpi=110, facecolor="black")
    plots = fig.subplots(1, len(panels), squeeze=False)[0]
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.12, top=1.0 - 0.75 / (panel_h + 1.0), wspace=0.04)

    for ax, (name, volume, (vmin, vmax)) in zip(plots, panels):
        ax.imshow(picture(volume), cmap="gray", vmin=vmin, vmax=vmax, aspect=pixel_aspect, interpolation="nearest")
        ax.set_title(name, color="white", fontsize=9)
        ax.set_axis_off()
        _label_orientation(ax)

    overlay_ax = plots[-1]
    handles: list[Artist] = []
    if pred_xyz is not None:
        pred_2d = picture(pred_xyz)
        overlay_ax.imshow(np.ma.masked_where(~pred_2d, pred_2d.astype(np.uint8)), cmap=ListedColormap([PRED_COLOUR]),
                          alpha=0.5, aspect=pixel_aspect, interpolation="nearest", vmin=0, vmax=1)
        handles.append(Patch(facecolor=PRED_COLOUR, alpha=0.8, label="prediction (filled)"))
    if gt_xyz is not None:
        gt_2d = picture(gt_xyz)
        if gt_2d.any():
            overlay_ax.contour(gt_2d.astype(np.float32), levels=[0.5], colors=[GT_COLOUR], linewidths=1.0)
        handles.append(Line2D([], [], color=GT_COLOUR, linewidth=1.5, label="ground truth (outline)"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
                   labelcolor="white")

    volumes = []
    if gt_xyz is not None:
        volumes.append(f"ground truth {gt_xyz.sum() * voxel_ml:.2f} mL")
    if pred_xyz is not None:
        volumes.append(f"prediction {pred_xyz.sum() * voxel_ml:.2f} mL")
    reason = "largest lesion area" if union is not None and union.any() else "no lesion: middle slice"
    line = f"{axes.plane} slice {index} of 0-{n_slices - 1} ({reason})"
    if volumes:
        line += " | " + ", ".join(volumes)
    fig.suptitle(f"{title}\n{line}" if title else line, color="white", fontsize=9)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return Path(path)


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def dice_histogram_png(path: str | Path, dices: Sequence[float]) -> Path:
    """Histogram of per-case Dice on [0, 1] with mean and median marked."""
    values = _finite(dices)
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.hist(values, bins=np.linspace(0.0, 1.0, 21).tolist(), color="#4477aa", edgecolor="white")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("Dice")
    ax.set_ylabel("cases")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if values.size:
        ax.axvline(float(np.mean(values)), color="#cc3311", linestyle="-", label=f"mean {np.mean(values):.3f}")
        ax.axvline(float(np.median(values)), color="#ee7733", linestyle="--", label=f"median {np.median(values):.3f}")
        ax.legend(loc="upper left")
        ax.set_title(f"Dice distribution ({values.size} cases)")
    else:
        ax.set_title("Dice distribution (no cases)")
    fig.tight_layout()
    return _save(fig, path)


def dice_vs_volume_png(path: str | Path, gt_ml: Sequence[float], dices: Sequence[float]) -> Path:
    """Dice against ground-truth lesion volume on a log volume axis (small lesions are where models fail).

    Cases with an empty ground truth have no place on a log axis; they are counted in the title instead.
    """
    volumes = np.asarray(list(gt_ml), dtype=float)
    scores = np.asarray(list(dices), dtype=float)
    if volumes.shape != scores.shape:
        raise ValueError(f"gt_ml has {volumes.size} values but dices has {scores.size}")
    shown = (volumes > 0) & np.isfinite(volumes) & np.isfinite(scores)
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.scatter(volumes[shown], scores[shown], s=18, color="#4477aa", edgecolor="black", linewidth=0.3)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    if shown.any():
        low, high = volumes[shown].min(), volumes[shown].max()
        ax.set_xlim(low / 1.5, high * 1.5)
    ax.set_xlabel("ground-truth lesion volume (mL, log scale)")
    ax.set_ylabel("Dice")
    ax.grid(True, which="major", alpha=0.3)
    hidden = int((~shown).sum())
    note = f"; {hidden} case(s) with empty ground truth not shown" if hidden else ""
    ax.set_title(f"Dice against lesion volume ({int(shown.sum())} cases{note})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def lesion_detection_png(path: str | Path, by_size: Sequence[dict], false_lesions: int, predicted_lesions: int) -> Path:
    """Share of expert lesions found per size bin (bars, with found/total written on them); false lesions in the title.

    ``by_size`` is :func:`lesion_detection.detection_by_size`'s output.
    """
    labels = [b["label"] for b in by_size]
    rates = [0.0 if b["rate"] is None else float(b["rate"]) for b in by_size]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    bars = ax.bar(range(len(labels)), rates, color="#4477aa", edgecolor="black", linewidth=0.3)
    for bar, b in zip(bars, by_size):
        text = f"{b['found']}/{b['lesions']}" if b["lesions"] else "none"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, text, ha="center", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0.0, 1.12)
    ax.set_xlabel("expert lesion volume (mL)")
    ax.set_ylabel("share of expert lesions found")
    ax.set_title(f"Lesions found by size; {false_lesions} of {predicted_lesions} predicted lesions are false",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
