"""Segment Editor effect "Stroke lesion (AI)": the StrokeSeg network on the editor's source volume (the DWI).

It writes (or replaces) the segment "Ischemic stroke lesion" in the edited segmentation, undoable, and leaves other
segments alone, so a user can segment, then correct with Paint/Erase without leaving the Segment Editor. It runs in
Slicer's own process (with a cancellable progress dialog), through the same StrokeSegLogic as the module.
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

        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.applyButton.setToolTip("Segment the lesion into the segment 'Ischemic stroke lesion'.")
        self.scriptedEffect.addOptionsWidget(self.applyButton)

        self.resultLabel = qt.QLabel("")
        self.resultLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.resultLabel)

        self.adcSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateMRMLFromGUI)
        self.ttaCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.applyButton.connect("clicked()", self.onApply)

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor

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
        self.applyButton.enabled = self.sourceVolumeNode() is not None and self.adcSelector.currentNode() is not None
        self.resultLabel.text = self.lastSummary

    def updateMRMLFromGUI(self, *unused) -> None:
        self.scriptedEffect.setParameter("TestTimeAugmentation", 1 if self.ttaCheckBox.checked else 0)
        self.applyButton.enabled = self.sourceVolumeNode() is not None and self.adcSelector.currentNode() is not None

    def sourceVolumeNode(self):
        editorNode = self.scriptedEffect.parameterSetNode()
        if editorNode is None:
            return None
        if hasattr(editorNode, "GetSourceVolumeNode"):  # Slicer >= 5.2
            return editorNode.GetSourceVolumeNode()
        return editorNode.GetMasterVolumeNode()

    def onApply(self) -> None:
        from StrokeSegLib.dependencies import ensure_dependencies
        from StrokeSegLib.errors import CancelledError
        from StrokeSegLib.logic import StrokeSegLogic, summary_text
        from StrokeSegLib.mrml import LESION_SEGMENT_NAME

        dwi, adc = self.sourceVolumeNode(), self.adcSelector.currentNode()
        segmentationNode = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        if dwi is None or adc is None or segmentationNode is None:
            slicer.util.errorDisplay("Select a source volume (the DWI) and an ADC volume.")
            return
        if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
            return
        self.scriptedEffect.saveStateForUndo()
        dialog = slicer.util.createProgressDialog(labelText="Segmenting the stroke lesion...", maximum=100)

        def progress(stage: str, fraction: float) -> None:
            dialog.labelText = stage
            dialog.value = int(round(fraction * 100))
            slicer.app.processEvents()

        logic = StrokeSegLogic()
        try:
            logic.process(
                dwi,
                adc,
                segmentationNode,
                model=self.modelComboBox.currentData or None,
                tta=self.ttaCheckBox.checked,
                progress=progress,
                cancel=_DialogCancel(dialog),
            )
        except CancelledError:
            self.lastSummary = "Cancelled."
        except Exception as error:
            logging.exception("StrokeSeg effect failed")
            slicer.util.errorDisplay(f"Stroke lesion segmentation failed: {error}")
            self.lastSummary = ""
        else:
            self.lastSummary = summary_text(logic.lastReport)
            segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(LESION_SEGMENT_NAME)
            self.scriptedEffect.parameterSetNode().SetSelectedSegmentID(segmentId)
        finally:
            dialog.close()
        self.resultLabel.text = self.lastSummary
