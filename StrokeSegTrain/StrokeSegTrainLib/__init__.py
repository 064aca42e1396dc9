"""StrokeSeg training: data, augmentation, losses, training loop, cross-validation and the synthetic data generator.

Pure Python (torch, SimpleITK, numpy); no Qt and no ``slicer``, so it runs headless in Slicer's Python and plain Python.
"""
from __future__ import annotations

__version__ = "0.1.0"
