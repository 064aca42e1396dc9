"""Acute ischaemic lesions: what a case has (a plan of kinds and sizes) and where and how they appear in the tissue.

Patterns follow stroke mechanisms: lacunes (small deep infarcts in the basal ganglia, deep white matter, brainstem),
territorial infarcts (wedges from the cortex towards the ventricle, inside one hemisphere, the bigger ones vascular-
territory sized), small cortical infarcts following the gyri, showers of embolic dots, border-zone chains in the
corona radiata, striatocapsular and posterior-fossa infarcts, and cases without any lesion.

Every lesion is the sub-level set of a score field (distance from a seed, arc length along the cortex plus depth,
with band-limited noise for an irregular outline) whose level is chosen so that the lesion's tissue volume equals its
planned volume exactly (a weighted quantile), so sizes are what the plan says however much CSF the shape meets.
Lesions replace tissue only, never CSF. Inside a lesion ADC is multiplied by a factor that is lowest in the core and
rises towards the rim, and S0 by a T2 factor >= 1 (vasogenic oedema builds up over hours).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import REGION_BRAINSTEM, REGION_CEREBELLUM, REGION_CEREBRUM, REGION_DEEP_GREY, Anatomy
from .fields import AxisGrid, band_limited_noise, ramp
from .mri_physics import TissueChanges
from .shapes import rotation_matrix

#: Lesion ADC as a fraction of normal tissue ADC: the infarct core (voxels fully infarcted) lies in CLAIMED_CORE_RATIO;
#: the mean over the whole mask, rim and partial volume with CSF included, stays below CLAIMED_MASK_RATIO_MAX.
#: Real acute infarcts are less dark than a textbook core: ISLES 2022 masks have median ADC around 0.6-0.75 of normal
#: tissue (the mask includes the less restricted rim), hyperacute cores reach 0.35-0.5.
CLAIMED_CORE_RATIO = (0.3, 0.85)
CLAIMED_MASK_RATIO_MAX = 0.95
CORE_ADC_FACTOR = (0.35, 0.70)
RIM_ADC_FACTOR = (0.62, 0.88)
T2_FACTOR = (1.0, 1.5)
VOLUME_RANGE_ML = (0.05, 200.0)

#: Pattern probabilities given that a case has lesions.
PATTERNS = {"lacunar": 0.17, "territorial": 0.32, "embolic": 0.18, "cortical": 0.11, "striatocapsular": 0.06,
            "posterior": 0.08, "borderzone": 0.08}


@dataclass(frozen=True)
class LesionSpec:
    """One planned lesion: kind, tissue volume (mL), hemisphere (+1 left, -1 right) and its diffusion signature."""

    kind: str
    target_ml: float
    hemisphere: int
    core_adc: float
    rim_adc: float
    t2: float
    rim_mm: float


@dataclass(frozen=True)
class LesionPlan:
    pattern: str
    lesions: tuple[LesionSpec, ...]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _spec(rng: np.random.Generator, kind: str, lo: float, hi: float, hemisphere: int,
          volume_range: tuple[float, float]) -> LesionSpec:
    lo, hi = max(lo, volume_range[0]), min(hi, volume_range[1])
    volume = _log_uniform(rng, lo, max(hi, lo))
    return sample_signature(rng, kind, volume, hemisphere)


def sample_signature(rng: np.random.Generator, kind: str, target_ml: float, hemisphere: int) -> LesionSpec:
    """A lesion's diffusion signature (core and rim ADC factors, T2 factor, rim width) for a given kind and size."""
    core = float(rng.uniform(*CORE_ADC_FACTOR))
    return LesionSpec(kind=kind, target_ml=target_ml, hemisphere=hemisphere, core_adc=core,
                      rim_adc=float(max(core, rng.uniform(*RIM_ADC_FACTOR))), t2=float(rng.uniform(*T2_FACTOR)),
                      rim_mm=float(rng.uniform(1.5, 5.0)))


def sample_lesion_plan(rng: np.random.Generator, p_none: float = 0.1,
                       volume_range: tuple[float, float] = VOLUME_RANGE_ML) -> LesionPlan:
    """Draw a pattern and its lesions; sizes are log-uniform within each kind's clinical range, so small ones are
    common and large territorial infarcts occur (0.05 to 200 mL overall)."""
    if rng.random() < p_none:
        return LesionPlan("none", ())
    names = list(PATTERNS)
    pattern = str(rng.choice(names, p=np.array([PATTERNS[n] for n in names]) / sum(PATTERNS.values())))
    h = 1 if rng.random() < 0.5 else -1
    other = lambda: h if rng.random() < 0.6 else -h  # noqa: E731  (emboli reach one or both hemispheres)
    spec = lambda kind, lo, hi, hemi=h: _spec(rng, kind, lo, hi, hemi, volume_range)  # noqa: E731
    if pattern == "lacunar":
        count = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
        lesions = [spec("lacune", 0.05, 2.0, other()) for _ in range(count)]
    elif pattern == "territorial":
        lesions = [spec("territorial", 1.0, 200.0)]
        if rng.random() < 0.4:
            lesions += [spec("dot", 0.05, 0.8) for _ in range(int(rng.integers(1, 5)))]
    elif pattern == "embolic":
        both = rng.random() < 0.4
        lesions = [spec("dot", 0.05, 1.5, other() if both else h) for _ in range(int(_log_uniform(rng, 3, 26)))]
    elif pattern == "cortical":
        lesions = [spec("cortical", 0.2, 8.0) for _ in range(int(rng.integers(1, 3)))]
    elif pattern == "striatocapsular":
        lesions = [spec("striatocapsular", 1.5, 30.0)]
    elif pattern == "posterior":
        lesions = [spec("cerebellar", 0.2, 40.0)] if rng.random() < 0.6 else [spec("brainstem", 0.05, 3.0)]
    else:
        lesions = [spec("borderzone", 0.1, 1.5) for _ in range(int(rng.integers(3, 9)))]
    return LesionPlan(pattern, tuple(lesions))


# --- placement -------------------------------------------------------------------------------------------------

_TERRITORIES = ("mca", "mca", "mca", "aca", "pca")


def _seed_test(kind: str, anat: Anatomy, h: int, rng: np.random.Generator):
    """A vectorised test of candidate voxels (index tuples) for where a lesion of this kind can start."""
    x, y, z = anat.model_xyz
    territory = str(rng.choice(_TERRITORIES))

    def test(i):
        reg, dep, side, tis = anat.region[i], anat.depth[i], anat.side[i] * h, anat.tissue[i]
        if kind == "lacune":
            deep = (reg == REGION_DEEP_GREY) | ((reg == REGION_CEREBRUM) & (dep > 16) & (anat.wm[i] > 0.7))
            return deep & (side > 3) & (tis > 0.7)
        if kind == "dot":
            return (((reg == REGION_CEREBRUM) & (dep < 14)) | (reg == REGION_CEREBELLUM)) & (side > 3) & (tis > 0.5)
        if kind in ("territorial", "cortical"):
            ok = (reg == REGION_CEREBRUM) & (dep < 3) & (tis > 0.3) & (side > 6)
            if kind == "territorial":
                mx, my, mz = np.abs(x[i]), y[i], z[i]
                ok &= {"mca": (mx > 30) & (my > -45) & (my < 40) & (mz > -25),
                       "aca": (mx < 22) & (my < 25) & (mz > 15),
                       "pca": (my > 40) & (mz < 20)}[territory]
            return ok
        if kind == "striatocapsular":
            return (reg == REGION_DEEP_GREY) & (np.abs(x[i]) > 17) & (side > 0)
        if kind == "cerebellar":
            return (reg == REGION_CEREBELLUM) & (side > 3) & (tis > 0.5)
        if kind == "brainstem":
            return (reg == REGION_BRAINSTEM) & (tis > 0.8)
        if kind == "borderzone":
            mx = np.abs(x[i])
            return ((reg == REGION_CEREBRUM) & (dep > 15) & (mx > 17) & (mx < 34) & (z[i] > 0) & (z[i] < 32)
                    & (side > 0) & (anat.wm[i] > 0.7))
        raise ValueError(kind)

    return test


def _pick_seed(anat: Anatomy, test, rng: np.random.Generator, tries: int = 20) -> tuple[int, int, int] | None:
    """A random voxel that passes ``test`` (rejection sampling in batches, no full-volume masks)."""
    n = int(np.prod(anat.grid.shape))
    for _ in range(tries):
        flat = rng.integers(0, n, 4096)
        idx = np.unravel_index(flat, anat.grid.shape)
        ok = np.nonzero(test(idx))[0]
        if ok.size:
            return tuple(int(a[ok[0]]) for a in idx)  # type: ignore[return-value]
    return None


_ALLOWED = {"lacune": (REGION_CEREBRUM, REGION_DEEP_GREY, REGION_BRAINSTEM),
            "dot": (REGION_CEREBRUM, REGION_DEEP_GREY, REGION_CEREBELLUM),
            "territorial": (REGION_CEREBRUM, REGION_DEEP_GREY), "cortical": (REGION_CEREBRUM,),
            "striatocapsular": (REGION_DEEP_GREY, REGION_CEREBRUM), "cerebellar": (REGION_CEREBELLUM,),
            "brainstem": (REGION_BRAINSTEM,), "borderzone": (REGION_CEREBRUM,)}


def _box(grid: AxisGrid, centre_idx, radius_mm: float) -> tuple[slice, slice, slice]:
    r = int(np.ceil(radius_mm / grid.spacing))
    return tuple(slice(max(c - r, 0), min(c + r + 1, n)) for c, n in zip(centre_idx, grid.shape))  # type: ignore[return-value]


def _box_coordinates(grid: AxisGrid, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = grid.mesh()
    return x[..., box[2]], y[:, box[1], :], z[box[0]]


def _level_for_volume(score: np.ndarray, weight: np.ndarray, target: float) -> float:
    """The level t such that the weight of {score < t} equals ``target`` (weighted histograms, refined twice)."""
    if score.size == 0:
        return -np.inf
    if weight.sum() <= target:
        return float(score.max()) + 1.0
    score = score.astype(np.float64)
    lo, hi = float(score.min()), float(score.max()) + 1e-3
    below = 0.0
    for _ in range(3):
        hist, edges = np.histogram(score, bins=1024, range=(lo, hi), weights=weight)
        cum = below + np.cumsum(hist)
        i = min(int(np.searchsorted(cum, target)), len(hist) - 1)
        below = float(cum[i - 1]) if i > 0 else below
        lo, hi = float(edges[i]), float(edges[i + 1])
        if hi - lo < 1e-4:
            break
    return 0.5 * (lo + hi)


def _score(spec: LesionSpec, anat: Anatomy, seed, box, r_eq: float, rng: np.random.Generator) -> np.ndarray:
    """Score (mm) whose sub-level sets grow from the seed in the lesion's characteristic shape."""
    g = anat.grid
    x, y, z = _box_coordinates(g, box)
    c = np.array([g.axis(0)[seed[2]], g.axis(1)[seed[1]], g.axis(2)[seed[0]]], np.float32)
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    if spec.kind in ("territorial", "cortical"):
        # Wedge: arc length from the seed seen from an apex deep in the hemisphere, plus weighted depth.
        centre = np.array([spec.hemisphere * 22.0 * anat.params.scale[0], 0.0, 5.0], np.float32)
        kappa = rng.uniform(0.45, 0.85) if spec.kind == "territorial" else rng.uniform(0.2, 0.4)
        apex = c + np.float32(kappa) * (centre - c)
        u = c - apex
        radius = float(np.linalg.norm(u)) + 1e-3
        u /= radius
        px, py, pz = x - apex[0], y - apex[1], z - apex[2]
        dist = np.sqrt(px * px + py * py + pz * pz) + np.float32(1e-3)
        cos = (px * u[0] + py * u[1] + pz * u[2]) / dist
        theta = np.arccos(np.clip(cos, -1.0, 1.0))
        w_depth = rng.uniform(0.1, 1.0) if spec.kind == "territorial" else rng.uniform(1.5, 3.0)
        score = theta * np.float32(radius) + np.float32(w_depth) * anat.depth[box]
        score = np.where(cos > 0.0, score, np.float32(np.inf))
    else:
        axes = np.exp(rng.normal(0.0, 0.25, 3))
        axes /= np.prod(axes) ** (1.0 / 3.0)
        if spec.kind in ("lacune", "borderzone", "brainstem"):
            axes[2] *= 1.4  # perforator infarcts are elongated along the vessels (roughly head-foot)
        r = rotation_matrix(*rng.uniform(-180, 180, 3)).astype(np.float32).T
        qx = (r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz) / np.float32(axes[0])
        qy = (r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz) / np.float32(axes[1])
        qz = (r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz) / np.float32(axes[2])
        score = np.sqrt(qx * qx + qy * qy + qz * qz)
    box_grid = AxisGrid((float(x.ravel()[0]), float(y.ravel()[0]), float(z.ravel()[0])), g.spacing, score.shape)
    wavelength = float(np.clip(1.2 * r_eq, 4.0, 40.0))
    noise = band_limited_noise(rng, box_grid, wavelength_mm=wavelength).on_grid(box_grid)
    score = score + np.float32(0.3 * r_eq) * noise
    side_ok = (anat.side[box] * spec.hemisphere > 0) if spec.kind in ("territorial", "cortical") else True
    allowed = np.isin(anat.region[box], _ALLOWED[spec.kind]) & side_ok
    return np.where(allowed, score, np.float32(np.inf))


def write_lesion(changes: TissueChanges, box: tuple[slice, slice, slice], lam: np.ndarray, inward: np.ndarray,
                 spec: LesionSpec, spacing: float, rng: np.random.Generator) -> None:
    """Write a lesion's fraction ``lam`` on ``box`` into ``changes`` with its signature: ADC factor from the core
    value (``inward`` = 1, deep inside) to the rim value (``inward`` = 0), a little heterogeneity, the T2 factor.
    Where lesions overlap, the one with the larger fraction sets the signature."""
    hetero = band_limited_noise(rng, AxisGrid((0.0, 0.0, 0.0), spacing, lam.shape), 6.0).on_grid(
        AxisGrid((0.0, 0.0, 0.0), spacing, lam.shape))
    rho = spec.core_adc + (spec.rim_adc - spec.core_adc) * (1.0 - inward) ** 2 + np.float32(0.04) * hetero
    rho = np.clip(rho, 0.2, 1.0).astype(np.float32)
    tau = np.float32(spec.t2) * (1.0 + np.float32(0.03) * hetero)
    cur = changes.lesion[box]
    newer = lam > cur
    changes.lesion_adc[box] = np.where(newer, rho, changes.lesion_adc[box])
    changes.lesion_t2[box] = np.where(newer, tau, changes.lesion_t2[box])
    np.maximum(cur, lam, out=cur)


def _render_one(spec: LesionSpec, anat: Anatomy, changes: TissueChanges, rng: np.random.Generator,
                near: tuple[int, int, int] | None = None) -> dict | None:
    """Place one lesion, write it into ``changes`` and describe it (None when no seed fits)."""
    g = anat.grid
    test = _seed_test(spec.kind, anat, spec.hemisphere, rng)
    if near is not None:  # chains (border zone): stay within a few cm of the first one
        base = test
        test = lambda i: base(i) & (np.abs(i[0] - near[0]) < 12) & (np.abs(i[1] - near[1]) < 30) & (  # noqa: E731
            np.abs(i[2] - near[2]) < 10)
    seed = _pick_seed(anat, test, rng)
    if seed is None:
        return None
    target_mm3 = spec.target_ml * 1000.0
    r_eq = (3.0 * target_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    wide = spec.kind in ("territorial", "cortical", "cerebellar")
    box = _box(g, seed, (4.0 if wide else 2.3) * r_eq + 8.0)
    score = _score(spec, anat, seed, box, r_eq, rng)
    tissue = anat.tissue[box]
    finite = np.isfinite(score) & (tissue > 0)
    level = _level_for_volume(score[finite], tissue[finite], target_mm3 / g.voxel_volume_mm3)
    if not np.isfinite(level):
        return None
    lam = ramp(np.float32(level) - np.where(finite, score, np.float32(1e6)))
    # ADC is lowest in the core and rises over the outer few mm (a width, not a fraction, so small lesions are
    # uniformly dark like real lacunes and large ones have a homogeneous core).
    rim_mm = min(spec.rim_mm, 0.5 * r_eq)
    inward = np.clip((np.float32(level) - np.where(finite, score, np.float32(level))) / np.float32(rim_mm), 0.0, 1.0)
    write_lesion(changes, box, lam, inward, spec, g.spacing, rng)
    centre = [float(g.axis(0)[seed[2]]), float(g.axis(1)[seed[1]]), float(g.axis(2)[seed[0]])]
    volume_ml = float((lam * tissue).sum() * g.voxel_volume_mm3 / 1000.0)
    return {"kind": spec.kind, "hemisphere": "left" if spec.hemisphere > 0 else "right",
            "target_ml": round(spec.target_ml, 4), "volume_ml": round(volume_ml, 4),
            "adc_factor_core": round(spec.core_adc, 3), "adc_factor_rim": round(spec.rim_adc, 3),
            "t2_factor": round(spec.t2, 3), "centre_anatomical_mm": [round(v, 1) for v in centre],
            "_seed": seed}


def render_lesions(plan: LesionPlan, anat: Anatomy, changes: TissueChanges, rng: np.random.Generator) -> list[dict]:
    """Write every planned lesion into ``changes``; returns one description per lesion placed."""
    out: list[dict] = []
    chain: tuple[int, int, int] | None = None
    for spec in plan.lesions:
        info = _render_one(spec, anat, changes, rng, near=chain if spec.kind == "borderzone" else None)
        if info is None:
            continue
        if spec.kind == "borderzone" and chain is None:
            chain = info["_seed"]
        info.pop("_seed")
        out.append(info)
    return out
