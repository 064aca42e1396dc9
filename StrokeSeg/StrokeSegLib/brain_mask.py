"""Brain mask on the DWI grid, for skull-stripped and for whole-head scans.

Normalisation statistics and post-processing must only see brain. Public data sets (ISLES) are skull-stripped: the
brain is simply where the scan is not exactly zero. Clinical scans are not: there the brain is the bright object of a
high-b DWI (skull and air are dark), separated from scalp and eyes by a morphological opening. Many exact zeros alone
do not prove skull stripping (some scanners zero the background around a whole head), so a zero-masked scan is only
taken as stripped when the brain reaches the surface of its non-zero region. All radii are in millimetres so the
same code works for 0.9 mm and 5 mm voxels.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import GeometryError, InvalidImageError
from .geometry import same_grid

#: Below this fraction of exact zeros a scan is a whole head (ISLES: ~80% zeros; clinical whole head: ~1%).
STRIPPED_ZERO_FRACTION = 0.3
#: A zero-masked scan counts as skull-stripped when its thresholded brain lies at most this deep (mm) under the
#: surface of the non-zero region (measured: ISLES 2.0-2.8 mm; whole heads with scalp and skull: 5 mm and more).
STRIPPED_OUTER_LAYER_MM = 4.0
#: Gaussian smoothing before thresholding a whole-head DWI, in mm: suppresses noise without eroding the cortex.
SMOOTHING_SIGMA_MM = 2.0
#: Opening radius in mm: breaks thin bridges between brain and scalp, eyes or neck.
OPENING_RADIUS_MM = 3.0
#: Closing radius in mm: smooths the outline and refills sulci and dark CSF at the surface.
CLOSING_RADIUS_MM = 4.0
#: In a skull-stripped mask, islands smaller than this fraction of the whole are stray voxels, not brain.
MIN_ISLAND_FRACTION = 0.01


def zero_fraction(image: sitk.Image) -> float:
    """Fraction of voxels that are exactly zero (``-0.0`` included)."""
    return float(np.mean(sitk.GetArrayViewFromImage(image) == 0))


def _radius(image: sitk.Image, mm: float) -> list[int]:
    """A structuring-element radius in voxels per axis for a physical radius (0 where the voxel is thicker)."""
    return [int(max(0, round(mm / s))) for s in image.GetSpacing()]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice (ventricles open to a slice edge in 3-D are still closed in-plane) and in 3-D."""
    filled = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    return ndimage.binary_fill_holes(filled)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _drop_small_islands(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= MIN_ISLAND_FRACTION * sizes.sum()
    keep[0] = False
    return keep[labels]


def _non_zero_mask(dwi: sitk.Image, adc: sitk.Image | None) -> np.ndarray:
    """Non-zero voxels of the DWI (and of the ADC when it is zero-masked too), without specks, holes filled."""
    mask = sitk.GetArrayViewFromImage(dwi) != 0
    if adc is not None and zero_fraction(adc) >= STRIPPED_ZERO_FRACTION:
        mask = mask | (sitk.GetArrayViewFromImage(adc) != 0)
    return _fill_holes(_drop_small_islands(mask))


def _whole_head_mask(dwi: sitk.Image) -> np.ndarray:
    """Otsu threshold of the smoothed DWI among its non-zero voxels, opening, largest component, holes, closing."""
    image = sitk.Cast(dwi, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    non_zero = values != 0
    if not non_zero.any():
        return non_zero
    # Clip the brightest voxels (eyes, fat, hyperintense lesions) so they do not drag the Otsu threshold up.
    high = float(np.percentile(values[non_zero], 99.5))
    image = sitk.Clamp(image, sitk.sitkFloat32, float(values.min()), high)
    smooth = sitk.SmoothingRecursiveGaussian(image, SMOOTHING_SIGMA_MM)
    # Zeroed background (scanner masking) must not count as a class of its own, so Otsu sees non-zero voxels only.
    support = sitk.GetImageFromArray(non_zero.astype(np.uint8))
    support.CopyInformation(dwi)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.SetMaskValue(1)
    otsu.Execute(smooth, support)
    foreground = sitk.Cast(smooth > otsu.GetThreshold(), sitk.sitkUInt8) * support
    opened = sitk.BinaryMorphologicalOpening(foreground, _radius(foreground, OPENING_RADIUS_MM))
    mask = sitk.GetArrayFromImage(opened).astype(bool)
    if not mask.any():  # a tiny or very thin scan: the opening removed everything, so go without it
        mask = sitk.GetArrayFromImage(foreground).astype(bool)
    if not mask.any():
        return mask
    mask = _fill_holes(_largest_component(mask))
    closed = sitk.GetImageFromArray(mask.astype(np.uint8))
    closed.CopyInformation(dwi)
    closed = sitk.BinaryMorphologicalClosing(closed, _radius(closed, CLOSING_RADIUS_MM))
    return _fill_holes(sitk.GetArrayFromImage(closed).astype(bool))


def _outer_layer_mm(non_zero: np.ndarray, brain: np.ndarray, spacing_zyx: tuple[float, ...]) -> float:
    """How deep (mm) the thresholded brain lies under the surface of the non-zero region: the 25th percentile over
    surface voxels of their distance to the brain. ~0-3 mm when the non-zero region is the brain (skull-stripped),
    the scalp-and-skull thickness (>5 mm) when it is a whole head on a zeroed background."""
    if not brain.any():
        return float("inf")
    depth = ndimage.distance_transform_edt(non_zero, sampling=spacing_zyx)
    surface = non_zero & (depth <= max(spacing_zyx) + 1e-6)
    distance = ndimage.distance_transform_edt(~brain, sampling=spacing_zyx)
    return float(np.percentile(distance[surface], 25))


def _brain(dwi: sitk.Image, adc: sitk.Image | None) -> tuple[np.ndarray, bool]:
    """The brain mask array and whether the DWI was judged skull-stripped."""
    whole_head = _whole_head_mask(dwi)
    if zero_fraction(dwi) < STRIPPED_ZERO_FRACTION:
        return whole_head, False
    non_zero = _non_zero_mask(dwi, adc)
    # Many zeros: either skull-stripped, or a whole head whose background the scanner zeroed. Only in the first case
    # does the brain reach the surface of the non-zero region.
    if _outer_layer_mm(non_zero, whole_head, dwi.GetSpacing()[::-1]) <= STRIPPED_OUTER_LAYER_MM:
        return non_zero, True
    return whole_head, False


def is_skull_stripped(dwi: sitk.Image) -> bool:
    """True when the DWI is zero wherever the brain is not: many exact zeros, and the non-zero region is the brain
    itself rather than a whole head (scalp and skull) on a zeroed background."""
    return _brain(dwi, None)[1]


def compute_brain_mask(dwi: sitk.Image, adc: sitk.Image | None = None) -> sitk.Image:
    """A uint8 {0, 1} brain mask on exactly the DWI grid.

    Whole-head input: Otsu threshold of the smoothed DWI among non-zero voxels, opening, largest connected component,
    hole filling per slice and in 3-D, closing. Skull-stripped input (many exact zeros, and the brain reaches the
    surface of the non-zero region): the non-zero voxels of the DWI (or of a zero-masked ADC on the same grid),
    without stray islands, holes filled. ``adc`` must already be on the DWI grid.
    """
    if dwi.GetDimension() != 3:
        raise InvalidImageError(f"The brain mask needs a 3-D DWI, got {dwi.GetDimension()}-D.")
    if adc is not None and not same_grid(adc, dwi):
        raise GeometryError("The ADC given to the brain mask is not on the DWI grid; align it first.")
    mask, _ = _brain(dwi, adc)
    if not mask.any():
        raise InvalidImageError("No brain could be found in the DWI: the brain mask is empty.")
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(dwi)
    return image
