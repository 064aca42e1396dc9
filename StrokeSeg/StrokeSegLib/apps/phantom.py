"""A small, fast, deterministic synthetic DWI/ADC/lesion case for tests and the demo.

The anatomy is a continuous phantom defined in physical (LPS, mm) space and sampled at each grid's voxel centres, so
a DWI and an ADC on different grids (``adc_shift_mm``, ``adc_spacing``) still show the same anatomy at the same
physical place, exactly what geometry code has to get right. It is not meant to look real (the training generator
does that); it has the contrasts that matter: lesion bright on DWI and dark on ADC, CSF dark on DWI and bright on ADC.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.cases import Case
from ..io.imageio import write_image

B_VALUE = 1000.0  # s/mm²

# (S0, ADC in mm²/s) per tissue; DWI = S0 * exp(-b * ADC).
WHITE_MATTER = (700.0, 0.75e-3)
GREY_MATTER = (900.0, 0.85e-3)
CSF = (1500.0, 3.0e-3)
LESION = (1000.0, 0.45e-3)
SCALP = (800.0, 0.3e-3)  # fat: bright on b=1000 DWI when fat suppression is imperfect, as in non-stripped scans
BONE = (60.0, 0.5e-3)

# Ellipsoid radii (normalised: 1 = brain surface) of the head's shells when ``skull=True``.
_CSF_RIM, _BONE_OUTER, _SCALP_OUTER = 1.05, 1.12, 1.2
_WM_RADIUS = 0.7
_VENTRICLES = (((-0.17, 0.05, 0.05), (0.11, 0.3, 0.22)), ((0.17, 0.05, 0.05), (0.11, 0.3, 0.22)))


@dataclass(frozen=True)
class SyntheticCase:
    """DWI and ADC (float32), the lesion mask (uint8, DWI grid) and the true brain mask (uint8, DWI grid).

    ``adc_unit_mm2s`` is what one unit of the ADC image is worth in mm²/s (1e-3 means values like 0.8).
    """

    dwi: sitk.Image
    adc: sitk.Image
    mask: sitk.Image
    brain_mask: sitk.Image | None = None
    adc_unit_mm2s: float = 1e-3


def adc_unit_in_mm2s(adc_units: float) -> float:
    """Size of one stored ADC unit in mm²/s; accepts the unit (1e-3, 1e-6) or its multiplier (1e3, 1e6) alike.

    ``1e-3`` and ``1e3`` both mean "values in 10⁻³ mm²/s" (tissue ≈ 0.8), ``1`` means mm²/s (≈ 0.0008), ``1e-6`` and
    ``1e6`` mean 10⁻⁶ mm²/s (≈ 800). Accepting both spellings removes a silent factor-10⁶ mistake.
    """
    if not np.isfinite(adc_units) or adc_units <= 0:
        raise ValueError(f"adc_units must be a positive number, got {adc_units!r}")
    return float(adc_units) if adc_units <= 1 else 1.0 / float(adc_units)


def _rotation(oblique: bool) -> np.ndarray:
    """Direction matrix: ~20° about z then ~10° about x, a realistic oblique slice prescription."""
    if not oblique:
        return np.eye(3)
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _make_grid(size: Sequence[int] | np.ndarray, spacing: Sequence[float] | np.ndarray, origin: np.ndarray,
               direction: np.ndarray) -> sitk.Image:
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection(direction.ravel().tolist())
    return image


def _physical_points(grid: sitk.Image) -> np.ndarray:
    """Physical coordinates (z, y, x, 3) of every voxel centre: origin + D @ (spacing * index)."""
    size = grid.GetSize()
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(np.float64) * np.asarray(grid.GetSpacing())
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    return index @ direction.T + np.asarray(grid.GetOrigin())


@dataclass(frozen=True)
class _Phantom:
    """The continuous anatomy: centre and axes of the brain ellipsoid, and the lesion, all in physical mm."""

    centre: np.ndarray
    axes: np.ndarray  # rotation: columns are the head's x, y, z axes in LPS
    semi_axes: np.ndarray  # brain radii in mm along those axes
    lesion_centre: np.ndarray | None  # normalised head coordinates
    lesion_radii: np.ndarray | None  # mm

    def sample(self, points: np.ndarray, skull: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """S0, ADC (mm²/s), lesion and brain masks at physical ``points`` (..., 3)."""
        local_mm = (points - self.centre) @ self.axes  # coordinates along the head axes
        q = local_mm / self.semi_axes
        r = np.linalg.norm(q, axis=-1)
        s0 = np.zeros(r.shape)
        adc = np.zeros(r.shape)

        def paint(region: np.ndarray, tissue: tuple[float, float]) -> None:
            s0[region], adc[region] = tissue

        brain = r < 1.0
        if skull:
            paint((r >= 1.0) & (r < _CSF_RIM), CSF)
            paint((r >= _CSF_RIM) & (r < _BONE_OUTER), BONE)
            paint((r >= _BONE_OUTER) & (r < _SCALP_OUTER), SCALP)
        paint(brain, GREY_MATTER)
        paint(r < _WM_RADIUS, WHITE_MATTER)
        for centre, radii in _VENTRICLES:
            paint(np.linalg.norm((q - centre) / radii, axis=-1) < 1.0, CSF)
        lesion = np.zeros(r.shape, bool)
        if self.lesion_centre is not None and self.lesion_radii is not None:
            offset_mm = local_mm - self.lesion_centre * self.semi_axes
            lesion = brain & (np.linalg.norm(offset_mm / self.lesion_radii, axis=-1) < 1.0)
            paint(lesion, LESION)
        return s0, adc, lesion, brain


def _phantom(grid: sitk.Image, rng: np.random.Generator, lesion: bool) -> _Phantom:
    """Brain centred in ``grid`` and filling ~70% of it (room for the skull), a random lesion away from ventricles."""
    size = np.asarray(grid.GetSize(), float)
    spacing = np.asarray(grid.GetSpacing())
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    centre = np.asarray(grid.GetOrigin()) + direction @ ((size - 1) / 2 * spacing)
    semi_axes = size * spacing * np.array([0.36, 0.4, 0.36]) * rng.uniform(0.95, 1.0, 3)
    lesion_centre = lesion_radii = None
    if lesion:
        for _ in range(100):
            candidate = rng.uniform(-1, 1, 3) * np.array([0.55, 0.6, 0.45])
            away = all(np.linalg.norm((candidate - c) / (np.asarray(r) + 0.12)) > 1.0 for c, r in _VENTRICLES)
            if np.linalg.norm(candidate) < 0.7 and away:
                break
        lesion_centre = candidate
        # At least ~2.5 voxels across along every axis, so the lesion survives any slice thickness.
        lesion_radii = np.maximum(rng.uniform(6.0, 13.0, 3), 1.3 * spacing)
    return _Phantom(centre, direction, semi_axes, lesion_centre, lesion_radii)


def _image_like(grid: sitk.Image, array: np.ndarray, pixel: type) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(pixel))
    image.CopyInformation(grid)
    return image


def make_synthetic_case(
    seed: int = 0,
    size: Sequence[int] = (64, 64, 40),
    spacing: Sequence[float] = (1.5, 1.5, 3.0),
    oblique: bool = True,
    adc_units: float = 1e-3,
    adc_shift_mm: Sequence[float] | None = None,
    skull: bool = False,
    lesion: bool = True,
    adc_spacing: Sequence[float] | None = None,
) -> SyntheticCase:
    """A deterministic case; ``size``/``spacing`` are (x, y, z) in SimpleITK order.

    ``adc_units``: see :func:`adc_unit_in_mm2s` (default: ADC values in 10⁻³ mm²/s, like ISLES case 0009).
    ``adc_shift_mm``: the ADC grid's origin moved by this physical vector (and ``adc_spacing`` if given), sampled
    from the same phantom so the anatomy matches in physical space. ``skull``: add CSF rim, bone and a bright scalp,
    zero outside the head. Without skull the images are "skull-stripped": zero outside the brain.
    """
    rng = np.random.default_rng(seed)
    direction = _rotation(oblique)
    extent = (np.asarray(size, float) - 1) * np.asarray(spacing, float)
    head_centre = np.array([12.5, -18.25, 31.75]) if oblique else np.zeros(3)
    dwi_grid = _make_grid(size, spacing, head_centre - direction @ (extent / 2), direction)
    phantom = _phantom(dwi_grid, rng, lesion)

    s0, adc_true, lesion_mask, brain = phantom.sample(_physical_points(dwi_grid), skull)
    head = s0 > 0
    signal = s0 * np.exp(-B_VALUE * adc_true)
    noise_sigma = 0.03 * GREY_MATTER[0] * np.exp(-B_VALUE * GREY_MATTER[1])
    noisy = np.hypot(signal + rng.normal(0, noise_sigma, signal.shape), rng.normal(0, noise_sigma, signal.shape))
    dwi = _image_like(dwi_grid, np.where(head, noisy, 0.0), np.float32)

    if adc_shift_mm is None and adc_spacing is None:
        adc_grid, adc_values, adc_head = dwi_grid, adc_true, head
    else:
        adc_spacing_arr = np.asarray(adc_spacing if adc_spacing is not None else spacing, float)
        adc_size = np.ceil(np.asarray(size) * np.asarray(spacing) / adc_spacing_arr).astype(int)
        shift = np.zeros(3) if adc_shift_mm is None else np.asarray(adc_shift_mm, float)
        adc_grid = _make_grid(adc_size, adc_spacing_arr, np.asarray(dwi_grid.GetOrigin()) + shift, direction)
        adc_s0, adc_values, _, _ = phantom.sample(_physical_points(adc_grid), skull)
        adc_head = adc_s0 > 0
    unit = adc_unit_in_mm2s(adc_units)
    adc_noisy = np.clip(adc_values + rng.normal(0, 0.03e-3, adc_values.shape), 0.0, None)
    adc = _image_like(adc_grid, np.where(adc_head, adc_noisy, 0.0) / unit, np.float32)

    return SyntheticCase(
        dwi=dwi,
        adc=adc,
        mask=_image_like(dwi_grid, lesion_mask, np.uint8),
        brain_mask=_image_like(dwi_grid, brain, np.uint8),
        adc_unit_mm2s=unit,
    )


def write_synthetic_case(case: SyntheticCase, root: str | Path, case_id: str, layout: str = "zenodo") -> Case:
    """Write ``case`` into an ISLES 2022 tree under ``root`` and return its :class:`~StrokeSegLib.io.cases.Case`.

    ``case_id`` is ``sub-X_ses-Y`` (``_ses-0001`` is added when missing); ``layout`` is "zenodo" or
    "grand-challenge" (see :data:`StrokeSegLib.io.cases.EXPECTED_LAYOUTS`).
    """
    if "_" not in case_id:
        case_id = f"{case_id}_ses-0001"
    subject, session = case_id.split("_", 1)
    if not subject.startswith("sub-") or not session.startswith("ses-"):
        raise ValueError(f"case_id must look like 'sub-X_ses-Y', got {case_id!r}")
    root = Path(root)
    if layout == "zenodo":
        folder = root / subject / session / "dwi"
    elif layout == "grand-challenge":
        folder = root / "rawdata" / subject / session
    else:
        raise ValueError(f"layout must be 'zenodo' or 'grand-challenge', got {layout!r}")
    dwi = write_image(case.dwi, folder / f"{case_id}_dwi.nii.gz")
    adc = write_image(case.adc, folder / f"{case_id}_adc.nii.gz")
    mask = write_image(case.mask, root / "derivatives" / subject / session / f"{case_id}_msk.nii.gz")
    return Case(case_id, dwi, adc, mask)
