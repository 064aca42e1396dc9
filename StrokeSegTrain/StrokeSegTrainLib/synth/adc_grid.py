"""An ADC delivered on another grid than the DWI: rotated, with other voxels, as when a site exports the ADC map from
a separate reconstruction or after registration. Inference resamples it onto the DWI grid, so a model trained only
on ADCs that share the DWI's grid meets interpolated ADC for the first time on such scans.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .shapes import rotation_matrix

#: Largest rotation (degrees, about each axis) and the isotropic spacing range (mm) of the other grid.
MAX_ROTATION_DEG = 15.0
SPACING_MM = (1.2, 2.2)


def regrid_adc(adc: sitk.Image, rng: np.random.Generator) -> tuple[sitk.Image, dict]:
    """``adc`` resampled (linear, 0 outside) onto a rotated isotropic grid covering the same physical box."""
    spacing = float(rng.uniform(*SPACING_MM))
    angles = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3)
    rot = rotation_matrix(*angles).astype(np.float64)
    direction = rot @ np.asarray(adc.GetDirection(), float).reshape(3, 3)
    size = np.asarray(adc.GetSize(), float)
    corners = np.array([adc.TransformContinuousIndexToPhysicalPoint((c * (size - 1)).tolist())
                        for c in np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)])
    local = corners @ direction  # coordinates along the new axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    new_size = [int(np.ceil((top - bottom) / spacing)) + 1 for bottom, top in zip(lo, hi)]
    origin = direction @ lo
    reference = sitk.Image(new_size, adc.GetPixelID())
    reference.SetSpacing((spacing,) * 3)
    reference.SetDirection(direction.ravel().tolist())
    reference.SetOrigin(origin.tolist())
    out = sitk.Resample(adc, reference, sitk.Transform(), sitk.sitkLinear, 0.0, adc.GetPixelID())
    return out, {"spacing_mm": round(spacing, 3), "rotation_deg": [round(float(a), 2) for a in angles],
                 "size": new_size}
