"""Tissue outside the brain for scans that are not skull-stripped: skull, scalp, face and neck, eyes, air sinuses.

Real unstripped DWI shows a dark skull ring (bone and fat-suppressed marrow), a faint scalp, bright vitreous on the
ADC map, and soft tissue of the face and neck on the lowest slices; a model that only ever saw stripped brains would
take any of these for lesions. None of it needs millimetre detail, so it lives on its own coarser grid (2 mm) that
covers the whole head; its signals are added to the brain's at acquisition (signals, unlike ADC, add up).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .anatomy import AnatomyFields, HeadParams, envelope_parts, model_coordinates
from .fields import AxisGrid, ramp
from .shapes import boxed_sd, ellipsoid_sd, model_index_box, smooth_union

_FACE = ((0.0, -12.0, -88.0), (60.0, 86.0, 58.0))
_NECK = ((0.0, 25.0, -150.0), (52.0, 52.0, 70.0))
_EYES = (((31.0, -70.0, -46.0), (11.5, 11.5, 11.5)), ((-31.0, -70.0, -46.0), (11.5, 11.5, 11.5)))
_AIR = (((24.0, -52.0, -84.0), (13.0, 15.0, 16.0)), ((-24.0, -52.0, -84.0), (13.0, 15.0, 16.0)),
        ((0.0, -66.0, -72.0), (7.0, 22.0, 20.0)), ((0.0, -22.0, -72.0), (12.0, 10.0, 9.0)))


@dataclass
class HeadTissues:
    """Fractions (float32, (z, y, x)) of the extracranial compartments on a head grid."""

    grid: AxisGrid
    bone: np.ndarray
    soft: np.ndarray   # scalp, muscle, residual (fat-suppressed) fat
    eye: np.ndarray    # vitreous
    air: np.ndarray


def _ellipsoids_fraction(x, y, z, grid: AxisGrid, p: HeadParams, specs) -> np.ndarray:
    """Union of soft ellipsoids, each evaluated on its own box only."""
    out = np.zeros(x.shape, np.float32)
    for c, a in specs:
        box = model_index_box(grid, p.scale, p.deform_mm, np.subtract(c, a), np.add(c, a))
        view = out[box]
        np.maximum(view, ramp(-ellipsoid_sd(x[box], y[box], z[box], c, a), grid.spacing), out=view)
    return out


#: Signed distance (anatomical mm, negative inside) of a brain's outline at model-frame points (x, y, z).
Outline = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def build_head(params: HeadParams, grid: AxisGrid, fields: AnatomyFields,
               outline: Outline | None = None) -> HeadTissues:
    """Skull and scalp as shells round the intracranial surface, face and neck below, eyes and sinuses inside.

    ``outline`` is the brain the skull wraps; by default the procedural brain's envelope."""
    p = params
    x, y, z = model_coordinates(grid, p, fields)
    envelope = (outline(x, y, z) if outline is not None
                else np.minimum.reduce(envelope_parts(x, y, z, grid, p)))
    w = grid.spacing
    icv = ramp(np.float32(p.ext_csf_mm) - envelope, w)
    wobble = fields.skull.on_grid(grid)  # anatomical frame: thickness varies smoothly, no need to warp it
    skull_out = envelope - np.float32(p.ext_csf_mm) - np.float32(p.skull_mm) * (1.0 + 0.25 * wobble)
    scalp_out = skull_out - np.float32(p.scalp_mm)
    box = model_index_box(grid, p.scale, p.deform_mm, (-75, -110, -230), (75, 90, -15))
    face = boxed_sd(x, y, z, box, lambda a, b, c: smooth_union(ellipsoid_sd(a, b, c, *_FACE),
                                                               ellipsoid_sd(a, b, c, *_NECK), 25.0))
    head = ramp(-smooth_union(scalp_out, face, 12.0), w)
    skull_in = np.maximum(ramp(-skull_out, w), icv)
    bone = np.clip(skull_in - icv, 0.0, 1.0)
    soft = np.clip(head - skull_in, 0.0, 1.0)
    eye = np.minimum(_ellipsoids_fraction(x, y, z, grid, p, _EYES), soft)
    air = np.minimum(_ellipsoids_fraction(x, y, z, grid, p, _AIR), soft - eye)
    return HeadTissues(grid=grid, bone=bone, soft=soft - eye - air, eye=eye, air=air)
