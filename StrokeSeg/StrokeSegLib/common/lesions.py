"""Lesions as connected components and the volume of a voxel: shared by post-processing, metrics, lesion detection
and the training sampler, so that every stage counts lesions and millilitres the same way."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components with full connectivity (26 in 3-D: faces, edges and corners)."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, count = ndimage.label(mask, structure=structure)
    return labels, int(count)


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in mL (spacing is in mm; 1 mL = 1000 mm³)."""
    return float(np.prod(image.GetSpacing())) / 1000.0
