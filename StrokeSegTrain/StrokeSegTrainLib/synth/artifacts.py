"""Scanner artefacts that multiply the signals: coil bias field, the receive coil's peripheral brightening, and EPI
susceptibility pile-up / dropout.

All act on S0 and S_b alike (the same coil, the same distortion), so they change DWI brightness without changing
ADC much -- exactly why the bright inferior frontal and temporal poles of real EPI DWI are not infarcts, and why a
model must not trust absolute DWI intensity.
"""
from __future__ import annotations

import numpy as np

from .anatomy import BRAIN_BOX_MODEL, HEAD_BOX_MODEL, Anatomy, HeadParams
from .fields import AxisGrid, CoarseField, band_limited_noise, covering_grid
from .shapes import model_index_box

#: Model-frame sites of air-tissue interfaces (frontal sinus / orbits, temporal bone, mastoids, skull base) where
#: EPI piles up signal: inferior frontal lobes, temporal poles and inferior temporal lobes, cerebellum.
_SUSCEPTIBILITY_SITES = ((0.0, -55.0, -22.0), (40.0, -25.0, -36.0), (-40.0, -25.0, -36.0), (36.0, 5.0, -44.0),
                         (-36.0, 5.0, -44.0), (30.0, 50.0, -62.0), (-30.0, 50.0, -62.0), (0.0, 30.0, -60.0))


class BiasField:
    """Smooth multiplicative field exp(a * n), n unit-variance noise of ~200 mm wavelength in the anatomical frame;
    the same field multiplies the brain's and the head's signals whatever their grids."""

    def __init__(self, rng: np.random.Generator, amplitude: float) -> None:
        box = covering_grid(*HEAD_BOX_MODEL, spacing=20.0, margin=40.0)
        self.noise: CoarseField = band_limited_noise(rng, box, wavelength_mm=200.0, step_mm=20.0)
        self.amplitude = float(amplitude)

    def on_grid(self, grid: AxisGrid) -> np.ndarray:
        return np.exp(np.float32(self.amplitude) * self.noise.on_grid(grid)).astype(np.float32)


class ReceiveCoilProfile:
    """Sensitivity of a multi-channel receive array: highest next to its elements, so the brain's periphery (cortex,
    frontal and occipital poles) is brighter than its centre, often by 30-80 % when the scanner does not normalise
    it. It multiplies S0 and S_b alike: the cortex looks bright on DWI while its ADC stays normal.

    Gain = 1 + amplitude * rho ** power, rho the ellipsoidal radius of the brain box (0 at its centre, 1 on its
    surface, capped at 1.4 in the scalp), the ellipsoid shifted a little towards one side of the array.
    """

    def __init__(self, rng: np.random.Generator, head: HeadParams) -> None:
        lo, hi = (np.asarray(b, np.float64) * np.asarray(head.scale) for b in BRAIN_BOX_MODEL)
        self.radii = (hi - lo) / 2.0
        self.centre = (hi + lo) / 2.0 + rng.uniform(-0.15, 0.15, 3) * self.radii
        self.amplitude = float(rng.uniform(0.25, 0.8))
        self.power = float(rng.uniform(2.0, 4.0))

    def on_grid(self, grid: AxisGrid) -> np.ndarray:
        x, y, z = grid.mesh()
        rho2 = sum(((c - np.float32(m)) / np.float32(r)) ** 2 for c, m, r in zip((x, y, z), self.centre, self.radii))
        rho = np.minimum(np.sqrt(rho2), np.float32(1.4))
        return (1.0 + np.float32(self.amplitude) * rho ** np.float32(self.power)).astype(np.float32)

    def describe(self) -> dict[str, float]:
        return {"amplitude": round(self.amplitude, 3), "power": round(self.power, 3)}


def susceptibility_gain(anat: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """(gain on both signals, extra gain on S_b only) near the skull base, or None when this case has none."""
    if rng.random() < 0.25:
        return None
    x, y, z = anat.model_xyz
    gain = np.ones(anat.grid.shape, np.float32)
    diff = np.ones_like(gain)
    for c in _SUSCEPTIBILITY_SITES:
        if rng.random() < 0.5:
            continue
        sigma = np.float32(rng.uniform(6.0, 14.0))
        amp = float(rng.uniform(0.4, 1.5)) if rng.random() < 0.75 else -float(rng.uniform(0.3, 0.7))
        centre = np.array([c[0] * rng.uniform(0.9, 1.1), c[1], c[2] + rng.uniform(-8, 8)], np.float32)
        p = anat.params
        box = model_index_box(anat.grid, p.scale, p.deform_mm, centre - 3 * sigma, centre + 3 * sigma)
        d2 = (x[box] - centre[0]) ** 2 + (y[box] - centre[1]) ** 2 + (z[box] - centre[2]) ** 2
        bump = np.exp(-d2 / (2.0 * sigma * sigma))
        gain[box] *= 1.0 + np.float32(amp) * bump
        diff[box] *= 1.0 + np.float32(rng.uniform(-0.12, 0.12)) * bump
    return gain, diff
