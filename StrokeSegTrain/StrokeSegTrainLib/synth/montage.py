"""PNG montage of synthetic cases (DWI, ADC, mask outline on the slice with most lesion), to judge realism by eye."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _slice_view(image: sitk.Image, slice_axis: int, index: int) -> np.ndarray:
    """The 2-D slice ``index`` along index axis ``slice_axis`` (0 = i), as stored (no reorientation)."""
    arr = sitk.GetArrayFromImage(image)
    return np.take(arr, index, axis=2 - slice_axis)


def best_slice(mask: sitk.Image, slice_axis: int) -> int:
    """Slice with the most lesion voxels, or the middle slice of an empty mask."""
    arr = sitk.GetArrayViewFromImage(mask)
    axis = 2 - slice_axis
    counts = arr.sum(axis=tuple(a for a in range(3) if a != axis))
    return int(np.argmax(counts)) if counts.max() > 0 else arr.shape[axis] // 2


def save_montage(cases: Iterable, path: str | Path, columns_per_case: int = 3) -> Path:
    """One row per case: DWI, ADC (0-3.5e-3 mm^2/s), DWI with the mask outline. ``cases`` are SynthCase objects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(cases)
    fig, axes = plt.subplots(len(cases), columns_per_case, figsize=(3.2 * columns_per_case, 3.2 * len(cases)),
                             squeeze=False)
    for row, case in zip(axes, cases):
        k = case.info["slice_axis"]
        idx = best_slice(case.mask, k)
        dwi = _slice_view(case.dwi, k, idx).astype(np.float32)
        adc = _slice_view(case.adc, k, idx).astype(np.float32) * np.float32(case.info["adc_units"]) * 1e3
        msk = _slice_view(case.mask, k, idx)
        top = np.percentile(dwi[dwi > 0], 99.5) if np.any(dwi > 0) else 1.0
        row[0].imshow(dwi, cmap="gray", vmin=0, vmax=top)
        row[1].imshow(adc, cmap="gray", vmin=0, vmax=3.5)
        row[2].imshow(dwi, cmap="gray", vmin=0, vmax=top)
        if msk.any():
            row[2].contour(msk, levels=[0.5], colors="r", linewidths=0.8)
        info = case.info
        row[0].set_title(f"{case.case_id} DWI b={info['b_value']:.0f}", fontsize=8)
        row[1].set_title(f"ADC ({info['adc_unit_name']}) x1e-3", fontsize=8)
        row[2].set_title(f"{info['pattern']} {info['mask_volume_ml']:.2f} mL "
                         f"{'stripped' if info['skull_stripped'] else 'unstripped'}", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out
