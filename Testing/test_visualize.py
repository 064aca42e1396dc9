"""Pictures: orientation of the overlay slice, choice of slice, and valid, non-blank PNG files."""
from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.evaluation.visualize import (
    dice_histogram_png,
    dice_vs_volume_png,
    lesion_slice,
    overlay_png,
    slice_picture,
    view_axes,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAS_STORED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # the usual NIfTI layout seen from ITK's LPS


def assert_real_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert float(pixels[..., :3].std()) > 0.02, "picture is blank"
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 20
    assert not list(path.parent.glob(".*tmp*")), "temporary file left behind"
    return pixels


def image(array_zyx: np.ndarray, spacing=(1.0, 1.0, 1.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(spacing)
    if direction is not None:
        img.SetDirection(direction)
    return img


def head(shape=(12, 40, 32), seed=0) -> np.ndarray:
    """An ellipsoid "brain" with noise, zero outside, like a skull-stripped DWI."""
    z, y, x = np.indices(shape)
    c = (np.array(shape) - 1) / 2
    inside = (((z - c[0]) / (shape[0] / 2)) ** 2 + ((y - c[1]) / (shape[1] / 2.2)) ** 2
              + ((x - c[2]) / (shape[2] / 2.2)) ** 2) < 1
    rng = np.random.default_rng(seed)
    return (inside * (100 + 20 * rng.standard_normal(shape))).astype(np.float32)


def test_axes_for_lps_identity_need_no_flip():
    axes = view_axes(image(np.zeros((3, 4, 5), np.float32)))
    assert (axes.slice_axis, axes.row_axis, axes.col_axis, axes.flip_rows, axes.flip_cols) == (2, 1, 0, False, False)
    assert axes.plane == "axial"


def test_ras_stored_image_puts_patient_right_anterior_top_left():
    nx, ny, nz = 5, 4, 3
    volume = np.zeros((nz, ny, nx), np.float32)
    # With direction diag(-1,-1,1), the largest i is the patient's rightmost and the largest j the most anterior.
    volume[1, ny - 1, nx - 1] = 1.0
    img = image(volume, direction=RAS_STORED)
    right_anterior = img.TransformIndexToPhysicalPoint((nx - 1, ny - 1, 1))
    # LPS: -x right, -y anterior
    assert right_anterior[0] < img.GetOrigin()[0] and right_anterior[1] < img.GetOrigin()[1]
    axes = view_axes(img)
    picture = slice_picture(sitk.GetArrayFromImage(img).transpose(2, 1, 0), axes, 1)
    assert picture.shape == (ny, nx)
    assert picture[0, 0] == 1.0 and picture.sum() == 1.0


def test_sagittally_stored_volume_still_shows_the_axial_plane():
    # Index axis 0 runs superior, axis 1 posterior, axis 2 towards the patient's left.
    direction = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0)
    n0, n1, n2 = 6, 5, 4
    volume = np.zeros((n2, n1, n0), np.float32)  # numpy order (axis2, axis1, axis0)
    volume[0, 0, 3] = 1.0  # most right (axis2 = 0), most anterior (axis1 = 0), at superior index 3
    axes = view_axes(image(volume, direction=direction))
    assert (axes.slice_axis, axes.row_axis, axes.col_axis) == (0, 1, 2)
    assert axes.plane == "axial"
    picture = slice_picture(volume.transpose(2, 1, 0), axes, 3)
    assert picture.shape == (n1, n2) and picture[0, 0] == 1.0


def test_oblique_tilt_keeps_the_near_axial_axis():
    angle = np.deg2rad(25)
    c, s = np.cos(angle), np.sin(angle)
    tilt_about_x = (1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c)
    axes = view_axes(image(np.zeros((3, 4, 5), np.float32), direction=tilt_about_x))
    assert (axes.slice_axis, axes.row_axis, axes.col_axis) == (2, 1, 0)


def test_lesion_slice_is_largest_area_or_middle():
    axes = view_axes(image(np.zeros((9, 4, 5), np.float32)))
    mask = np.zeros((5, 4, 9), bool)  # (x, y, z)
    mask[0, 0, 2] = True
    mask[:, :2, 6] = True
    assert lesion_slice(mask, axes, 9) == 6
    assert lesion_slice(np.zeros_like(mask), axes, 9) == 4
    assert lesion_slice(None, axes, 9) == 4


def test_overlay_png_with_all_layers(tmp_path):
    dwi_array = head()
    gt = np.zeros(dwi_array.shape, np.uint16)
    gt[6, 15:22, 10:16] = 1
    pred = np.zeros(dwi_array.shape, np.uint8)
    pred[6, 17:24, 12:18] = 1
    pred[3, 5, 5] = 1
    spacing, direction = (1.2, 1.2, 3.0), RAS_STORED
    out = overlay_png(
        tmp_path / "case.png",
        image(dwi_array, spacing, direction),
        image(dwi_array[::-1].copy() * 0.01, spacing, direction),
        image(pred, spacing, direction),
        image(gt, spacing, direction),
        title="case 1",
    )
    assert out == tmp_path / "case.png"
    pixels = assert_real_png(out)
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.5) & (pixels[..., 2] < 0.5)
    green = (pixels[..., 1] > 0.7) & (pixels[..., 0] < 0.4)
    assert red.sum() > 20 and green.sum() > 10, "prediction and ground truth should both be visible"


def test_overlay_png_without_adc_or_masks_and_on_other_grids(tmp_path):
    dwi = image(head(), (2.0, 2.0, 2.0))
    assert_real_png(overlay_png(tmp_path / "plain.png", dwi, None, None))
    # A mask on a finer grid is resampled onto the DWI for display instead of failing.
    fine = np.zeros((24, 80, 64), np.uint8)
    fine[12, 30:40, 20:30] = 1
    assert_real_png(overlay_png(tmp_path / "regrid.png", dwi, None, image(fine, (1.0, 1.0, 1.0))))


def test_pixel_aspect_follows_spacing(tmp_path):
    volume = head()
    square = matplotlib.image.imread(overlay_png(tmp_path / "a.png", image(volume, (1.0, 1.0, 1.0)), None, None))
    tall = matplotlib.image.imread(overlay_png(tmp_path / "b.png", image(volume, (1.0, 2.0, 1.0)), None, None))
    assert tall.shape[0] > square.shape[0] * 1.3  # rows twice as far apart -> a taller picture
    assert tall.shape[1] == square.shape[1]


def test_dice_plots(tmp_path):
    dices = [0.9, 0.85, 0.1, 0.0, 0.7, float("nan")]
    volumes = [30.0, 4.2, 0.05, 0.0, 12.0, 1.0]
    assert_real_png(dice_histogram_png(tmp_path / "hist.png", dices))
    assert_real_png(dice_vs_volume_png(tmp_path / "scatter.png", volumes, dices))
    assert_real_png(dice_histogram_png(tmp_path / "empty_hist.png", []))
    with pytest.raises(ValueError, match="gt_ml"):
        dice_vs_volume_png(tmp_path / "bad.png", [1.0], [0.5, 0.6])
