"""Plausibility checks on a DWI + ADC pair before the network sees it: a mistaken input is refused, not measured.

The network gives a plausible-looking lesion volume for almost any pair of images, so ordinary mix-ups (DWI and ADC
swapped, the b=0 image given as DWI, an expert mask given as DWI, another patient's ADC, a negated ADC, NaN holes,
impossible voxel sizes) must be caught here. Each check measures one property that real stroke DWI/ADC pairs share
because of physics or anatomy, compares it with a bound, and on failure raises :class:`ImplausibleInputError` naming
the file and what looks wrong. ``force=True`` (``strokeseg segment --force``, the Logic's ``force``) proceeds and
records every finding in the segmentation report.

Bounds and their margins on the real scans in ``../shared/data`` and on generated cases: ARCHITECTURE.md, section
*Input checks* (measured with ``bench/input_checks_calibration.py``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..common.errors import ImplausibleInputError, ImplausibleInputWarning, NonFiniteVoxelsWarning, StrokeSegError
from ..io.imageio import fill_nonfinite

#: Voxel spacing (mm) an MRI of a human head can have on any axis. ISLES 2022 DWI: 0.88-2 mm in-plane, 2-5 mm slices;
#: clinical stroke DWI protocols: about 0.8-2.5 mm in-plane and 3-7 mm slices (with gap up to about 8 mm).
SPACING_RANGE_MM = (0.2, 12.0)
#: Field of view (size x spacing, mm) along the image's longest axis: a head is about 150-230 mm long, scanners image
#: it with a 200-260 mm field of view (ISLES: 224-250 mm); a newborn head is about 120 mm long, so 40 mm leaves room
#: for tightly cropped images (and the 60 mm phantoms of the tests).
LONGEST_EXTENT_RANGE_MM = (40.0, 500.0)
#: At most this many distinct values: a label image (a lesion or brain mask, a segmentation), not a scan.
MAX_LABEL_VALUES = 16
#: Share of the brain that may be NaN/inf and still be repaired from neighbouring voxels.
MAX_NONFINITE_BRAIN_FRACTION = 0.01
#: An ADC is "mostly negative" (negated, or a difference image) above this share of negative brain voxels.
MAX_NEGATIVE_ADC_FRACTION = 0.5
#: Median of the positive ADC inside the brain, in 10^-3 mm^2/s, once read in its unit (mm^2/s, 10^-3 or 10^-6
#: mm^2/s): normal brain (tissue and CSF) lies at about 0.8-1.2; acute infarcts lower it, atrophy raises it.
ADC_BRAIN_MEDIAN_RANGE = (0.4, 2.5)
ADC_UNITS_MM2S = (1.0, 1e-3, 1e-6)
#: CSF (ADC above CSF_ADC, 10^-3 mm^2/s) must be darker than tissue (ADC inside TISSUE_ADC) on a diffusion-weighted
#: image: median DWI(CSF) / median DWI(tissue) is about 0.25-0.6 at b=800-1000, above 1 on a b=0 image or an ADC map.
CSF_ADC = 2.0
TISSUE_ADC = (0.6, 1.0)
MAX_DWI_CSF_TISSUE_RATIO = 1.0
#: Minimum voxels of each class for the ratio (a brain without visible CSF cannot be judged this way).
MIN_CLASS_VOXELS = 50
#: DWI and ADC of one brain share their anatomy (CSF, cortex, lesions, the brain's outline), so inside the brain each
#: predicts the other: normalised mutual information (alignment.normalized_mutual_information, 1 = independent) well
#: above 1. Another patient's ADC, even on the same grid or registered, is nearly independent. Measured after
#: alignment; values in ARCHITECTURE.md, *Input checks*.
MIN_DWI_ADC_NMI = 1.025


@dataclass
class Finding:
    """One implausibility: which file, what looks wrong."""

    path: str | None
    message: str

    def text(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class CheckedInputs:
    """The images to segment (NaN/inf repaired) and what the checks measured and found."""

    dwi: sitk.Image
    adc: sitk.Image
    measures: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report(self, forced: bool) -> dict[str, Any]:
        """JSON-ready summary for the segmentation report."""
        return {"forced": forced, "refusals_overridden": [f.text() for f in self.findings], "notes": self.notes,
                "measures": self.measures}


def _label(path: str | Path | None, role: str) -> str:
    return str(path) if path is not None else f"the {role} image"


def _geometry_findings(image: sitk.Image, path: str | None, role: str) -> list[Finding]:
    spacing = image.GetSpacing()
    extent = [s * n for s, n in zip(spacing, image.GetSize())]
    low, high = SPACING_RANGE_MM
    found = []
    if min(spacing) < low or max(spacing) > high:
        found.append(Finding(path, f"voxel spacing {tuple(round(s, 4) for s in spacing)} mm is outside what an "
                                   "MRI of a "
                                   f"human head can have ({low}-{high} mm per axis); is the header's spacing wrong "
                                   "(e.g. metres or cm instead of mm)?"))
    lo_ext, hi_ext = LONGEST_EXTENT_RANGE_MM
    if not lo_ext <= max(extent) <= hi_ext:
        found.append(Finding(path, f"the {role} image spans {tuple(round(e) for e in extent)} mm, so a head would be "
                                   f"{max(extent):.0f} mm long; a head MRI spans {lo_ext:.0f}-{hi_ext:.0f} mm along "
                                   "its longest axis. Is the voxel spacing in the header wrong?"))
    return found


def _label_finding(array: np.ndarray, path: str | None, role: str) -> Finding | None:
    finite = array[np.isfinite(array)]
    if np.unique(finite[:: max(1, finite.size // 100_000)]).size > MAX_LABEL_VALUES:
        return None  # a sample already has too many values for a label image (the full sort costs ~0.5 s)
    values = np.unique(finite)
    if values.size > MAX_LABEL_VALUES:
        return None
    shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
    return Finding(path, f"has only {values.size} distinct values ({shown}): it looks like a label image (a lesion or "
                         f"brain mask, a segmentation), not a {role} scan.")


def _on_dwi_grid(adc: sitk.Image, dwi: sitk.Image, nearest: bool = False) -> np.ndarray:
    from ..common.geometry import resample_to_grid, same_grid

    if same_grid(adc, dwi):
        return sitk.GetArrayFromImage(adc)
    return sitk.GetArrayFromImage(resample_to_grid(adc, dwi, interpolator="nearest" if nearest else "linear"))


def _as_image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32, copy=False))
    image.CopyInformation(like)
    return image


def _adc_unit(median: float) -> float | None:
    """The unit (mm^2/s per stored unit) in which ``median`` is a plausible brain ADC, or None."""
    low, high = ADC_BRAIN_MEDIAN_RANGE
    for unit in ADC_UNITS_MM2S:
        if low <= median * unit * 1e3 <= high:
            return unit
    return None


def _content_findings(dwi: np.ndarray, adc: np.ndarray, brain: np.ndarray, dwi_path: str | None,
                      adc_path: str | None, measures: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    adc_brain = adc[brain]
    negative = float(np.mean(adc_brain < 0))
    measures["adc_negative_fraction"] = round(negative, 4)
    if negative > MAX_NEGATIVE_ADC_FRACTION:
        found.append(Finding(adc_path, f"{100 * negative:.0f}% of the ADC inside the brain is negative; an ADC map is "
                                       "positive (was it negated, or is it another kind of map?)."))
        return found
    positive = adc_brain[adc_brain > 0]
    median = float(np.median(positive)) if positive.size else float("nan")
    measures["adc_brain_median"] = median
    unit = _adc_unit(median) if positive.size else None
    if unit is None:
        low, high = ADC_BRAIN_MEDIAN_RANGE
        found.append(Finding(adc_path, f"the median ADC inside the brain is {median:.4g}, which is no brain ADC in any "
                                       f"known unit (expected {low / 1e3:g}-{high / 1e3:g} mm²/s, {low:g}-{high:g} in "
                                       f"10⁻³ mm²/s or {low * 1e3:g}-{high * 1e3:g} in 10⁻⁶ mm²/s). Is it really an "
                                       "ADC map, or were DWI and ADC swapped?"))
        return found
    measures["adc_unit_mm2s"] = unit
    measures["adc_brain_median_1e-3_mm2s"] = round(median * unit * 1e3, 4)
    adc_phys = adc * (unit * 1e3)
    csf = brain & (adc_phys > CSF_ADC)
    tissue = brain & (adc_phys > TISSUE_ADC[0]) & (adc_phys < TISSUE_ADC[1])
    if csf.sum() >= MIN_CLASS_VOXELS and tissue.sum() >= MIN_CLASS_VOXELS:
        tissue_level = float(np.median(dwi[tissue]))
        ratio = float(np.median(dwi[csf])) / tissue_level if tissue_level > 0 else float("inf")
        measures["dwi_csf_tissue_ratio"] = round(ratio, 4)
        if not ratio <= MAX_DWI_CSF_TISSUE_RATIO:
            found.append(Finding(dwi_path, "CSF is brighter than brain tissue on this image "
                                           f"(CSF/tissue = {ratio:.2f}; "
                                           f"a diffusion-weighted image at b≈1000 has CSF darker, at most "
                                           f"{MAX_DWI_CSF_TISSUE_RATIO:g}). It looks like a b=0 (T2) image or an ADC "
                                           "map, not the high-b DWI (check which volume was chosen and the .bval "
                                           "order, or whether DWI and ADC were swapped)."))
    else:
        measures["dwi_csf_tissue_ratio"] = None
    return found


def check_inputs(dwi: sitk.Image, adc: sitk.Image, dwi_path: str | Path | None = None,
                 adc_path: str | Path | None = None, force: bool = False) -> CheckedInputs:
    """Check that ``dwi`` and ``adc`` look like one head's diffusion-weighted image and ADC map, and repair a few
    NaN/inf voxels from their neighbours.

    Raises :class:`ImplausibleInputError` with every finding (each naming its file) unless ``force``; then the
    findings are returned (and warned) so the caller records them. Images may carry NaN/inf (``read_image(...,
    keep_nonfinite=True)``); the returned ones are finite.
    """
    dpath = None if dwi_path is None else str(dwi_path)
    apath = None if adc_path is None else str(adc_path)
    result = CheckedInputs(dwi=dwi, adc=adc)
    findings = _geometry_findings(dwi, dpath, "DWI") + _geometry_findings(adc, apath, "ADC")
    _raise_or_keep(findings, result, force)  # impossible geometry: stop before any costly step

    dwi_raw = sitk.GetArrayFromImage(dwi).astype(np.float32)
    adc_raw = sitk.GetArrayFromImage(adc).astype(np.float32)
    findings = [f for f in (_label_finding(dwi_raw, dpath, "DWI"), _label_finding(adc_raw, apath, "ADC")) if f]
    dwi_bad, adc_bad = ~np.isfinite(dwi_raw), ~np.isfinite(adc_raw)
    dwi_array, adc_array = fill_nonfinite(dwi_raw), fill_nonfinite(adc_raw)
    result.dwi = _as_image(dwi_array, dwi) if dwi_bad.any() else dwi
    result.adc = _as_image(adc_array, adc) if adc_bad.any() else adc
    if findings:
        _raise_or_keep(findings, result, force)
        return result  # forced past a label image: the content checks below would only add noise

    from .brain_mask import compute_brain_mask

    adc_on_dwi = _on_dwi_grid(result.adc, result.dwi)
    try:
        brain = sitk.GetArrayFromImage(compute_brain_mask(result.dwi, _as_image(adc_on_dwi, result.dwi))).astype(bool)
    except StrokeSegError as exc:
        result.notes.append(f"content checks skipped: no brain mask ({exc})")
        return result
    if not brain.any():
        result.notes.append("content checks skipped: empty brain mask")
        return result
    brain_voxels = int(brain.sum())
    findings = []
    for bad, image, path, role in ((dwi_bad, dwi, dpath, "DWI"), (adc_bad, adc, apath, "ADC")):
        if not bad.any():
            continue
        bad_on_dwi = bad if role == "DWI" else _on_dwi_grid(_as_image(bad.astype(np.float32), image), dwi, True) > 0.5
        share = float(np.count_nonzero(bad_on_dwi & brain)) / brain_voxels
        result.measures[f"{role.lower()}_nonfinite_brain_fraction"] = round(share, 5)
        if share > MAX_NONFINITE_BRAIN_FRACTION:
            findings.append(Finding(path, f"{100 * share:.1f}% of the brain is NaN or infinite in this {role} (at most "
                                          f"{100 * MAX_NONFINITE_BRAIN_FRACTION:g}% can be repaired); the map is "
                                          "damaged or masked, so no lesion volume can be trusted."))
        else:
            note = (f"{_label(path, role)}: {int(bad.sum())} NaN or infinite voxel(s) ({100 * share:.2f}% of the "
                    "brain) were replaced from their nearest finite neighbours.")
            result.notes.append(note)
            warnings.warn(note, NonFiniteVoxelsWarning, stacklevel=2)
    findings += _content_findings(dwi_array, adc_on_dwi, brain, dpath, apath, result.measures)
    _raise_or_keep(findings, result, force)
    return result


def check_same_brain(checked: CheckedInputs, aligned_adc: sitk.Image, brain: sitk.Image,
                     dwi_path: str | Path | None = None, adc_path: str | Path | None = None,
                     force: bool = False) -> None:
    """After alignment (so a registered ADC is judged where it landed): refuse an ADC from another brain.

    One brain's DWI and ADC share their anatomy, so inside the brain each predicts the other (normalised mutual
    information well above 1); another patient's ADC does not. Findings are raised, or kept in ``checked`` if forced.
    """
    from .alignment import normalized_mutual_information

    if checked.findings:
        return  # already forced past a refusal: this measure would only repeat it
    inside = sitk.GetArrayViewFromImage(brain).astype(bool)
    dwi = np.where(inside, sitk.GetArrayViewFromImage(checked.dwi), 0.0)
    adc = np.where(inside, sitk.GetArrayViewFromImage(aligned_adc), 0.0)
    nmi = normalized_mutual_information(sitk.GetImageFromArray(dwi), sitk.GetImageFromArray(adc))
    if not np.isfinite(nmi):
        checked.notes.append("DWI/ADC match not measured: too few brain voxels with both")
        return
    checked.measures["dwi_adc_nmi"] = round(float(nmi), 4)
    if nmi < MIN_DWI_ADC_NMI:
        finding = Finding(None if adc_path is None else str(adc_path),
                          f"this ADC does not match the DWI{'' if dwi_path is None else f' {dwi_path}'}: inside the "
                          f"brain the two share almost no structure (normalised mutual information {nmi:.3f}; one "
                          f"brain's DWI and ADC give at least {MIN_DWI_ADC_NMI}). Is it another patient's or another "
                          "session's ADC?")
        _raise_or_keep([finding], checked, force)


def _raise_or_keep(findings: list[Finding], result: CheckedInputs, force: bool) -> None:
    if not findings:
        return
    if not force:
        text = "\n".join(f.text() for f in findings)
        raise ImplausibleInputError(
            f"the input does not look like a DWI + ADC pair of one head:\n{text}\n"
            "(If you are sure the input is right, run again with --force; the report will record this.)"
        )
    for finding in findings:
        warnings.warn(f"proceeding despite: {finding.text()}", ImplausibleInputWarning, stacklevel=3)
    result.findings.extend(findings)
