"""Eddy-current misregistration between the b=0 and the diffusion-weighted images.

The diffusion gradients of EPI leave eddy currents that shift, scale and shear each b=1000 image along the
phase-encoding axis (usually anterior-posterior on axial scans), while the b=0 image has no diffusion gradient and
is not distorted. Scanners compute ADC = ln(S0 / S_b) / b voxel by voxel without registering the two, so
wherever a tissue edge falls, the ADC mixes one tissue's S0 with another's S_b. Where diffusion-weighted cortex lies
over b=0 white matter (lower T2 signal) the ADC reads 30-40 % low next to cortex that is bright on DWI: an
infarct look-alike that is worst at the frontal and occipital poles, far from the scanner's isocentre where the
scaling term is largest.

The expert mask is drawn on the DWI, so the DWI and the mask stay where they are and the b=0 signal is resampled
along the phase-encoding axis of the stored grid: S0'(u) = S0(u + d(u)), with
d = shift + scale * (u - centre) + shear * (v - centre), u the phase-encoding and v the read-out coordinate (mm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .geometry import ScanGeometry

#: Ranges of the distortion, in mm and per mm: about 2 mm of misregistration 80 mm from the isocentre at most from
#: scaling, up to 1 mm of shift, up to 1 mm of shear across a brain, as left on trace-weighted clinical DWI that is
#: not eddy-current corrected.
SHIFT_MM = 1.0
SCALE = 0.025
SHEAR = 0.01
#: Cap on the displacement anywhere in the field of view (mm).
MAX_DISPLACEMENT_MM = 3.0
#: Share of scans whose phase encoding is anterior-posterior (the rest: left-right).
P_ANTERIOR_POSTERIOR = 0.8


@dataclass(frozen=True)
class EddyMisregistration:
    """The displacement of the b=0 image relative to the DWI along one in-plane axis of the stored grid."""

    pe_axis: int      # index axis (0 = i, 1 = j, 2 = k) of phase encoding
    ro_axis: int      # the other in-plane index axis (read-out)
    shift_mm: float
    scale: float
    shear: float

    def displacement_mm(self, geom: ScanGeometry) -> np.ndarray:
        """d (mm) on the stored grid, array order (k, j, i), broadcastable to the grid's shape."""
        size = np.asarray(geom.size)
        shape = [1, 1, 1]
        u = (np.arange(size[self.pe_axis]) - (size[self.pe_axis] - 1) / 2.0) * geom.spacing[self.pe_axis]
        v = (np.arange(size[self.ro_axis]) - (size[self.ro_axis] - 1) / 2.0) * geom.spacing[self.ro_axis]
        shape_u, shape_v = list(shape), list(shape)
        shape_u[2 - self.pe_axis] = -1
        shape_v[2 - self.ro_axis] = -1
        d = self.shift_mm + self.scale * u.reshape(shape_u) + self.shear * v.reshape(shape_v)
        return np.clip(d, -MAX_DISPLACEMENT_MM, MAX_DISPLACEMENT_MM).astype(np.float32)

    def apply(self, signal: np.ndarray, geom: ScanGeometry) -> np.ndarray:
        """``signal`` (stored grid, (k, j, i)) sampled at u + d(u) along the phase-encoding axis, linearly."""
        axis = 2 - self.pe_axis
        d_vox = np.broadcast_to(self.displacement_mm(geom) / np.float32(geom.spacing[self.pe_axis]), signal.shape)
        coords = np.indices(signal.shape, dtype=np.float32)
        coords[axis] += d_vox
        return ndimage.map_coordinates(signal, coords, order=1, mode="nearest").astype(np.float32, copy=False)

    def describe(self) -> dict:
        return {"pe_axis": "ijk"[self.pe_axis], "shift_mm": round(self.shift_mm, 3), "scale": round(self.scale, 4),
                "shear": round(self.shear, 4)}


def phase_encoding_axes(geom: ScanGeometry, anterior_posterior: bool) -> tuple[int, int]:
    """(phase-encoding, read-out) index axes among the two in-plane ones: the one closest to the head's
    anterior-posterior axis (anatomical y) for A-P phase encoding, the other one for left-right."""
    in_plane = [a for a in range(3) if a != geom.slice_axis]
    anat = geom.head_rotation.T @ np.asarray(geom.direction, float).reshape(3, 3)  # columns: index axes, anatomical
    ap = max(in_plane, key=lambda a: abs(anat[1, a]))
    pe = ap if anterior_posterior else next(a for a in in_plane if a != ap)
    return pe, next(a for a in in_plane if a != pe)


def sample_eddy_misregistration(rng: np.random.Generator, geom: ScanGeometry) -> EddyMisregistration:
    """One scan's distortion: phase encoding A-P in most scans, each term uniform within its range."""
    pe, ro = phase_encoding_axes(geom, bool(rng.random() < P_ANTERIOR_POSTERIOR))
    return EddyMisregistration(pe_axis=pe, ro_axis=ro, shift_mm=float(rng.uniform(-SHIFT_MM, SHIFT_MM)),
                               scale=float(rng.uniform(-SCALE, SCALE)), shear=float(rng.uniform(-SHEAR, SHEAR)))
