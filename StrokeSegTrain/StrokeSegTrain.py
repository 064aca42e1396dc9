"""StrokeSeg Training module: train a fold on an ISLES 2022 folder from inside Slicer.

Thin: the panel runs ``PythonSlicer -m StrokeSegTrainLib.cli train ...`` in a child process through
StrokeSegLib.panels.jobs.ChildJob (so training survives a busy GUI, and Stop ends the whole process tree, not just the
launcher; the last end-of-epoch checkpoint allows resuming), shows its per-epoch lines and its machine progress lines.
``StrokeSegTrainLogic`` builds that command and can also train blocking from Python.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

EPOCH_LINE = re.compile(r"^\s*epoch\s+(\d+)\s*/\s*(\d+)\b")
DEVICES = ["auto", "cuda", "mps", "cpu"]
#: Fine-tuning the bundled starter model: its network and preprocessing with a shorter schedule (the recipe's
#: stages 2 to 4).
STARTER_MODEL_ID = "strokeseg-starter"
FINETUNE_CONFIG = Path(__file__).resolve().parent / "Resources" / "starter_finetune_config.json"


class StrokeSegTrain(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Stroke Lesion Segmentation Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["StrokeSeg contributors (https://github.com/strokeseg/SlicerStrokeSeg)"]
        self.parent.helpText = _(
            "Train a StrokeSeg model on ISLES 2022 data (one cross-validation fold). The exported model "
            "(fold_K/model.safetensors in the output folder) can be imported in the Stroke Lesion Segmentation module. "
            "A GPU is strongly recommended."
        )
        self.parent.acknowledgementText = _(
            "ISLES 2022: Hernandez Petzsche MR et al., Scientific Data 9, 762 (2022), doi:10.1038/s41597-022-01875-5."
        )


def _pythonSlicer() -> str:
    found = shutil.which("PythonSlicer")
    if found:
        return found
    return os.path.join(os.path.dirname(sys.executable), "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")


class StrokeSegTrainLogic(ScriptedLoadableModuleLogic):
    """Builds the training command, parses its progress, or trains blocking."""

    @staticmethod
    def buildCommand(python: str, data: str, out: str, fold: int = 0, epochs: int | None = None,
                     device: str = "auto", resume: bool = False, fineTuneStarter: bool = False,
                     cancelFile: str | None = None) -> list[str]:
        """``fineTuneStarter``: start from the bundled starter model with its fine-tuning configuration.
        Progress comes as machine lines (as from ``strokeseg segment``); ``cancelFile`` is the cooperative Stop."""
        command = [python, "-m", "StrokeSegTrainLib.cli", "train", "--data", str(data), "--out", str(out),
                   "--fold", str(int(fold)), "--device", device, "--quiet", "--progress", "machine"]
        if cancelFile:
            command += ["--cancel-file", str(cancelFile)]
        if fineTuneStarter:
            command += ["--config", str(FINETUNE_CONFIG), "--init-from", STARTER_MODEL_ID]
        if epochs:
            command += ["--epochs", str(int(epochs))]
        if resume:
            command.append("--resume")
        return command

    @staticmethod
    def environment() -> dict[str, str]:
        """Both Lib packages on the child's PYTHONPATH (Slicer adds module folders only in its own process)."""
        import StrokeSegLib

        folders = [str(Path(__file__).resolve().parent), str(Path(StrokeSegLib.__file__).resolve().parents[1])]
        folders += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(folders)), "PYTHONUNBUFFERED": "1"}

    @staticmethod
    def parseEpochLine(line: str) -> tuple[int, int] | None:
        """(epoch, total) from a trainer log line such as 'epoch   3/100  loss 0.41 ...'."""
        match = EPOCH_LINE.match(line)
        return (int(match.group(1)), int(match.group(2))) if match else None

    def train(self, data: str, out: str, fold: int = 0, epochs: int | None = None, device: str = "auto",
              resume: bool = False, progress=None, cancel=None, fineTuneStarter: bool = False):
        """Train blocking in this process (scripts); returns StrokeSegTrainLib's TrainResult."""
        from StrokeSegTrainLib.config import load_config
        from StrokeSegTrainLib.trainer import train

        config = load_config(FINETUNE_CONFIG if fineTuneStarter else None)
        if fineTuneStarter:
            config = config.with_overrides(init_from=STARTER_MODEL_ID)
        if epochs:
            config = config.with_overrides(epochs=int(epochs))
            config.validate()
        return train(config, data, out, fold, progress, cancel, device=device, resume=resume)


class StrokeSegTrainWidget(ScriptedLoadableModuleWidget):
    """Data and output folders, fold, Start/Stop, progress from the child's machine progress lines."""

    def __init__(self, parent=None, jobFactory=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        from StrokeSegLib.panels.jobs import ChildJob

        self.jobFactory = jobFactory or ChildJob
        self.job = None
        self.cancelFolder = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/StrokeSegTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = StrokeSegTrainLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onPoll)
        for device in DEVICES:
            self.ui.deviceComboBox.addItem(device)
        self.ui.dataPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.outputPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        slicer.app.connect("aboutToQuit()", self.cleanup)
        self.updateButtons()

    def cleanup(self) -> None:
        """Module reload or application exit: training must not go on without Slicer."""
        if hasattr(self, "timer"):
            self.timer.stop()
        if self.job is not None:
            self.job.kill()
            self.job = None
        self.removeCancelFolder()

    def removeCancelFolder(self) -> None:
        if self.cancelFolder is not None:
            shutil.rmtree(self.cancelFolder, ignore_errors=True)
            self.cancelFolder = None

    def updateButtons(self, *unused) -> None:
        running = self.job is not None
        ready = bool(self.ui.dataPathLineEdit.currentPath and self.ui.outputPathLineEdit.currentPath)
        self.ui.startButton.enabled = ready and not running
        self.ui.stopButton.enabled = running

    def onStart(self) -> None:
        from StrokeSegLib.scene.dependencies import ensure_dependencies

        with slicer.util.tryWithErrorDisplay(_("Could not start training."), waitCursor=True):
            if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
                return
            self.cancelFolder = tempfile.mkdtemp(prefix="strokeseg-train-")
            cancelFile = os.path.join(self.cancelFolder, "cancel")
            command = self.logic.buildCommand(
                _pythonSlicer(), self.ui.dataPathLineEdit.currentPath, self.ui.outputPathLineEdit.currentPath,
                self.ui.foldSpinBox.value, self.ui.epochsSpinBox.value or None, self.ui.deviceComboBox.currentText,
                self.ui.resumeCheckBox.checked, self.ui.fineTuneCheckBox.checked, cancelFile=cancelFile)
            logging.info("StrokeSegTrain: " + " ".join(command))
            try:
                self.job = self.jobFactory(command, self.logic.environment(), cancel_file=cancelFile).start()
            except Exception:
                self.removeCancelFolder()
                raise
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Preparing data (the first run caches the preprocessed cases)...")
            self.timer.start()
        self.updateButtons()

    def onStop(self) -> None:
        if self.job is not None:
            self.ui.statusLabel.text = _("Stopping...")
            self.job.cancel()

    def onPoll(self) -> None:
        """Show new log lines and progress (never waits); report how training ended."""
        if self.job is None:
            self.timer.stop()
            return
        update = self.job.poll()
        for line in update.log:
            self.ui.logTextEdit.appendPlainText(line)
            if self.logic.parseEpochLine(line) is not None:
                self.ui.statusLabel.text = line.strip()
        if update.progress is not None:
            self.ui.progressBar.value = int(round(100 * update.progress[1]))
        if not update.done:
            return
        self.timer.stop()
        self.job = None
        self.removeCancelFolder()
        if update.cancelled:
            self.ui.statusLabel.text = _("Stopped: resume from the last checkpoint with 'Resume'.")
        elif update.returncode == 0:
            self.ui.statusLabel.text = _("Finished: import fold_K/model.safetensors in the Stroke Lesion "
                                         "Segmentation module.")
        else:
            self.ui.statusLabel.text = _("Training ended with status {status}; see the log above.").format(
                status=update.returncode)
        self.updateButtons()


class StrokeSegTrainTest(ScriptedLoadableModuleTest):
    """Command building and log parsing (training itself is tested in StrokeSegTrainLib's own tests)."""

    def runTest(self) -> None:
        self.test_command_and_progress()

    def test_command_and_progress(self) -> None:
        logic = StrokeSegTrainLogic()
        command = logic.buildCommand("PythonSlicer", "/data/isles", "/runs/a", fold=2, epochs=5, resume=True)
        self.assertEqual(command[:4], ["PythonSlicer", "-m", "StrokeSegTrainLib.cli", "train"])
        self.assertIn("--resume", command)
        self.assertEqual(command[command.index("--progress") + 1], "machine")
        self.assertNotIn("--init-from", command)
        self.assertEqual(command[command.index("--fold") + 1], "2")
        tune = logic.buildCommand("PythonSlicer", "/data/isles", "/runs/b", fineTuneStarter=True)
        self.assertEqual(tune[tune.index("--init-from") + 1], STARTER_MODEL_ID)
        self.assertTrue(Path(tune[tune.index("--config") + 1]).is_file())
        self.assertEqual(logic.parseEpochLine("epoch    3/100  loss 0.4123  lr 1.00e-03"), (3, 100))
        self.assertIsNone(logic.parseEpochLine("caching case sub-strokecase0001"))
        self.assertIn(str(Path(__file__).resolve().parent), logic.environment()["PYTHONPATH"])
