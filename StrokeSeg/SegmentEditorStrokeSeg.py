"""Hidden module whose only job is to register the Segment Editor effect "Stroke lesion (AI)" at startup."""
from __future__ import annotations

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest


class SegmentEditorStrokeSeg(ScriptedLoadableModule):
    """Registers the effect once Slicer has started (the Segment Editor effect factory exists by then)."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SegmentEditorStrokeSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["StrokeSeg contributors (https://github.com/strokeseg/SlicerStrokeSeg)"]
        self.parent.hidden = True
        self.parent.helpText = "Registers the Segment Editor effect 'Stroke lesion (AI)' of the StrokeSeg extension."
        self.parent.acknowledgementText = "See the Stroke Lesion Segmentation module."
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self) -> None:
        import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

        instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
        effectFilename = os.path.join(os.path.dirname(__file__), self.__class__.__name__ + "Lib",
                                      "SegmentEditorEffect.py")
        instance.setPythonSource(effectFilename.replace("\\", "/"))
        instance.self().register()


class SegmentEditorStrokeSegTest(ScriptedLoadableModuleTest):
    """In Slicer (Self Tests / ctest): the effect is registered, and Apply writes a previewed lesion into the dedicated
    segment of a segmentation under a rotation, through the editor's own call, leaving the selected segment alone."""

    def runTest(self) -> None:
        slicer.mrmlScene.Clear()
        self.test_effect_registered()
        slicer.mrmlScene.Clear()
        self.test_apply_writes_the_lesion_segment_under_a_transform()

    def editorWithEffect(self, segmentationNode, sourceVolumeNode=None):
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor.setMRMLSegmentEditorNode(editorNode)
        editor.setSegmentationNode(segmentationNode)
        if sourceVolumeNode is not None:
            editor.setSourceVolumeNode(sourceVolumeNode)
        editor.setActiveEffectByName("Stroke lesion (AI)")
        return editor, editor.activeEffect()

    def test_effect_registered(self) -> None:
        editor, effect = self.editorWithEffect(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode"))
        self.assertIsNotNone(effect, "effect 'Stroke lesion (AI)' is not registered")
        self.assertEqual(effect.name, "Stroke lesion (AI)")
        editor.setActiveEffect(None)

    def test_apply_writes_the_lesion_segment_under_a_transform(self) -> None:
        import numpy as np
        import SimpleITK as sitk
        import vtk

        from StrokeSegLib.apps.phantom import make_synthetic_case
        from StrokeSegLib.scene import mrml

        case = make_synthetic_case(seed=0, size=(40, 36, 20), spacing=(2.0, 2.0, 4.0), oblique=True)
        dwi = mrml.sitk_to_volume_node(case.dwi, name="synthetic DWI")
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        matrix = vtk.vtkMatrix4x4()
        rotation = vtk.vtkTransform()
        rotation.RotateZ(25)
        rotation.Translate(10, -5, 3)
        matrix.DeepCopy(rotation.GetMatrix())
        transform.SetMatrixTransformToParent(matrix)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.SetAndObserveTransformNodeID(transform.GetID())
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(dwi)
        otherId = segmentation.GetSegmentation().AddEmptySegment("", "Other")
        editor, effect = self.editorWithEffect(segmentation, dwi)
        editor.setCurrentSegmentID(otherId)

        mask = sitk.Cast(case.mask > 0, sitk.sitkUInt8)
        effect.self().previewMask = mask
        effect.self().applyPreview()

        written = mrml.labelmap_from_segmentation(segmentation, mrml.LESION_SEGMENT_NAME, dwi)
        overlap = np.logical_and(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(mask)).sum()
        self.assertGreater(2.0 * overlap / (sitk.GetArrayFromImage(written).sum() + sitk.GetArrayFromImage(mask).sum()),
                           0.8)
        other = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, otherId, dwi)
        self.assertEqual(int(np.count_nonzero(other)), 0, "the selected segment must not be overwritten")
        editor.setActiveEffect(None)
