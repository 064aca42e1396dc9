"""Grids, overlap and resampling in physical space, with oblique directions and anisotropic spacing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from StrokeSegLib.common.errors import GeometryError
from StrokeSegLib.common.geometry import Grid, grid_with_spacing, overlap_fraction, resample_to_grid, same_grid


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues), to make oblique direction cosines."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(degrees)
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def oblique_image(size=(40, 36, 12), spacing=(0.9, 0.9, 4.0), origin=(-20.0, 15.0, -30.0), degrees=17.0,
                  pixel=sitk.sitkFloat32) -> sitk.Image:
    image = sitk.Image(list(size), pixel)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(rotation((1, 2, 3), degrees).ravel()))
    return image


def test_grid_of_roundtrips_through_reference_image() -> None:
    image = oblique_image()
    grid = Grid.of(image)
    assert grid.size == (40, 36, 12)
    assert grid.shape == (12, 36, 40)
    again = Grid.of(grid.reference_image(sitk.sitkFloat32))
    assert again == grid
    assert grid.reference_image().GetPixelID() == sitk.sitkUInt8


def test_grid_rejects_bad_geometry() -> None:
    with pytest.raises(GeometryError):
        Grid((0, 2, 2), (0, 0, 0), (1, 1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(GeometryError):
        Grid((2, 2, 2), (0, 0, 0), (1, -1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(GeometryError):
        Grid((2, 2, 2), (0, 0, 0), (1, 1, 1), (1, 0, 0, 1, 0, 0, 0, 0, 1))


def test_index_physical_matches_simpleitk() -> None:
    image = oblique_image()
    grid = Grid.of(image)
    index = np.array([[3.25, 7.5, 2.0], [0, 0, 0], [39, 35, 11]])
    ours = grid.index_to_physical(index)
    theirs = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(map(float, i))) for i in index])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(grid.physical_to_index(ours), index, atol=1e-9)


def test_physical_bounds_contains_all_corners_and_half_voxels() -> None:
    image = sitk.Image([10, 20, 5], sitk.sitkUInt8)
    image.SetSpacing((1.0, 2.0, 3.0))
    image.SetOrigin((5.0, 0.0, -1.0))
    lo, hi = Grid.of(image).physical_bounds()
    np.testing.assert_allclose(lo, (4.5, -1.0, -2.5))
    np.testing.assert_allclose(hi, (14.5, 39.0, 12.5))


def test_same_grid_tolerances() -> None:
    a = oblique_image()
    b = oblique_image(origin=(-20.0 + 5e-5, 15.0, -30.0))
    assert same_grid(a, b) and same_grid(Grid.of(a), b)
    assert not same_grid(a, oblique_image(origin=(-20.0 + 1e-2, 15.0, -30.0)))
    assert not same_grid(a, oblique_image(spacing=(0.9, 0.9, 4.01)))
    assert not same_grid(a, oblique_image(size=(40, 36, 13)))
    assert not same_grid(a, oblique_image(degrees=17.5))


def test_overlap_fraction_oblique() -> None:
    reference = oblique_image()
    assert overlap_fraction(reference, reference) == pytest.approx(1.0)
    # Shift the moving image by half its extent along its first index axis: about half the reference is covered.
    grid = Grid.of(reference)
    shift = grid.matrix[:, 0] * (grid.size[0] * grid.spacing[0] / 2)
    moving = oblique_image(origin=tuple(np.asarray(grid.origin) + shift))
    assert overlap_fraction(moving, reference) == pytest.approx(0.5, abs=0.05)
    far = oblique_image(origin=(500.0, 500.0, 500.0))
    assert overlap_fraction(far, reference) == 0.0
    # A moving image rotated by 45 degrees about the slice axis covers only part of the reference's box.
    rotated = sitk.Image(reference)
    centre = grid.index_to_physical(np.asarray(grid.size) / 2 - 0.5)[0]
    direction = rotation((0, 0, 1), 45) @ grid.matrix
    rotated.SetDirection(tuple(direction.ravel()))
    rotated.SetOrigin(tuple(centre - direction @ ((np.asarray(grid.size) / 2 - 0.5) * grid.spacing)))
    assert 0.5 < overlap_fraction(rotated, reference) < 0.95


def test_overlap_fraction_within_a_mask() -> None:
    reference = oblique_image()
    grid = Grid.of(reference)
    # Anatomy only in the first half of the first axis; the moving box covers the second half.
    mask = np.zeros(grid.shape, np.uint8)
    mask[:, :, : grid.size[0] // 2] = 1
    within = grid.image_from_array(mask)
    moving = oblique_image(origin=tuple(np.asarray(grid.origin) + grid.matrix[:, 0] * grid.spacing[0] * 20))
    assert overlap_fraction(moving, reference) == pytest.approx(0.5, abs=0.05)
    assert overlap_fraction(moving, reference, within=within) < 0.05
    assert overlap_fraction(reference, reference, within=within) == pytest.approx(1.0)
    with pytest.raises(GeometryError):
        overlap_fraction(moving, reference, within=sitk.Image([3, 3, 3], sitk.sitkUInt8))


def blob(grid: Grid, centre_mm: np.ndarray, radius_mm: float) -> sitk.Image:
    """A soft ball at a physical point, sampled on ``grid``."""
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    index = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    distance = np.linalg.norm(grid.index_to_physical(index) - centre_mm, axis=1).reshape(grid.shape)
    array = np.clip(radius_mm + 1.0 - distance, 0, 2).astype(np.float32)
    return grid.image_from_array(array)


def centroid_mm(image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    zz, yy, xx = np.nonzero(array)
    weights = array[zz, yy, xx]
    index = np.stack([xx, yy, zz], axis=1)
    return (Grid.of(image).index_to_physical(index) * weights[:, None]).sum(axis=0) / weights.sum()


def test_resample_keeps_physical_position_and_types() -> None:
    source_grid = Grid.of(oblique_image())
    centre = source_grid.index_to_physical(np.array([20.0, 18.0, 6.0]))[0]
    image = blob(source_grid, centre, 6.0)
    target = Grid.of(oblique_image(size=(30, 30, 30), spacing=(1.5, 1.5, 1.5), origin=(-30, 0, -40), degrees=-30))
    out = resample_to_grid(image, target)
    assert Grid.of(out) == target
    assert out.GetPixelID() == sitk.sitkFloat32
    assert np.linalg.norm(centroid_mm(out) - centre) < 0.75

    labels = sitk.Cast(image > 0.5, sitk.sitkUInt8)
    out_labels = resample_to_grid(labels, target, "nearest")
    assert out_labels.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(out_labels))) <= {0, 1}
    assert np.linalg.norm(centroid_mm(out_labels) - centre) < 0.75
    assert resample_to_grid(image, target, "bspline").GetPixelID() == sitk.sitkFloat32
    with pytest.raises(ValueError):
        resample_to_grid(image, target, "cubic")


def test_resample_with_transform_moves_content() -> None:
    grid = Grid.of(oblique_image(size=(32, 32, 32), spacing=(1.0, 1.0, 1.0), degrees=0.0))
    centre = grid.index_to_physical(np.array([16.0, 16.0, 16.0]))[0]
    image = blob(grid, centre, 4.0)
    # The transform maps output points to input points: output content appears at centre - offset.
    offset = np.array([3.0, -2.0, 1.0])
    out = resample_to_grid(image, grid, transform=sitk.TranslationTransform(3, tuple(offset)))
    np.testing.assert_allclose(centroid_mm(out), centre - offset, atol=0.2)


def test_grid_with_spacing_covers_extent_with_aligned_corner() -> None:
    source = oblique_image(size=(41, 36, 12), spacing=(0.9, 0.9, 4.0))
    grid = grid_with_spacing(source, (2.0, 2.0, 2.0))
    assert grid.direction == Grid.of(source).direction
    assert grid.spacing == (2.0, 2.0, 2.0)
    assert grid.size == (math.ceil(41 * 0.9 / 2), math.ceil(36 * 0.9 / 2), 24)
    # The outer corner of the first voxel is the same physical point.
    first_old = Grid.of(source).index_to_physical(np.array([-0.5, -0.5, -0.5]))
    first_new = grid.index_to_physical(np.array([-0.5, -0.5, -0.5]))
    np.testing.assert_allclose(first_new, first_old, atol=1e-9)
    # Exact multiples do not gain a voxel from rounding; a scalar spacing works.
    isles_like = oblique_image(size=(112, 112, 73), spacing=(2.0, 2.0, 2.0))
    assert grid_with_spacing(isles_like, 2.0) == Grid.of(isles_like)
    with pytest.raises(GeometryError):
        grid_with_spacing(source, (2.0, 0.0, 2.0))
