"""Exact conversions between Slicer scene nodes and SimpleITK images (the only module that imports ``slicer``).

Slicer and SimpleITK may store the same scan with different index orders (a loaded NIfTI can come back with its slice
axis reversed, the IJKToRAS matrix compensating), so nothing here compares arrays directly: every crossing goes through
the node's IJKToRAS matrix and the image's origin/spacing/direction, converted only by
:mod:`StrokeSegLib.scene.coordinates`. Parent transforms are honoured when linear (hardened into the geometry, never by
resampling) and refused otherwise. ``slicer`` is imported inside functions so that ``import StrokeSegLib.scene.mrml``
works anywhere.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..common.errors import GeometryError, InvalidImageError, StrokeSegError
from . import coordinates

LESION_SEGMENT_NAME = "Ischemic stroke lesion"
# A warm yellow-orange: stands out on grey DWI and differs from Slicer's red "Hemorrhage" colour.
LESION_COLOR: tuple[float, float, float] = (1.0, 0.76, 0.16)
# SNOMED CT 55641003 "Infarct" is not in Slicer's bundled DICOM master list, so StrokeSeg ships a small terminology
# (category 49755003 "Morphologically Altered Structure", type 55641003 "Infarct") that the module loads at startup;
# the segment's terminology entry names that context, serialised the way vtkSlicerTerminologiesModuleLogic does.
TERMINOLOGY_FILE = (
    Path(__file__).resolve().parents[2] / "Resources" / "Terminology"
    / "SegmentationCategoryTypeModifier-StrokeSeg.term.json"
)
TERMINOLOGY_CONTEXT = "Segmentation category and type - StrokeSeg"
LESION_TERMINOLOGY = (
    f"{TERMINOLOGY_CONTEXT}"
    "~SCT^49755003^Morphologically Altered Structure"
    "~SCT^55641003^Infarct"
    "~^^"
    "~Anatomic codes - DICOM master list"
    "~^^~^^"
)


def load_lesion_terminology(terminologies_logic: Any) -> str:
    """Load StrokeSeg's terminology into Slicer's Terminologies logic (once per session) and return its context name,
    so the lesion segment's type resolves in the terminology selector."""
    if terminologies_logic.IsTerminologyContextLoaded(TERMINOLOGY_CONTEXT):
        return TERMINOLOGY_CONTEXT
    name = terminologies_logic.LoadTerminologyFromFile(str(TERMINOLOGY_FILE))
    if name != TERMINOLOGY_CONTEXT:
        raise StrokeSegError(f"Could not load the StrokeSeg terminology from {TERMINOLOGY_FILE} (got {name!r}).")
    return name


_SCALAR_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode")


def _slicer() -> Any:
    try:
        import slicer
    except ImportError as error:  # pragma: no cover - only outside Slicer without slicer-core
        raise StrokeSegError("This function needs 3D Slicer (or the slicer-core package).") from error
    return slicer


def _matrix_to_array(vtk_matrix: Any) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _array_to_matrix(array: np.ndarray) -> Any:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def parent_to_world(node: Any) -> np.ndarray:
    """4x4 matrix from the node's local frame to world RAS (identity without a parent transform).

    Raises :class:`GeometryError` for non-linear transforms: those would need resampling, which the user should do
    deliberately (Harden transform) rather than have it happen silently.
    """
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise GeometryError(
            f"'{node.GetName()}' is under the non-linear transform '{transform.GetName()}'. "
            "Harden the transform (Data module, right-click > Harden transform) and try again."
        )
    import vtk

    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return _matrix_to_array(matrix)


def world_ijk_to_ras(node: Any) -> np.ndarray:
    """The node's IJK-to-world-RAS matrix: parentToWorld . IJKToRAS (a hardened copy; the node is not changed)."""
    import vtk

    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    return parent_to_world(node) @ _matrix_to_array(ijk_to_ras)


def _set_geometry(image: sitk.Image, matrix: np.ndarray, what: str) -> None:
    try:
        origin, spacing, direction = coordinates.lps_from_ijk_to_ras(matrix)
    except GeometryError as error:  # e.g. a transform with shear: say which volume
        raise GeometryError(f"{what}: {error}") from error
    image.SetOrigin(tuple(float(v) for v in np.ravel(origin)))
    image.SetSpacing(tuple(float(v) for v in np.ravel(spacing)))
    image.SetDirection(tuple(float(v) for v in np.ravel(direction)))


def _ijk_to_ras_of(image: sitk.Image) -> np.ndarray:
    return np.asarray(
        coordinates.ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(), image.GetDirection()), dtype=float
    )


def volume_node_to_sitk(node: Any) -> sitk.Image:
    """A scalar volume node as a SimpleITK image at its world position, voxels copied, no resampling.

    The array keeps Slicer's K,J,I storage order, which is SimpleITK's z,y,x, so index (i,j,k) of the image is voxel
    (i,j,k) of the node; the geometry comes from the (hardened) IJKToRAS matrix, so both describe the same physical
    voxels whatever order the file reader chose.
    """
    if node is None:
        raise InvalidImageError("No volume selected.")
    if node.GetClassName() not in _SCALAR_CLASSES:
        raise InvalidImageError(
            f"Volume '{node.GetName()}' is a {node.GetClassName()}; select a single 3-D scalar volume "
            "(for a multi-volume DWI, pick the highest b-value frame)."
        )
    if node.GetImageData() is None or node.GetImageData().GetPointData().GetScalars() is None:
        raise InvalidImageError(f"Volume '{node.GetName()}' has no voxels.")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InvalidImageError(f"Volume '{node.GetName()}' has several components per voxel; select a scalar volume.")
    slicer = _slicer()
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    image = sitk.GetImageFromArray(array)
    _set_geometry(image, world_ijk_to_ras(node), f"Volume '{node.GetName()}'")
    return image


def sitk_to_volume_node(
    image: sitk.Image,
    node: Any = None,
    name: str = "Volume",
    scene: Any = None,
    class_name: str = "vtkMRMLScalarVolumeNode",
) -> Any:
    """Write ``image`` into ``node`` (created in ``scene``, default ``slicer.mrmlScene``, when None).

    The image's physical geometry is world RAS; if the node sits under a linear transform its local IJKToRAS is set so
    that the voxels still land at the same world position.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError("Only 3-D scalar images can become volume nodes.")
    slicer = _slicer()
    if node is None:
        scene = scene if scene is not None else slicer.mrmlScene
        node = scene.AddNewNodeByClass(class_name, name)
    world = _ijk_to_ras_of(image)
    local = np.linalg.inv(parent_to_world(node)) @ world
    node.SetIJKToRASMatrix(_array_to_matrix(local))
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def ensure_segmentation_converters() -> None:
    """Register Slicer's standard segmentation conversion rules when nothing has (only headless slicer-core).

    Inside the Slicer application the Segmentations module has already done this; registering twice is avoided.
    """
    slicer = _slicer()
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules():
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def _string_array(values: Sequence[str]) -> Any:
    import vtk

    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array


def fill_segmentation_from_labelmap(
    segmentation_node: Any,
    mask: sitk.Image,
    reference_volume_node: Any,
    segment_name: str = LESION_SEGMENT_NAME,
    color: Sequence[float] = LESION_COLOR,
    terminology: str | None = LESION_TERMINOLOGY,
) -> str:
    """Put ``mask > 0`` into the segment called ``segment_name``, replacing it if it exists; return its segment ID.

    The segmentation's reference geometry is set to ``reference_volume_node`` (the DWI), which also makes the Segment
    Editor pick the DWI as source volume. The mask keeps its own grid (normally exactly the DWI's), so nothing is
    resampled. Re-running replaces the segment's voxels in place, keeping its ID and any user display settings.
    """
    slicer = _slicer()
    if segmentation_node is None or reference_volume_node is None:
        raise StrokeSegError("A segmentation node and a reference volume are required.")
    if mask.GetDimension() != 3:
        raise InvalidImageError("The lesion mask must be a 3-D image.")
    ensure_segmentation_converters()
    scene = segmentation_node.GetScene()
    segmentation_to_world = parent_to_world(segmentation_node)  # refuses a non-linear transform before any change
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    segmentation = segmentation_node.GetSegmentation()
    segment_id = ensure_lesion_segment(segmentation_node, segment_name, color, terminology)

    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__StrokeSeg_temp_mask__")
    try:
        # Build the temporary labelmap in the segmentation's own frame so that Slicer applies no transform on import:
        # with differing frames slicer-core 5.13's ImportLabelmapToSegmentationNode applies it twice (seen in tests).
        if segmentation_node.GetTransformNodeID():
            labelmap.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
        local = np.linalg.inv(segmentation_to_world) @ _ijk_to_ras_of(binary)
        labelmap.SetIJKToRASMatrix(_array_to_matrix(local))
        slicer.util.updateVolumeFromArray(labelmap, sitk.GetArrayFromImage(binary))
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap, segmentation_node, _string_array([segment_id])
        )
        if not ok:
            raise StrokeSegError(
                f"Could not write the lesion into '{segmentation_node.GetName()}' "
                "(its source representation must be a binary labelmap)."
            )
    finally:
        scene.RemoveNode(labelmap)

    _style_segment(segmentation.GetSegment(segment_id), segment_name, color, terminology)
    segmentation_node.Modified()
    return segment_id


def _style_segment(segment: Any, name: str, color: Sequence[float], terminology: str | None) -> None:
    segment.SetName(name)
    segment.SetNameAutoGenerated(False)
    segment.SetColor(*[float(c) for c in color])
    segment.SetColorAutoGenerated(False)
    if terminology:
        if hasattr(segment, "SetTerminology"):  # Slicer >= 5.8
            segment.SetTerminology(terminology)
        else:
            segment.SetTag(segment.GetTerminologyEntryTagName(), terminology)


def ensure_lesion_segment(
    segmentation_node: Any,
    segment_name: str = LESION_SEGMENT_NAME,
    color: Sequence[float] = LESION_COLOR,
    terminology: str | None = LESION_TERMINOLOGY,
) -> str:
    """The ID of the segment called ``segment_name``, created empty with the lesion's colour and terminology when
    missing (an existing one keeps its voxels; its name, colour and terminology are set)."""
    ensure_segmentation_converters()
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    if not segment_id and segmentation.GetNumberOfSegments() == 0:
        segmentation_node.SetSourceRepresentationToBinaryLabelmap()
    if not segment_id:
        segment_id = segmentation.AddEmptySegment("", segment_name, [float(c) for c in color])
        if not segment_id:
            raise StrokeSegError(f"Could not add segment '{segment_name}' to '{segmentation_node.GetName()}'.")
    _style_segment(segmentation.GetSegment(segment_id), segment_name, color, terminology)
    return segment_id


def labelmap_from_segmentation(segmentation_node: Any, segment_name: str, reference_volume_node: Any) -> sitk.Image:
    """The segment as a uint8 {0,1} image on the reference volume's full grid (world geometry), for export and tests."""
    slicer = _slicer()
    ensure_segmentation_converters()
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        raise StrokeSegError(f"Segmentation '{segmentation_node.GetName()}' has no segment named '{segment_name}'.")
    scene = segmentation_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__StrokeSeg_temp_export__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node,
            _string_array([segment_id]),
            labelmap,
            reference_volume_node,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
        )
        if not ok or labelmap.GetImageData() is None:
            raise StrokeSegError(f"Could not export segment '{segment_name}'.")
        image = volume_node_to_sitk(labelmap)
    finally:
        # The export made a colour table just for this temporary labelmap (as slicer.util does, remove both).
        display = labelmap.GetDisplayNode()
        color_node = display.GetColorNode() if display is not None else None
        scene.RemoveNode(labelmap)
        if color_node is not None and color_node.GetType() == color_node.User:
            scene.RemoveNode(color_node)
    return sitk.Cast(image > 0, sitk.sitkUInt8)


# ---- the Segment Editor effect: its modifier labelmap lives on the segmentation's own grid and frame ----


def _vtk_matrix_to_array(image: Any) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return _matrix_to_array(matrix)


def reference_geometry_image(segmentation_node: Any) -> Any:
    """An empty ``vtkOrientedImageData`` with the segmentation's reference geometry (in the segmentation's own frame),
    the geometry the Segment Editor gives its modifier labelmap; raises when the segmentation has none."""
    slicer = _slicer()
    segmentation = segmentation_node.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry = segmentation.GetConversionParameter(name)
    image = slicer.vtkOrientedImageData()
    if not geometry or not slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, image, False):
        raise StrokeSegError(
            f"Segmentation '{segmentation_node.GetName()}' has no reference geometry: select its source volume "
            "in the Segment Editor first."
        )
    return image


def lesion_on_modifier_geometry(mask: sitk.Image, modifier: Any, segmentation_node: Any) -> Any:
    """``mask > 0`` (world geometry, e.g. on the DWI grid) resampled, nearest neighbour, onto the grid of the editor's
    modifier labelmap ``modifier`` (a ``vtkOrientedImageData`` in ``segmentation_node``'s frame), as a new uint8
    ``vtkOrientedImageData`` with exactly that geometry: what ``modifySelectedSegmentByLabelmap`` expects, so the
    editor's masking (editable area, intensity range) lines up and a parent transform of the segmentation is honoured.
    """
    slicer = _slicer()
    import vtk
    from vtk.util import numpy_support

    extent = modifier.GetExtent()
    size = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    if min(size) <= 0:
        raise StrokeSegError(f"The Segment Editor's working grid of '{segmentation_node.GetName()}' is empty.")
    first_voxel = np.eye(4)
    first_voxel[:3, 3] = [extent[0], extent[2], extent[4]]
    world = parent_to_world(segmentation_node) @ _vtk_matrix_to_array(modifier) @ first_voxel
    reference = sitk.Image(size, sitk.sitkUInt8)
    _set_geometry(reference, world, f"The Segment Editor's grid of '{segmentation_node.GetName()}'")
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    resampled = sitk.Resample(binary, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)

    out = slicer.vtkOrientedImageData()
    out.SetExtent(extent)
    matrix = vtk.vtkMatrix4x4()
    modifier.GetImageToWorldMatrix(matrix)
    out.SetImageToWorldMatrix(matrix)
    out.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    scalars = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars())
    scalars[:] = sitk.GetArrayFromImage(resampled).ravel()  # (z, y, x) C order = VTK's x-fastest point order
    out.Modified()
    return out
