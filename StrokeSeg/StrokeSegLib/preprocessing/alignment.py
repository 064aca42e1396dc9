"""Bring the ADC onto the DWI grid: untouched when it already is, resampled in physical space when the grids differ,
rigidly registered when the headers alone do not make the two overlap.

DWI is the reference because the result is delivered on the DWI grid. DWI and ADC normally come from one acquisition
and share a grid (ISLES always does); a different grid is still the same scanner frame, so resampling through physical
space is right; only when the ADC's box misses part of the DWI's anatomy (another series, an exported crop, a wrong
header) do we estimate a rigid transform with Mattes mutual information, which copes with the opposite DWI/ADC
contrast, and keep it only if it matches better than the headers did.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from ..common.errors import AlignmentWarning, GeometryError, InvalidImageError
from ..common.geometry import overlap_fraction, resample_to_grid, same_grid

#: Below this fraction of the DWI's anatomy covered by the ADC's box, automatic mode registers instead of trusting
#: the headers.
POOR_OVERLAP = 0.9
#: Fixed seed of the metric's random sampling, so the same input always gives the same transform.
REGISTRATION_SEED = 20220
#: Fraction of (masked) voxels the metric samples; enough for a stable MI estimate, small enough to be fast.
SAMPLING_FRACTION = 0.12

#: NMI may drop this much after registering already aligned images (interpolation noise) before we call the
#: registration a failure.
SIMILARITY_SLACK = 0.005

Method = Literal["identity", "resample", "rigid"]


@dataclass
class AlignmentResult:
    """The moving image on the reference grid and how it got there.

    ``transform`` maps reference points to moving points (ITK's convention; None unless registered), ``metric`` is
    the final Mattes MI value of the registration (lower is better; None unless registered), ``overlap`` the
    fraction of the reference box covered by the moving image before alignment, and ``similarity`` the normalised
    mutual information (1 = independent, 2 = identical) between reference and aligned image where both have data.
    """

    image: sitk.Image
    method: Method
    transform: sitk.Transform | None
    metric: float | None
    overlap: float
    similarity: float | None = None


def normalized_mutual_information(a: sitk.Image, b: sitk.Image, bins: int = 32) -> float:
    """Studholme's NMI (H(A) + H(B)) / H(A, B) over voxels non-zero in both images on one grid: a contrast-independent
    figure of how well two modalities line up, comparable before and after registration."""
    x = sitk.GetArrayViewFromImage(a).ravel()
    y = sitk.GetArrayViewFromImage(b).ravel()
    both = (x != 0) & (y != 0) & np.isfinite(x) & np.isfinite(y)
    if both.sum() < 100:
        return float("nan")
    x, y = x[both].astype(np.float64), y[both].astype(np.float64)
    # Robust ranges: a few extreme voxels must not squash everything into one bin.
    xr = np.percentile(x, [0.5, 99.5])
    yr = np.percentile(y, [0.5, 99.5])
    if xr[1] <= xr[0] or yr[1] <= yr[0]:
        return float("nan")
    joint, _, _ = np.histogram2d(np.clip(x, *xr), np.clip(y, *yr), bins=bins, range=[xr, yr])
    p = joint / joint.sum()

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (entropy(p.sum(axis=1)) + entropy(p.sum(axis=0))) / entropy(p.ravel())


def _start_transforms(fixed: sitk.Image, moving: sitk.Image) -> list[sitk.Euler3DTransform]:
    """Candidate starts: headers as they are (centred on the fixed image), geometric centres, centres of mass."""
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()])
    as_is = sitk.Euler3DTransform()
    as_is.SetCenter(centre)
    starts = [as_is]
    for mode in (sitk.CenteredTransformInitializerFilter.GEOMETRY, sitk.CenteredTransformInitializerFilter.MOMENTS):
        try:
            start = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode)
            starts.append(sitk.Euler3DTransform(start))
        except RuntimeError:  # e.g. moments of an image with no mass; the other starts remain
            continue
    return starts


def _registration_method(fixed_mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_FRACTION, REGISTRATION_SEED)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    # Gradients from the interpolator, not from a precomputed gradient image: the latter pointed uphill on a real
    # whole-head scan with flipped (-1, -1, 1) axes and 5 mm slices, sending the optimiser away from the optimum.
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                   relaxationFactor=0.7, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def foreground(image: sitk.Image) -> sitk.Image | None:
    """Where an image shows anatomy: its non-zero voxels when it is mostly zero (skull-stripped or zero-masked),
    else above Otsu's threshold (the head, not the noisy air). None when there is almost no signal."""
    array = sitk.GetArrayViewFromImage(image)
    if np.count_nonzero(array) < 1000:
        return None
    if np.mean(array == 0) > 0.3:
        return sitk.Cast(image != 0, sitk.sitkUInt8)
    return sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1)


def _head_mask(fixed: sitk.Image) -> sitk.Image | None:
    """The reference's anatomy grown by 6 mm: MI then samples the head and its outline rather than empty air, which
    keeps the estimate stable with few samples."""
    mask = foreground(fixed)
    if mask is None:
        return None
    radius = [int(max(1, round(6.0 / s))) for s in fixed.GetSpacing()]
    return sitk.BinaryDilate(mask, radius)


def register_rigid(moving: sitk.Image, reference: sitk.Image) -> tuple[sitk.Euler3DTransform, float]:
    """Rigid transform (reference -> moving points) maximising Mattes MI, and the final metric value.

    Two resolution levels, 12% random samples with a fixed seed, the best of three starting positions; a few seconds
    for a 112x112x73 volume on one core.
    """
    fixed = sitk.Cast(reference, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    mask = _head_mask(fixed)
    probe = _registration_method(mask)
    best, best_value = None, math.inf
    for start in _start_transforms(fixed, moving):
        probe.SetInitialTransform(start, inPlace=False)
        try:
            value = probe.MetricEvaluate(fixed, moving)
        except RuntimeError:  # too few samples overlap at this start
            continue
        if value < best_value:
            best, best_value = start, value
    if best is None:
        raise GeometryError("Rigid registration found no starting position where the images overlap.")
    method = _registration_method(mask)
    transform = sitk.Euler3DTransform(best)
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    return transform, float(method.GetMetricValue())


def _name(path: str | Path | None, role: str) -> str:
    return f"{role} {path}" if path is not None else f"the {role}"


def align_to_reference(moving: sitk.Image, reference: sitk.Image, register: bool | None = None,
                       moving_path: str | Path | None = None,
                       reference_path: str | Path | None = None) -> AlignmentResult:
    """Put ``moving`` (ADC) on the grid of ``reference`` (DWI).

    Same grid within tolerance and ``register`` not True: returned untouched (the same object), method "identity".
    Otherwise linear resampling through physical space ("resample"), preceded by a rigid Mattes-MI registration
    ("rigid") when ``register`` is True, or when it is None and the moving image's box covers less than 90% of the
    reference's anatomy; automatic registration emits an :class:`AlignmentWarning`, and so does a registration that
    matches worse than the headers (its result is then discarded for the plain resampling). No overlap at all is a
    GeometryError naming both files.
    """
    for image, role, path in ((moving, "ADC", moving_path), (reference, "DWI", reference_path)):
        if image.GetDimension() != 3:
            raise InvalidImageError(f"{_name(path, role)} is {image.GetDimension()}-D; a 3-D volume is needed.")
    overlap = overlap_fraction(moving, reference)
    if overlap == 0.0:
        raise GeometryError(
            f"{_name(moving_path, 'ADC')} and {_name(reference_path, 'DWI')} do not overlap in physical space: "
            f"their origins, spacings or directions describe different places. Check that both come from the same "
            f"scan session and that the files were exported with their geometry.")
    if register is not True and same_grid(moving, reference):
        return AlignmentResult(moving, "identity", None, None, overlap)
    header_aligned = resample_to_grid(moving, reference, "linear")
    before = normalized_mutual_information(reference, header_aligned)
    resampled = AlignmentResult(header_aligned, "resample", None, None, overlap, before)
    # "Poor overlap" is judged on the reference's anatomy, not its box: on a small field of view a shift of a few mm
    # uncovers 10% of the box but none of the head, and the headers (one scanner frame) are then right.
    anatomy = overlap_fraction(moving, reference, within=foreground(reference))
    automatic = register is None and anatomy < POOR_OVERLAP
    if not (register is True or automatic):
        return resampled
    try:
        transform, metric = register_rigid(moving, reference)
    except RuntimeError as error:  # ITK gives up, e.g. when too few samples fall inside the moving image
        warnings.warn(f"Rigid registration of {_name(moving_path, 'ADC')} to {_name(reference_path, 'DWI')} failed "
                      f"({str(error).strip().splitlines()[-1]}); the header geometry is used.", AlignmentWarning,
                      stacklevel=2)
        return resampled
    aligned = resample_to_grid(moving, reference, "linear", transform=transform)
    similarity = normalized_mutual_information(reference, aligned)
    rotation_deg = math.degrees(max(abs(a) for a in transform.GetParameters()[:3]))
    shift_mm = float(np.linalg.norm(transform.GetParameters()[3:]))
    worse = not (np.isfinite(before) and np.isfinite(similarity) and similarity >= before - SIMILARITY_SLACK)
    why = (f"covered only {anatomy:.0%} of the anatomy of {_name(reference_path, 'DWI')} by its header geometry, "
           "so it was " if automatic else "was, as requested, ")
    figures = (f"rotation up to {rotation_deg:.1f} deg, shift {shift_mm:.1f} mm, Mattes MI {metric:.3f}, "
               f"NMI {before:.3f} -> {similarity:.3f}")
    if worse:
        # A registration that lowers the similarity has failed (too little anatomy, too few samples); the headers
        # are then the better guess, and the user is told.
        warnings.warn(f"{_name(moving_path, 'ADC')} {why}rigidly registered, but the result ({figures}) matched "
                      "worse than the header geometry, which is used instead; check the alignment.",
                      AlignmentWarning, stacklevel=2)
        return resampled
    if automatic:
        warnings.warn(f"{_name(moving_path, 'ADC')} {why}rigidly registered ({figures}).", AlignmentWarning,
                      stacklevel=2)
    return AlignmentResult(aligned, "rigid", transform, metric, overlap, similarity)


def describe(result: AlignmentResult) -> dict:
    """A JSON-serialisable summary for reports: method, overlap, metric, similarity, transform parameters."""
    summary: dict = {"method": result.method, "overlap": round(result.overlap, 4)}
    if result.metric is not None:
        summary["metric"] = result.metric
    if result.similarity is not None and np.isfinite(result.similarity):
        summary["similarity_nmi"] = result.similarity
    if result.transform is not None:
        summary["transform"] = {"type": result.transform.GetName(),
                                "parameters": list(result.transform.GetParameters()),
                                "fixed_parameters": list(result.transform.GetFixedParameters())}
    return summary
