"""Real infarct shapes in generated brains: a lesion mask from an MNI-space library, carried into the case's anatomy.

Each fine voxel of the anatomy knows its position in the canonical model frame (``Anatomy.model_xyz``: the
anatomical position with the case's smooth deformation and head scale undone). A fixed affine maps that frame onto
MNI space, so reading the MNI mask at the mapped position carries the lesion through the same affine and deformation
as the brain itself; the lesion lands in the corresponding territory of every generated head, left or right
(mirrored at random).

Masks warped to MNI space have smoother outlines, and small lesions are larger than on native scans. Two corrections:
the trilinearly read mask (a partial-volume fraction) is cut at a level drawn above one half, which erodes every
outline by a fraction of a millimetre (more for a thin lesion than a thick one), and band-limited noise of a few mm
on that level gives the outline back the irregularity that normalisation smoothed away.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import REGION_NONE, Anatomy
from .fields import AxisGrid, band_limited_noise, ramp
from .lesion_library import TERRITORY_NAMES, LesionLibrary
from .lesions import sample_signature, write_lesion
from .mri_physics import TissueChanges

#: MNI (LPS mm) = MODEL_TO_MNI_MATRIX @ model-frame point + MODEL_TO_MNI_OFFSET. Fitted once by affine registration
#: (mean squares) of the canonical model brain's tissue fraction (scale 1, no deformation, atrophy 0.3) to the ICBM
#: 2009a symmetric grey + white matter probability maps; the two tissue masks then overlap with Dice 0.74. Both
#: frames have x to the left, y posterior, z superior, and the midline at x = 0, so a mirror is x -> -x in either.
MODEL_TO_MNI_MATRIX = np.array([[1.206, -0.006, -0.0059],
                                [0.0025, 1.0902, 0.0856],
                                [-0.0124, 0.1204, 1.1816]], np.float64)
MODEL_TO_MNI_OFFSET = np.array([0.55, 12.64, 7.51], np.float64)

#: Level at which the read mask is cut (0.5 keeps the normalised outline); drawn per lesion.
CUT_LEVEL = (0.5, 0.7)
#: Amplitude (fraction units) and wavelength (mm) of the outline noise added to the read mask.
OUTLINE_NOISE = 0.12
OUTLINE_WAVELENGTH_MM = 6.0
#: Chance that a second mask of the same arterial territory joins the first (recurrent emboli, bilateral showers).
P_SAME_TERRITORY_PAIR = 0.2


def model_to_mni(x: np.ndarray, y: np.ndarray, z: np.ndarray, mirror: bool) -> tuple[np.ndarray, ...]:
    """MNI (LPS mm) coordinates of model-frame points; ``mirror`` swaps the hemispheres."""
    m, b = MODEL_TO_MNI_MATRIX, MODEL_TO_MNI_OFFSET
    out = tuple((np.float32(m[r, 0]) * x + np.float32(m[r, 1]) * y + np.float32(m[r, 2]) * z + np.float32(b[r]))
                .astype(np.float32) for r in range(3))
    return (-out[0], out[1], out[2]) if mirror else out


def _read_mask(library: LesionLibrary, i: int, anat: Anatomy,
               mirror: bool) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Mask ``i`` read (trilinear) on the smallest box of the anatomy grid that holds it; None if it falls outside."""
    x, y, z = (np.broadcast_to(a, anat.grid.shape) for a in anat.model_xyz)
    # The box: anatomy voxels whose MNI position lies inside the crop's box (plus a voxel of margin).
    lo, hi = library.physical_box(i)
    mx, my, mz = model_to_mni(x, y, z, mirror)
    pad = 1.5 * float(np.max(library.spacings[i]))
    inside = ((mx >= lo[0] - pad) & (mx <= hi[0] + pad) & (my >= lo[1] - pad) & (my <= hi[1] + pad)
              & (mz >= lo[2] - pad) & (mz <= hi[2] + pad))
    where = np.nonzero(inside)
    if where[0].size == 0:
        return None
    box = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    pts = np.stack([mx[box], my[box], mz[box]], axis=-1)
    ijk = library.physical_to_index(i, pts)  # (..., 3) as (x, y, z) indices
    crop = library.mask(i).astype(np.float32)
    values = ndimage.map_coordinates(crop, [ijk[..., 2].ravel(), ijk[..., 1].ravel(), ijk[..., 0].ravel()],
                                     order=1, mode="constant", cval=0.0)
    return box, values.reshape(pts.shape[:-1]).astype(np.float32)


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b))


def _paste(values: np.ndarray, box: tuple[slice, ...], into: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    out[tuple(slice(s.start - t.start, s.stop - t.start) for s, t in zip(box, into))] = values
    return out


def render_real_lesion(library: LesionLibrary, anat: Anatomy, changes: TissueChanges,
                       rng: np.random.Generator) -> dict | None:
    """Place one library mask (sometimes with a second of the same territory) into ``changes``; describe it.

    None when the mask falls outside this head's visible anatomy (the scan's field of view cuts the brain).
    """
    first = int(rng.integers(len(library)))
    picks = [first]
    territory = int(library.territory[first])
    if territory > 0 and rng.random() < P_SAME_TERRITORY_PAIR:
        same = library.with_territory(territory)
        same = same[same != first]
        if same.size:
            picks.append(int(rng.choice(same)))
    mirror = bool(rng.random() < 0.5)
    read = [r for r in (_read_mask(library, i, anat, mirror) for i in picks) if r is not None]
    if not read:
        return None
    box = read[0][0]
    for b, _ in read[1:]:
        box = _union_box(box, b)
    shape = tuple(s.stop - s.start for s in box)
    fraction = np.max([_paste(v, b, box, shape) for b, v in read], axis=0)

    g = anat.grid
    level = float(rng.uniform(*CUT_LEVEL))
    local = AxisGrid(tuple(float(g.axis(d)[box[2 - d].start]) for d in range(3)), g.spacing, shape)  # type: ignore[arg-type]
    noise = band_limited_noise(rng, local, wavelength_mm=OUTLINE_WAVELENGTH_MM).on_grid(local)
    score = fraction + np.float32(OUTLINE_NOISE) * noise * (fraction > 0)
    in_brain = anat.region[box] != REGION_NONE
    lam = ramp((score - np.float32(level)) / np.float32(0.3)) * in_brain
    lam[fraction <= 0] = 0.0
    tissue = anat.tissue[box]
    volume_ml = float((lam * tissue).sum() * g.voxel_volume_mm3 / 1000.0)
    if volume_ml <= 0.0:
        return None
    spec = sample_signature(rng, "real", volume_ml, -1 if mirror else 1)
    rim_mm = min(spec.rim_mm, 0.5 * (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))
    depth_mm = ndimage.distance_transform_edt(lam >= 0.5).astype(np.float32) * np.float32(g.spacing)
    inward = np.clip(depth_mm / np.float32(rim_mm), 0.0, 1.0)
    write_lesion(changes, box, lam, inward, spec, g.spacing, rng)  # type: ignore[arg-type]
    weight = lam * tissue
    centre = [float((weight.sum(axis=axes) * g.axis(d)[box[2 - d]]).sum() / weight.sum())
              for d, axes in ((0, (0, 1)), (1, (0, 2)), (2, (1, 2)))]
    return {"kind": "real", "source": [str(library.names[i]) for i in picks],
            "territory": TERRITORY_NAMES[territory], "mirrored": mirror, "cut_level": round(level, 3),
            "volume_ml": round(volume_ml, 4), "library_volume_ml": round(float(library.volume_ml[picks].sum()), 4),
            "adc_factor_core": round(spec.core_adc, 3), "adc_factor_rim": round(spec.rim_adc, 3),
            "t2_factor": round(spec.t2, 3), "centre_anatomical_mm": [round(v, 1) for v in centre]}
