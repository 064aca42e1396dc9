"""Segment Editor effect "Stroke lesion (AI)": the StrokeSeg network on the editor's source volume (the DWI).

Preview computes the lesion into a temporary, half-transparent segmentation shown over the DWI; Apply writes it into
the *selected* segment through the editor's own modification call (so Undo, and the editor's masking settings, apply),
creating "Ischemic stroke lesion" when no segment is selected; Cancel discards the preview. Apply without a preview
computes first. It runs in Slicer's own process (with a cancellable progress dialog), through the same StrokeSegLogic
as the module.
"""
from __future__ import annotations

import logging
import os

import qt

import slicer
from SegmentEditorEffects.AbstractScriptedSegmentEditorEffect import AbstractScriptedSegmentEditorEffect

EFFECT_NAME = "Stroke lesion (AI)"


class _DialogCancel:
    """CancelToken over a progress dialog's Cancel button."""

    def __init__(self, dialog) -> None:
        self.dialog = dialog

    def is_set(self) -> bool:
        return bool(self.dialog.wasCanceled)


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Segments the ischemic lesion from the source volume (DWI) and a chosen ADC volume."""

    def __init__(self, scriptedEffect) -> None:
        scriptedEffect.name = EFFECT_NAME
        scriptedEffect.perSegment = False  # it creates/replaces its own segment
        scriptedEffect.requireSegments = False
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.lastSummary = ""
        self.previewNode = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self) -> str:
        return (
            "<html>Segment the acute ischemic stroke lesion with the StrokeSeg network.<p>"
            "The <b>source volume</b> must be the DWI (highest b-value); choose the <b>ADC</b> map below. "
            "Apply writes the segment 'Ischemic stroke lesion' (replacing an earlier one; Undo restores it). "
            "Research use only: review and correct the result.</html>"
        )

    def setupOptionsFrame(self) -> None:
        self.adcSelector = slicer.qMRMLNodeComboBox()
        self.adcSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.adcSelector.showChildNodeTypes = False
        self.adcSelector.noneEnabled = True
        self.adcSelector.addEnabled = False
        self.adcSelector.removeEnabled = False
        self.adcSelector.setMRMLScene(slicer.mrmlScene)
        self.adcSelector.setToolTip("ADC map of the same study (any units; it may be on another grid).")
        self.scriptedEffect.addLabeledOptionsWidget("ADC volume:", self.adcSelector)

        self.modelComboBox = qt.QComboBox()
        self.modelComboBox.setToolTip("Installed StrokeSeg models (import more in the Stroke Lesion Segmentation module).")
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelComboBox)

        self.ttaCheckBox = qt.QCheckBox("Test-time augmentation (slower, slightly better)")
        self.scriptedEffect.addOptionsWidget(self.ttaCheckBox)

        self.previewButton = qt.QPushButton("Preview")
        self.previewButton.objectName = self.__class__.__name__ + "Preview"
        self.previewButton.setToolTip("Compute the lesion and show it over the DWI without changing any segment.")
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.applyButton.setToolTip("Write the lesion into the selected segment (computing it first if needed).")
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.setToolTip("Discard the preview.")
        buttons = qt.QHBoxLayout()
        for button in (self.previewButton, self.applyButton, self.cancelButton):
            buttons.addWidget(button)
        self.scriptedEffect.addOptionsWidget(buttons)

        self.resultLabel = qt.QLabel("")
        self.resultLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.resultLabel)

        self.adcSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateMRMLFromGUI)
        self.ttaCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.previewButton.connect("clicked()", self.onPreview)
        self.applyButton.connect("clicked()", self.onApply)
        self.cancelButton.connect("clicked()", self.removePreview)

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor

    def deactivate(self) -> None:
        self.removePreview()

    def activate(self) -> None:
        self.refreshModels()
        if self.adcSelector.currentNode() is None:
            for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
                if "adc" in (node.GetName() or "").lower() and not node.IsA("vtkMRMLLabelMapVolumeNode"):
                    self.adcSelector.setCurrentNode(node)
                    break

    def refreshModels(self) -> None:
        self.modelComboBox.clear()
        try:
            from StrokeSegLib.model_registry import DEFAULT_MODEL_ID, list_models

            entries = list_models()
        except ImportError:  # PyTorch not installed yet: Apply installs it and uses the default model
            self.modelComboBox.addItem("Default model", "")
            return
        except Exception as error:
            logging.warning(f"StrokeSeg: could not list models: {error}")
            entries = []
        for entry in entries:
            self.modelComboBox.addItem(f"{entry.model_id} [{entry.source}]", str(entry.path))
        if not entries:
            self.modelComboBox.addItem("No model installed", "")
        index = next((i for i, e in enumerate(entries) if e.model_id == DEFAULT_MODEL_ID), 0)
        self.modelComboBox.setCurrentIndex(index)

    def setMRMLDefaults(self) -> None:
        self.scriptedEffect.setParameterDefault("TestTimeAugmentation", 0)

    def updateGUIFromMRML(self) -> None:
        wasBlocked = self.ttaCheckBox.blockSignals(True)
        self.ttaCheckBox.checked = self.scriptedEffect.integerParameter("TestTimeAugmentation") != 0
        self.ttaCheckBox.blockSignals(wasBlocked)
        self.updateButtons()
        self.resultLabel.text = self.lastSummary

    def updateMRMLFromGUI(self, *unused) -> None:
        self.scriptedEffect.setParameter("TestTimeAugmentation", 1 if self.ttaCheckBox.checked else 0)
        self.updateButtons()

    def updateButtons(self) -> None:
        ready = self.sourceVolumeNode() is not None and self.adcSelector.currentNode() is not None
        self.previewButton.enabled = ready
        self.applyButton.enabled = ready
        self.cancelButton.enabled = self.previewNode is not None

    def sourceVolumeNode(self):
        editorNode = self.scriptedEffect.parameterSetNode()
        if editorNode is None:
            return None
        if hasattr(editorNode, "GetSourceVolumeNode"):  # Slicer >= 5.2
            return editorNode.GetSourceVolumeNode()
        return editorNode.GetMasterVolumeNode()

    def removePreview(self) -> None:
        """Discard the preview segmentation (Cancel, leaving the effect, or after Apply)."""
        if self.previewNode is not None and self.previewNode.GetScene() is not None:
            slicer.mrmlScene.RemoveNode(self.previewNode)
        self.previewNode = None
        if hasattr(self, "cancelButton"):
            self.updateButtons()

    def onPreview(self) -> bool:
        """Compute the lesion into a temporary segmentation shown at half opacity; True when one is ready."""
        from StrokeSegLib.dependencies import ensure_dependencies
        from StrokeSegLib.errors import CancelledError
        from StrokeSegLib.logic import StrokeSegLogic, summary_text

        dwi, adc = self.sourceVolumeNode(), self.adcSelector.currentNode()
        if dwi is None or adc is None:
            slicer.util.errorDisplay("Select a source volume (the DWI) and an ADC volume.")
            return False
        if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
            return False
        self.removePreview()
        preview = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "StrokeSeg preview")
        dialog = slicer.util.createProgressDialog(labelText="Segmenting the stroke lesion...", maximum=100)

        def progress(stage: str, fraction: float) -> None:
            dialog.labelText = stage
            dialog.value = int(round(fraction * 100))
            slicer.app.processEvents()

        logic = StrokeSegLogic()
        try:
            logic.process(dwi, adc, preview, model=self.modelComboBox.currentData or None,
                          tta=self.ttaCheckBox.checked, progress=progress, cancel=_DialogCancel(dialog))
        except CancelledError:
            slicer.mrmlScene.RemoveNode(preview)
            self.lastSummary = "Cancelled."
            return False
        except Exception as error:
            slicer.mrmlScene.RemoveNode(preview)
            logging.exception("StrokeSeg effect failed")
            slicer.util.errorDisplay(f"Stroke lesion segmentation failed: {error}")
            self.lastSummary = ""
            return False
        finally:
            dialog.close()
            self.resultLabel.text = self.lastSummary
        preview.CreateDefaultDisplayNodes()
        preview.GetDisplayNode().SetOpacity(0.5)
        self.previewNode = preview
        self.lastSummary = "Preview: " + summary_text(logic.lastReport)
        self.resultLabel.text = self.lastSummary
        self.updateButtons()
        return True

    def onApply(self) -> None:
        """Write the previewed lesion into the selected segment (or a new lesion segment), undoably."""
        from StrokeSegLib.mrml import LESION_SEGMENT_NAME

        if self.previewNode is None and not self.onPreview():
            return
        parameters = self.scriptedEffect.parameterSetNode()
        segmentationNode = parameters.GetSegmentationNode()
        preview = self.previewNode
        lesionId = preview.GetSegmentation().GetSegmentIdBySegmentName(LESION_SEGMENT_NAME)
        lesion = slicer.vtkOrientedImageData()
        preview.GetBinaryLabelmapRepresentation(lesionId, lesion)
        self.scriptedEffect.saveStateForUndo()
        if not parameters.GetSelectedSegmentID():
            newId = segmentationNode.GetSegmentation().AddEmptySegment("", LESION_SEGMENT_NAME)
            parameters.SetSelectedSegmentID(newId)
        self.scriptedEffect.modifySelectedSegmentByLabelmap(
            lesion, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet
        )
        self.lastSummary = self.lastSummary.replace("Preview: ", "Applied: ", 1)
        self.removePreview()
        self.resultLabel.text = self.lastSummary
