"""NIfTI outputs carry the input's own header: identical affines, including headers with an uncoded garbage qform."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from StrokeSegLib.common.geometry import Grid
from StrokeSegLib.io.imageio import write_image


def _mask_on(path: Path) -> sitk.Image:
    reference = sitk.ReadImage(str(path))
    mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(reference)
    mask[2, 3, 1] = 1
    return mask


def test_output_copies_an_sform_only_header_with_garbage_quaternions(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)  # oblique in-plane rotation, anisotropic voxels
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([1.2, 1.2, 5.0])
    affine[:3, 3] = (90.0, -100.0, -40.0)
    image = nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), affine)
    image.header.set_sform(affine, 1)
    image.header.set_qform(None, 0)
    image.header["quatern_b"], image.header["quatern_c"], image.header["quatern_d"] = 1e-19, 3e27, 7e31
    source = tmp_path / "dwi.nii.gz"
    nib.save(image, str(source))

    out = write_image(_mask_on(source), tmp_path / "mask.nii.gz", like=source)
    written = nib.load(str(out))
    assert np.array_equal(written.header.get_sform(), nib.load(str(source)).header.get_sform())
    assert int(written.header["sform_code"]) == 1 and int(written.header["qform_code"]) == 0
    assert written.get_data_dtype() == np.uint8
    back = sitk.ReadImage(str(out))
    assert Grid.of(back) == Grid.of(sitk.ReadImage(str(source)))
    assert sitk.GetArrayViewFromImage(back)[1, 3, 2] == 1  # the voxel is where it was put, index (x=2, y=3, z=1)


def test_other_formats_and_other_grids_use_the_plain_writer(tmp_path: Path) -> None:
    source = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), str(source))
    mask = _mask_on(source)
    nrrd = write_image(mask, tmp_path / "mask.nrrd", like=source)
    assert Grid.of(sitk.ReadImage(str(nrrd))) == Grid.of(mask)
    shifted = sitk.Image(mask)
    shifted.SetOrigin((5.0, 0.0, 0.0))
    out = write_image(shifted, tmp_path / "shifted.nii.gz", like=source)
    assert sitk.ReadImage(str(out)).GetOrigin()[0] == 5.0  # not silently snapped onto the input's header
