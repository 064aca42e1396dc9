"""StrokeSeg module: the panel that segments acute ischemic stroke lesions on DWI + ADC.

Thin glue only: the work is done by StrokeSegLib (pure Python, tested outside Slicer). Apply runs
``PythonSlicer -m StrokeSegLib.cli segment`` in a child process so Slicer stays responsive and Cancel can stop it; the
child's mask is loaded back through StrokeSegLib.mrml, which keeps the exact DWI grid.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys

import qt
import vtk

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer < 5.4

    def _(text: str) -> str:
        return text


from StrokeSegLib import StrokeSegLogic  # noqa: F401  (re-exported: scripts use StrokeSeg.StrokeSegLogic)
from StrokeSegLib.logic import BackgroundSegmentation, OutputReader, parse_progress_line, summary_text

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
        self.parent.categories = ["Segmentation"]
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
            "multi-center magnetic resonance imaging stroke lesion segmentation dataset. Scientific Data 9, 762 (2022), "
            "doi:10.1038/s41597-022-01875-5 (CC BY-SA 4.0). The bundled starter model is trained on generated data "
            "only. PyTorch is provided by the PyTorch extension (SlicerPyTorch)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


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
        uris=[SAMPLE_URL + "sub-strokecase0009_ses-0001_dwi.nii.gz", SAMPLE_URL + "sub-strokecase0009_ses-0001_adc.nii.gz"],
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


class StrokeSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: pick DWI, ADC, output and model; Apply runs in the background and becomes Cancel."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self.process = None
        self.reader = None
        self.outputLines = []
        self.cancelRequested = False
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

        for value, text in DEVICES:
            self.ui.deviceComboBox.addItem(text, value)
        self.ui.progressBar.setVisible(False)
        self.refreshModels()

        self.ui.dwiSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateApplyButton)
        self.ui.adcSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateApplyButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.autoSelectInputs()
        self.updateApplyButton()

    def cleanup(self) -> None:
        self.stopProcess()
        self.removeObservers()

    def enter(self) -> None:
        self.autoSelectInputs()
        self.updateApplyButton()

    def onSceneStartClose(self, caller, event) -> None:
        self.stopProcess()

    # ---- inputs ----

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node) -> None:
        if node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
            # The name is final only once loading completes: look after the event loop has run.
            qt.QTimer.singleShot(0, self.autoSelectInputs)

    def autoSelectInputs(self) -> None:
        """Fill empty DWI/ADC selectors from volume names (dwi/trace/b1000 and adc)."""
        if not hasattr(self, "ui"):
            return
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            if node.IsA("vtkMRMLLabelMapVolumeNode"):
                continue
            name = (node.GetName() or "").lower()
            if "adc" in name:
                if self.ui.adcSelector.currentNode() is None:
                    self.ui.adcSelector.setCurrentNode(node)
            elif any(key in name for key in ("dwi", "trace", "b1000", "diffusion")):
                if self.ui.dwiSelector.currentNode() is None:
                    self.ui.dwiSelector.setCurrentNode(node)

    def refreshModels(self, select: str | None = None) -> None:
        """List installed models and select ``select`` (a path), else the registry's default model."""
        combo = self.ui.modelComboBox
        combo.clear()
        self.modelsListed = False
        try:
            from StrokeSegLib.model_registry import DEFAULT_MODEL_ID, list_models

            entries = list_models()
            self.modelsListed = True
        except ImportError:  # torch/safetensors not installed yet: the first Apply installs them, then we list
            combo.addItem(_("Default model (the list appears once PyTorch is installed)"), "")
            return
        except Exception as error:  # a broken model folder must not break the panel
            logging.warning(f"StrokeSeg: could not list models: {error}")
            entries = []
        for entry in entries:
            label = entry.model_id if entry.sha256_ok else f"{entry.model_id} (CHECKSUM MISMATCH)"
            combo.addItem(f"{label} [{entry.source}]", str(entry.path))
        if not entries:
            combo.addItem(_("No model installed: use Import..."), "")
        default = next((str(e.path) for e in entries if e.model_id == DEFAULT_MODEL_ID), None)
        index = combo.findData(select or default) if (select or default) else -1
        if index >= 0:
            combo.setCurrentIndex(index)

    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), _("Import StrokeSeg model"), "", "StrokeSeg model (*.safetensors)"
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
            from StrokeSegLib.model_registry import import_model

            entry = import_model(path)
            self.refreshModels(select=str(entry.path))

    def updateApplyButton(self, *unused) -> None:
        if self.process is not None:
            return
        ready = self.ui.dwiSelector.currentNode() is not None and self.ui.adcSelector.currentNode() is not None
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Segment the lesion (runs in the background; press again to cancel).")
            if ready
            else _("Select the DWI and the ADC volumes.")
        )

    def options(self) -> dict:
        threshold = self.ui.thresholdSpinBox.value
        minimum = self.ui.minLesionSpinBox.value
        return {
            "model": self.ui.modelComboBox.currentData or None,
            "device": self.ui.deviceComboBox.currentData or "auto",
            "tta": self.ui.ttaCheckBox.checked,
            # The spin boxes' lowest value reads "Model default".
            "threshold": None if threshold <= self.ui.thresholdSpinBox.minimum else threshold,
            "minLesionMm3": None if minimum <= self.ui.minLesionSpinBox.minimum else minimum,
        }

    # ---- running ----

    def onApplyButton(self) -> None:
        if self.process is not None:
            self.cancelRequested = True
            self.ui.statusLabel.text = _("Cancelling...")
            self.process.terminate()
            return
        from StrokeSegLib.dependencies import ensure_dependencies

        dwi, adc = self.ui.dwiSelector.currentNode(), self.ui.adcSelector.currentNode()
        try:
            with slicer.util.tryWithErrorDisplay(_("StrokeSeg could not start."), waitCursor=True):
                if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
                    return
                if not getattr(self, "modelsListed", True):
                    self.refreshModels()
                self.job = BackgroundSegmentation.prepare(dwi, adc, python=pythonSlicerExecutable(), **self.options())
                logging.info("StrokeSeg: " + " ".join(self.job.command))
                self.process = slicer.util.launchConsoleProcess(
                    self.job.command, useStartupEnvironment=False, updateEnvironment=self.job.environment
                )
        except Exception:  # already shown and logged by tryWithErrorDisplay
            if self.job is not None:
                self.job.cleanup()
            self.job, self.process = None, None
            return
        self.reader = OutputReader(self.process.stdout)
        self.outputLines = []
        self.cancelRequested = False
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

    def onPoll(self) -> None:
        """Show the child's progress; when it has ended, load its result or report its error."""
        if self.process is None:
            self.timer.stop()
            return
        for line in self.reader.lines():
            progress = parse_progress_line(line)
            if progress is None:
                self.outputLines = (self.outputLines + [line.rstrip()])[-200:]
                logging.info("StrokeSeg: " + line.rstrip())
            else:
                stage, fraction = progress
                self.ui.statusLabel.text = stage
                self.ui.progressBar.value = int(round(fraction * 100))
        returncode = self.process.poll()
        if returncode is None:
            return
        self.timer.stop()
        for line in self.reader.lines(wait=True):
            if parse_progress_line(line) is None:
                self.outputLines.append(line.rstrip())
        self.finishRun(returncode)

    def finishRun(self, returncode: int) -> None:
        job, self.job, self.process = self.job, None, None
        self.setRunning(False)
        self.updateApplyButton()
        try:
            if self.cancelRequested:
                self.ui.statusLabel.text = _("Cancelled.")
                return
            segmentation = job.finish(
                returncode, self.logic, self.ui.dwiSelector.currentNode(), self.ui.outputSegmentationSelector.currentNode()
            )
            self.ui.outputSegmentationSelector.setCurrentNode(segmentation)
            self.showResult(segmentation)
        except Exception as error:
            details = "\n".join(self.outputLines[-60:])
            logging.error(f"StrokeSeg failed: {error}\n{details}")
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(f"{error}\n\n{self.lastError()}", detailedText=details)
        finally:
            job.cleanup()

    def lastError(self) -> str:
        """The child's own error line ("strokeseg: error: ...") when it printed one."""
        for line in reversed(self.outputLines):
            if line.startswith("strokeseg:"):
                return line
        return ""

    def showResult(self, segmentation) -> None:
        self.ui.statusLabel.text = _("Done.")
        self.ui.resultLabel.text = summary_text(self.logic.lastReport)
        segmentation.CreateDefaultDisplayNodes()
        slicer.util.setSliceViewerLayers(background=self.ui.dwiSelector.currentNode())

    def stopProcess(self) -> None:
        self.timer.stop()
        if self.process is not None:
            self.process.kill()
            self.process = None
        if self.job is not None:
            self.job.cleanup()
            self.job = None


class StrokeSegTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Self Tests / ctest): synthetic DWI and ADC, a tiny random model, no network access."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_StrokeSeg_logic()

    def test_StrokeSeg_logic(self) -> None:
        import importlib.util
        import tempfile

        if importlib.util.find_spec("torch") is None:
            self.skipTest("PyTorch is not installed (install the PyTorch extension)")
        import numpy as np
        import torch

        from StrokeSegLib import mrml
        from StrokeSegLib.model_file import ModelMetadata, save_model
        from StrokeSegLib.network import AttentionUNet3D, NetworkConfig
        from StrokeSegLib.synthetic import make_synthetic_case

        self.delayDisplay("Building a synthetic case and a tiny random model")
        case = make_synthetic_case(seed=0, size=(40, 36, 20), spacing=(2.0, 2.0, 4.0), oblique=True)
        dwi = mrml.sitk_to_volume_node(case.dwi, name="synthetic DWI")
        adc = mrml.sitk_to_volume_node(case.adc, name="synthetic ADC")
        torch.manual_seed(0)
        config = NetworkConfig(in_channels=2, out_channels=1, features=(4, 8, 16))
        meta = ModelMetadata(model_id="selftest-random", network=config.to_dict(), target_spacing=(3.0, 3.0, 3.0),
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
