"""StrokeSeg module: the panel that segments acute ischemic stroke lesions on DWI + ADC.

Thin glue only: the work is done by StrokeSegLib (pure Python, tested outside Slicer). Apply runs
``PythonSlicer -m StrokeSegLib.cli segment`` in a child process (StrokeSegLib.panels.panel.SegmentationRun on
StrokeSegLib.panels.jobs.ChildJob) so Slicer stays responsive and Cancel ends the whole process tree; the child's mask
is loaded back through StrokeSegLib.scene.mrml, which keeps the exact DWI grid. The panel's choices live in a parameter
node.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from StrokeSegLib import StrokeSegLogic  # also re-exported: scripts use StrokeSeg.StrokeSegLogic
from StrokeSegLib.engine.options import SegmentOptions
from StrokeSegLib.panels.panel import SegmentationRun, guess_inputs, model_choices

DEVICES = [("auto", "Automatic (GPU if available)"), ("cuda", "NVIDIA GPU (CUDA)"), ("mps", "Apple GPU (MPS)"),
           ("cpu", "CPU")]
# The ISLES 2022 organisers' own public copy of case 0009, pinned to a commit so the bytes (and checksums) never change.
SAMPLE_URL = (
    "https://raw.githubusercontent.com/ezequieldlrosa/isles22/5349ccfee52c30bb5a2b6da0c3794891ff4cc3bf/"
    "utils/data/rawdata/sub-strokecase0009/ses-0001/"
)


class StrokeSeg(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Stroke Lesion Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["StrokeSeg contributors (https://github.com/strokeseg/SlicerStrokeSeg)"]
        self.parent.helpText = _(
            "Segments acute ischemic stroke lesions on diffusion MRI. Select the DWI (highest b-value trace) and the "
            "ADC map, then Apply: the lesion appears as the segment 'Ischemic stroke lesion' on the DWI's own grid, "
            "with its volume in mL and the number of lesions. The ADC may be on another grid (it is aligned "
            "automatically); volumes under a linear transform are handled. The segment can be edited in Segment "
            "Editor, where the same method is available as the effect 'Stroke lesion (AI)'. "
            "Research use only; not a medical device. "
            '<a href="https://github.com/strokeseg/SlicerStrokeSeg#readme">Documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "The sample case and the evaluation data are from ISLES 2022: Hernandez Petzsche MR et al., ISLES 2022: A "
            "multi-center magnetic resonance imaging stroke lesion segmentation dataset. Scientific Data 9, 762 "
            "(2022), "
            "doi:10.1038/s41597-022-01875-5 (CC BY-SA 4.0). The bundled starter model is trained on generated data "
            "only. PyTorch is provided by the PyTorch extension (SlicerPyTorch)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)
        slicer.app.connect("startupCompleted()", loadTerminology)


def loadTerminology() -> None:
    """Make the lesion segment's terminology (SNOMED CT "Infarct", not in Slicer's DICOM master list) resolvable in
    Slicer's terminology selector."""
    from StrokeSegLib.scene.mrml import load_lesion_terminology

    try:
        load_lesion_terminology(slicer.modules.terminologies.logic())
    except Exception as error:  # a missing terminology must not stop Slicer from starting
        logging.warning(f"StrokeSeg: {error}")


def registerSampleData() -> None:
    """Register an ISLES 2022 case (DWI b=800 + ADC, skull-stripped, 4.2 mL infarct) in the Sample Data module.

    The files are the ISLES 2022 organisers' public copy (github.com/ezequieldlrosa/isles22, utils/data, CC BY-SA 4.0),
    pinned to a commit; their git blobs are byte-identical to the ISLES release files the checksums were computed from.
    Recompute after any change with
    ``python -c "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())" FILE``.
    """
    import SampleData

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Stroke",
        sampleName="StrokeSegISLES0009",
        thumbnailFileName=os.path.join(iconsPath, "StrokeSeg.png"),
        uris=[SAMPLE_URL + "sub-strokecase0009_ses-0001_dwi.nii.gz",
              SAMPLE_URL + "sub-strokecase0009_ses-0001_adc.nii.gz"],
        fileNames=["sub-strokecase0009_ses-0001_dwi.nii.gz", "sub-strokecase0009_ses-0001_adc.nii.gz"],
        nodeNames=["StrokeCase0009 DWI", "StrokeCase0009 ADC"],
        checksums=[
            "SHA256:5d2e166df6c44175a9e5b71adad5b63c2855bbb76cb95441faeb7b6f3a1ee3a6",
            "SHA256:db6cb981a0e9d459624949ff5d629f91d28bbaefe254307b88392def0bf97def",
        ],
    )


def pythonSlicerExecutable() -> str:
    """The PythonSlicer interpreter that runs StrokeSegLib in a child process (same packages as Slicer)."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    return os.path.join(os.path.dirname(sys.executable), name)


def modelDefaultAsNone(value: float, spinBox) -> float | None:
    """A spin box showing its special value "Model default" (its minimum) means None: the model file's value. The
    minimum stays inside the spin box and the parameter node; the options only ever see None."""
    return None if value <= spinBox.minimum else value


@parameterNodeWrapper
class StrokeSegParameterNode:
    """The panel's choices, kept in the scene (saved and restored with it). Widgets whose .ui property
    ``SlicerParameterName`` names a field are connected automatically; model and device are combo-box data, synced
    by the widget. The spin boxes' minimum reads "Model default" (see :func:`modelDefaultAsNone`); the widget turns
    these choices into one :class:`StrokeSegLib.engine.options.SegmentOptions`."""

    dwiVolume: slicer.vtkMRMLScalarVolumeNode
    adcVolume: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    model: str = ""
    device: str = "auto"
    tta: bool = False
    threshold: float = 0.0
    minLesionMm3: float = -1.0


class StrokeSegParameterLogic(ScriptedLoadableModuleLogic):
    """Only the parameter node of the module (the work is done by the Qt-free StrokeSegLogic)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleName = "StrokeSeg"

    def getParameterNode(self) -> StrokeSegParameterNode:
        return StrokeSegParameterNode(super().getParameterNode())


class StrokeSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: pick DWI, ADC, output and model; Apply runs in the background and becomes Cancel.

    Thin by design: the run (start, progress, cancel, result) is StrokeSegLib.panels.panel.SegmentationRun, passed in or
    made in setup(); the choices live in a StrokeSegParameterNode.
    """

    def __init__(self, parent=None, run: SegmentationRun | None = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.run = run
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/StrokeSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = StrokeSegLogic()
        self.parameterLogic = StrokeSegParameterLogic()
        if self.run is None:
            self.run = SegmentationRun(self.logic, python=pythonSlicerExecutable)

        for value, text in DEVICES:
            self.ui.deviceComboBox.addItem(text, value)
        self.ui.progressBar.setVisible(False)
        self.refreshModels()

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onComboChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onComboChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        slicer.app.connect("aboutToQuit()", self.stopRun)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module reload or application exit: no child process may outlive the panel."""
        self.stopRun()
        self.removeObservers()
        self.setParameterNode(None)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # Stop reacting to parameter changes while hidden (a running job keeps running and is polled).
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.stopRun(_("Cancelled: the scene was closed."))
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ---- parameters ----

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.parameterLogic.getParameterNode())
        self.autoSelectInputs()

    def setParameterNode(self, parameterNode: StrokeSegParameterNode | None) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)
            self._parameterNodeGuiTag = None
        self._parameterNode = parameterNode
        if parameterNode is not None:
            self._parameterNodeGuiTag = parameterNode.connectGui(self.ui)
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)
            self.selectComboData(self.ui.deviceComboBox, parameterNode.device)
            if parameterNode.model:
                self.selectComboData(self.ui.modelComboBox, parameterNode.model)
            else:
                parameterNode.model = self.ui.modelComboBox.currentData or ""
        self.updateApplyButton()

    @staticmethod
    def selectComboData(combo, value: str) -> None:
        index = combo.findData(value)
        if index >= 0:
            combo.setCurrentIndex(index)

    def onComboChanged(self, *unused) -> None:
        if self._parameterNode is not None:
            self._parameterNode.model = self.ui.modelComboBox.currentData or ""
            self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    # ---- inputs ----

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node) -> None:
        if node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
            # The name is final only once loading completes: look after the event loop has run.
            qt.QTimer.singleShot(0, self.autoSelectInputs)

    def autoSelectInputs(self) -> None:
        """Fill empty DWI/ADC choices from volume names (dwi/trace/b1000 and adc)."""
        parameters = self._parameterNode
        if parameters is None:
            return
        for role, node in guess_inputs(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")).items():
            if role == "dwi" and parameters.dwiVolume is None:
                parameters.dwiVolume = node
            elif role == "adc" and parameters.adcVolume is None:
                parameters.adcVolume = node

    def refreshModels(self, select: str | None = None) -> None:
        """List installed models (from their headers only: no torch here) and select ``select`` or the default."""
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        choices, default = model_choices()
        for label, path in choices:
            combo.addItem(label, path)
        if not choices:
            combo.addItem(_("No model installed: use Import..."), "")
        index = combo.findData(select or default or "")
        if index >= 0:
            combo.setCurrentIndex(index)
        combo.blockSignals(wasBlocked)
        self.onComboChanged()

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), _("Import StrokeSeg model"), "", "StrokeSeg model (*.safetensors)"
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
            from StrokeSegLib.scene.dependencies import ensure_dependencies

            if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
                return
            from StrokeSegLib.engine.model_registry import import_model  # checks that the weights load: needs torch

            entry = import_model(path)
            self.refreshModels(select=str(entry.path))

    def updateApplyButton(self, *unused) -> None:
        if self.run is not None and self.run.active:
            return
        parameters = self._parameterNode
        ready = parameters is not None and parameters.dwiVolume is not None and parameters.adcVolume is not None
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Segment the lesion (runs in the background; press again to cancel).")
            if ready
            else _("Select the DWI and the ADC volumes.")
        )

    def options(self) -> SegmentOptions:
        """The panel's choices as the one options object the child's command line is written from."""
        parameters = self._parameterNode
        return SegmentOptions(
            device=parameters.device or "auto",
            tta=parameters.tta,
            threshold=modelDefaultAsNone(parameters.threshold, self.ui.thresholdSpinBox),
            min_lesion_mm3=modelDefaultAsNone(parameters.minLesionMm3, self.ui.minLesionSpinBox),
        )

    # ---- running ----

    def onApplyButton(self) -> None:
        if self.run.active:
            self.run.cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            return
        parameters = self._parameterNode
        if parameters is None:
            return
        with slicer.util.tryWithErrorDisplay(_("StrokeSeg could not start."), waitCursor=True):
            from StrokeSegLib.scene.dependencies import ensure_dependencies

            if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
                return
            self.run.start(parameters.dwiVolume, parameters.adcVolume, parameters.outputSegmentation,
                           model=parameters.model or None, options=self.options())
            self.setRunning(True)
            self.timer.start()

    def setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = True
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.value = 0
        for widget in (self.ui.dwiSelector, self.ui.adcSelector, self.ui.outputSegmentationSelector,
                       self.ui.modelCollapsibleButton, self.ui.advancedCollapsibleButton):
            widget.enabled = not running
        if running:
            self.ui.statusLabel.text = _("Starting...")
            self.ui.resultLabel.text = ""
        else:
            self.updateApplyButton()

    def onPoll(self) -> None:
        """Show the child's progress (never waits); when it has ended, show its result or its error."""
        outcome = self.run.poll()
        if outcome is None:
            if self.run.active:
                self.ui.statusLabel.text = self.run.stage
                self.ui.progressBar.value = int(round(self.run.fraction * 100))
            else:
                self.timer.stop()
            return
        self.timer.stop()
        self.setRunning(False)
        if outcome.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled.")
        elif outcome.status == "failed":
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(outcome.error, detailedText=outcome.details)
        else:
            self.ui.statusLabel.text = _("Done.")
            self.ui.resultLabel.text = outcome.summary
            self.parameterLogic.getParameterNode().outputSegmentation = outcome.segmentation
            outcome.segmentation.CreateDefaultDisplayNodes()
            slicer.util.setSliceViewerLayers(background=self.parameterLogic.getParameterNode().dwiVolume)

    def stopRun(self, message: str | None = None) -> None:
        """End a running job at once (its whole process tree) and return the panel to idle."""
        self.timer.stop()
        if self.run is not None and self.run.active:
            self.run.abort()
            if hasattr(self, "ui"):
                self.setRunning(False)
                self.ui.statusLabel.text = message or _("Cancelled.")


class StrokeSegTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Self Tests / ctest): synthetic DWI and ADC, a tiny random model, no network access."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_scene_close_during_a_run_returns_the_panel_to_idle()
        self.setUp()
        self.test_StrokeSeg_logic()

    def test_scene_close_during_a_run_returns_the_panel_to_idle(self) -> None:
        """A run (here a child that only sleeps, started through PythonSlicer) is ended by closing the scene; the
        panel reads Apply again, its selectors are enabled, and a new parameter node exists after the close."""
        from StrokeSegLib.apps.phantom import make_synthetic_case
        from StrokeSegLib.panels.jobs import ChildJob
        from StrokeSegLib.scene import mrml

        slicer.util.selectModule("StrokeSeg")
        widget = slicer.modules.strokeseg.widgetRepresentation().self()
        sleeper = [pythonSlicerExecutable(), "-c", "import time; time.sleep(120)"]
        widget.run = SegmentationRun(widget.logic, python=pythonSlicerExecutable,
                                     job_factory=lambda command, env, cancel_file: ChildJob(sleeper, env, cancel_file))
        case = make_synthetic_case(seed=0, size=(24, 20, 10), spacing=(2.0, 2.0, 4.0))
        dwi = mrml.sitk_to_volume_node(case.dwi, name="synthetic DWI")
        adc = mrml.sitk_to_volume_node(case.adc, name="synthetic ADC")
        widget.run.start(dwi, adc)
        widget.setRunning(True)
        widget.timer.start()
        process = widget.run.job.process
        self.assertEqual(widget.ui.applyButton.text, "Cancel")

        slicer.mrmlScene.Clear()

        self.assertFalse(widget.run.active)
        self.assertEqual(widget.ui.applyButton.text, "Apply")
        self.assertTrue(widget.ui.dwiSelector.enabled)
        self.assertIsNotNone(widget._parameterNode)
        for _attempt in range(40):  # the launcher and its child are gone within 2 s
            if process.poll() is not None:
                break
            slicer.util.delayDisplay("waiting for the child to end", 50)
        self.assertIsNotNone(process.poll())

    def test_StrokeSeg_logic(self) -> None:
        import importlib.util
        import tempfile

        if importlib.util.find_spec("torch") is None:
            self.skipTest("PyTorch is not installed (install the PyTorch extension)")
        import numpy as np
        import torch

        from StrokeSegLib.apps.phantom import make_synthetic_case
        from StrokeSegLib.engine.model_file import ModelMetadata, save_model
        from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
        from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig
        from StrokeSegLib.scene import mrml

        self.delayDisplay("Building a synthetic case and a tiny random model")
        case = make_synthetic_case(seed=0, size=(40, 36, 20), spacing=(2.0, 2.0, 4.0), oblique=True)
        dwi = mrml.sitk_to_volume_node(case.dwi, name="synthetic DWI")
        adc = mrml.sitk_to_volume_node(case.adc, name="synthetic ADC")
        torch.manual_seed(0)
        config = NetworkConfig(in_channels=2, out_channels=1, features=(4, 8, 16))
        meta = ModelMetadata(model_id="selftest-random", network=config.to_dict(),
                             preprocess=PreprocessConfig(target_spacing=(3.0, 3.0, 3.0)),
                             patch_size=(16, 32, 32), threshold=0.5, min_lesion_mm3=0.0)
        with tempfile.TemporaryDirectory() as folder:
            modelPath = save_model(os.path.join(folder, "tiny.safetensors"), AttentionUNet3D(config), meta)

            self.delayDisplay("Running the logic")
            logic = StrokeSegLogic()
            segmentation = logic.process(dwi, adc, model=modelPath, device="cpu")
            again = logic.process(dwi, adc, segmentation, model=modelPath, device="cpu")

        self.assertIs(again, segmentation)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName(mrml.LESION_SEGMENT_NAME)
        self.assertTrue(segmentId)
        voxels = int(np.count_nonzero(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, dwi)))
        self.assertEqual(logic.lastReport["voxels"], voxels)
        self.assertAlmostEqual(logic.lastReport["lesion_volume_ml"], voxels * 2.0 * 2.0 * 4.0 / 1000.0, places=6)
        self.delayDisplay("Test passed")
