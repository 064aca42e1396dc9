"""coordinates: RAS<->LPS conversions are exact inverses and agree with SimpleITK, including flipped slice axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.common.errors import GeometryError
from StrokeSegLib.scene.coordinates import (
    LPS_TO_RAS,
    ijk_to_lps_points,
    ijk_to_ras_from_lps,
    lps_from_ijk_to_ras,
    point_lps_to_ras,
    point_ras_to_lps,
)


def _random_rotation(rng: np.random.Generator, proper: bool) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 2] *= -1
    return q


def _geometries() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for n in range(8):
        direction = _random_rotation(rng, proper=n % 2 == 0)
        spacing = rng.uniform(0.4, 6.0, 3)
        origin = rng.uniform(-150, 150, 3)
        out.append((origin, spacing, direction))
    return out


def _image(array: np.ndarray, origin, spacing, direction) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in np.ravel(direction)))
    return image


def test_known_axis_aligned_case() -> None:
    matrix = ijk_to_ras_from_lps((1.0, 2.0, 3.0), (2.0, 3.0, 4.0), np.eye(3).ravel())
    expected = np.array([[-2.0, 0, 0, -1.0], [0, -3.0, 0, -2.0], [0, 0, 4.0, 3.0], [0, 0, 0, 1.0]])
    np.testing.assert_array_equal(matrix, expected)
    np.testing.assert_array_equal(LPS_TO_RAS, np.diag([-1, -1, 1]))


@pytest.mark.parametrize("index", range(8))
def test_round_trips_are_exact(index: int) -> None:
    origin, spacing, direction = _geometries()[index]
    matrix = ijk_to_ras_from_lps(origin, spacing, direction.ravel())
    o, s, d = lps_from_ijk_to_ras(matrix)
    np.testing.assert_allclose(o, origin, atol=1e-9)
    np.testing.assert_allclose(s, spacing, atol=1e-9)
    np.testing.assert_allclose(d, direction.ravel(), atol=1e-9)
    np.testing.assert_allclose(ijk_to_ras_from_lps(o, s, d), matrix, atol=1e-9)
    assert np.sign(np.linalg.det(np.reshape(d, (3, 3)))) == np.sign(np.linalg.det(direction))


@pytest.mark.parametrize("index", range(8))
def test_matrix_maps_indices_where_simpleitk_does(index: int) -> None:
    origin, spacing, direction = _geometries()[index]
    image = _image(np.zeros((5, 6, 7), np.float32), origin, spacing, direction)
    matrix = ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    for ijk in [(0, 0, 0), (6, 0, 0), (0, 5, 0), (0, 0, 4), (3.5, 2.25, 1.75)]:
        lps = np.array(image.TransformContinuousIndexToPhysicalPoint(ijk))
        ras = matrix @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(ras[:3], point_lps_to_ras(lps), atol=1e-9)
        np.testing.assert_allclose(ijk_to_lps_points(ijk, origin, spacing, direction.ravel()), lps, atol=1e-9)


def test_points_convert_both_ways() -> None:
    np.testing.assert_array_equal(point_ras_to_lps((10.0, -20.0, 30.0)), [-10.0, 20.0, 30.0])
    points = np.random.default_rng(1).normal(size=(5, 3)) * 100
    np.testing.assert_allclose(point_lps_to_ras(point_ras_to_lps(points)), points, atol=1e-12)


def _reverse_slices(matrix: np.ndarray, slices: int) -> np.ndarray:
    """What Slicer does to the ISLES scans: k reversed, third column negated, origin moved to the last slice."""
    flipped = matrix.copy()
    flipped[:, 3] = matrix @ np.array([0.0, 0.0, slices - 1.0, 1.0])
    flipped[:3, 2] = -matrix[:3, 2]
    return flipped


def _check_reversed_slice_axis(image: sitk.Image) -> None:
    array = sitk.GetArrayFromImage(image)
    matrix = ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    flipped_matrix = _reverse_slices(matrix, array.shape[0])
    origin, spacing, direction = lps_from_ijk_to_ras(flipped_matrix)
    assert np.linalg.det(np.reshape(direction, (3, 3))) * np.linalg.det(
        np.reshape(image.GetDirection(), (3, 3))
    ) < 0
    flipped = _image(array[::-1].copy(), origin, spacing, direction)
    # Same physical voxel centres, slice for slice in reverse order.
    nz = array.shape[0]
    for ijk in [(0, 0, 0), (3, 4, 1), (image.GetSize()[0] - 1, 2, nz - 1)]:
        mirrored = (ijk[0], ijk[1], nz - 1 - ijk[2])
        np.testing.assert_allclose(
            flipped.TransformIndexToPhysicalPoint(ijk), image.TransformIndexToPhysicalPoint(mirrored), atol=1e-6
        )
    # Same image in physical space: resampling one onto the other changes nothing.
    back = sitk.Resample(flipped, image, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)


def test_reversed_slice_axis_describes_the_same_voxels() -> None:
    origin, spacing, direction = _geometries()[0]
    array = np.random.default_rng(3).random((6, 5, 7)).astype(np.float32)
    _check_reversed_slice_axis(_image(array, origin, spacing, direction))


@pytest.mark.realdata
def test_reversed_slice_axis_on_real_isles_geometry(isles_root: Path) -> None:
    path = isles_root / "sub-strokecase0009/ses-0001/dwi/sub-strokecase0009_ses-0001_dwi.nii.gz"
    _check_reversed_slice_axis(sitk.ReadImage(str(path), sitk.sitkFloat32))


def test_bad_matrices_are_refused() -> None:
    with pytest.raises(GeometryError, match="4x4"):
        lps_from_ijk_to_ras(np.eye(3))
    degenerate = np.eye(4)
    degenerate[:3, 1] = 0
    with pytest.raises(GeometryError, match="zero-length"):
        lps_from_ijk_to_ras(degenerate)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(GeometryError, match="sheared"):
        lps_from_ijk_to_ras(sheared)
    with pytest.raises(GeometryError, match="spacing"):
        ijk_to_ras_from_lps((0, 0, 0), (1, 0, 1), np.eye(3))
