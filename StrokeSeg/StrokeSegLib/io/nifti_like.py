"""Write a result with the *input's own* NIfTI header, so its affine is byte-for-byte the scan's.

SimpleITK rebuilds qform/sform from float64 geometry on every write, and the float32 round trip drifts by ~1e-9; tools
that compare affines exactly (FSL, nibabel users, ISLES scoring scripts) then see a "different grid". Copying the
input's header (with the output's data type) keeps the grid identical, not merely close.
"""
from __future__ import annotations

from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from ..common.geometry import Grid, same_grid

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def header_grid(path: str | Path) -> Grid:
    """The 3-D grid SimpleITK reads from a file's header (the spatial part of a 4-D image), without its voxels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    n = reader.GetDimension()
    direction = np.reshape(reader.GetDirection(), (n, n))[:3, :3].ravel()
    return Grid(reader.GetSize()[:3], reader.GetOrigin()[:3], reader.GetSpacing()[:3], tuple(direction))


def can_copy_header(image: sitk.Image, like: str | Path, out: str | Path) -> bool:
    """True when both files are NIfTI and ``image`` lies on ``like``'s grid (within float32 header precision)."""
    return is_nifti(like) and is_nifti(out) and same_grid(Grid.of(image), header_grid(like), tol=1e-4)


def write_nifti_like(image: sitk.Image, like: str | Path, out: str | Path) -> None:
    """Write ``image``'s voxels into ``out`` with ``like``'s header (affines, codes, units); data type from
    ``image``."""
    source = nib.load(str(like))
    header = cast(nib.Nifti1Header, source.header.copy())  # a NIfTI file (``like`` was read as one)
    data = np.ascontiguousarray(sitk.GetArrayViewFromImage(image).transpose(2, 1, 0))  # (z,y,x) -> NIfTI (i,j,k)
    header.set_data_dtype(data.dtype)
    header.set_data_shape(data.shape)
    header.set_slope_inter(1.0, 0.0)
    result = nib.Nifti1Image(data, None, header)
    # Only coded transforms are meaningful; an uncoded qform may hold garbage quaternions (seen in real scans), and
    # the copied header already carries those fields untouched.
    for kind in ("qform", "sform"):
        code = int(header[f"{kind}_code"])
        if code > 0:
            getattr(result, f"set_{kind}")(getattr(source.header, f"get_{kind}")(), code)
    nib.save(result, str(out))
