"""Smooth random fields on axis-aligned grids: the randomness behind every shape and texture of the generator.

Anatomy lives on a fine (1 mm) grid of several million voxels, so a field is drawn as white noise on a coarse grid,
low-pass filtered there, and brought to the fine grid by separable linear interpolation (a few array operations per
fine voxel instead of a full 3-D interpolation). Arrays are ``(z, y, x)``; coordinates are millimetres in the
anatomical frame, given as ``(x, y, z)`` tuples like SimpleITK.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AxisGrid:
    """An axis-aligned grid: ``origin`` (x, y, z) mm of voxel (0, 0, 0), isotropic ``spacing`` mm, ``shape``
    (z, y, x)."""

    origin: tuple[float, float, float]
    spacing: float
    shape: tuple[int, int, int]

    def axis(self, dim: int) -> np.ndarray:
        """Voxel-centre coordinates (mm, float32) along physical axis ``dim`` (0 = x, 1 = y, 2 = z)."""
        n = self.shape[2 - dim]
        return (self.origin[dim] + self.spacing * np.arange(n)).astype(np.float32)

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (x, y, z) coordinate arrays shaped (1,1,nx), (1,ny,1), (nz,1,1)."""
        return (self.axis(0)[None, None, :], self.axis(1)[None, :, None], self.axis(2)[:, None, None])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(self.spacing ** 3)


def covering_grid(lower: np.ndarray, upper: np.ndarray, spacing: float, margin: float = 0.0) -> AxisGrid:
    """The axis-aligned grid of ``spacing`` that covers the box ``lower..upper`` (x, y, z mm) plus ``margin``."""
    lo = np.floor((np.asarray(lower, float) - margin) / spacing) * spacing
    hi = np.ceil((np.asarray(upper, float) + margin) / spacing) * spacing
    n = np.maximum(np.round((hi - lo) / spacing).astype(int) + 1, 2)
    return AxisGrid(origin=tuple(float(v) for v in lo), spacing=float(spacing), shape=(int(n[2]), int(n[1]), int(n[0])))  # type: ignore[arg-type]


@dataclass(frozen=True)
class CoarseField:
    """Values on a coarse axis-aligned grid, sampled anywhere by trilinear interpolation (clamped at the border)."""

    values: np.ndarray  # (z, y, x) or (c, z, y, x)
    grid: AxisGrid

    def _index(self, coord: np.ndarray, dim: int) -> np.ndarray:
        n = self.grid.shape[2 - dim]
        u = (coord - self.grid.origin[dim]) / self.grid.spacing
        return np.clip(u, 0.0, n - 1.0).astype(np.float32)

    def sample(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Values at scattered points (arrays of equal shape, mm); one channel fields only."""
        idx = np.empty((3, x.size), np.float32)
        for row, (c, dim) in enumerate(((z, 2), (y, 1), (x, 0))):
            n = self.grid.shape[2 - dim]
            u = idx[row]
            np.subtract(c.reshape(-1), np.float32(self.grid.origin[dim]), out=u)
            u *= np.float32(1.0 / self.grid.spacing)
            np.clip(u, 0.0, n - 1.0, out=u)
        return ndimage.map_coordinates(self.values, idx, order=1, prefilter=False).reshape(x.shape)

    def on_grid(self, fine: AxisGrid) -> np.ndarray:
        """Values on every voxel of an axis-aligned ``fine`` grid, by separable linear interpolation (float32).

        x is expanded first and z last, so the final, full-size step copies whole contiguous planes.
        """
        out = self.values.astype(np.float32, copy=False)
        lead = out.ndim - 3
        for dim, axis in ((0, lead + 2), (1, lead + 1), (2, lead)):
            u = self._index(fine.axis(dim), dim)
            n = out.shape[axis]
            i0 = np.minimum(np.floor(u).astype(np.int64), max(n - 2, 0))
            i1 = np.minimum(i0 + 1, n - 1)
            shape = [1] * out.ndim
            shape[axis] = -1
            w = (u - i0).astype(np.float32).reshape(shape)
            a = np.take(out, i0, axis=axis)
            b = np.take(out, i1, axis=axis)
            b -= a
            b *= w
            a += b
            out = a
        return out


def band_limited_noise(rng: np.random.Generator, covering: AxisGrid, wavelength_mm: float,
                       channels: int = 1, step_mm: float | None = None) -> CoarseField:
    """Zero-mean, unit-variance Gaussian noise whose dominant wavelength is about ``wavelength_mm``.

    White noise filtered by a Gaussian of sigma = wavelength / (2 pi) (the peak of the 3-D spectrum k^2 exp(-k^2
    sigma^2) is at k = 1 / sigma), drawn on a grid of ``step_mm`` (default a quarter wavelength); fields of
    different wavelengths that share a step can be added before they are brought to a fine grid.
    """
    step = wavelength_mm / 4.0 if step_mm is None else float(step_mm)
    lo = np.asarray(covering.origin, float)
    hi = lo + covering.spacing * (np.asarray(covering.shape[::-1], float) - 1.0)
    grid = covering_grid(lo, hi, step, margin=2.0 * step)
    shape = (channels, *grid.shape) if channels > 1 else grid.shape
    white = rng.standard_normal(shape).astype(np.float32)
    sig = wavelength_mm / (2.0 * np.pi) / step
    sigma = (0.0, sig, sig, sig) if channels > 1 else sig
    smooth = ndimage.gaussian_filter(white, sigma=sigma, mode="wrap")
    axes = tuple(range(smooth.ndim - 3, smooth.ndim))
    smooth -= smooth.mean(axis=axes, keepdims=True)
    smooth /= smooth.std(axis=axes, keepdims=True) + 1e-8
    return CoarseField(values=smooth, grid=grid)


def mean_gradient_per_mm(field: CoarseField) -> float:
    """Mean gradient magnitude of a one-channel field (1/mm): turns |value| into an approximate distance to its
    zeros."""
    g = np.gradient(field.values, field.grid.spacing)
    return float(np.mean(np.sqrt(sum(c * c for c in g))))


def ramp(x: np.ndarray | float, width: float = 1.0) -> np.ndarray:
    """Soft step from 0 (x <= -width/2) to 1 (x >= width/2): a 1-voxel partial-volume edge for signed distances."""
    out = np.array(x, dtype=np.float32, copy=True)
    if width != 1.0:
        out *= np.float32(1.0 / width)
    out += np.float32(0.5)
    np.maximum(out, 0.0, out=out)
    np.minimum(out, 1.0, out=out)
    return out
