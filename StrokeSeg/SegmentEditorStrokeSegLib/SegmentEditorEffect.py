"""Segment Editor effect "Stroke lesion (AI)": the StrokeSeg network on the editor's source volume (the DWI).

Preview computes the lesion into a temporary, half-transparent segmentation (under the edited segmentation's parent
transform) shown over the DWI; Apply resamples it into the editor's modifier geometry and writes it through the
editor's own modification call (so Undo and the editor's masking settings apply) into the segment "Ischemic stroke
lesion" (created with the module's colour and terminology when missing), or into the selected segment when the option
says so; Cancel discards the preview. A preview whose inputs changed is discarded, and Apply without a valid preview
computes first. It runs in Slicer's own process with a modal, cancellable progress dialog, through the same
StrokeSegLogic as the module; the Qt-free parts are StrokeSegLib.scene.mrml and StrokeSegLib.panels.effect_state.
"""
from __future__ import annotations

import logging
import os
import traceback

import qt
import slicer
from SegmentEditorEffects.AbstractScriptedSegmentEditorEffect import AbstractScriptedSegmentEditorEffect

EFFECT_NAME = "Stroke lesion (AI)"


class _DialogCancel:
    """CancelToken over a progress dialog's Cancel button (the dialog never auto-resets, so a Cancel is kept)."""

    def __init__(self, dialog) -> None:
        self.dialog = dialog

    def is_set(self) -> bool:
        return bool(self.dialog.wasCanceled)


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Segments the ischemic lesion from the source volume (DWI) and a chosen ADC volume."""

    def __init__(self, scriptedEffect) -> None:
        scriptedEffect.name = EFFECT_NAME
        scriptedEffect.perSegment = False  # it writes its own segment unless told to use the selected one
        scriptedEffect.requireSegments = False
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.lastSummary = ""
        self.previewNode = None
        self.previewMask = None
        self.previewKey = None
        self.busy = False

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
            "Apply writes the segment 'Ischemic stroke lesion' (created if missing, replaced otherwise; Undo restores "
            "it), or the selected segment if you tick the option. The editor's masking settings apply. "
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
        self.modelComboBox.setToolTip(
            "Installed StrokeSeg models (import more in the Stroke Lesion Segmentation module).")
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelComboBox)

        self.ttaCheckBox = qt.QCheckBox("Test-time augmentation (slower, slightly better)")
        self.scriptedEffect.addOptionsWidget(self.ttaCheckBox)

        self.selectedSegmentCheckBox = qt.QCheckBox("Write into the selected segment")
        self.selectedSegmentCheckBox.setToolTip(
            "Unticked, Apply writes the segment 'Ischemic stroke lesion' (created if missing).")
        self.scriptedEffect.addOptionsWidget(self.selectedSegmentCheckBox)

        self.previewButton = qt.QPushButton("Preview")
        self.previewButton.objectName = self.__class__.__name__ + "Preview"
        self.previewButton.setToolTip("Compute the lesion and show it over the DWI without changing any segment.")
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.objectName = self.__class__.__name__ + "Apply"
        self.applyButton.setToolTip("Write the lesion into its segment (computing it first if needed).")
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
        self.modelComboBox.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
        self.ttaCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.selectedSegmentCheckBox.connect("toggled(bool)", self.updateMRMLFromGUI)
        self.previewButton.connect("clicked()", self.onPreview)
        self.applyButton.connect("clicked()", self.onApply)
        self.cancelButton.connect("clicked()", self.onCancel)

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor

    def activate(self) -> None:
        self.refreshModels()
        if self.adcSelector.currentNode() is None:
            from StrokeSegLib.panels.panel import guess_inputs

            adc = guess_inputs(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")).get("adc")
            if adc is not None:
                self.adcSelector.setCurrentNode(adc)

    def deactivate(self) -> None:
        self.removePreview()

    def cleanup(self) -> None:
        """The effect is destroyed (editor closed, module reloaded): leave no preview node behind."""
        self.removePreview()
        if hasattr(self, "previewButton"):
            self.adcSelector.disconnect("currentNodeChanged(vtkMRMLNode*)", self.updateMRMLFromGUI)
            self.modelComboBox.disconnect("currentIndexChanged(int)", self.updateMRMLFromGUI)
            self.ttaCheckBox.disconnect("toggled(bool)", self.updateMRMLFromGUI)
            self.selectedSegmentCheckBox.disconnect("toggled(bool)", self.updateMRMLFromGUI)
            self.previewButton.disconnect("clicked()", self.onPreview)
            self.applyButton.disconnect("clicked()", self.onApply)
            self.cancelButton.disconnect("clicked()", self.onCancel)

    def refreshModels(self) -> None:
        """Installed models, read from their headers (no torch in Slicer's process until Apply)."""
        from StrokeSegLib.panels.panel import model_choices

        wasBlocked = self.modelComboBox.blockSignals(True)
        self.modelComboBox.clear()
        choices, default = model_choices()
        for label, path in choices:
            self.modelComboBox.addItem(label, path)
        if not choices:
            self.modelComboBox.addItem("No model installed (import one in Stroke Lesion Segmentation)", "")
        index = self.modelComboBox.findData(default or "")
        if index >= 0:
            self.modelComboBox.setCurrentIndex(index)
        self.modelComboBox.blockSignals(wasBlocked)

    def setMRMLDefaults(self) -> None:
        self.scriptedEffect.setParameterDefault("TestTimeAugmentation", 0)
        self.scriptedEffect.setParameterDefault("WriteToSelectedSegment", 0)

    def updateGUIFromMRML(self) -> None:
        for checkBox, name in ((self.ttaCheckBox, "TestTimeAugmentation"),
                               (self.selectedSegmentCheckBox, "WriteToSelectedSegment")):
            wasBlocked = checkBox.blockSignals(True)
            checkBox.checked = self.scriptedEffect.integerParameter(name) != 0
            checkBox.blockSignals(wasBlocked)
        self.discardStalePreview()  # e.g. another source volume was selected
        self.updateButtons()
        self.resultLabel.text = self.lastSummary

    def updateMRMLFromGUI(self, *unused) -> None:
        self.scriptedEffect.setParameter("TestTimeAugmentation", 1 if self.ttaCheckBox.checked else 0)
        self.scriptedEffect.setParameter("WriteToSelectedSegment", 1 if self.selectedSegmentCheckBox.checked else 0)
        self.discardStalePreview()
        self.updateButtons()

    def updateButtons(self) -> None:
        ready = not self.busy and self.sourceVolumeNode() is not None and self.adcSelector.currentNode() is not None
        self.previewButton.enabled = ready
        self.applyButton.enabled = ready
        self.cancelButton.enabled = not self.busy and self.previewNode is not None

    def sourceVolumeNode(self):
        editorNode = self.scriptedEffect.parameterSetNode()
        if editorNode is None:
            return None
        if hasattr(editorNode, "GetSourceVolumeNode"):  # Slicer >= 5.2
            return editorNode.GetSourceVolumeNode()
        return editorNode.GetMasterVolumeNode()

    # ---- preview ----

    def currentKey(self):
        from StrokeSegLib.panels.effect_state import PreviewKey

        return PreviewKey.of(self.sourceVolumeNode(), self.adcSelector.currentNode(),
                             self.modelComboBox.currentData, self.ttaCheckBox.checked)

    def discardStalePreview(self) -> None:
        if self.previewNode is not None and not self.busy and self.currentKey() != self.previewKey:
            self.removePreview()
            self.lastSummary = "Preview discarded: the inputs changed."
            self.resultLabel.text = self.lastSummary

    def removePreview(self) -> None:
        """Discard the preview segmentation (Cancel, leaving the effect, changed inputs, or after Apply)."""
        if self.previewNode is not None and self.previewNode.GetScene() is not None:
            self.previewNode.GetScene().RemoveNode(self.previewNode)
        self.previewNode, self.previewMask, self.previewKey = None, None, None
        if hasattr(self, "cancelButton"):
            self.updateButtons()

    def onCancel(self) -> None:
        self.removePreview()
        self.lastSummary = ""
        self.resultLabel.text = ""

    def run(self, work, what: str):
        """Run ``work(progress, cancel)`` once at a time, with a modal progress dialog that neither resets nor closes
        by itself; errors end in a dialog. Returns work's result, or None when cancelled or failed."""
        from StrokeSegLib.common.errors import CancelledError
        from StrokeSegLib.panels.effect_state import OverallProgress

        if self.busy:
            return None
        self.busy = True
        self.updateButtons()
        dialog = slicer.util.createProgressDialog(labelText=what, maximum=100, windowTitle=EFFECT_NAME)
        dialog.autoReset = False
        dialog.autoClose = False
        dialog.setWindowModality(qt.Qt.ApplicationModal)
        overall = OverallProgress()

        def progress(stage: str, fraction: float) -> None:
            dialog.value = overall.update(stage, fraction)
            dialog.labelText = f"{what}\n{stage}"
            slicer.app.processEvents()

        try:
            return work(progress, _DialogCancel(dialog))
        except CancelledError:
            self.lastSummary = "Cancelled."
            return None
        except Exception as error:
            logging.error("StrokeSeg effect failed:\n" + traceback.format_exc())
            self.lastSummary = ""
            slicer.util.errorDisplay(f"Stroke lesion segmentation failed: {error}", detailedText=traceback.format_exc())
            return None
        finally:
            dialog.value = overall.finish()
            dialog.close()
            self.busy = False
            self.updateButtons()
            self.resultLabel.text = self.lastSummary

    def onPreview(self) -> bool:
        """Compute the lesion into a temporary segmentation shown at half opacity; True when one is ready."""
        from StrokeSegLib.scene.dependencies import ensure_dependencies

        if self.busy:
            return False
        dwi, adc = self.sourceVolumeNode(), self.adcSelector.currentNode()
        if dwi is None or adc is None:
            slicer.util.errorDisplay("Select a source volume (the DWI) and an ADC volume.")
            return False
        try:
            if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
                return False
        except Exception as error:
            slicer.util.errorDisplay(f"StrokeSeg could not install its dependencies: {error}")
            return False
        self.removePreview()
        key = self.currentKey()
        segmentationNode = self.scriptedEffect.parameterSetNode().GetSegmentationNode()
        result = self.run(lambda progress, cancel: self.computePreview(dwi, adc, segmentationNode, progress, cancel),
                          "Segmenting the stroke lesion...")
        if result is None:
            return False
        self.previewNode, self.previewMask, summary = result
        self.previewKey = key
        self.lastSummary = "Preview: " + summary
        self.resultLabel.text = self.lastSummary
        self.updateButtons()
        return True

    def computePreview(self, dwi, adc, segmentationNode, progress, cancel):
        """(preview node, lesion mask on the DWI's world grid, summary); the node follows the segmentation's parent
        transform, so the preview shows where Apply will write."""
        from StrokeSegLib.engine.options import SegmentOptions
        from StrokeSegLib.scene import mrml
        from StrokeSegLib.scene.logic import StrokeSegLogic, summary_text

        scene = dwi.GetScene()
        preview = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName("StrokeSeg preview"))
        try:
            if segmentationNode is not None and segmentationNode.GetTransformNodeID():
                preview.SetAndObserveTransformNodeID(segmentationNode.GetTransformNodeID())
            logic = StrokeSegLogic()
            logic.process(dwi, adc, preview, model=self.modelComboBox.currentData or None,
                          options=SegmentOptions(tta=self.ttaCheckBox.checked), progress=progress, cancel=cancel)
            mask = mrml.labelmap_from_segmentation(preview, mrml.LESION_SEGMENT_NAME, dwi)
            preview.CreateDefaultDisplayNodes()
            preview.GetDisplayNode().SetOpacity(0.5)
            return preview, mask, summary_text(logic.lastReport)
        except BaseException:
            scene.RemoveNode(preview)
            raise

    # ---- apply ----

    def onApply(self) -> None:
        """Write the previewed lesion, resampled into the editor's modifier geometry, undoably."""
        if self.busy:
            return
        self.discardStalePreview()
        if self.previewNode is None and not self.onPreview():
            return
        try:
            self.applyPreview()
        except Exception as error:
            logging.error("StrokeSeg effect could not apply:\n" + traceback.format_exc())
            slicer.util.errorDisplay(f"Could not write the lesion: {error}", detailedText=traceback.format_exc())
            return
        self.lastSummary = self.lastSummary.replace("Preview: ", "Applied: ", 1)
        self.removePreview()
        self.resultLabel.text = self.lastSummary

    def applyPreview(self) -> None:
        from StrokeSegLib.scene import mrml

        parameters = self.scriptedEffect.parameterSetNode()
        segmentationNode = parameters.GetSegmentationNode()
        if segmentationNode is None:
            raise RuntimeError("Select a segmentation in the Segment Editor.")
        lesion = mrml.lesion_on_modifier_geometry(self.previewMask, self.scriptedEffect.defaultModifierLabelmap(),
                                                  segmentationNode)
        self.scriptedEffect.saveStateForUndo()
        mode = slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet
        if self.selectedSegmentCheckBox.checked and parameters.GetSelectedSegmentID():
            self.scriptedEffect.modifySelectedSegmentByLabelmap(lesion, mode)
        else:
            segmentId = mrml.ensure_lesion_segment(segmentationNode)
            self.scriptedEffect.modifySegmentByLabelmap(segmentationNode, segmentId, lesion, mode)
