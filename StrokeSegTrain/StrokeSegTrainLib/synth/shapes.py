"""Implicit shapes: approximate signed distances (mm, negative inside) of ellipsoids, unions and clefts.

Anatomy is built from these because a signed distance gives, for free, a partial-volume edge (``ramp(-sd)``), a depth
below a surface (cortical ribbon, sulcal depth) and cuts (a cleft is the maximum of two distances) -- all with a
handful of array operations per voxel, and only inside the box where a shape can be.
"""
from __future__ import annotations

import numpy as np

Array = np.ndarray


def rotation_matrix(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> Array:
    """Rotation about z (yaw), then x (pitch), then y (roll), degrees; acts on column vectors (x, y, z)."""
    a, b, c = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return ry @ rx @ rz


def axis_angle_matrix(axis, angle_deg: float) -> Array:
    """Rotation by ``angle_deg`` about ``axis`` (Rodrigues): no vector turns by more than that angle."""
    k = np.asarray(axis, float)
    k = k / np.linalg.norm(k)
    a = np.deg2rad(angle_deg)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * cross + (1 - np.cos(a)) * cross @ cross


def ellipsoid_sd(x: Array, y: Array, z: Array, center, axes, rotation: Array | None = None) -> Array:
    """Approximate signed distance to an ellipsoid (exact for spheres; first order f/|grad f| otherwise).

    ``axes`` may hold arrays (e.g. a different lower z semi-axis), ``rotation`` turns the ellipsoid's own axes into the
    frame of x, y, z.
    """
    dx, dy, dz = x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2])
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float32).T  # world -> ellipsoid frame
        dx, dy, dz = (r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz,
                      r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz,
                      r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz)
    r2 = np.zeros(np.broadcast_shapes(np.shape(dx), np.shape(dy), np.shape(dz)), np.float32)
    g2 = np.zeros_like(r2)
    for d, a in ((dx, axes[0]), (dy, axes[1]), (dz, axes[2])):
        inv = np.float32(1.0) / a if np.isscalar(a) else (1.0 / np.asarray(a, np.float32))  # type: ignore[operator]
        q = d * inv
        r2 += q * q
        q *= inv
        g2 += q * q
    np.sqrt(r2, out=r2)
    np.sqrt(g2, out=g2)
    np.maximum(g2, np.float32(1e-6), out=g2)
    out = r2 - np.float32(1.0)
    out *= r2
    out /= g2
    return out


def smooth_union(a: Array, b: Array, k: float) -> Array:
    """Union of two signed distances with a fillet of about ``k`` mm (polynomial smooth minimum)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b + (a - b) * h - k * h * (1.0 - h)).astype(np.float32)


def model_index_box(grid, scale, deform_mm: float, lo_model, hi_model) -> tuple[slice, slice, slice]:
    """Index box (z, y, x slices) of an axis-aligned ``grid`` (fields.AxisGrid) that holds every voxel whose model
    coordinates fall in the model box ``lo_model..hi_model`` (x, y, z mm).

    Model = (anatomical + displacement) / scale with a displacement of at most a few ``deform_mm``; 8 mm more keeps
    signed distances continuous across the box edge. Shapes evaluated only inside their box cost little.
    """
    margin = 4.0 * deform_mm + 8.0
    s = np.asarray(scale, float)
    lo = (np.asarray(lo_model, float) * s - margin - np.asarray(grid.origin)) / grid.spacing
    hi = (np.asarray(hi_model, float) * s + margin - np.asarray(grid.origin)) / grid.spacing
    out = []
    for k in (2, 1, 0):
        n = grid.shape[2 - k]
        a, b = int(np.clip(np.floor(lo[k]), 0, n)), int(np.clip(np.ceil(hi[k]) + 1, 0, n))
        out.append(slice(a, max(a, b)))
    return tuple(out)  # type: ignore[return-value]


def boxed_sd(x: Array, y: Array, z: Array, box, fn) -> Array:
    """``fn(x, y, z)`` inside ``box``, +1000 mm (far outside) elsewhere."""
    out = np.full(x.shape, 1e3, np.float32)
    out[box] = fn(x[box], y[box], z[box])
    return out
