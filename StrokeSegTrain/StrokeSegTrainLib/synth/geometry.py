"""Scan geometry: where the head sits in the scanner and the grid the DWI is stored on.

Real stroke DWI comes as axial stacks whose direction cosines are oblique (slices tilted to the head, up to ~20
degrees), stored in any axis order and sign (LPS- or RAS-style files, transposed in-plane axes), with 0.9-2 mm pixels
and 2-5 mm slices. The head is placed in the scanner with a small extra tilt relative to the slices, so that anatomy
looks "straight" in index space as in real scans while the direction matrix is oblique.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import axis_angle_matrix, rotation_matrix


@dataclass(frozen=True)
class ScanGeometry:
    """The stored grid (SimpleITK conventions: size/spacing in index order i, j, k; direction row-major 3x3) and the
    head pose: physical = head_rotation @ anatomical + head_translation (mm, LPS)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    head_rotation: np.ndarray
    head_translation: np.ndarray
    slice_axis: int

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, float).reshape(3, 3)

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous indices (..., 3) to physical points (..., 3)."""
        return np.asarray(self.origin) + (np.asarray(ijk) * np.asarray(self.spacing)) @ self.direction_matrix.T

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Physical points (..., 3) to continuous indices (..., 3)."""
        return ((np.asarray(points) - np.asarray(self.origin)) @ self.direction_matrix) / np.asarray(self.spacing)

    def corners(self) -> np.ndarray:
        """Physical positions (8, 3) of the outer corners of the grid (half a voxel beyond the centres)."""
        n = np.asarray(self.size, float)
        cube = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
        return self.index_to_physical(cube * n - 0.5)

    def obliquity_deg(self) -> float:
        """Largest angle between an index axis and the physical axis nearest to it."""
        d = np.abs(self.direction_matrix)
        return float(np.degrees(np.arccos(np.clip(d.max(axis=0).min(), -1.0, 1.0))))

    def orientation_code(self) -> str:
        """ITK-style three-letter code: the physical direction (L/R, P/A, S/I) each index axis points to."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        d = self.direction_matrix
        code = ""
        for col in range(3):
            axis = int(np.argmax(np.abs(d[:, col])))
            code += letters[axis][0 if d[axis, col] > 0 else 1]
        return code


def _signed_permutation(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Random storage order: axis signs (LPS vs RAS style), an in-plane transpose now and then, rarely the slice axis
    first or second; returns the matrix whose columns are the index axes in the slice frame, and the slice index."""
    order = [0, 1, 2]
    if rng.random() < 0.25:
        order[0], order[1] = order[1], order[0]
    if rng.random() < 0.1:
        k = int(rng.integers(0, 2))
        order.insert(k, order.pop(2))
    perm = np.zeros((3, 3))
    for col, axis in enumerate(order):
        perm[axis, col] = 1.0 if rng.random() < 0.5 else -1.0
    return perm, order.index(2)


def _spacing(rng: np.random.Generator) -> tuple[float, float]:
    """(in-plane, slice) spacing: ISLES-like 2 mm isotropic often, otherwise clinical 0.9-2 mm x 2-5 mm."""
    if rng.random() < 0.3:
        return 2.0, 2.0
    in_plane = float(rng.choice([rng.uniform(0.85, 1.3), rng.uniform(1.3, 2.0)]))
    thick = float(rng.choice([rng.uniform(2.0, 3.5), rng.uniform(3.5, 5.0), 5.0]))
    return in_plane, thick


def sample_geometry(rng: np.random.Generator, brain_extent_z: tuple[float, float],
                    max_oblique_deg: float = 20.0, max_head_tilt_deg: float = 6.0) -> ScanGeometry:
    """Draw a stored grid covering the brain (``brain_extent_z``: anatomical z range, mm) with realistic obliquity.

    Slices sometimes miss the top of the head or the lower cerebellum, as thick-slice clinical protocols do.
    """
    # Oblique slices: tilted about a random axis (mostly left-right, i.e. pitch towards the AC-PC line) by at most
    # max_oblique_deg, so no index axis is further than that from the physical axis it stands for.
    axis = rng.normal(size=3) * np.array([1.5, 0.7, 0.7])
    oblique = axis_angle_matrix(axis, max_oblique_deg * np.sqrt(rng.uniform()))
    jitter = rotation_matrix(*rng.uniform(-max_head_tilt_deg, max_head_tilt_deg, 3))
    head_rotation = oblique @ jitter
    head_translation = rng.uniform(-25.0, 25.0, 3)
    perm, slice_axis = _signed_permutation(rng)
    direction = oblique @ perm
    in_plane, thick = _spacing(rng)
    fov = rng.uniform(200.0, 250.0)
    z_lo, z_hi = brain_extent_z
    lo = z_lo + rng.uniform(-15.0, 25.0) if rng.random() < 0.8 else z_lo + rng.uniform(25.0, 45.0)
    hi = z_hi + rng.uniform(-10.0, 15.0)
    n_slices = max(int(np.ceil((hi - lo) / thick)), 8)
    frame_size = np.array([round(fov / in_plane), round(fov / in_plane), n_slices], float)
    frame_spacing = np.array([in_plane, in_plane, thick])
    centre_frame = np.array([rng.uniform(-12, 12), rng.uniform(-12, 12), 0.5 * (lo + hi)])
    centre = head_translation + oblique @ centre_frame
    order = [int(np.argmax(np.abs(perm[:, c]))) for c in range(3)]
    size = frame_size[order]
    spacing = frame_spacing[order]
    origin = centre - direction @ (spacing * (size - 1) / 2.0)
    return ScanGeometry(size=tuple(int(v) for v in size), spacing=tuple(float(v) for v in spacing),  # type: ignore[arg-type]
                        origin=tuple(float(v) for v in origin), direction=tuple(float(v) for v in direction.ravel()),  # type: ignore[arg-type]
                        head_rotation=head_rotation, head_translation=head_translation, slice_axis=slice_axis)
