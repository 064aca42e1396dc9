"""Procedural brain anatomy: grey matter, white matter, deep grey nuclei and CSF as partial-volume fractions.

A canonical brain (cerebrum with temporal lobes, cerebellum, brainstem, lateral/third/fourth ventricles, caudate,
lentiform nucleus and thalamus) is written as implicit shapes in a "model" frame (mm, x = left, y = posterior,
z = superior, origin at the brain centre). Each case scales it and warps it with smooth random displacements, folds a
cortical ribbon into sulci (zero sets of band-limited noise on a sphere, so they run radially like real sulci), opens
the interhemispheric, Sylvian and tentorial clefts, and grows the CSF spaces with a per-case atrophy level. Everything
is evaluated on an axis-aligned fine grid (1 mm) of the anatomical frame; acquisition (other module) takes it onto the
scanner grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import AxisGrid, CoarseField, band_limited_noise, covering_grid, mean_gradient_per_mm, ramp
from .shapes import boxed_sd as _boxed_sd
from .shapes import ellipsoid_sd, model_index_box, rotation_matrix, smooth_union

REGION_NONE, REGION_CEREBRUM, REGION_DEEP_GREY, REGION_CEREBELLUM, REGION_BRAINSTEM = 0, 1, 2, 3, 4

#: Box (x, y, z mm, model frame) holding the brain; the head adds skull, scalp and face around it.
BRAIN_BOX_MODEL = (np.array([-70.0, -87.0, -82.0]), np.array([70.0, 87.0, 64.0]))
HEAD_BOX_MODEL = (np.array([-90.0, -108.0, -165.0]), np.array([90.0, 104.0, 86.0]))

_SULCUS_CENTRE = np.array([0.0, 0.0, -5.0], dtype=np.float32)
_SULCUS_SPHERE_MM = 65.0


@dataclass(frozen=True)
class HeadParams:
    """Per-case anatomy: size, atrophy (wider CSF spaces, larger ventricles) and cortical folding."""

    scale: tuple[float, float, float]
    atrophy: float
    cortex_mm: float
    sulcal_width_mm: float
    sulcal_depth_mm: float
    sulcal_wavelength_mm: float
    ext_csf_mm: float
    fissure_mm: float
    sylvian_mm: float
    ventricle_scale: float
    deform_mm: float
    skull_mm: float
    scalp_mm: float


def sample_head(rng: np.random.Generator) -> HeadParams:
    """Draw a head; atrophy couples ventricle size and CSF widths as in ageing."""
    a = float(rng.beta(2.0, 1.6))  # stroke patients are mostly elderly: moderate atrophy is the rule
    g = rng.uniform(0.88, 1.08)
    scale = tuple(float(g * s) for s in rng.uniform(0.95, 1.05, 3))
    return HeadParams(
        scale=scale, atrophy=a,  # type: ignore[arg-type]
        cortex_mm=float(rng.uniform(2.4, 3.4)),
        sulcal_width_mm=float(0.7 + 2.5 * a * rng.uniform(0.7, 1.3)),
        sulcal_depth_mm=float(rng.uniform(12.0, 20.0)),
        sulcal_wavelength_mm=float(rng.uniform(12.0, 18.0)),
        ext_csf_mm=float(1.0 + 3.5 * a * rng.uniform(0.7, 1.3)),
        fissure_mm=float(1.5 + 4.0 * a * rng.uniform(0.7, 1.3)),
        sylvian_mm=float(1.5 + 3.5 * a * rng.uniform(0.7, 1.3)),
        ventricle_scale=float(0.75 + 1.4 * a * rng.uniform(0.7, 1.3)),
        deform_mm=float(rng.uniform(1.5, 3.5)),
        skull_mm=float(rng.uniform(4.0, 8.0)),
        scalp_mm=float(rng.uniform(3.0, 7.0)),
    )


def anatomy_box(params: HeadParams, with_head: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical-frame box (x, y, z mm) that holds the brain (or the whole head), deformation included."""
    lo, hi = HEAD_BOX_MODEL if with_head else BRAIN_BOX_MODEL
    s = np.asarray(params.scale)
    margin = 2.5 * params.deform_mm + 2.0
    return lo * s - margin, hi * s + margin


@dataclass
class Anatomy:
    """Tissue fractions (float32, (z, y, x), each in [0, 1], summing to at most 1) on an anatomical grid.

    ``icv`` is the intracranial fraction (brain + all CSF), the region a skull-stripping tool keeps; ``brain`` is the
    parenchymal envelope (tissue + internal CSF spaces). ``depth`` (mm below the brain surface), ``side`` (model-frame
    x, > 0 = left hemisphere) and ``region`` (REGION_* labels) let lesions find their territories.
    """

    grid: AxisGrid
    params: HeadParams
    wm: np.ndarray
    gm: np.ndarray
    dgm: np.ndarray
    csf: np.ndarray
    icv: np.ndarray
    brain: np.ndarray
    depth: np.ndarray
    side: np.ndarray
    region: np.ndarray
    model_xyz: tuple[np.ndarray, np.ndarray, np.ndarray]
    tissue: np.ndarray  # wm + gm + dgm: what a lesion can occupy


@dataclass(frozen=True)
class AnatomyFields:
    """The random fields of one head (drawn once, read on any grid: the brain's 1 mm grid, the head's 2 mm grid)."""

    deform: CoarseField
    sulcal_warp: CoarseField
    sulci: CoarseField
    sulci_gradient: float
    folia: CoarseField
    skull: CoarseField


def draw_fields(rng: np.random.Generator, p: HeadParams) -> AnatomyFields:
    """All random fields of a head, on fixed model-frame boxes so the anatomy never depends on the scan's crop."""
    box = covering_grid(*HEAD_BOX_MODEL, spacing=8.0, margin=16.0)
    sphere = covering_grid(np.full(3, -_SULCUS_SPHERE_MM - 8), np.full(3, _SULCUS_SPHERE_MM + 8), spacing=4.0)
    cerebellum = covering_grid(np.array([-60.0, 10.0, -80.0]), np.array([60.0, 90.0, -15.0]), spacing=4.0)
    coarse = band_limited_noise(rng, box, wavelength_mm=110.0, channels=3, step_mm=7.0)
    fine = band_limited_noise(rng, box, wavelength_mm=40.0, channels=3, step_mm=7.0)
    deform = CoarseField(coarse.values + np.float32(0.15) * fine.values, coarse.grid)
    warp = band_limited_noise(rng, covering_grid(*BRAIN_BOX_MODEL, spacing=8.0, margin=16.0), wavelength_mm=24.0,
                              channels=3)
    sulci = band_limited_noise(rng, sphere, wavelength_mm=p.sulcal_wavelength_mm, channels=2)
    grad = mean_gradient_per_mm(CoarseField(sulci.values[0], sulci.grid))
    folia = band_limited_noise(rng, cerebellum, wavelength_mm=14.0)
    skull = band_limited_noise(rng, box, wavelength_mm=40.0)
    return AnatomyFields(deform, warp, sulci, grad, folia, skull)


def model_coordinates(grid: AxisGrid, p: HeadParams, f: AnatomyFields) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-frame coordinates of every voxel: anatomical position, smoothly warped, divided by the head's scale."""
    x, y, z = grid.mesh()
    d = f.deform.on_grid(grid)
    out = []
    for k, c in enumerate((x, y, z)):
        v = d[k]
        v *= np.float32(p.deform_mm)
        v += c
        v *= np.float32(1.0 / p.scale[k])
        out.append(v)
    return out[0], out[1], out[2]


def _index_box(grid: AxisGrid, p: HeadParams, lo_model, hi_model) -> tuple[slice, slice, slice]:
    """Index box of ``grid`` holding every voxel whose model coordinates can fall in the model box."""
    return model_index_box(grid, p.scale, p.deform_mm, lo_model, hi_model)


def _raise(target: np.ndarray, box, values: np.ndarray) -> None:
    """``target[box] = max(target[box], values)`` in place (``values`` is a signed distance or a fraction)."""
    view = target[box]
    np.maximum(view, values, out=view)


def _cerebrum(x, y, z, grid: AxisGrid, p: HeadParams) -> np.ndarray:
    """Cerebral hemispheres (flatter below) smoothly merged with the two temporal lobes."""
    box = _index_box(grid, p, (-70, -87, -48), (70, 87, 64))
    cer = np.full(x.shape, 1e3, np.float32)
    zb = z[box]
    cer[box] = ellipsoid_sd(x[box], y[box], zb, (0.0, 0.0, 0.0), (66.0, 83.0, np.where(zb > 0, 60.0, 38.0)))
    box = _index_box(grid, p, (-50, 18, -36), (50, 86, 20))  # occipital lobes, resting on the tentorium
    cer[box] = smooth_union(cer[box], ellipsoid_sd(x[box], y[box], z[box], (0.0, 52.0, -8.0), (48.0, 32.0, 26.0)), 8.0)
    for s in (1.0, -1.0):
        box = _index_box(grid, p, (min(s * 20, s * 68), -46, -54), (max(s * 20, s * 68), 44, 10))
        tl = ellipsoid_sd(x[box], y[box], z[box], (s * 44.0, -2.0, -22.0), (20.0, 40.0, 24.0),
                          rotation_matrix(pitch_deg=-8))
        cer[box] = smooth_union(cer[box], tl, 6.0)
    return cer


def _tentorium_height(x, y, z) -> np.ndarray:
    """Signed height (mm) above the tentorium, a tent sloping down laterally and backwards over the posterior fossa."""
    z_t = np.float32(-20.0) - np.float32(0.15) * np.abs(x) - np.float32(0.35) * (y - 30.0)
    return z - z_t


def _sulcal_noise(x, y, z, depth, f: AnatomyFields) -> tuple[np.ndarray, np.ndarray]:
    """The sulcal noise (whose zero sets are the sulci) and the sulcal-depth noise at the points given.

    Both are read on a sphere along the ray from the centre, so the sheets run radially in from the surface like
    sulci; the (warped) point and a bend with depth keep them from being straight spokes.
    """
    dx, dy, dz = x - _SULCUS_CENTRE[0], y - _SULCUS_CENTRE[1], z - _SULCUS_CENTRE[2]
    k = np.float32(_SULCUS_SPHERE_MM) / (np.sqrt(dx * dx + dy * dy + dz * dz) + np.float32(1e-3))
    bend = np.float32(0.12) * depth
    sx, sy, sz = dx * k + bend, dy * k - bend, dz * k
    main = CoarseField(f.sulci.values[0], f.sulci.grid).sample(sx, sy, sz)
    depth_noise = CoarseField(f.sulci.values[1], f.sulci.grid).sample(sy, sz, sx)
    return main, depth_noise


def _sulci(x, y, z, depth, grid: AxisGrid, p: HeadParams, f: AnatomyFields) -> np.ndarray:
    """Signed distance (mm, negative inside) of the sulci, on the whole grid.

    The noise is smooth (features of ~25 mm), so it is read on every other voxel and interpolated back: the zero
    crossings stay sub-millimetre accurate at an eighth of the cost.
    """
    sub = (slice(None, None, 2),) * 3
    warp = f.sulcal_warp.on_grid(AxisGrid(grid.origin, 2 * grid.spacing, x[sub].shape))
    amp = np.float32(4.0)
    main, dnoise = _sulcal_noise(x[sub] + amp * warp[0], y[sub] + amp * warp[1], z[sub] + amp * warp[2],
                                 depth[sub], f)
    half = AxisGrid(grid.origin, 2 * grid.spacing, main.shape)
    both = CoarseField(np.stack([main, dnoise]), half).on_grid(grid)
    dx, dy, dz = x - _SULCUS_CENTRE[0], y - _SULCUS_CENTRE[1], z - _SULCUS_CENTRE[2]
    rho = np.sqrt(dx * dx + dy * dy + dz * dz)
    tangential = np.float32(np.sqrt(2.0 / 3.0) * f.sulci_gradient * _SULCUS_SPHERE_MM)
    dist = np.abs(both[0]) * rho / tangential
    local_depth = np.clip(p.sulcal_depth_mm * (1.0 + 0.45 * both[1]), 3.0, 30.0)
    return np.maximum(dist - np.float32(p.sulcal_width_mm / 2.0), depth - local_depth)


def _sylvian_distance(x, y, z) -> np.ndarray:
    """Distance (mm) to the lateral (Sylvian) fissure: a sheet rising backwards (about 40 degrees, so an axial slice
    cuts it along a line from the lateral surface to the insula), joined to a vertical sheet along the insula."""
    ax = np.abs(x)
    z_s = np.float32(-8.0) + np.float32(0.8) * (y + 10.0)
    span = ramp((y + 40.0) / 4.0) * ramp((26.0 - y) / 4.0)
    far = np.float32(1e3) * (1.0 - span)
    sheet = np.abs(z - z_s) * np.float32(0.78) + np.maximum(35.0 - ax, 0.0) * 4.0
    insular = np.abs(ax - 35.0) + np.maximum(np.abs(z - z_s + 3.0) - 13.0, 0.0) * 4.0
    return (np.minimum(sheet, insular) + far).astype(np.float32)


_Ellipsoid = tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray | None]


def _ventricle_specs(vs: float) -> list[_Ellipsoid]:
    """Ellipsoids (centre, semi-axes, rotation) of the ventricular system: lateral ventricles (frontal horn, body,
    atrium, temporal horn), third and fourth ventricles; ``vs`` widens them with atrophy."""
    specs: list[_Ellipsoid] = [
        ((0.0, 6.0, -4.0), (0.8 + 1.0 * vs, 12.0, 8.0), None), ((0.0, 36.0, -46.0), (5.0, 3.0, 7.0), None)]
    for s in (1.0, -1.0):
        specs += [
            ((s * (2.0 + 2.5 * vs), -16.0, 12.0), (2.8 * vs, 17.0, 7.0), rotation_matrix(yaw_deg=s * 12)),
            ((s * (3.0 + 2.8 * vs), 8.0, 15.0), (3.0 * vs, 18.0, 5.0), rotation_matrix(yaw_deg=-s * 12)),
            ((s * (13.0 + 2.5 * vs), 29.0, 9.0), (3.2 * vs, 13.0, 6.0), rotation_matrix(yaw_deg=-s * 30)),
            ((s * 31.0, 4.0, -14.0), (1.6 * vs, 16.0, 2.2 * vs), rotation_matrix(yaw_deg=-s * 10, pitch_deg=-20)),
        ]
    return specs


def _nuclei_specs(vs: float) -> list:
    """Ellipsoids of the deep grey nuclei: caudate head, lentiform nucleus, thalamus (both sides)."""
    specs = []
    for s in (1.0, -1.0):
        specs += [((s * (7.5 + 3.0 * vs), -14.0, 10.0), (5.0, 10.0, 9.0), None),
                  ((s * 25.0, -2.0, -1.0), (6.0, 16.0, 10.0), rotation_matrix(yaw_deg=-s * 8)),
                  ((s * (8.0 + 1.5 * vs), 12.0, 2.0), (8.0, 13.0, 9.0), None)]
    return specs


def _union_fraction(x, y, z, grid: AxisGrid, p: HeadParams, specs, k: float = 0.0) -> np.ndarray:
    """Partial-volume fraction of a (smooth, fillet ``k`` mm) union of ellipsoids, each evaluated on its own box."""
    sd = np.full(x.shape, 1e3, np.float32)
    for c, a, r in specs:
        ext = float(max(a))
        box = _index_box(grid, p, np.subtract(c, ext), np.add(c, ext))
        e = ellipsoid_sd(x[box], y[box], z[box], c, a, r)
        sd[box] = smooth_union(sd[box], e, k) if k > 0 else np.minimum(sd[box], e)
    return ramp(-sd)


def envelope_parts(x, y, z, grid: AxisGrid, p: HeadParams, outer: bool = False) -> tuple[np.ndarray, ...]:
    """Signed distances of cerebrum (with temporal lobes), cerebellum and brainstem, the tentorium between the
    first two, at the model coordinates of ``grid``'s voxels; with ``outer`` also the cerebrum before the tentorial
    cut (depth below the convexity, which sulci are measured from)."""
    cerebrum = _cerebrum(x, y, z, grid, p)
    uncut = cerebrum.copy() if outer else None
    cb_box = _index_box(grid, p, (-52, 20, -78), (52, 84, -26))
    bs_box = _index_box(grid, p, (-20, 0, -82), (20, 45, -8))
    cerebellum = _boxed_sd(x, y, z, cb_box,
                           lambda a, b, c: ellipsoid_sd(a, b, c, (0.0, 52.0, -52.0), (50.0, 30.0, 24.0)))
    brainstem = _boxed_sd(x, y, z, bs_box, lambda a, b, c: ellipsoid_sd(a, b, c, (0.0, 22.0, -45.0), (13.0, 13.0, 33.0),
                                                                        rotation_matrix(pitch_deg=-12)))
    cut_box = _index_box(grid, p, (-70, 8, -80), (70, 87, -10))
    xb, yb, zb = x[cut_box], y[cut_box], z[cut_box]
    tent = _tentorium_height(xb, yb, zb)
    gap = np.float32(0.4 + 0.2 * p.fissure_mm)
    # The cerebrum loses what lies below the tent and behind its free edge (y > 22 mm), a bounded region whose signed
    # distance is continuous; the cerebellum keeps only what lies below the tent.
    below_behind = np.maximum(tent, np.float32(22.0) - yb)
    _raise(cerebrum, cut_box, gap - below_behind)
    _raise(cerebellum, cut_box, tent + gap)
    return (cerebrum, cerebellum, brainstem) + ((uncut,) if outer else ())  # type: ignore[operator]


def _envelope_half_resolution(grid: AxisGrid, p: HeadParams, f: AnatomyFields) -> np.ndarray:
    """The envelope distances (cerebrum, cerebellum, brainstem, uncut cerebrum) evaluated on every other voxel and
    interpolated back (4, z, y, x).

    They are smooth (radii of curvature of centimetres), so linear interpolation from 2 mm is accurate to well under
    0.1 mm, at an eighth of the cost of ellipsoids on every voxel.
    """
    half = AxisGrid(grid.origin, 2.0 * grid.spacing, tuple((n + 1) // 2 + 1 for n in grid.shape))  # type: ignore[arg-type]
    hx, hy, hz = model_coordinates(half, p, f)
    parts = np.stack(envelope_parts(hx, hy, hz, half, p, outer=True))
    np.minimum(parts, np.float32(60.0), out=parts)  # "far outside" sentinels must not leak into interpolation
    return CoarseField(parts, half).on_grid(grid)


def build_anatomy(params: HeadParams, grid: AxisGrid, fields: AnatomyFields) -> Anatomy:
    """Evaluate the brain on ``grid`` with the head's random ``fields`` (from :func:`draw_fields`).

    The brain envelope (cerebrum, cerebellum, brainstem) is cut by CSF clefts -- sulci, interhemispheric and Sylvian
    fissures, tentorium, cerebellar folia -- written as signed distances, so the distance to the nearest CSF surface
    ("depth") gives the cortical ribbon that lines every cleft.
    """
    p, f = params, fields
    x, y, z = model_coordinates(grid, p, f)
    shape = x.shape
    T = np.float32(p.cortex_mm)

    cerebrum, cerebellum, brainstem, convexity = _envelope_half_resolution(grid, p, f)
    cb_box = _index_box(grid, p, (-52, 20, -78), (52, 84, -26))
    bs_box = _index_box(grid, p, (-20, 0, -82), (20, 45, -8))
    envelope = np.minimum(np.minimum(cerebrum, cerebellum), brainstem)
    region = np.full(shape, REGION_CEREBRUM, np.uint8)
    in_cerebellum = (cerebellum[cb_box] < cerebrum[cb_box]) & (cerebellum[cb_box] <= brainstem[cb_box])
    region[cb_box][in_cerebellum] = REGION_CEREBELLUM
    region[bs_box][(brainstem[bs_box] < cerebrum[bs_box]) & (brainstem[bs_box] < cerebellum[bs_box])] = REGION_BRAINSTEM
    depth = np.maximum(-envelope, 0.0)
    is_cer = region == REGION_CEREBRUM

    # Parenchyma = envelope minus clefts; each cleft raises the signed distance where it lies.
    paren = envelope.copy()
    _raise(paren, cb_box, np.where(region[cb_box] == REGION_CEREBELLUM,
                                   np.float32(1.0 + 0.4 * p.fissure_mm) - brainstem[cb_box], np.float32(-1e3)))

    fh = np.float32(p.fissure_mm / 2.0)
    box = _index_box(grid, p, (-fh - 4, -90, -50), (fh + 4, 90, 65))
    yb = y[box]
    arch = ramp((35.0 - np.abs(yb - 3.0)) / 8.0)  # the corpus callosum, an arch the fissure stops on
    z_lim = (np.float32(-45.0) * (1.0 - arch)
             + (np.float32(25.0) - np.float32(10.0 / 35.0 ** 2) * (yb - 3.0) ** 2) * arch)
    fissure = np.maximum(np.abs(x[box]) - fh, z_lim - z[box])
    _raise(paren, box, np.where(is_cer[box], -fissure, np.float32(-1e3)))

    sh = np.float32(p.sylvian_mm / 2.0)
    for sgn in (1.0, -1.0):
        box = _index_box(grid, p, (min(sgn * 26, sgn * 72), -44, -46), (max(sgn * 26, sgn * 72), 30, 28))
        syl = _sylvian_distance(x[box], y[box], z[box]) - sh
        _raise(paren, box, np.where(is_cer[box], -np.maximum(syl, depth[box] - 30.0), np.float32(-1e3)))

    box = _index_box(grid, p, (-70, -87, -48), (70, 87, 64))
    sub = AxisGrid(tuple(o + grid.spacing * b.start for o, b in zip(grid.origin, box[::-1])), grid.spacing,
                   x[box].shape)
    sulcus = _sulci(x[box], y[box], z[box], np.maximum(-convexity[box], 0.0), sub, p, f)
    _raise(paren, box, np.where(is_cer[box], -sulcus, np.float32(-1e3)))

    cb_sel = np.nonzero(region == REGION_CEREBELLUM)
    cb_depth = depth[cb_sel]
    wobble = f.folia.sample(x[cb_sel], y[cb_sel], z[cb_sel])
    phase = np.abs(np.mod(cb_depth + 3.0 * wobble, 5.0) - 2.5)
    folium = np.maximum(phase - np.float32(0.45), cb_depth - 14.0)  # negative inside a folial fissure
    paren[cb_sel] = np.maximum(paren[cb_sel], -folium)

    brain = ramp(-paren)
    icv = np.maximum(ramp(np.float32(p.ext_csf_mm) - envelope), brain)
    region[brain < 0.5] = REGION_NONE
    lining = ramp(T + paren)  # 1 within T of any CSF surface of the cerebrum or cerebellum

    # Ventricles (CSF inside the parenchyma, not lined by cortex) and deep grey nuclei, on the central box only.
    vent = _union_fraction(x, y, z, grid, p, _ventricle_specs(p.ventricle_scale), k=3.0)
    dgm_ind = _union_fraction(x, y, z, grid, p, _nuclei_specs(p.ventricle_scale))
    dgm_ind *= (1.0 - vent) * is_cer
    region[(dgm_ind > 0.5) & (brain >= 0.5)] = REGION_DEEP_GREY

    gm_ind = lining * (1.0 - dgm_ind)
    gm_ind[cb_sel] = 1.0 - ramp(cb_depth - 12.0 - 3.0 * wobble, 2.0) * ramp(30.0 - np.abs(x[cb_sel]), 4.0)
    gm_ind[region == REGION_BRAINSTEM] = 0.0
    tissue = brain * (1.0 - vent)
    gm = tissue * gm_ind
    dgm = tissue * dgm_ind
    wm = np.maximum(tissue - gm - dgm, 0.0)
    csf = icv - tissue
    return Anatomy(grid=grid, params=p, wm=wm, gm=gm, dgm=dgm, csf=csf, icv=icv, brain=brain, depth=depth,
                   side=x, region=region, model_xyz=(x, y, z), tissue=wm + gm + dgm)
