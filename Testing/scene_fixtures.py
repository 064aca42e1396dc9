"""Helpers shared by the tests that build MRML nodes (need slicer-core's vtk)."""
from __future__ import annotations

import itertools

import numpy as np


def vtk_matrix(array: np.ndarray):
    """A 4x4 numpy array as a vtkMatrix4x4."""
    import vtk

    m = vtk.vtkMatrix4x4()
    for r, c in itertools.product(range(4), range(4)):
        m.SetElement(r, c, float(array[r, c]))
    return m
