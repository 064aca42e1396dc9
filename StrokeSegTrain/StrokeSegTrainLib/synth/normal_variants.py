"""Normal cortex that is bright on DWI: the commonest look-alike of a small cortical infarct on real scans.

On clinical EPI DWI the cortical ribbon is often patchily hyperintense with a normal ADC, most of all at the frontal
and occipital poles: cortical T2 varies from region to region, parallel imaging amplifies noise and signal towards
the periphery, and EPI distortion along the (usually anterior-posterior) phase-encoding direction compresses signal
at the poles. None of that restricts diffusion, so ADC stays within a few per cent of normal grey matter -- above the
highest rim ADC a generated infarct can have (``lesions.RIM_ADC_FACTOR``), which is what tells the two apart.

Patches are the super-level set of band-limited noise plus a bonus that grows towards the poles, applied to the grey
matter share of each voxel only. They multiply S0 (and ADC by 0.90-1.02), never the lesion mask.

A second variant, off by default, is bilateral and mirror-symmetric: the same cortex on both sides of the midline
is bright with an ADC of 0.78-0.95 of normal, low enough to overlap an infarct's rim. Radiologists read such
symmetric signal as normal (regional cortical ADC, artefact) because infarcts follow one vessel's territory; with it
the model has to learn symmetry rather than an ADC cut-off.
"""
from __future__ import annotations

import numpy as np

from .anatomy import BRAIN_BOX_MODEL, REGION_CEREBRUM, Anatomy
from .fields import band_limited_noise, covering_grid, ramp
from .mri_physics import TissueChanges

#: S0 gain at the centre of a patch (DWI brightens by about the same factor, as ADC barely changes).
S0_GAIN = (1.15, 1.8)
#: ADC factor at the centre of a patch: normal, never as low as an infarct rim (>= 0.90 > max rim 0.88).
ADC_FACTOR = (0.90, 1.02)
_POLE_Y_MM = float(BRAIN_BOX_MODEL[1][1])


def add_bright_cortex(anat: Anatomy, changes: TissueChanges, rng: np.random.Generator) -> dict:
    """Brighten random patches of cerebral cortex (more of them near the frontal and occipital poles); returns the
    parameters drawn and the share of cortex affected (weight > 0.5)."""
    wavelength = float(rng.uniform(25.0, 50.0))
    pole_bonus = float(rng.uniform(0.5, 2.0))
    level = float(rng.uniform(0.6, 1.4))
    s0_gain = float(rng.uniform(*S0_GAIN))
    adc_factor = float(rng.uniform(*ADC_FACTOR))
    noise = band_limited_noise(rng, anat.grid, wavelength_mm=wavelength).on_grid(anat.grid)
    # Model y is already divided by the head's scale; dividing again means large heads never get the full bonus
    # and small ones reach it just before the pole. Kept so that seed 2028 (the bundled model's data) reproduces.
    pole = np.minimum(np.abs(anat.model_xyz[1]) / np.float32(_POLE_Y_MM * anat.params.scale[1]), 1.0) ** 2
    weight = ramp((noise + np.float32(pole_bonus) * pole - np.float32(level)) / np.float32(0.5))
    return _brighten_grey_matter(anat, changes, weight, anat.region == REGION_CEREBRUM, s0_gain, adc_factor,
                                 wavelength, pole_bonus)


def _brighten_grey_matter(anat: Anatomy, changes: TissueChanges, weight: np.ndarray, cerebrum: np.ndarray,
                          s0_gain: float, adc_factor: float, wavelength: float, pole_bonus: float) -> dict:
    """Apply patch ``weight`` to the grey-matter share of cerebral voxels (in place) and describe the result: the
    parameters drawn and the share of cortex affected (weight > 0.5). Both bright-cortex variants end here."""
    weight *= np.where(cerebrum, anat.gm / np.maximum(anat.tissue, np.float32(1e-3)), np.float32(0.0))
    changes.scale_normal_tissue(weight, s0_gain, adc_factor)
    cortex = (anat.gm > 0.5) & cerebrum
    share = float(np.mean(weight[cortex] > 0.5)) if cortex.any() else 0.0
    return {"s0_gain": round(s0_gain, 3), "adc_factor": round(adc_factor, 3), "wavelength_mm": round(wavelength, 1),
            "pole_bonus": round(pole_bonus, 3), "share_of_cortex": round(share, 3)}


#: Symmetric variant: S0 gain and ADC factor at the centre of a patch (the ADC range reaches into the rim's).
SYMMETRIC_S0_GAIN = (1.15, 1.6)
SYMMETRIC_ADC_FACTOR = (0.78, 0.95)


def mirrored_noise(rng: np.random.Generator, wavelength_mm: float, x: np.ndarray, y: np.ndarray, z: np.ndarray
                   ) -> np.ndarray:
    """max(n(x, y, z), n(-x, y, z)) of one band-limited noise field n in the model frame: equal at mirror points."""
    field = band_limited_noise(rng, covering_grid(*BRAIN_BOX_MODEL, spacing=wavelength_mm / 4.0), wavelength_mm)
    return np.maximum(field.sample(x, y, z), field.sample(-x, y, z))


def add_symmetric_bright_cortex(anat: Anatomy, changes: TissueChanges, rng: np.random.Generator) -> dict:
    """Brighten mirror-symmetric patches of cerebral cortex on both sides, more of them near the poles; returns the
    parameters drawn and the share of cortex affected (weight > 0.5)."""
    wavelength = float(rng.uniform(25.0, 50.0))
    pole_bonus = float(rng.uniform(0.5, 2.0))
    level = float(rng.uniform(1.0, 1.8))  # the maximum of two noises is higher than one: a higher level
    s0_gain = float(rng.uniform(*SYMMETRIC_S0_GAIN))
    adc_factor = float(rng.uniform(*SYMMETRIC_ADC_FACTOR))
    cerebrum = anat.region == REGION_CEREBRUM
    where = cerebrum & (anat.gm > 0.01)
    x, y, z = (np.broadcast_to(c, anat.grid.shape)[where] for c in anat.model_xyz)
    pole = np.minimum(np.abs(y) / np.float32(_POLE_Y_MM), 1.0) ** 2
    noise = mirrored_noise(rng, wavelength, x, y, z)
    weight = np.zeros(anat.grid.shape, np.float32)
    weight[where] = ramp((noise + np.float32(pole_bonus) * pole - np.float32(level)) / np.float32(0.5))
    return _brighten_grey_matter(anat, changes, weight, cerebrum, s0_gain, adc_factor, wavelength, pole_bonus)
