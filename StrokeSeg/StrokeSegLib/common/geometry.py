"""Image grids in physical (LPS) space, their comparison, overlap, and resampling between them.

Every step that moves voxels between grids goes through this module so that origin, spacing and direction are kept
exactly: the network grid is derived from the DWI grid (in one canonical axis order, :data:`CANONICAL_FRAME`), and
results are resampled back onto *exactly* the DWI grid (compared with ``Grid`` equality, no tolerance), which is what a
viewer overlaying the result on the scan needs. When two grids share their voxel centres in another axis order,
resampling is an exact copy of the voxels (transposed and flipped), not an interpolation.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import SimpleITK as sitk

from .errors import GeometryError

#: The anatomical frame the network sees: columns are LPS unit vectors, index axis x (0) towards the patient's left,
#: y (1) anterior, z (2) superior ("LAS"). That is how the ISLES-2022 DWI are stored (dcm2niix NIfTI), the real scans
#: the bundled model learnt from, so its (z, y, x) arrays are axial slices stacked from feet to head as it saw them
#: there (the generated cases come in random axis orders and flips, so they do not favour another frame). Every
#: scan is turned to this frame by permuting and flipping its index axes only, whatever order it was stored in.
CANONICAL_FRAME = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])

#: Grids whose voxel centres agree within this distance (mm) are the same voxels (NIfTI stores geometry in float32).
COINCIDENT_TOLERANCE_MM = 1e-4

#: Canonical origins are rounded to this many decimals (mm), so the same scan stored in another axis order, whose
#: origin differs by float rounding only, gets the very same network grid.
_ORIGIN_DECIMALS = 6

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


@dataclass(frozen=True)
class Grid:
    """The geometry of a 3-D image: ``size`` in (x, y, z) voxels, ``origin`` (mm, LPS), ``spacing`` (mm) and the
    row-major 3x3 ``direction`` cosines. Equality is exact, which is what "the same grid as the DWI" must mean for
    outputs; use :func:`same_grid` to compare inputs with a tolerance."""

    size: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, float, float, float, float, float, float, float, float]

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        origin = tuple(float(v) for v in self.origin)
        spacing = tuple(float(v) for v in self.spacing)
        direction = tuple(float(v) for v in self.direction)
        if len(size) != 3 or len(origin) != 3 or len(spacing) != 3 or len(direction) != 9:
            raise GeometryError(
                f"A grid needs 3 sizes, 3 origin values, 3 spacings and 9 direction cosines; got "
                f"{len(size)}, {len(origin)}, {len(spacing)} and {len(direction)}.")
        if min(size) < 1:
            raise GeometryError(f"Grid size must be positive in every axis, got {size}.")
        if not all(math.isfinite(v) and v > 0 for v in spacing):
            raise GeometryError(f"Grid spacing must be positive and finite, got {spacing}.")
        if not all(math.isfinite(v) for v in origin + direction):
            raise GeometryError("Grid origin and direction must be finite.")
        if abs(np.linalg.det(np.reshape(direction, (3, 3)))) < 1e-3:
            raise GeometryError(f"Grid direction matrix is singular: {direction}.")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "direction", direction)

    @classmethod
    def of(cls, image: sitk.Image | Grid) -> Grid:
        """The grid of a 3-D image (a Grid is returned as is)."""
        if isinstance(image, Grid):
            return image
        if image.GetDimension() != 3:
            raise GeometryError(f"Expected a 3-D image, got {image.GetDimension()}-D.")
        return cls(image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection())

    @property
    def matrix(self) -> np.ndarray:
        """Direction cosines as a 3x3 array (columns are the index axes in physical space)."""
        return np.reshape(np.asarray(self.direction, dtype=np.float64), (3, 3))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy array shape (z, y, x) of an image on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def reference_image(self, pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
        """A zero image with this geometry, e.g. as the reference of a resampling."""
        image = sitk.Image(list(self.size), pixel_type)
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image

    def image_from_array(self, array: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) array as an image on this grid; the shape must match exactly."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise GeometryError(f"Array of shape {array.shape} does not fit a grid of shape (z, y, x) {self.shape}.")
        image = sitk.GetImageFromArray(array)
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image

    def index_to_physical(self, index_xyz: np.ndarray) -> np.ndarray:
        """Continuous (x, y, z) indices, shape (N, 3), to physical LPS points in mm, shape (N, 3)."""
        index_xyz = np.asarray(index_xyz, dtype=np.float64).reshape(-1, 3)
        return np.asarray(self.origin) + (index_xyz * np.asarray(self.spacing)) @ self.matrix.T

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Physical LPS points (N, 3) to continuous (x, y, z) indices (N, 3); the inverse of index_to_physical."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.linalg.solve(self.matrix, (points - np.asarray(self.origin)).T).T / np.asarray(self.spacing)

    def corners(self) -> np.ndarray:
        """The 8 outer corners of the voxel box (index -0.5 and size-0.5) in physical space, shape (8, 3)."""
        lo = np.full(3, -0.5)
        hi = np.asarray(self.size, dtype=np.float64) - 0.5
        index = np.array([[(hi if (c >> a) & 1 else lo)[a] for a in range(3)] for c in range(8)])
        return self.index_to_physical(index)

    def physical_bounds(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Axis-aligned (min, max) LPS bounding box, in mm, of the voxel box including the outer half voxels."""
        corners = self.corners()
        return tuple(corners.min(axis=0).tolist()), tuple(corners.max(axis=0).tolist())


GridLike: TypeAlias = sitk.Image | Grid


def same_grid(a: GridLike, b: GridLike, tol: float = 1e-4) -> bool:
    """True when two images (or grids) share a grid within ``tol``: equal size, spacing within a relative ``tol``,
    origin within ``tol`` mm, direction cosines within ``tol``. Tolerant because NIfTI stores geometry in float32."""
    ga, gb = Grid.of(a), Grid.of(b)
    if ga.size != gb.size:
        return False
    sa, sb = np.asarray(ga.spacing), np.asarray(gb.spacing)
    if np.any(np.abs(sa - sb) > tol * np.maximum(sa, sb)):
        return False
    if np.any(np.abs(np.asarray(ga.origin) - np.asarray(gb.origin)) > tol):
        return False
    return bool(np.all(np.abs(np.asarray(ga.direction) - np.asarray(gb.direction)) <= tol))


@dataclass(frozen=True)
class AxisMap:
    """A signed permutation of index axes: target axis ``a`` is source axis ``order[a]``, reversed when ``flip[a]``."""

    order: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    def source_index(self, target_index: np.ndarray, source_size: Sequence[int]) -> np.ndarray:
        """Integer (x, y, z) target indices (N, 3) to the source indices of the same voxels."""
        target_index = np.asarray(target_index, dtype=np.float64).reshape(-1, 3)
        source = np.empty_like(target_index)
        for a, (axis, flip) in enumerate(zip(self.order, self.flip)):
            source[:, axis] = (source_size[axis] - 1 - target_index[:, a]) if flip else target_index[:, a]
        return source

    def apply(self, array: np.ndarray) -> np.ndarray:
        """A source (z, y, x) array as the target (z, y, x) array: the same voxels, only reordered."""
        xyz = np.asarray(array).transpose(2, 1, 0).transpose(self.order)
        xyz = xyz[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]
        return np.ascontiguousarray(xyz.transpose(2, 1, 0))


def canonical_axes(reference: GridLike) -> AxisMap:
    """Which index axis of ``reference`` (and in which sense) is closest to each axis of :data:`CANONICAL_FRAME`.

    The permutation maximises the summed |cosine| between the frame axes and the index axes it assigns, so an oblique
    scan (tilted up to 45 degrees) keeps its index axes, only reordered and flipped.
    """
    cos = CANONICAL_FRAME.T @ Grid.of(reference).matrix  # cos[a, c]: frame axis a against index axis c
    order = max(itertools.permutations(range(3)), key=lambda p: sum(abs(cos[a, p[a]]) for a in range(3)))
    return AxisMap(tuple(order), tuple(bool(cos[a, order[a]] < 0) for a in range(3)))  # type: ignore[arg-type]


def reoriented(reference: GridLike, axes: AxisMap) -> Grid:
    """The same voxels as ``reference`` with its index axes reordered and flipped by ``axes``."""
    grid = Grid.of(reference)
    signs = np.where(axes.flip, -1.0, 1.0)
    direction = grid.matrix[:, list(axes.order)] * signs
    first = grid.index_to_physical(axes.source_index(np.zeros((1, 3)), grid.size))[0]
    return Grid(tuple(grid.size[a] for a in axes.order), tuple(first.tolist()),  # type: ignore[arg-type]
                tuple(grid.spacing[a] for a in axes.order), tuple(direction.ravel().tolist()))  # type: ignore[arg-type]


def canonical_grid(reference: GridLike, spacing: float | Sequence[float]) -> Grid:
    """The network grid of a scan: its voxel box in :data:`CANONICAL_FRAME` axis order at ``spacing`` (x, y, z).

    Only the axis order and senses change, the obliquity stays, so at the scan's own spacing the grid's voxels are the
    scan's voxels. Origin and size follow from the physical box (the corner nearest the frame's origin side, rounded),
    so the same scan stored in any axis order or flip gets the same grid.
    """
    grid = grid_with_spacing(reoriented(reference, canonical_axes(reference)), spacing)
    return Grid(grid.size, tuple(np.round(np.asarray(grid.origin), _ORIGIN_DECIMALS).tolist()), grid.spacing,
                grid.direction)


def coincident_axes(source: GridLike, target: GridLike, tol: float = COINCIDENT_TOLERANCE_MM) -> AxisMap | None:
    """The axis map when ``target``'s voxel centres are ``source``'s in another index order (within ``tol`` mm at
    every corner voxel, hence everywhere), else None."""
    gs, gt = Grid.of(source), Grid.of(target)
    cos = np.linalg.solve(gs.matrix, gt.matrix)  # column a: target axis a in source index directions
    order = tuple(int(np.argmax(np.abs(cos[:, a]))) for a in range(3))
    if sorted(order) != [0, 1, 2] or any(gs.size[order[a]] != gt.size[a] for a in range(3)):
        return None
    axes = AxisMap(order, tuple(bool(cos[order[a], a] < 0) for a in range(3)))  # type: ignore[arg-type]
    corners = np.array([[(gt.size[a] - 1) * ((c >> a) & 1) for a in range(3)] for c in range(8)], dtype=np.float64)
    gap = gt.index_to_physical(corners) - gs.index_to_physical(axes.source_index(corners, gs.size))
    return axes if float(np.abs(gap).max()) <= tol else None


def _lattice(size: Sequence[int], per_axis: int) -> np.ndarray:
    """Voxel-centre indices (N, 3) covering the whole grid: every voxel for small axes, an even subset otherwise."""
    axes = [np.unique(np.round(np.linspace(0, n - 1, min(n, per_axis)))) for n in size]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def overlap_fraction(moving: GridLike, reference: GridLike, samples_per_axis: int = 24,
                     within: sitk.Image | None = None) -> float:
    """Fraction (0..1) of the reference's voxel box that lies inside the moving image's voxel box, in physical space.

    Reference voxel centres on a coarse lattice are mapped to the moving image's continuous index space; the ones
    inside ``[-0.5, size - 0.5]`` count. Correct for any pair of oblique directions, unlike comparing bounding boxes.
    ``within``: a mask on the reference grid; only lattice points inside it count (e.g. "how much of the head").
    """
    gm, gr = Grid.of(moving), Grid.of(reference)
    lattice = _lattice(gr.size, samples_per_axis)
    if within is not None:
        if Grid.of(within).size != gr.size:
            raise GeometryError("The mask given to overlap_fraction is not on the reference grid.")
        mask = sitk.GetArrayViewFromImage(within)
        keep = mask[lattice[:, 2].astype(int), lattice[:, 1].astype(int), lattice[:, 0].astype(int)] != 0
        if keep.any():
            lattice = lattice[keep]
    points = gr.index_to_physical(lattice)
    index = gm.physical_to_index(points)
    eps = 1e-6
    inside = np.all((index >= -0.5 - eps) & (index <= np.asarray(gm.size) - 0.5 + eps), axis=1)
    return float(inside.mean())


def _output_pixel_type(image: sitk.Image, interpolator: str) -> int:
    """Float32 for interpolating resamplers (values between voxels), the input's own type for nearest (labels)."""
    if interpolator == "nearest":
        return image.GetPixelID()
    return sitk.sitkFloat32


def resample_to_grid(image: sitk.Image, reference: GridLike, interpolator: str = "linear", default: float = 0.0,
                     transform: sitk.Transform | None = None) -> sitk.Image:
    """Resample ``image`` onto the reference grid in physical space.

    ``transform`` maps reference (fixed) points to ``image`` (moving) points, ITK's convention, as returned by a
    registration; identity when omitted. Linear and B-spline give float32; nearest keeps the input type so labels stay
    labels. The output's geometry is set from the reference grid's values, so it equals ``Grid.of(reference)``. When
    the reference's voxels are the image's own in some axis order (:func:`coincident_axes`), they are copied exactly.
    """
    if interpolator not in _INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {sorted(_INTERPOLATORS)}, got {interpolator!r}")
    if image.GetDimension() != 3:
        raise GeometryError(f"Expected a 3-D image to resample, got {image.GetDimension()}-D.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError("Only scalar images can be resampled here.")
    grid = Grid.of(reference)
    pixel_type = _output_pixel_type(image, interpolator)
    axes = coincident_axes(image, grid) if transform is None else None
    if axes is not None:  # the same voxels in another order: copy them, do not interpolate
        source = image if interpolator == "nearest" else sitk.Cast(image, sitk.sitkFloat32)
        return grid.image_from_array(axes.apply(sitk.GetArrayViewFromImage(source)))
    source = image if interpolator == "nearest" else sitk.Cast(image, sitk.sitkFloat32)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(list(grid.size))
    resampler.SetOutputOrigin(grid.origin)
    resampler.SetOutputSpacing(grid.spacing)
    resampler.SetOutputDirection(grid.direction)
    resampler.SetInterpolator(_INTERPOLATORS[interpolator])
    resampler.SetDefaultPixelValue(float(default))
    resampler.SetOutputPixelType(pixel_type)
    resampler.SetTransform(transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity))
    return resampler.Execute(source)


def grid_with_spacing(reference: GridLike, spacing: float | Sequence[float]) -> Grid:
    """A grid with the reference's direction and the given spacing that covers the reference's whole extent.

    The first voxel's outer corner stays where it was (new origin = old origin + direction @ (new - old) / 2), and
    the size is rounded up, so nothing of the scan is cut off and the inverse resampling loses no border.
    """
    grid = Grid.of(reference)
    new = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if not np.all(np.isfinite(new) & (new > 0)):
        raise GeometryError(f"Target spacing must be positive, got {tuple(new)}.")
    old = np.asarray(grid.spacing)
    origin = np.asarray(grid.origin) + grid.matrix @ (0.5 * (new - old))
    extent = np.asarray(grid.size) * old
    size = [max(1, int(math.ceil(e / s - 1e-6))) for e, s in zip(extent, new)]
    return Grid(tuple(size), tuple(origin.tolist()), tuple(new.tolist()), grid.direction)  # type: ignore[arg-type]
