"""Things that look a little like acute infarcts but are not, so the model learns to use ADC and not DWI alone.

* White-matter hyperintensities (small-vessel disease, common in stroke patients): periventricular caps and patchy
  deep spots with raised T2 (S0) and raised ADC -- slightly bright on DWI, bright on ADC.
* Old infarcts: cavities that have turned to CSF-like fluid (high ADC, dark DWI) with a gliotic rim.
* Subacute infarct with T2 shine-through: bright DWI from a high S0 but normal or high ADC.

None of them is in the lesion mask. They only multiply the S0 and ADC of normal tissue.
"""
from __future__ import annotations

import numpy as np

from .anatomy import REGION_CEREBRUM, Anatomy
from .fields import AxisGrid, band_limited_noise, ramp
from .mri_physics import TissueChanges


def _blob(anat: Anatomy, centre_idx, radius_mm: float, rng: np.random.Generator, box_mm: float | None = None
          ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Soft irregular ball (0..1) around a voxel, on a small box (half-width ``box_mm``, default 1.8 radii)."""
    g = anat.grid
    r = int(np.ceil((box_mm or 1.8 * radius_mm) / g.spacing)) + 2
    box = tuple(slice(max(c - r, 0), min(c + r + 1, n)) for c, n in zip(centre_idx, g.shape))
    zz, yy, xx = np.meshgrid(*[np.arange(s.start, s.stop) - c for s, c in zip(box, centre_idx)], indexing="ij")
    dist = np.sqrt(xx ** 2 + yy ** 2 + zz ** 2).astype(np.float32) * g.spacing
    local = AxisGrid((0.0, 0.0, 0.0), g.spacing, dist.shape)
    noise = band_limited_noise(rng, local, wavelength_mm=max(radius_mm, 3.0)).on_grid(local)
    return box, ramp(np.float32(radius_mm) * (1.0 + 0.35 * noise) - dist)  # type: ignore[return-value]


def _random_voxels(anat: Anatomy, rng: np.random.Generator, test, count: int) -> list[tuple[int, int, int]]:
    n = int(np.prod(anat.grid.shape))
    idx = np.unravel_index(rng.integers(0, n, 20000), anat.grid.shape)
    ok = np.nonzero(test(idx))[0][:count]
    return [tuple(int(a[k]) for a in idx) for k in ok]  # type: ignore[misc]


def add_mimics(anat: Anatomy, changes: TissueChanges, rng: np.random.Generator) -> dict:
    """Add a random selection of mimics (more white-matter disease in atrophic brains); returns what was added."""
    added = {"wmh_spots": 0, "old_infarcts": 0, "shine_through": 0}
    a = anat.params.atrophy
    if rng.random() < 0.25 + 0.6 * a:
        deep_wm = lambda i: (anat.region[i] == REGION_CEREBRUM) & (anat.depth[i] > 12) & (anat.wm[i] > 0.8)  # noqa: E731
        n = int(rng.integers(2, 6 + int(30 * a)))
        for seed in _random_voxels(anat, rng, deep_wm, n):
            box, w = _blob(anat, seed, float(rng.uniform(1.5, 6.0 + 6.0 * a)), rng)
            changes.scale_normal_tissue(w * anat.wm[box], rng.uniform(1.3, 1.8), rng.uniform(1.15, 1.5), box)
            added["wmh_spots"] += 1
    if rng.random() < 0.2:
        tissue_site = lambda i: (anat.region[i] == REGION_CEREBRUM) & (anat.depth[i] < 25) & (anat.tissue[i] > 0.8)  # noqa: E731
        for seed in _random_voxels(anat, rng, tissue_site, int(rng.integers(1, 3))):
            radius = float(rng.uniform(3.0, 14.0))
            box, w = _blob(anat, seed, radius, rng, box_mm=1.8 * radius + 5.0)
            _, rim = _blob(anat, seed, radius + 2.5, rng, box_mm=1.8 * radius + 5.0)
            changes.scale_normal_tissue(np.maximum(rim - w, 0.0), rng.uniform(1.3, 1.6), rng.uniform(1.2, 1.5), box)
            changes.scale_normal_tissue(w, rng.uniform(1.8, 2.6), rng.uniform(3.0, 4.0), box)
            added["old_infarcts"] += 1
    if rng.random() < 0.1:
        site = lambda i: (anat.region[i] == REGION_CEREBRUM) & (anat.depth[i] < 30) & (anat.tissue[i] > 0.8)  # noqa: E731
        for seed in _random_voxels(anat, rng, site, 1):
            box, w = _blob(anat, seed, float(rng.uniform(4.0, 15.0)), rng)
            changes.scale_normal_tissue(w, rng.uniform(1.6, 2.2), rng.uniform(1.05, 1.4), box)
            added["shine_through"] += 1
    return added
