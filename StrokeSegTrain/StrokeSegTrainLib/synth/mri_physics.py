"""Diffusion MRI signal: tissue properties and the Stejskal-Tanner equation S_b = S0 * exp(-b * ADC).

The generator never paints an ADC map directly: it computes the b=0 (T2-weighted) signal and the diffusion-weighted
signal of every fine voxel as the sum over the tissues it contains, lets acquisition average, bias and corrupt both
(partial volume and Rician noise act on signals, not on ADC), and then derives ADC as the scanner does,
ln(S0 / S_b) / b. That is what gives CSF partial volume its real look (bright ADC rim, dark DWI), T2 shine-through
(bright DWI with normal ADC where S0 is high) and the noisy ADC of the background in unstripped scans.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import REGION_BRAINSTEM, REGION_CEREBELLUM, Anatomy
from .extracranial import HeadTissues
from .fields import band_limited_noise

#: Nominal tissue ADC (mm^2/s) at body temperature; each case scales them by a common -12 %..+20 % (older brains and
#: some scanners read higher) and a small per-tissue jitter (scanner, temperature, age).
NOMINAL_ADC = {"wm": 0.70e-3, "gm": 0.85e-3, "dgm": 0.75e-3, "csf": 3.0e-3,
               "soft": 1.3e-3, "bone": 1.0e-3, "eye": 2.9e-3}
#: Ranges of the b=0 signal relative to white matter (long TR, TE ~ 70-100 ms, fat suppressed).
S0_RANGE = {"wm": (1.0, 1.0), "gm": (1.25, 1.5), "dgm": (1.05, 1.2), "csf": (1.9, 3.2),
            "soft": (0.2, 0.55), "bone": (0.02, 0.06), "eye": (1.9, 3.2)}
BRAIN_TISSUES = ("wm", "gm", "dgm")


@dataclass(frozen=True)
class TissueProperties:
    """One case's tissue ADC (mm^2/s), relative S0, b-value (s/mm^2) and within-tissue texture amplitude."""

    b_value: float
    adc: dict[str, float]
    s0: dict[str, float]
    texture: float


def sample_tissue_properties(rng: np.random.Generator) -> TissueProperties:
    """b in [800, 1200] (often exactly 1000), ADC scaled by one per-case factor in [0.88, 1.2] and +-4 % per tissue."""
    b = 1000.0 if rng.random() < 0.4 else float(rng.uniform(800.0, 1200.0))
    common = rng.uniform(0.88, 1.2)
    adc = {k: float(v * (common if k in BRAIN_TISSUES else 1.0) * rng.uniform(0.96, 1.04))
           for k, v in NOMINAL_ADC.items()}
    s0 = {k: float(rng.uniform(*r)) for k, r in S0_RANGE.items()}
    return TissueProperties(b_value=b, adc=adc, s0=s0, texture=float(rng.uniform(0.02, 0.06)))


@dataclass
class TissueChanges:
    """Per-voxel changes of brain tissue on the anatomical grid.

    ``s0_factor``/``adc_factor`` multiply normal tissue everywhere (texture, white-matter hyperintensities, old
    infarcts); ``lesion`` is the infarcted share of each voxel's tissue (0..1) with its own ADC and T2 factors.
    """

    s0_factor: np.ndarray
    adc_factor: np.ndarray
    lesion: np.ndarray
    lesion_adc: np.ndarray
    lesion_t2: np.ndarray

    @classmethod
    def none(cls, shape: tuple[int, int, int]) -> TissueChanges:
        ones = np.ones(shape, np.float32)
        return cls(ones, ones.copy(), np.zeros(shape, np.float32), ones.copy(), ones.copy())

    def scale_normal_tissue(self, weight: np.ndarray, s0_gain: float, adc_gain: float,
                            box: tuple[slice, slice, slice] = (slice(None),) * 3) -> None:
        """Multiply normal tissue's S0 and ADC in ``box`` by 1 + (gain - 1) * weight: the full gain where the weight
        is 1, none where it is 0 (mimics and normal variants blend in this way)."""
        self.s0_factor[box] *= 1.0 + np.float32(s0_gain - 1.0) * weight
        self.adc_factor[box] *= 1.0 + np.float32(adc_gain - 1.0) * weight


def add_texture(changes: TissueChanges, anatomy: Anatomy, props: TissueProperties, rng: np.random.Generator) -> None:
    """Smooth, few-percent variation of S0 and ADC within tissue, as real parenchyma is never uniform."""
    noise = band_limited_noise(rng, anatomy.grid, wavelength_mm=12.0, channels=2).on_grid(anatomy.grid)
    changes.s0_factor *= 1.0 + np.float32(props.texture) * noise[0]
    changes.adc_factor *= 1.0 + np.float32(0.6 * props.texture) * noise[1]


def add_regional_variation(changes: TissueChanges, anatomy: Anatomy, rng: np.random.Generator) -> dict:
    """Normal regional differences that make real infratentorial DWI bright: the cerebellar cortex (densely packed
    granule cells) has a lower ADC and a higher T2-weighted signal than the cerebral cortex, and the brainstem
    varies too. Without them a model learns "bright DWI, lowish ADC" as infarct and flags the normal cerebellum."""
    cb = anatomy.region == REGION_CEREBELLUM
    bs = anatomy.region == REGION_BRAINSTEM
    out = {"cerebellum_s0": float(rng.uniform(1.0, 1.45)), "cerebellum_adc": float(rng.uniform(0.75, 0.95)),
           "brainstem_s0": float(rng.uniform(0.95, 1.25)), "brainstem_adc": float(rng.uniform(0.85, 1.0))}
    changes.s0_factor[cb] *= np.float32(out["cerebellum_s0"])
    changes.adc_factor[cb] *= np.float32(out["cerebellum_adc"])
    changes.s0_factor[bs] *= np.float32(out["brainstem_s0"])
    changes.adc_factor[bs] *= np.float32(out["brainstem_adc"])
    return {k: round(v, 3) for k, v in out.items()}


def synthesize_signals(anatomy: Anatomy, props: TissueProperties, changes: TissueChanges
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(S0, S_b) on the anatomical grid (float32, arbitrary units with white matter S0 = 1).

    Every voxel's signal is the fraction-weighted sum of its compartments; in the infarcted share the ADC is
    multiplied by ``lesion_adc`` and S0 by ``lesion_t2``.
    """
    b = np.float32(props.b_value)
    s0 = np.zeros(anatomy.grid.shape, np.float32)
    sb = np.zeros_like(s0)
    lam = changes.lesion
    has_lesion = bool(lam.any())
    for name in BRAIN_TISSUES:
        a = getattr(anatomy, name) * np.float32(props.s0[name]) * changes.s0_factor
        d = np.float32(props.adc[name]) * changes.adc_factor
        normal = np.exp(-b * d)
        if has_lesion:
            injured = changes.lesion_t2 * np.exp(-b * d * changes.lesion_adc)
            s0 += a * (1.0 + lam * (changes.lesion_t2 - 1.0))
            sb += a * (normal * (1.0 - lam) + injured * lam)
        else:
            s0 += a
            sb += a * normal
    a = anatomy.csf * np.float32(props.s0["csf"])
    s0 += a
    sb += a * np.float32(np.exp(-props.b_value * props.adc["csf"]))
    return s0, sb


def head_signals(head: HeadTissues, props: TissueProperties, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(S0, S_b) of the extracranial compartments on the head grid; soft tissue gets a +-15 % texture (muscle,
    glands and residual fat are anything but uniform)."""
    texture = 1.0 + np.float32(0.15) * band_limited_noise(rng, head.grid, wavelength_mm=20.0).on_grid(head.grid)
    s0 = np.zeros(head.grid.shape, np.float32)
    sb = np.zeros_like(s0)
    for name, frac in (("soft", head.soft * texture), ("bone", head.bone), ("eye", head.eye)):
        a = frac * np.float32(props.s0[name])
        s0 += a
        sb += a * np.float32(np.exp(-props.b_value * props.adc[name]))
    return s0, sb


def adc_from_signals(s0: np.ndarray, sb: np.ndarray, b_value: float) -> np.ndarray:
    """ADC (mm^2/s) = ln(S0 / S_b) / b where both signals are positive, 0 elsewhere -- as scanners compute it."""
    ok = (s0 > 0) & (sb > 0)
    out = np.zeros(s0.shape, np.float32)
    out[ok] = np.log(s0[ok] / sb[ok]) / np.float32(b_value)
    return out
