"""From a DWI and an ADC as read from disk to the network's input, and the exact way back.

The network sees both channels on one isotropic grid (``target_spacing``) that covers the DWI's whole extent in one
canonical axis order (:func:`~StrokeSegLib.common.geometry.canonical_grid`: the DWI's index axes permuted and flipped,
its obliquity kept), so the same scan gives the same result whatever order its slices and axes were stored in,
normalised inside the brain so units and scanners do not matter. Every output is then resampled
onto *exactly* the DWI grid (:meth:`PreparedCase.to_native`), because that is the grid the user loaded and overlays.
Training prepares its cases with this same function, so what the network learnt is what it gets at deployment.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..common.errors import GeometryError, InvalidImageError
from ..common.geometry import Grid, canonical_grid, resample_to_grid
from ..common.progress import CancelToken, ProgressCallback, check_cancel, report
from .alignment import AlignmentResult, align_to_reference
from .brain_mask import compute_brain_mask
from .normalization import normalize_adc_physical, normalize_channel
from .preprocess_config import PreprocessConfig

CHANNELS = ("DWI", "ADC")


@dataclass
class PreparedCase:
    """The network input and everything needed to map results back onto the DWI grid.

    ``image``: float32 (C, z, y, x), channels in :data:`CHANNELS` order; ``brain_mask``: uint8 (z, y, x) on the
    network grid; ``native_brain_mask``: uint8 image on the DWI grid; ``alignment``: how the ADC was put on the DWI.
    """

    image: np.ndarray
    brain_mask: np.ndarray
    network_grid: Grid
    native_grid: Grid
    alignment: AlignmentResult
    native_brain_mask: sitk.Image
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    channels: tuple[str, ...] = CHANNELS

    def to_native(self, array_or_image: np.ndarray | sitk.Image, interpolator: str = "linear") -> sitk.Image:
        """A network-space volume (probabilities: "linear"; labels: "nearest") resampled onto exactly the DWI grid.

        Arrays must have the network grid's (z, y, x) shape (a leading channel axis of 1 is accepted); images are
        resampled through physical space from wherever they are.
        """
        if isinstance(array_or_image, sitk.Image):
            image = array_or_image
        else:
            image = self.network_grid.image_from_array(_sitk_friendly(_drop_channel(array_or_image, self.network_grid)))
        native = resample_to_grid(image, self.native_grid, interpolator)
        if Grid.of(native) != self.native_grid:  # exact: the user's grid, not one within a tolerance
            raise GeometryError(f"Resampling onto the DWI grid gave {Grid.of(native)}, not {self.native_grid}.")
        return native

    def to_network(self, image: sitk.Image, interpolator: str = "nearest") -> np.ndarray:
        """A native-space image (e.g. a ground-truth mask) on the network grid, as a (z, y, x) array."""
        return sitk.GetArrayFromImage(resample_to_grid(image, self.network_grid, interpolator))


def _drop_channel(array: np.ndarray, grid: Grid) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.shape != grid.shape:
        raise GeometryError(f"Array of shape {array.shape} is not on the network grid of shape {grid.shape}.")
    return array


def _sitk_friendly(array: np.ndarray) -> np.ndarray:
    """SimpleITK has no bool or float16 images: labels become uint8, half floats float32."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    return np.ascontiguousarray(array)


def _check_input(image: sitk.Image, role: str, path: str | Path | None) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError(f"The {role} must be a scalar 3-D volume, got {image.GetDimension()}-D with "
                                f"{image.GetNumberOfComponentsPerPixel()} component(s).", path)


def _on_grid(image: sitk.Image, grid: Grid, transform: sitk.Transform | None = None) -> np.ndarray:
    """float32 (z, y, x) of ``image`` on ``grid``; a copy without interpolation when it already is exactly there."""
    if transform is None and Grid.of(image) == grid:
        return sitk.GetArrayFromImage(image).astype(np.float32)
    return sitk.GetArrayFromImage(resample_to_grid(image, grid, "linear", transform=transform))


def prepare_case(dwi: sitk.Image, adc: sitk.Image, config: PreprocessConfig | None = None,
                 dwi_path: str | Path | None = None, adc_path: str | Path | None = None,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> PreparedCase:
    """Align the ADC to the DWI, mask the brain, resample both onto the network grid and normalise them.

    The ADC goes to the network grid in one interpolation from its own grid (through the registration transform when
    there is one), not via the DWI grid, so it is not blurred twice.
    """
    config = config or PreprocessConfig()
    _check_input(dwi, "DWI", dwi_path)
    _check_input(adc, "ADC", adc_path)

    report(progress, "Aligning ADC", 0.0)
    alignment = align_to_reference(adc, dwi, register=config.register, moving_path=adc_path,
                                   reference_path=dwi_path)
    report(progress, "Aligning ADC", 1.0)
    check_cancel(cancel)

    report(progress, "Brain mask", 0.0)
    # The ADC's zeros help only when they are its own, on the DWI grid; an interpolated ADC bleeds at the edges.
    native_brain = compute_brain_mask(dwi, adc if alignment.method == "identity" else None)
    report(progress, "Brain mask", 1.0)
    check_cancel(cancel)

    report(progress, "Resampling", 0.0)
    native_grid = Grid.of(dwi)
    network_grid = canonical_grid(native_grid, config.target_spacing)
    dwi_net = _on_grid(dwi, network_grid)
    report(progress, "Resampling", 0.4)
    adc_net = _on_grid(adc, network_grid, alignment.transform)
    report(progress, "Resampling", 0.8)
    brain_net = sitk.GetArrayFromImage(resample_to_grid(native_brain, network_grid, "nearest")).astype(np.uint8)
    if not brain_net.any():
        raise InvalidImageError("The brain mask vanished on the network grid: the scan is smaller than one "
                                f"{config.target_spacing} mm voxel.", dwi_path)
    report(progress, "Resampling", 1.0)
    check_cancel(cancel)

    report(progress, "Normalising", 0.0)
    lower, upper = config.clip_percentiles
    channels = [normalize_channel(dwi_net, brain_net, lower, upper)]
    report(progress, "Normalising", 0.5)
    if config.adc_normalization == "physical":
        channels.append(normalize_adc_physical(adc_net, brain_net, adc_path))
    else:
        channels.append(normalize_channel(adc_net, brain_net, lower, upper))
    report(progress, "Normalising", 1.0)
    return PreparedCase(image=np.stack(channels).astype(np.float32, copy=False), brain_mask=brain_net,
                        network_grid=network_grid, native_grid=native_grid, alignment=alignment,
                        native_brain_mask=native_brain, config=config)
