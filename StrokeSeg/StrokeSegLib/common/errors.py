"""Exception and warning types of StrokeSeg.

Every error a user can cause with bad input is one of these, so that the CLI, the batch runner and the Slicer panel
can show the message as it is (it names the file and what is wrong) instead of a traceback.
"""
from __future__ import annotations

from pathlib import Path


class StrokeSegError(Exception):
    """Base class: a problem with the user's input, model or request, explained in the message."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputFileError(StrokeSegError):
    """A file is missing, unreadable, or not an image SimpleITK can read."""


class InvalidImageError(StrokeSegError):
    """An image was read but cannot be used: wrong dimension, empty, no usable b-value, ..."""


class ImplausibleInputError(InvalidImageError):
    """Images that were read fine but do not look like what they are given as (a b=0 image as DWI, another patient's
    ADC, a mask, impossible voxel sizes...); the message names each file and what looks wrong. ``--force`` overrides."""


class GeometryError(StrokeSegError):
    """Two images that must describe the same anatomy do not overlap in physical space, or a grid is invalid."""


class ModelFileError(StrokeSegError):
    """A model file is missing, corrupt, unsafe (pickled code) or incompatible with this version."""


class CancelledError(StrokeSegError):
    """The user cancelled a long operation."""


class NonFiniteVoxelsWarning(UserWarning):
    """NaN or infinite voxels were found and replaced (the warning says how many, in which file)."""


class ImplausibleInputWarning(UserWarning):
    """An implausible input was segmented anyway because the user forced it (the report records the finding)."""


class AlignmentWarning(UserWarning):
    """ADC needed a rigid registration to DWI, or the registration quality is doubtful."""


class AdcUnitWarning(UserWarning):
    """The ADC's values fit none of the known unit conventions, so its scale was inferred from the brain's median."""
