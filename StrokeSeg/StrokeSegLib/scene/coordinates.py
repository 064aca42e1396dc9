"""The one place that converts between Slicer's RAS world and ITK's LPS world (pure numpy, no Slicer needed).

Both describe voxel ``(i, j, k)`` with ``i`` the fastest axis (x); the numpy array of a SimpleITK image is indexed
``(k, j, i)``. ITK: ``LPS = origin + D @ diag(spacing) @ ijk``. Slicer: ``RAS = IJKToRAS @ [i, j, k, 1]``. Since
``RAS = diag(-1, -1, 1) @ LPS`` the two are the same mapping written in two bases; a Slicer volume node whose array is
the SimpleITK array reversed along ``k`` simply has a different (negated third column, moved origin) matrix, which
these functions carry through unchanged, so nothing here assumes an index order beyond that.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..common.errors import GeometryError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
RAS_TO_LPS = LPS_TO_RAS  # its own inverse

# Direction cosines from file headers are stored in float32 (NIfTI qform), so allow that much non-orthogonality.
_ORTHONORMAL_TOL = 1e-3


def ijk_to_ras_from_lps(
    origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Slicer's 4x4 IJKToRAS matrix for an ITK grid (``direction`` row-major 9 values or 3x3, as SimpleITK gives)."""
    origin_arr = np.asarray(origin, dtype=float).reshape(3)
    spacing_arr = np.asarray(spacing, dtype=float).reshape(3)
    direction_arr = np.asarray(direction, dtype=float).reshape(3, 3)
    if np.any(spacing_arr <= 0) or not np.all(np.isfinite(spacing_arr)):
        raise GeometryError(f"spacing must be positive and finite, got {spacing_arr.tolist()}")
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction_arr @ np.diag(spacing_arr)
    matrix[:3, 3] = LPS_TO_RAS @ origin_arr
    return matrix


def lps_from_ijk_to_ras(
    matrix: Sequence[Sequence[float]] | np.ndarray,
) -> tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, ...]]:
    """``(origin, spacing, direction)`` in ITK LPS terms (direction row-major, 9 values) from an IJKToRAS matrix.

    Spacing is the column norms and direction the normalised columns; a sheared or degenerate matrix cannot be an ITK
    grid and raises :class:`GeometryError`.
    """
    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise GeometryError(f"IJKToRAS must be a finite 4x4 matrix, got shape {m.shape}")
    linear = m[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 1e-12):
        raise GeometryError(f"IJKToRAS has a zero-length axis (spacing {spacing.tolist()}): not a volume grid")
    direction_ras = linear / spacing
    if np.max(np.abs(direction_ras.T @ direction_ras - np.eye(3))) > _ORTHONORMAL_TOL:
        raise GeometryError("IJKToRAS is sheared (axes not orthogonal); harden or resample the volume first")
    direction = RAS_TO_LPS @ direction_ras
    origin = RAS_TO_LPS @ m[:3, 3]
    return (
        tuple(float(v) for v in origin),  # type: ignore[return-value]
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in direction.ravel()),
    )


def point_ras_to_lps(point: Sequence[float] | np.ndarray) -> np.ndarray:
    """A point (3,) or points (N, 3) from RAS to LPS."""
    return np.asarray(point, dtype=float) @ RAS_TO_LPS.T


def point_lps_to_ras(point: Sequence[float] | np.ndarray) -> np.ndarray:
    """A point (3,) or points (N, 3) from LPS to RAS."""
    return np.asarray(point, dtype=float) @ LPS_TO_RAS.T


def ijk_to_lps_points(
    ijk: Sequence[float] | np.ndarray, origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float]
) -> np.ndarray:
    """Physical LPS points of continuous indices ``ijk`` (..., 3), ``i`` fastest, the way ITK maps them."""
    d = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    return np.asarray(ijk, dtype=float) @ d.T + np.asarray(origin, dtype=float)
