"""Brain mask on the DWI grid, for skull-stripped and for whole-head scans.

Normalisation statistics and post-processing must only see brain. Public data sets (ISLES) are skull-stripped: the
brain is simply where the scan is not exactly zero. Clinical scans are not: there the brain is the bright object of a
high-b DWI (skull and air are dark, scalp fat is suppressed), separated from the scalp and eyes by a morphological
opening. All radii are in millimetres so the same code works for 0.9 mm and 5 mm voxels.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import GeometryError, InvalidImageError
from .geometry import same_grid

#: An image with at least this fraction of exact zeros is treated as skull-stripped (ISLES: ~80%; whole-head: ~1%).
STRIPPED_ZERO_FRACTION = 0.3
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


def is_skull_stripped(image: sitk.Image) -> bool:
    """A skull-stripped scan is zero wherever the brain is not, so most of its box is exactly zero."""
    return zero_fraction(image) >= STRIPPED_ZERO_FRACTION


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


def _stripped_mask(dwi: sitk.Image, adc: sitk.Image | None) -> np.ndarray:
    mask = sitk.GetArrayViewFromImage(dwi) != 0
    if adc is not None and is_skull_stripped(adc):
        mask = mask | (sitk.GetArrayViewFromImage(adc) != 0)
    return _fill_holes(_drop_small_islands(mask))


def _whole_head_mask(dwi: sitk.Image) -> np.ndarray:
    image = sitk.Cast(dwi, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    # Clip the brightest voxels (eyes, fat, hyperintense lesions) so they do not drag the Otsu threshold up.
    high = float(np.percentile(values, 99.5))
    image = sitk.Clamp(image, sitk.sitkFloat32, float(values.min()), high)
    image = sitk.SmoothingRecursiveGaussian(image, SMOOTHING_SIGMA_MM)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    foreground = otsu.Execute(image)
    opened = sitk.BinaryMorphologicalOpening(foreground, _radius(foreground, OPENING_RADIUS_MM))
    mask = sitk.GetArrayFromImage(opened).astype(bool)
    if not mask.any():  # a tiny or very thin scan: the opening removed everything, so go without it
        mask = sitk.GetArrayFromImage(foreground).astype(bool)
    mask = _fill_holes(_largest_component(mask))
    closed = sitk.GetImageFromArray(mask.astype(np.uint8))
    closed.CopyInformation(dwi)
    closed = sitk.BinaryMorphologicalClosing(closed, _radius(closed, CLOSING_RADIUS_MM))
    return _fill_holes(sitk.GetArrayFromImage(closed).astype(bool))


def compute_brain_mask(dwi: sitk.Image, adc: sitk.Image | None = None) -> sitk.Image:
    """A uint8 {0, 1} brain mask on exactly the DWI grid.

    Skull-stripped input (many exact zeros): the non-zero voxels of the DWI (or of a stripped ADC on the same grid),
    without stray islands, holes filled. Whole-head input: Otsu threshold of the smoothed DWI, opening, largest
    connected component, hole filling per slice and in 3-D, closing. ``adc`` must already be on the DWI grid.
    """
    if dwi.GetDimension() != 3:
        raise InvalidImageError(f"The brain mask needs a 3-D DWI, got {dwi.GetDimension()}-D.")
    if adc is not None and not same_grid(adc, dwi):
        raise GeometryError("The ADC given to the brain mask is not on the DWI grid; align it first.")
    if is_skull_stripped(dwi):
        mask = _stripped_mask(dwi, adc)
    else:
        mask = _whole_head_mask(dwi)
    if not mask.any():
        raise InvalidImageError("No brain could be found in the DWI: the brain mask is empty.")
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(dwi)
    return image
