"""StrokeSegLib.scene.mrml against a real (headless) MRML scene from slicer-core.

Geometry is checked against the definition (world RAS = parentToWorld . IJKToRAS . ijk, LPS = diag(-1,-1,1) . RAS)
rather than against the module's own inverse, and against the real ISLES files whose slice axis Slicer reverses.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from scene_fixtures import vtk_matrix  # noqa: E402

from StrokeSegLib.common.errors import GeometryError, InvalidImageError  # noqa: E402
from StrokeSegLib.scene import mrml  # noqa: E402

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
ISLES_DWI = "sub-strokecase0009/ses-0001/dwi/sub-strokecase0009_ses-0001_dwi.nii.gz"
ISLES_MSK = "derivatives/sub-strokecase0009/ses-0001/sub-strokecase0009_ses-0001_msk.nii.gz"


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    t = sitk.Euler3DTransform((0, 0, 0), ax, ay, az)
    return np.array(t.GetMatrix()).reshape(3, 3)


def ijk_to_ras(direction: np.ndarray, spacing, origin) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = direction @ np.diag(spacing)
    m[:3, 3] = origin
    return m


def add_volume(scene, array: np.ndarray, matrix: np.ndarray, name: str = "vol", cls: str = "vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(cls, name)
    node.SetIJKToRASMatrix(vtk_matrix(matrix))
    slicer.util.updateVolumeFromArray(node, array)
    return node


def add_linear_transform(scene, matrix: np.ndarray, name: str = "T"):
    t = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    t.SetMatrixTransformToParent(vtk_matrix(matrix))
    return t


def corners(size) -> list[tuple[int, int, int]]:
    return [tuple(int(c) for c in p) for p in itertools.product(*[(0, s - 1) for s in size])]


def assert_physical(image: sitk.Image, world_ras_of_ijk: np.ndarray) -> None:
    """Every corner voxel index of ``image`` maps to LPS(world_ras_of_ijk . ijk)."""
    for ijk in corners(image.GetSize()):
        expected = RAS_TO_LPS @ (world_ras_of_ijk @ np.array([*ijk, 1.0]))[:3]
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(ijk), expected, atol=1e-6)


def random_volume(shape=(7, 9, 11), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 30, size=shape).astype(np.float32)


def test_array_node_with_oblique_geometry_converts_exactly(scene) -> None:
    array = random_volume()
    matrix = ijk_to_ras(rotation(0.3, -0.2, 0.5), (1.2, 0.9, 2.5), (-40.0, 12.5, 7.0))
    node = add_volume(scene, array, matrix)

    image = mrml.volume_node_to_sitk(node)

    assert image.GetSize() == (11, 9, 7)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
    np.testing.assert_allclose(image.GetSpacing(), (1.2, 0.9, 2.5), atol=1e-9)
    assert_physical(image, matrix)


def test_sitk_to_node_and_back_keeps_voxels_and_grid(scene) -> None:
    image = sitk.GetImageFromArray(random_volume(seed=1))
    image.SetSpacing((0.8, 1.1, 3.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection(tuple(rotation(-0.4, 0.1, 0.25).ravel()))

    node = mrml.sitk_to_volume_node(image, name="from sitk")
    back = mrml.volume_node_to_sitk(node)

    assert node.GetScene() is scene and node.GetName() == "from sitk"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    # The node itself holds RAS: voxel (0,0,0) sits at LPS origin with x and y negated.
    np.testing.assert_allclose(node.GetOrigin(), RAS_TO_LPS @ np.array(image.GetOrigin()), atol=1e-9)


def test_volume_under_linear_transform_is_hardened_into_geometry(scene) -> None:
    matrix = ijk_to_ras(rotation(0.1, 0.2, -0.3), (1.5, 1.5, 3.0), (5.0, -7.0, 2.0))
    node = add_volume(scene, random_volume(seed=2), matrix)
    parent = ijk_to_ras(rotation(0.0, 0.35, 0.2), (1, 1, 1), (12.0, -3.0, 40.0))
    grandparent = ijk_to_ras(rotation(-0.5, 0.0, 0.0), (1, 1, 1), (0.0, 9.0, -4.0))
    inner, outer = add_linear_transform(scene, parent, "inner"), add_linear_transform(scene, grandparent, "outer")
    inner.SetAndObserveTransformNodeID(outer.GetID())
    node.SetAndObserveTransformNodeID(inner.GetID())

    image = mrml.volume_node_to_sitk(node)

    assert_physical(image, grandparent @ parent @ matrix)
    # The node was not hardened: its own matrix is unchanged.
    local = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(local)
    np.testing.assert_allclose(mrml._matrix_to_array(local), matrix, atol=1e-12)


def test_sitk_into_transformed_node_lands_at_world_position(scene) -> None:
    image = sitk.GetImageFromArray(random_volume(seed=3))
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    parent = ijk_to_ras(rotation(0.2, 0.0, 0.4), (1, 1, 1), (30.0, 0.0, -10.0))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "moved")
    node.SetAndObserveTransformNodeID(add_linear_transform(scene, parent).GetID())

    mrml.sitk_to_volume_node(image, node=node)
    back = mrml.volume_node_to_sitk(node)

    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)


def test_non_linear_transform_is_refused_with_advice(scene) -> None:
    node = add_volume(scene, random_volume(seed=4), np.eye(4))
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for p in [(0, 0, 0), (50, 0, 0), (0, 50, 0), (0, 0, 50), (50, 50, 50)]:
        source.InsertNextPoint(p)
        target.InsertNextPoint(p[0] + 3.0 * (p[1] > 0), p[1], p[2])
    tps = vtk.vtkThinPlateSplineTransform()
    tps.SetSourceLandmarks(source)
    tps.SetTargetLandmarks(target)
    tps.SetBasisToR()
    warp = scene.AddNewNodeByClass("vtkMRMLTransformNode", "warp")
    warp.SetAndObserveTransformToParent(tps)
    node.SetAndObserveTransformNodeID(warp.GetID())

    with pytest.raises(GeometryError, match="Harden"):
        mrml.volume_node_to_sitk(node)


def test_shear_is_refused(scene) -> None:
    shear = np.eye(4)
    shear[0, 1] = 0.3
    node = add_volume(scene, random_volume(seed=5), shear)
    with pytest.raises(GeometryError, match="shear"):
        mrml.volume_node_to_sitk(node)


def test_vector_volume_and_missing_node_are_refused(scene) -> None:
    vector = add_volume(scene, np.zeros((3, 4, 5, 2), np.float32), np.eye(4), cls="vtkMRMLVectorVolumeNode")
    with pytest.raises(InvalidImageError, match="scalar"):
        mrml.volume_node_to_sitk(vector)
    with pytest.raises(InvalidImageError):
        mrml.volume_node_to_sitk(None)


def lesion_mask_like(image: sitk.Image, seed: int = 0, threshold: float = 1.3) -> sitk.Image:
    rng = np.random.default_rng(seed)
    array = (rng.normal(size=sitk.GetArrayFromImage(image).shape) > threshold).astype(np.uint8)
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


def test_fill_segmentation_names_colours_codes_and_replaces(scene) -> None:
    matrix = ijk_to_ras(rotation(0.3, 0.1, -0.2), (1.5, 1.5, 3.0), (-20.0, 30.0, 5.0))
    dwi = add_volume(scene, random_volume(seed=6), matrix, "DWI")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "lesions")
    first = lesion_mask_like(mrml.volume_node_to_sitk(dwi), seed=1)
    second = lesion_mask_like(mrml.volume_node_to_sitk(dwi), seed=2, threshold=1.8)

    sid = mrml.fill_segmentation_from_labelmap(seg, first, dwi)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)),
        sitk.GetArrayFromImage(first),
    )
    sid_again = mrml.fill_segmentation_from_labelmap(seg, second, dwi)

    segmentation = seg.GetSegmentation()
    assert sid_again == sid and segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetSegment(sid)
    assert segment.GetName() == "Ischemic stroke lesion"
    np.testing.assert_allclose(segment.GetColor(), mrml.LESION_COLOR)
    assert segment.GetTerminology() == mrml.LESION_TERMINOLOGY
    assert seg.GetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole()) == dwi.GetID()
    exported = mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(exported), sitk.GetArrayFromImage(second))
    np.testing.assert_allclose(exported.GetDirection(), first.GetDirection(), atol=1e-9)
    # No temporary labelmaps or colour tables are left behind.
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    assert not [n for n in slicer.util.getNodes("*", scene=scene) if "__StrokeSeg" in n]


def test_other_segments_are_kept(scene) -> None:
    dwi = add_volume(scene, random_volume(seed=7), np.diag([2.0, 2.0, 2.0, 1.0]), "DWI")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    mrml.ensure_segmentation_converters()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(dwi)
    seg.GetSegmentation().AddEmptySegment("", "Hemorrhage", [1.0, 0.0, 0.0])
    mrml.fill_segmentation_from_labelmap(seg, lesion_mask_like(mrml.volume_node_to_sitk(dwi)), dwi)
    segmentation = seg.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["Hemorrhage", "Ischemic stroke lesion"]


@pytest.mark.parametrize("segmentation_under_transform", [False, True])
def test_lesion_follows_transformed_dwi(scene, segmentation_under_transform: bool) -> None:
    matrix = ijk_to_ras(rotation(0.2, -0.1, 0.3), (1.2, 1.2, 2.4), (0.0, -10.0, 20.0))
    dwi = add_volume(scene, random_volume(seed=8), matrix, "DWI")
    parent = ijk_to_ras(rotation(0.3, 0.2, -0.4), (1, 1, 1), (25.0, -15.0, 8.0))
    t = add_linear_transform(scene, parent)
    dwi.SetAndObserveTransformNodeID(t.GetID())
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    if segmentation_under_transform:
        seg.SetAndObserveTransformNodeID(t.GetID())
    mask = lesion_mask_like(mrml.volume_node_to_sitk(dwi), seed=9)

    mrml.fill_segmentation_from_labelmap(seg, mask, dwi)
    exported = mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)

    np.testing.assert_array_equal(sitk.GetArrayFromImage(exported), sitk.GetArrayFromImage(mask))
    assert_physical(exported, parent @ matrix)


def test_terminology_string_is_what_slicer_parses() -> None:
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(mrml.LESION_TERMINOLOGY, entry)
    assert entry.GetTerminologyContextName() == "Segmentation category and type - StrokeSeg"  # shipped, see below
    assert (entry.GetCategoryObject().GetCodingSchemeDesignator(), entry.GetCategoryObject().GetCodeValue()) == (
        "SCT",
        "49755003",
    )
    assert (entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()) == ("55641003", "Infarct")
    assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry) == mrml.LESION_TERMINOLOGY


def load_with_slicer(scene, path) -> object:
    """Load a file the way Slicer's Add Data does (volumes logic, archetype reader)."""
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    node = logic.AddArchetypeVolume(str(path), path.name.split(".")[0], 0)
    assert node is not None, f"Slicer could not load {path}"
    return node


@pytest.mark.realdata
def test_loaded_isles_file_matches_simpleitk_physically(scene, isles_root) -> None:
    path = isles_root / ISLES_DWI
    reference = sitk.ReadImage(str(path))
    node = load_with_slicer(scene, path)
    # The pitfall this module exists for: Slicer's array has the slice axis reversed.
    assert np.array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(reference)[::-1])

    image = mrml.volume_node_to_sitk(node)

    flipped = sitk.Flip(reference, [False, False, True])  # same physical voxels, slice index reversed
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(flipped))
    np.testing.assert_allclose(image.GetOrigin(), flipped.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(image.GetSpacing(), flipped.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), flipped.GetDirection(), atol=1e-5)
    # Same value at the same physical point, without resampling.
    data, ref = sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference)
    for idx in [(60, 50, 30), (20, 90, 70), (0, 0, 0), (111, 111, 72)]:
        other = reference.TransformPhysicalPointToIndex(image.TransformIndexToPhysicalPoint(idx))
        assert other == (idx[0], idx[1], 72 - idx[2])
        assert data[idx[::-1]] == ref[other[::-1]]


@pytest.mark.realdata
def test_axis_aligned_real_scan_keeps_its_order(scene, nonstripped_case) -> None:
    path = nonstripped_case / "dwi.nii.gz"
    reference = sitk.ReadImage(str(path))
    image = mrml.volume_node_to_sitk(load_with_slicer(scene, path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-5)


@pytest.mark.realdata
def test_expert_mask_read_by_simpleitk_lands_on_the_slicer_loaded_dwi(scene, isles_root) -> None:
    """A mask on SimpleITK's grid goes into a segmentation of the Slicer-loaded (flipped) DWI at the same voxels."""
    dwi = load_with_slicer(scene, isles_root / ISLES_DWI)
    mask = sitk.ReadImage(str(isles_root / ISLES_MSK))
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "expert")

    mrml.fill_segmentation_from_labelmap(seg, mask, dwi)
    exported = mrml.labelmap_from_segmentation(seg, mrml.LESION_SEGMENT_NAME, dwi)

    assert int(sitk.GetArrayViewFromImage(exported).sum()) == 523
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(exported), sitk.GetArrayFromImage(sitk.Flip(mask, [False, False, True])) > 0
    )


def test_the_lesion_terminology_resolves_in_the_shipped_terminology() -> None:
    """The segment's terminology entry names a context StrokeSeg ships and loads at startup, with the same codes,
    colour and label, so Slicer's terminology selector can show it (55641003 is not in the DICOM master list)."""
    import json

    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    assert mrml.load_lesion_terminology(terminologies) == mrml.TERMINOLOGY_CONTEXT
    assert mrml.load_lesion_terminology(terminologies) == mrml.TERMINOLOGY_CONTEXT  # loading twice is harmless
    entry = slicer.vtkSlicerTerminologyEntry()
    assert terminologies.DeserializeTerminologyEntry(mrml.LESION_TERMINOLOGY, entry)
    assert entry.GetTerminologyContextName() == mrml.TERMINOLOGY_CONTEXT
    category, kind = slicer.vtkSlicerTerminologyCategory(), slicer.vtkSlicerTerminologyType()
    assert terminologies.GetNthCategoryInTerminology(mrml.TERMINOLOGY_CONTEXT, 0, category)
    assert terminologies.GetNthTypeInTerminologyCategory(mrml.TERMINOLOGY_CONTEXT, category, 0, kind)
    assert (category.GetCodeValue(), kind.GetCodeValue(), kind.GetCodeMeaning()) == (
        entry.GetCategoryObject().GetCodeValue(), entry.GetTypeObject().GetCodeValue(), "Infarct")
    assert kind.GetRecommendedDisplayRGBValue() == tuple(round(c * 255) for c in mrml.LESION_COLOR)
    context = json.loads(mrml.TERMINOLOGY_FILE.read_text())["SegmentationCategoryTypeContextName"]
    assert context == mrml.TERMINOLOGY_CONTEXT
