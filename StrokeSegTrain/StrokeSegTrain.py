"""StrokeSeg Training module: train a fold on an ISLES 2022 folder from inside Slicer.

Thin: the panel runs ``PythonSlicer -m StrokeSegTrainLib.cli train ...`` in a child process (so training survives a
busy GUI and Stop can end it; the last end-of-epoch checkpoint allows resuming) and shows its per-epoch lines.
``StrokeSegTrainLogic`` builds that command and can also train blocking from Python.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path

import qt

import slicer
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
        self.parent.title = "Stroke Lesion Segmentation Training"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["StrokeSeg contributors (https://github.com/strokeseg/SlicerStrokeSeg)"]
        self.parent.helpText = (
            "Train a StrokeSeg model on ISLES 2022 data (one cross-validation fold). The exported model "
            "(fold_K/model.safetensors in the output folder) can be imported in the Stroke Lesion Segmentation module. "
            "A GPU is strongly recommended."
        )
        self.parent.acknowledgementText = (
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
                     device: str = "auto", resume: bool = False, fineTuneStarter: bool = False) -> list[str]:
        """``fineTuneStarter``: start from the bundled starter model with its fine-tuning configuration."""
        command = [python, "-m", "StrokeSegTrainLib.cli", "train", "--data", str(data), "--out", str(out),
                   "--fold", str(int(fold)), "--device", device, "--quiet"]
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
    """Data and output folders, fold, Start/Stop, progress from the per-epoch log lines."""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/StrokeSegTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = StrokeSegTrainLogic()
        self.process = None
        self.reader = None
        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onPoll)
        for device in DEVICES:
            self.ui.deviceComboBox.addItem(device)
        self.ui.dataPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.outputPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.updateButtons()

    def cleanup(self) -> None:
        self.timer.stop()
        if self.process is not None:
            self.process.terminate()

    def updateButtons(self, *unused) -> None:
        running = self.process is not None
        ready = bool(self.ui.dataPathLineEdit.currentPath and self.ui.outputPathLineEdit.currentPath)
        self.ui.startButton.enabled = ready and not running
        self.ui.stopButton.enabled = running

    def onStart(self) -> None:
        from StrokeSegLib.dependencies import ensure_dependencies
        from StrokeSegLib.logic import OutputReader

        with slicer.util.tryWithErrorDisplay("Could not start training.", waitCursor=True):
            if not ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay):
                return
            command = self.logic.buildCommand(
                _pythonSlicer(), self.ui.dataPathLineEdit.currentPath, self.ui.outputPathLineEdit.currentPath,
                self.ui.foldSpinBox.value, self.ui.epochsSpinBox.value or None, self.ui.deviceComboBox.currentText,
                self.ui.resumeCheckBox.checked, self.ui.fineTuneCheckBox.checked)
            logging.info("StrokeSegTrain: " + " ".join(command))
            self.process = slicer.util.launchConsoleProcess(
                command, useStartupEnvironment=False, updateEnvironment=self.logic.environment())
            self.reader = OutputReader(self.process.stdout)
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Preparing data (the first run caches the preprocessed cases)..."
            self.timer.start()
        self.updateButtons()

    def onStop(self) -> None:
        if self.process is not None:
            self.ui.statusLabel.text = "Stopping..."
            self.process.terminate()

    def onPoll(self) -> None:
        if self.process is None:
            self.timer.stop()
            return
        for line in self.reader.lines():
            self.ui.logTextEdit.appendPlainText(line.rstrip())
            epoch = self.logic.parseEpochLine(line)
            if epoch is not None:
                self.ui.progressBar.value = int(100 * epoch[0] / max(epoch[1], 1))
                self.ui.statusLabel.text = line.strip()
        returncode = self.process.poll()
        if returncode is None:
            return
        self.timer.stop()
        for line in self.reader.lines(wait=True):
            self.ui.logTextEdit.appendPlainText(line.rstrip())
        self.process = None
        self.ui.statusLabel.text = (
            "Finished: import fold_K/model.safetensors in the Stroke Lesion Segmentation module."
            if returncode == 0 else f"Training ended with status {returncode}; see the log above."
        )
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
        self.assertNotIn("--init-from", command)
        self.assertEqual(command[command.index("--fold") + 1], "2")
        tune = logic.buildCommand("PythonSlicer", "/data/isles", "/runs/b", fineTuneStarter=True)
        self.assertEqual(tune[tune.index("--init-from") + 1], STARTER_MODEL_ID)
        self.assertTrue(Path(tune[tune.index("--config") + 1]).is_file())
        self.assertEqual(logic.parseEpochLine("epoch    3/100  loss 0.4123  lr 1.00e-03"), (3, 100))
        self.assertIsNone(logic.parseEpochLine("caching case sub-strokecase0001"))
        self.assertIn(str(Path(__file__).resolve().parent), logic.environment()["PYTHONPATH"])
