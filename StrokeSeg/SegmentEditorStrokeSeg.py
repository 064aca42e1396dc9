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
        effectFilename = os.path.join(os.path.dirname(__file__), self.__class__.__name__ + "Lib", "SegmentEditorEffect.py")
        instance.setPythonSource(effectFilename.replace("\\", "/"))
        instance.self().register()


class SegmentEditorStrokeSegTest(ScriptedLoadableModuleTest):
    """The effect is registered and can be activated on a segmentation."""

    def runTest(self) -> None:
        slicer.mrmlScene.Clear()
        self.test_effect_registered()

    def test_effect_registered(self) -> None:
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor.setMRMLSegmentEditorNode(editorNode)
        editor.setSegmentationNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode"))
        editor.setActiveEffectByName("Stroke lesion (AI)")
        effect = editor.activeEffect()
        self.assertIsNotNone(effect, "effect 'Stroke lesion (AI)' is not registered")
        self.assertEqual(effect.name, "Stroke lesion (AI)")
        editor.setActiveEffect(None)
