"""StrokeSeg core: acute ischemic stroke lesion segmentation on DWI + ADC, in the scan's native space.

Pure Python (SimpleITK, numpy, torch); no Qt, and ``slicer`` only in :mod:`StrokeSegLib.scene.mrml`, loaded lazily, so
the same code runs from the command line, from Slicer's Python, and in tests. ``StrokeSegLogic`` (the scene-facing API)
is resolved on first access so that importing this package never needs Slicer.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "StrokeSegLogic":
        from .scene.logic import StrokeSegLogic

        return StrokeSegLogic
    raise AttributeError(f"module 'StrokeSegLib' has no attribute {name!r}")
