"""The Segment Editor effect's scene side on a real MRML scene: the lesion is resampled into the editor's modifier
geometry (the segmentation's own grid and frame), so it lands where the DWI shows it with the segmentation under a
translation and a rotation, or on a grid other than the DWI's; it goes into a dedicated lesion segment; a preview is
invalidated when its inputs change; the progress value never goes back."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from scene_fixtures import vtk_matrix  # noqa: E402

from StrokeSegLib.panels.effect_state import OverallProgress, PreviewKey  # noqa: E402
from StrokeSegLib.scene import mrml  # noqa: E402

MODE_REPLACE = 0  # vtkSlicerSegmentationsModuleLogic.MODE_REPLACE


def matrix4(rotation_xyz=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.array(sitk.Euler3DTransform((0, 0, 0), *rotation_xyz).GetMatrix()).reshape(3, 3) @ np.diag(spacing)
    m[:3, 3] = origin
    return m


def add_dwi(scene, shape=(20, 36, 40), matrix=None):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "DWI")
    node.SetIJKToRASMatrix(vtk_matrix(matrix if matrix is not None else matrix4((0.1, -0.05, 0.2), (1.5, 1.5, 3.0),
                                                                                  (-30.0, 20.0, -25.0))))
    slicer.util.updateVolumeFromArray(node, np.random.default_rng(0).normal(100, 10, shape).astype(np.float32))
    return node


def ball_mask(dwi_node, center_index=(22, 16, 9), radius_mm=7.0) -> sitk.Image:
    """A lesion ball on the DWI's world grid (what the engine returns)."""
    dwi = mrml.volume_node_to_sitk(dwi_node)
    center = np.array(dwi.TransformIndexToPhysicalPoint(center_index))
    size = dwi.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    points = np.array([dwi.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in idx.astype(float)])
    inside = np.linalg.norm(points - center, axis=1) <= radius_mm
    array = np.zeros(size[::-1], np.uint8)
    array[idx[inside, 2], idx[inside, 1], idx[inside, 0]] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(dwi)
    return mask


def apply_like_the_editor(segmentation_node, lesion) -> str:
    """What modifySelectedSegmentByLabelmap(..., ModificationModeSet) does with the effect's labelmap, less masking."""
    segment_id = mrml.ensure_lesion_segment(segmentation_node)
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        lesion, segmentation_node, segment_id, MODE_REPLACE, lesion.GetExtent())
    assert ok
    return segment_id


def world_centroid(mask: sitk.Image) -> np.ndarray:
    idx = np.argwhere(sitk.GetArrayFromImage(mask) > 0)[:, ::-1].astype(float)
    assert len(idx), "empty mask"
    return np.mean([mask.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in idx], axis=0)


def dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayFromImage(a) > 0, sitk.GetArrayFromImage(b) > 0
    return 2.0 * (x & y).sum() / (x.sum() + y.sum())


def new_segmentation(scene, reference, transform=None):
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    seg.CreateDefaultDisplayNodes()
    if transform is not None:
        seg.SetAndObserveTransformNodeID(transform.GetID())
    seg.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    return seg


TRANSFORMS = {
    "none": np.eye(4),
    "translation": matrix4(origin=(12.0, -7.5, 20.0)),
    "rotation": matrix4(rotation_xyz=(0.3, -0.2, 0.45)),
    "rotation+translation": matrix4(rotation_xyz=(-0.25, 0.1, 0.6), origin=(-9.0, 14.0, 5.0)),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_lesion_lands_where_the_dwi_shows_it_under_a_parent_transform(scene, name: str) -> None:
    dwi = add_dwi(scene)
    mask = ball_mask(dwi)
    transform = None
    if name != "none":
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
        transform.SetMatrixTransformToParent(vtk_matrix(TRANSFORMS[name]))
    seg = new_segmentation(scene, dwi, transform)

    lesion = mrml.lesion_on_modifier_geometry(mask, mrml.reference_geometry_image(seg), seg)
    apply_like_the_editor(seg, lesion)

    written = mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)
    np.testing.assert_allclose(world_centroid(written), world_centroid(mask), atol=1.0)
    assert dice(written, mask) > 0.85
    if name == "none":
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(mask))


def test_the_dwi_grid_labelmap_as_is_would_land_elsewhere_under_a_rotation(scene) -> None:
    """The old effect's way (DWI-grid labelmap handed over in world coordinates) misplaces the lesion: this test
    would catch a regression to it."""
    dwi = add_dwi(scene)
    mask = ball_mask(dwi)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "rotation")
    transform.SetMatrixTransformToParent(vtk_matrix(TRANSFORMS["rotation+translation"]))
    seg = new_segmentation(scene, dwi, transform)
    preview = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "old-style preview")
    mrml.fill_segmentation_from_labelmap(preview, mask, dwi)
    naive = slicer.vtkOrientedImageData()
    preview.GetBinaryLabelmapRepresentation(preview.GetSegmentation().GetSegmentIdBySegmentName(
        mrml.LESION_SEGMENT_NAME), naive)
    apply_like_the_editor(seg, naive)
    written = mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)
    assert np.linalg.norm(world_centroid(written) - world_centroid(mask)) > 5.0


def test_segmentation_on_another_grid_than_the_dwi(scene) -> None:
    """A segmentation whose reference geometry comes from a coarser, rotated volume: the lesion is resampled onto
    that grid (nearest neighbour) and stays in place."""
    dwi = add_dwi(scene)
    mask = ball_mask(dwi)
    other = add_dwi(scene, shape=(24, 40, 40), matrix=matrix4((0.4, 0.2, -0.3), (2.0, 2.0, 2.5), (-45.0, 0.0, -50.0)))
    other.SetName("T2")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    transform.SetMatrixTransformToParent(vtk_matrix(matrix4(rotation_xyz=(0.0, 0.0, 0.2), origin=(3.0, 2.0, -1.0))))
    seg = new_segmentation(scene, other, transform)
    modifier = mrml.reference_geometry_image(seg)

    lesion = mrml.lesion_on_modifier_geometry(mask, modifier, seg)

    assert lesion.GetExtent() == modifier.GetExtent()
    lm, mm = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    lesion.GetImageToWorldMatrix(lm)
    modifier.GetImageToWorldMatrix(mm)
    assert all(lm.GetElement(r, c) == mm.GetElement(r, c) for r in range(4) for c in range(4))
    ball_ml = sitk.GetArrayFromImage(mask).sum() * 1.5 * 1.5 * 3.0 / 1000
    from vtk.util import numpy_support

    lesion_ml = numpy_support.vtk_to_numpy(lesion.GetPointData().GetScalars()).sum() * 2.0 * 2.0 * 2.5 / 1000
    assert lesion_ml == pytest.approx(ball_ml, rel=0.25)  # the whole lesion is on the segmentation's grid
    apply_like_the_editor(seg, lesion)
    written = mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)
    np.testing.assert_allclose(world_centroid(written), world_centroid(mask), atol=1.5)
    assert dice(written, mask) > 0.6


def test_no_reference_geometry_is_a_clear_error(scene) -> None:
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bare")
    with pytest.raises(mrml.StrokeSegError, match="no reference geometry"):
        mrml.reference_geometry_image(seg)


def test_the_dedicated_segment_is_created_or_reused_and_others_are_left_alone(scene) -> None:
    dwi = add_dwi(scene)
    seg = new_segmentation(scene, dwi)
    other = seg.GetSegmentation().AddEmptySegment("", "Ventricles", [0.1, 0.2, 0.9])

    lesion_id = mrml.ensure_lesion_segment(seg)

    segment = seg.GetSegmentation().GetSegment(lesion_id)
    assert lesion_id != other and segment.GetName() == mrml.LESION_SEGMENT_NAME
    np.testing.assert_allclose(segment.GetColor(), mrml.LESION_COLOR)
    assert segment.GetTerminology() == mrml.LESION_TERMINOLOGY
    assert seg.GetSegmentation().GetSegment(other).GetName() == "Ventricles"
    assert mrml.ensure_lesion_segment(seg) == lesion_id and seg.GetSegmentation().GetNumberOfSegments() == 2


def test_preview_key_changes_with_the_inputs(scene) -> None:
    dwi, adc = add_dwi(scene), add_dwi(scene)
    key = PreviewKey.of(dwi, adc, "model-a", False)
    assert PreviewKey.of(dwi, adc, "model-a", False) == key
    assert PreviewKey.of(adc, dwi, "model-a", False) != key  # another source volume
    assert PreviewKey.of(dwi, adc, "model-b", False) != key
    assert PreviewKey.of(dwi, adc, "model-a", True) != key
    slicer.util.arrayFromVolume(adc)[:] += 1.0
    slicer.util.arrayFromVolumeModified(adc)
    assert PreviewKey.of(dwi, adc, "model-a", False) != key  # the ADC's voxels changed
    key = PreviewKey.of(dwi, adc, "model-a", False)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    dwi.SetAndObserveTransformNodeID(transform.GetID())
    assert PreviewKey.of(dwi, adc, "model-a", False) != key  # the DWI was put under a transform


def test_overall_progress_never_goes_back_and_ends_only_when_told() -> None:
    progress = OverallProgress(expected_stages=3)
    values = [progress.update(stage, f) for stage, f in [("Reading", 0.0), ("Reading", 1.0), ("Aligning", 0.0),
                                                         ("Aligning", 0.5), ("Predicting", 0.0), ("Predicting", 1.0),
                                                         ("Post-processing", 0.0), ("Post-processing", 1.0)]]
    assert values == sorted(values) and values[-1] == 99 and progress.label == "Post-processing"
    assert progress.finish() == 100
