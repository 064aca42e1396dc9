"""Acquisition: from fine-grid signals to the stored DWI, ADC and mask on the scanner grid.

Partial volume is made by supersampling: each stored voxel is the mean of k_i x k_j x k_k sub-samples (about 1 mm
apart) of the fine signals, i.e. a box slice profile, so a 5 mm slice really averages 5 mm of anatomy. Then come the
scanner's arbitrary intensity scale, Rician noise on both the b=0 and the b images, optional reconstruction blur,
ADC = ln(S0/S_b)/b, skull stripping (ISLES-like: zero outside the brain) or not (noisy background, negative ADC
values where noise dominates, as real unstripped maps have), and storage in one of the ADC unit conventions and dtypes
found in the wild.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .eddy import EddyMisregistration
from .fields import AxisGrid
from .geometry import ScanGeometry
from .mri_physics import adc_from_signals

#: ADC unit conventions: scale such that stored value * scale = mm^2/s, with the dtypes used for each.
ADC_UNITS = {1.0: ("mm2/s", ("float32", "float64")), 1e-3: ("1e-3 mm2/s", ("float32", "float64")),
             1e-6: ("1e-6 mm2/s", ("int16", "float32"))}


@dataclass(frozen=True)
class AcquisitionParams:
    """How one case is acquired and stored."""

    snr: float                 # white-matter DWI signal / noise standard deviation
    dwi_level: float           # stored value of white-matter DWI (scanner units)
    blur_vox: float            # in-plane Gaussian blur (voxels) of reconstruction / interpolation
    stripped: bool
    strip_threshold: float     # intracranial fraction kept by the skull stripping
    adc_units: float
    adc_dtype: str
    dwi_dtype: str
    mask_dtype: str
    adc_max: float | None      # mm^2/s clip of the scanner's ADC map
    keep_negative_adc: bool    # unstripped maps of some scanners keep ln(S0/Sb) < 0 in the background
    background_cut: float | None  # ADC set to 0 where S0 < this fraction of white matter S0


def sample_acquisition(rng: np.random.Generator, p_stripped: float = 0.6) -> AcquisitionParams:
    """Draw noise, scale and storage conventions; ``p_stripped`` of the cases are skull-stripped like ISLES."""
    units = float(rng.choice(list(ADC_UNITS)))
    dtypes = ADC_UNITS[units][1]
    adc_dtype = dtypes[0] if rng.random() < 0.7 else dtypes[1]
    stripped = bool(rng.random() < p_stripped)
    return AcquisitionParams(
        snr=float(np.exp(rng.uniform(np.log(8.0), np.log(45.0)))),
        dwi_level=float(np.exp(rng.uniform(np.log(60.0), np.log(1500.0)))),
        blur_vox=float(rng.uniform(0.0, 0.8)) if rng.random() < 0.6 else 0.0,
        stripped=stripped,
        strip_threshold=float(rng.uniform(0.3, 0.7)),
        adc_units=units, adc_dtype=adc_dtype,
        dwi_dtype=str(rng.choice(["float32", "float64", "int16"], p=[0.45, 0.2, 0.35])),
        mask_dtype=str(rng.choice(["uint8", "uint16"])),
        adc_max=float(rng.uniform(3.5e-3, 5.0e-3)) if rng.random() < 0.7 else None,
        keep_negative_adc=bool(not stripped and rng.random() < 0.4),
        background_cut=float(rng.uniform(0.05, 0.2)) if (not stripped and rng.random() < 0.4) else None,
    )


def supersampling_factors(spacing: tuple[float, float, float], fine_mm: float) -> tuple[int, int, int]:
    """Sub-samples per stored voxel along i, j, k: about ``fine_mm`` apart, at least one."""
    return tuple(max(1, int(round(s / fine_mm))) for s in spacing)  # type: ignore[return-value]


def _crop(geom: ScanGeometry, fine: AxisGrid) -> tuple[np.ndarray, np.ndarray]:
    """Index box [lo, hi) (i, j, k) of the stored grid that the fine anatomy grid can reach."""
    lo = np.asarray(fine.origin)
    hi = lo + fine.spacing * (np.asarray(fine.shape[::-1]) - 1)
    cube = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    anat = lo + cube * (hi - lo)
    phys = anat @ geom.head_rotation.T + geom.head_translation
    idx = geom.physical_to_index(phys)
    size = np.asarray(geom.size)
    start = np.clip(np.floor(idx.min(axis=0)) - 1, 0, size).astype(int)
    stop = np.clip(np.ceil(idx.max(axis=0)) + 2, 0, size).astype(int)
    return start, np.maximum(stop, start)


def partial_volume_resample(channels: list[np.ndarray], fine: AxisGrid, geom: ScanGeometry,
                            step_mm: float | None = 1.0, threads: int = 1) -> list[np.ndarray]:
    """Each fine-grid channel onto the stored grid as the mean of its sub-samples (arrays (k, j, i), float32).

    Sub-samples are about ``step_mm`` apart (None: one per voxel, at its centre, for smooth maps). The fine grid's
    physical placement is the head pose; only the part of the stored grid it can reach is computed, the rest is 0.
    """
    size = np.asarray(geom.size)
    out = [np.zeros(size[::-1], np.float32) for _ in channels]
    start, stop = _crop(geom, fine)
    n = stop - start
    if np.any(n == 0):
        return out
    k = np.asarray(supersampling_factors(geom.spacing, step_mm) if step_mm else (1, 1, 1))
    sub_spacing = np.asarray(geom.spacing) / k
    first = start - 0.5 + 0.5 / k  # continuous index of the first sub-sample
    sub_origin = geom.index_to_physical(first)
    if len(channels) == 1:
        src = sitk.GetImageFromArray(np.asarray(channels[0], np.float32))
    else:
        src = sitk.GetImageFromArray(np.stack(channels, axis=-1).astype(np.float32, copy=False), isVector=True)
    src.SetSpacing((fine.spacing,) * 3)
    src.SetOrigin(tuple(float(v) for v in geom.head_rotation @ np.asarray(fine.origin) + geom.head_translation))
    src.SetDirection(tuple(float(v) for v in geom.head_rotation.ravel()))
    f = sitk.ResampleImageFilter()
    f.SetNumberOfThreads(int(threads))
    f.SetSize([int(v) for v in n * k])
    f.SetOutputSpacing([float(v) for v in sub_spacing])
    f.SetOutputOrigin([float(v) for v in sub_origin])
    f.SetOutputDirection(geom.direction)
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(0.0)
    sub = sitk.GetArrayFromImage(f.Execute(src)).reshape(int(n[2] * k[2]), int(n[1] * k[1]), int(n[0] * k[0]), -1)
    if k.prod() > 1:
        sub = sub.reshape(n[2], k[2], n[1], k[1], n[0], k[0], len(channels)).mean(axis=(1, 3, 5), dtype=np.float32)
    box = (slice(start[2], stop[2]), slice(start[1], stop[1]), slice(start[0], stop[0]))
    for c, arr in enumerate(out):
        arr[box] = sub[..., c]
    return out


def _nonzero_subgrid(a: np.ndarray, grid: AxisGrid) -> tuple[np.ndarray, AxisGrid] | None:
    """The bounding box of a sparse fine-grid map (with a 2-voxel margin) as an array and its grid."""
    nz = [np.nonzero(a.any(axis=tuple(d for d in range(3) if d != k)))[0] for k in range(3)]
    if any(len(v) == 0 for v in nz):
        return None
    box = tuple(slice(max(int(v[0]) - 2, 0), min(int(v[-1]) + 3, n)) for v, n in zip(nz, a.shape))
    origin = tuple(o + grid.spacing * b.start for o, b in zip(grid.origin, box[::-1]))
    return a[box], AxisGrid(origin, grid.spacing, a[box].shape)  # type: ignore[arg-type]


def _blur(a: np.ndarray, sigma: float, slice_axis_array: int) -> np.ndarray:
    """In-plane Gaussian blur (not across slices): reconstruction filters and interpolation are in-plane."""
    if sigma <= 0:
        return a
    s = [sigma] * 3
    s[slice_axis_array] = 0.0
    return ndimage.gaussian_filter(a, s, mode="nearest")


def _rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise."""
    re = rng.standard_normal(signal.shape, dtype=np.float32)
    re *= np.float32(sigma)
    re += signal
    im = rng.standard_normal(signal.shape, dtype=np.float32)
    im *= np.float32(sigma)
    re *= re
    im *= im
    re += im
    return np.sqrt(re, out=re)


def _cast(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "int16":
        return np.clip(np.rint(a), -32768, 32767).astype(np.int16)
    return a.astype(dtype)


def _image(a: np.ndarray, geom: ScanGeometry) -> sitk.Image:
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(geom.spacing)
    img.SetOrigin(geom.origin)
    img.SetDirection(geom.direction)
    return img


@dataclass
class AcquiredCase:
    """The stored images and what a test needs to check them."""

    dwi: sitk.Image
    adc: sitk.Image
    mask: sitk.Image
    brain_mask: np.ndarray          # (k, j, i) bool, intracranial region used for stripping (whether applied or not)
    lesion_fraction: np.ndarray     # (k, j, i) partial-volume lesion fraction before thresholding
    wm_dwi_level: float


def acquire(fine: AxisGrid, s0: np.ndarray, sb: np.ndarray, lesion: np.ndarray, icv: np.ndarray,
            geom: ScanGeometry, acq: AcquisitionParams, b_value: float, wm_signal: float, rng: np.random.Generator,
            head: tuple[AxisGrid, np.ndarray, np.ndarray] | None = None, fine_mm: float = 1.0,
            threads: int = 1, eddy: EddyMisregistration | None = None) -> AcquiredCase:
    """Stored DWI, ADC (in ``acq.adc_units``) and lesion mask (partial-volume fraction >= 0.5).

    ``s0``/``sb``/``lesion``/``icv`` live on the brain's ``fine`` grid; ``head`` optionally adds the extracranial
    signals from their own grid; ``eddy`` displaces the b=0 signal relative to the DWI (see ``eddy``).
    """
    s0_t, sb_t = partial_volume_resample([s0, sb], fine, geom, fine_mm, threads)
    if head is not None:  # coarse and smooth: sub-samples as far apart as its own voxels
        h0, hb = partial_volume_resample([head[1], head[2]], head[0], geom, head[0].spacing, threads)
        s0_t += h0
        sb_t += hb
    if eddy is not None:
        s0_t = eddy.apply(s0_t, geom)
    (icv_t,) = partial_volume_resample([icv], fine, geom, None, threads)
    sparse = _nonzero_subgrid(lesion, fine)
    les_t = (partial_volume_resample([sparse[0]], sparse[1], geom, fine_mm, threads)[0] if sparse is not None
             else np.zeros_like(s0_t))
    # Fine signals are relative to white-matter S0 = 1; ``wm_signal`` is white matter's S_b on that scale.
    scale = np.float32(acq.dwi_level / wm_signal)
    sigma = float(acq.dwi_level / acq.snr)
    slice_axis_array = 2 - geom.slice_axis
    s0_n = _blur(_rician(s0_t * scale, sigma, rng), acq.blur_vox, slice_axis_array)
    sb_n = _blur(_rician(sb_t * scale, sigma, rng), acq.blur_vox, slice_axis_array)
    adc = adc_from_signals(s0_n, sb_n, b_value)
    if not acq.keep_negative_adc:
        np.maximum(adc, 0.0, out=adc)
    if acq.adc_max is not None:
        np.minimum(adc, np.float32(acq.adc_max), out=adc)
    if acq.background_cut is not None:
        adc[s0_n < acq.background_cut * float(scale)] = 0.0
    brain = icv_t >= np.float32(acq.strip_threshold)
    if acq.stripped:
        brain = ndimage.binary_fill_holes(brain)
        sb_n = np.where(brain, sb_n, 0.0)
        adc = np.where(brain, adc, 0.0)
    mask = (les_t >= 0.5).astype(acq.mask_dtype)
    dwi = _cast(sb_n, acq.dwi_dtype)
    adc_stored = _cast(adc / np.float32(acq.adc_units), acq.adc_dtype)
    return AcquiredCase(dwi=_image(dwi, geom), adc=_image(adc_stored, geom), mask=_image(mask, geom),
                        brain_mask=brain, lesion_fraction=les_t, wm_dwi_level=float(acq.dwi_level))
