"""Reading and writing images: every way a user's file can be unusable ends here as a clear StrokeSeg error.

``read_image`` returns a 3-D float32 ``sitk.Image`` whose origin, spacing and direction are the file's own, so the
rest of the pipeline never has to care about file formats, 4-D diffusion series, vector pixels or NaN voxels.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..common.atomic import atomic_path, full_suffix
from ..common.errors import InputFileError, InvalidImageError, NonFiniteVoxelsWarning
from .file_integrity import check_file_data
from .nifti_like import can_copy_header, write_nifti_like

# Volumes whose b-values lie within this many s/mm² of the highest belong to the same shell (scanners report
# 995/1000/1005 for one nominal b-value).
B_SHELL_TOLERANCE = 50.0

# JSON sidecar keys that may hold one b-value per volume (BIDS/dcm2niix and common variants).
_JSON_BVAL_KEYS = ("bval", "bvals", "b_values", "bvalues", "b-values", "BValues", "DiffusionBValue", "DiffusionBValues")


def _stem(path: Path) -> str:
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def read_stored(path: str | Path) -> sitk.Image:
    """The image exactly as stored (pixel type, dimension kept), after checking that the file holds all the voxel data
    its header promises (:mod:`.file_integrity`); NaN/inf stored in a NIfTI file stay NaN/inf instead of ITK's 0.

    Every reader of user images and masks goes through here. SimpleITK's RuntimeErrors become InputFileError naming
    the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError("file not found.", path)
    if not path.is_file():
        raise InputFileError("is not a file (a folder?); expected an image such as .nii.gz, .nrrd or .mha.", path)
    nonfinite = check_file_data(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        raise InputFileError(
            f"cannot be read as an image (corrupt, truncated, or not a format SimpleITK knows): {detail}", path
        ) from exc
    return _restore_nonfinite(image, nonfinite)


def _restore_nonfinite(image: sitk.Image, nonfinite: np.ndarray | None) -> sitk.Image:
    """Put back the NaN that ITK's NIfTI reader turned into 0 (only where the file stored a non-finite value)."""
    if nonfinite is None or image.GetNumberOfComponentsPerPixel() != 1:
        return image
    array = sitk.GetArrayFromImage(image)
    if array.shape != nonfinite.shape or array.dtype.kind != "f":
        return image
    array[nonfinite] = np.nan
    restored = sitk.GetImageFromArray(array, isVector=False)
    restored.CopyInformation(image)
    return restored


def _volumes(image: sitk.Image) -> list[sitk.Image]:
    """Split a 4-D image (or a 3-D vector image) into its 3-D volumes, each keeping the 3-D geometry."""
    if image.GetNumberOfComponentsPerPixel() > 1:
        return [sitk.VectorIndexSelectionCast(image, i) for i in range(image.GetNumberOfComponentsPerPixel())]
    size = list(image.GetSize())
    count = size[3]
    out = []
    for t in range(count):
        volume = sitk.Extract(image, size[:3] + [0], [0, 0, 0, t])
        # Set the geometry explicitly from the 4-D header's 3x3 block so nothing depends on Extract's collapse rule.
        direction4 = np.array(image.GetDirection()).reshape(4, 4)
        volume.SetOrigin(image.GetOrigin()[:3])
        volume.SetSpacing(image.GetSpacing()[:3])
        volume.SetDirection(direction4[:3, :3].ravel().tolist())
        out.append(volume)
    return out


def _parse_bval_file(path: Path) -> list[float]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return [float(tok) for tok in re.split(r"[\s,]+", text.strip()) if tok]
    except ValueError as exc:
        raise InvalidImageError(f"b-value file is not a list of numbers: {exc}", path) from exc


def _parse_json_bvals(path: Path) -> list[float] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key in _JSON_BVAL_KEYS:
        value = data.get(key)
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            return [float(v) for v in value]
    return None


def find_bvals(path: str | Path) -> tuple[list[float], Path] | None:
    """b-values for the image at ``path`` from a sidecar beside it, with the sidecar used; None when there is none.

    Looked for, in order: ``<stem>.bval``/``<stem>.bvals`` (FSL/dcm2niix), a BIDS ``<stem>.json`` with a per-volume
    list (``bval``, ``b_values``, ``DiffusionBValue``...), then a folder-wide FSL ``bvals``/``bval`` file.
    """
    image_path = Path(path)
    folder, stem = image_path.parent, _stem(image_path)
    for name in (f"{stem}.bval", f"{stem}.bvals"):
        candidate = folder / name
        if candidate.is_file():
            return _parse_bval_file(candidate), candidate
    candidate = folder / f"{stem}.json"
    if candidate.is_file():
        values = _parse_json_bvals(candidate)
        if values is not None:
            return values, candidate
    for name in ("bvals", "bval"):
        candidate = folder / name
        if candidate.is_file():
            return _parse_bval_file(candidate), candidate
    return None


def _geometric_mean(volumes: list[sitk.Image]) -> sitk.Image:
    """Trace-weighted image of one shell: the geometric mean of its directions (exact for S0*exp(-b*ADC_i))."""
    if len(volumes) == 1:
        return sitk.Cast(volumes[0], sitk.sitkFloat32)
    stack = np.stack([sitk.GetArrayFromImage(v).astype(np.float64) for v in volumes])
    positive = np.all(stack > 0, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.exp(np.mean(np.log(np.where(stack > 0, stack, 1.0)), axis=0))
    result = sitk.GetImageFromArray(np.where(positive, mean, 0.0).astype(np.float32))
    result.CopyInformation(volumes[0])
    return result


def select_highest_b(image4d: sitk.Image, path: str | Path, bvals: Sequence[float] | None = None) -> sitk.Image:
    """The diffusion-weighted volume of a 4-D series: the highest b-value shell, as a 3-D float32 image.

    Stroke models are trained on the trace-weighted high-b image (b≈1000 in ISLES), so b0 and lower shells are
    dropped; several directions on the highest shell are combined by geometric mean (the trace image). ``bvals``
    overrides the sidecar files found beside ``path``.
    """
    path = Path(path)
    volumes = _volumes(image4d)
    source: Path | None = None
    if bvals is None:
        found = find_bvals(path)
        if found is None:
            raise InvalidImageError(
                f"is a 4-D series of {len(volumes)} volumes but its b-values are unknown, so the diffusion-weighted "
                f"volume cannot be chosen. Put a '{_stem(path)}.bval' file (FSL style, one b-value per volume) or a "
                f"JSON sidecar with a 'bval' list beside it, or give a 3-D trace-weighted DWI volume instead.",
                path,
            )
        bvals, source = found
    values = np.asarray(list(bvals), dtype=float)
    where = f" (from {source})" if source is not None else ""
    if values.size != len(volumes):
        raise InvalidImageError(
            f"has {len(volumes)} volumes but {values.size} b-values{where}; they must match one to one.", path
        )
    if not np.all(np.isfinite(values)) or values.max() <= 0:
        raise InvalidImageError(
            f"no diffusion-weighted volume: the b-values{where} are {values.tolist()} (need one above 0).", path
        )
    chosen = [v for v, b in zip(volumes, values) if b >= values.max() - B_SHELL_TOLERANCE]
    return _geometric_mean(chosen)


def _to_3d(image: sitk.Image, path: Path, role: str) -> sitk.Image:
    dim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    if dim < 3 or dim > 4:
        raise InvalidImageError(f"is a {dim}-D image; a 3-D volume is needed for {role}.", path)
    if dim == 4 and components > 1:
        raise InvalidImageError(f"is a 4-D image with {components}-component pixels; cannot use it as {role}.", path)
    count = image.GetSize()[3] if dim == 4 else components
    if dim == 3 and components == 1:
        volume = image
    elif count == 1:
        volume = _volumes(image)[0]
    elif role.upper() == "DWI":
        volume = select_highest_b(image, path)
    else:
        raise InvalidImageError(
            f"has {count} volumes (4-D or multi-component); {role} must be a single 3-D volume.", path
        )
    if min(volume.GetSize()) < 2:
        raise InvalidImageError(
            f"has size {volume.GetSize()}: a single slice or line, not a 3-D volume usable as {role}.", path
        )
    if volume.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InvalidImageError(f"has complex voxels; a real-valued {role} image is needed.", path)
    return volume


def fill_nonfinite(array: np.ndarray) -> np.ndarray:
    """Replace NaN/inf by the value of the nearest finite voxel (not by 0, which reads as a dark infarct on ADC)."""
    from scipy import ndimage

    array = np.asarray(array, dtype=np.float32)
    bad = ~np.isfinite(array)
    if not bad.any():
        return array
    if bad.all():
        return np.zeros_like(array)
    index = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return array[tuple(index)]


def _finite_float32(volume: sitk.Image, path: Path, keep_nonfinite: bool = False) -> tuple[sitk.Image, np.ndarray]:
    array = sitk.GetArrayFromImage(volume).astype(np.float32)
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count and not keep_nonfinite:
        warnings.warn(
            f"{path}: {count} NaN or infinite voxel(s) out of {array.size} were replaced from their nearest finite "
            "neighbours.",
            NonFiniteVoxelsWarning,
            stacklevel=3,
        )
        array = fill_nonfinite(array)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(volume)
    return out, array


def read_image(path: str | Path, role: str = "DWI", keep_nonfinite: bool = False) -> sitk.Image:
    """Read a 3-D float32 image with its geometry; ``role`` ("DWI", "ADC", ...) only shapes messages and 4-D handling.

    The file must hold all the voxel data its header promises (a cut file is an error, see :func:`read_stored`). 4-D
    DWI series are reduced to the highest-b volume; other roles accept 4-D only with one volume. NaN/inf are replaced
    from their nearest finite neighbours with a :class:`NonFiniteVoxelsWarning`, or kept with ``keep_nonfinite`` (the
    segmentation path, whose :mod:`.input_checks` refuse an image with too many of them); an image with no contrast
    (all finite voxels equal) is refused as empty.
    """
    path = Path(path)
    volume = _to_3d(read_stored(path), path, role)
    image, array = _finite_float32(volume, path, keep_nonfinite)
    finite = array[np.isfinite(array)]
    if finite.size == 0 or float(finite.min()) == float(finite.max()):
        value = float(finite[0]) if finite.size else float("nan")
        raise InvalidImageError(f"is empty: every voxel of this {role} image equals {value:g}.", path)
    return image


#: A mask voxel is lesion when its value is at least this (see :func:`read_mask`).
MASK_THRESHOLD = 0.5


def read_mask(path: str | Path) -> sitk.Image:
    """Read a lesion mask as uint8 0/1 on its own grid: the one mask reader (expert masks, predictions, training).

    A voxel is lesion when its value is >= :data:`MASK_THRESHOLD` (0.5). On every integer-labelled mask (expert masks
    stored as {0, 1} or {0, 255}, several labels, our uint8 predictions) that is the same as "any non-zero"; where the
    two differ, on float masks, 0.5 is the right reading: a mask that was resampled with linear interpolation or saved
    as a soft mask carries partial-volume values, and counting a 0.01 rim (or rounding noise) as lesion would inflate
    volumes and lesion counts. NaN/inf are repaired from neighbours with a warning, as for images; an empty mask is
    valid; a file holding less voxel data than its header says is an error (:func:`read_stored`).
    """
    path = Path(path)
    volume = _to_3d(read_stored(path), path, "mask")
    _, array = _finite_float32(volume, path)
    mask = sitk.GetImageFromArray((array >= 0.5).astype(np.uint8))
    mask.CopyInformation(volume)
    return mask


def write_image(image: sitk.Image, path: str | Path, compress: bool = True, like: str | Path | None = None) -> Path:
    """Write ``image`` atomically (temp file beside it, then rename); the format follows the file name.

    ``like``: the input scan the image was computed on; when both are NIfTI and the grids agree, its header is reused
    so the output's affine is exactly the input's (see :mod:`.nifti_like`).
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            if like is not None and can_copy_header(image, like, path):
                write_nifti_like(image, like, tmp)
            else:
                sitk.WriteImage(image, str(tmp), useCompression=compress)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown writer error"
        raise InputFileError(f"cannot write image here (unknown format or not writable): {detail}", path) from exc
    return path
