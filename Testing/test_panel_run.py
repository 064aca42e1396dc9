"""The StrokeSeg panel's run without Qt (StrokeSegLib.panels.panel) in a real MRML scene, with a real child process
started through a launcher that behaves like PythonSlicer; and model listing with torch imports blocked."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from torchless import run_without_torch  # noqa: E402

from StrokeSegLib.apps.phantom import make_synthetic_case  # noqa: E402
from StrokeSegLib.panels.panel import SegmentationRun, guess_inputs  # noqa: E402
from StrokeSegLib.scene import mrml  # noqa: E402
from StrokeSegLib.scene.logic import StrokeSegLogic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).resolve().parent / "fake_applauncher.py"


@pytest.fixture
def python_slicer(tmp_path: Path) -> str:
    """An executable named like PythonSlicer: the launcher (ignores SIGTERM) starting this Python as its child."""
    if os.name == "nt":
        pytest.skip("the launcher stand-in is a POSIX shell script")
    path = tmp_path / "PythonSlicer"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{LAUNCHER}" "{sys.executable}" "$@"\n')
    path.chmod(0o755)
    return str(path)


def add_case(scene, seed: int):
    case = make_synthetic_case(seed=seed, size=(28, 24, 12), spacing=(2.0, 2.0, 4.0), oblique=False)
    dwi = mrml.sitk_to_volume_node(case.dwi, name="case DWI", scene=scene)
    adc = mrml.sitk_to_volume_node(case.adc, name="case ADC", scene=scene)
    return dwi, adc


def processes_using(path: Path) -> list[int]:
    """Live (non-zombie) processes whose command line mentions ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if str(path) in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                stat = (entry / "stat").read_text()
                if stat[stat.rfind(")") + 2] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def poll_until_done(run: SegmentationRun, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        started = time.monotonic()
        outcome = run.poll()
        assert time.monotonic() - started < 0.1, "poll() must not block the GUI thread"
        if outcome is not None:
            return outcome
        assert time.monotonic() < deadline, "the run did not end in time"
        time.sleep(0.05)


def test_a_failing_child_is_reported_and_cleaned_up(scene, python_slicer: str, tmp_path: Path) -> None:
    dwi, adc = add_case(scene, seed=6)
    run = SegmentationRun(python=python_slicer)
    run.start(dwi, adc, model=str(tmp_path / "missing.safetensors"), device="cpu")
    workdir = run.background.workdir
    assert run.active
    outcome = poll_until_done(run, 120)
    assert outcome.status == "failed" and not run.active
    assert "Segmentation failed (exit status 2)" in outcome.error and "missing.safetensors" in outcome.error
    assert not workdir.exists()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process listing through /proc")
def test_cancel_through_the_launcher_leaves_no_process_and_returns_to_idle(scene, python_slicer: str) -> None:
    dwi, adc = add_case(scene, seed=7)
    run = SegmentationRun(python=python_slicer)
    run.start(dwi, adc, device="cpu")
    workdir = run.background.workdir
    deadline = time.monotonic() + 30
    while len(processes_using(workdir)) < 2:  # the launcher and the real Python both running
        assert time.monotonic() < deadline, "the child never started"
        run.poll()
        time.sleep(0.05)
    started = time.monotonic()
    run.cancel()
    assert time.monotonic() - started < 0.1 and run.cancelling
    outcome = poll_until_done(run, 5)
    assert outcome.status == "cancelled" and not run.active
    assert time.monotonic() - started < 3.0
    assert processes_using(workdir) == [] and not workdir.exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process listing through /proc")
def test_abort_on_scene_close_ends_the_run_at_once(scene, python_slicer: str) -> None:
    dwi, adc = add_case(scene, seed=8)
    run = SegmentationRun(python=python_slicer)
    run.start(dwi, adc, device="cpu")
    workdir = run.background.workdir
    deadline = time.monotonic() + 30
    while not processes_using(workdir):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.abort()
    assert not run.active and run.poll() is None and not workdir.exists()
    deadline = time.monotonic() + 2
    while processes_using(workdir):
        assert time.monotonic() < deadline, "a process of the aborted run survived"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_run_loads_the_lesion_as_the_in_process_logic_does(scene, python_slicer: str, tiny_model: Path) -> None:
    dwi, adc = add_case(scene, seed=9)
    run = SegmentationRun(python=python_slicer)
    run.start(dwi, adc, model=str(tiny_model), device="cpu", threshold=0.5)
    outcome = poll_until_done(run, 180)
    assert outcome.status == "done", outcome.error
    assert "mL" in outcome.summary
    expected = StrokeSegLogic().process(dwi, adc, model=tiny_model, device="cpu", threshold=0.5)
    got = mrml.labelmap_from_segmentation(outcome.segmentation, mrml.LESION_SEGMENT_NAME, dwi)
    want = mrml.labelmap_from_segmentation(expected, mrml.LESION_SEGMENT_NAME, dwi)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(want))


def test_inputs_are_guessed_from_volume_names(scene) -> None:
    dwi, adc = add_case(scene, seed=10)
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "dwi labels")
    assert guess_inputs([other, labels, adc, dwi]) == {"adc": adc, "dwi": dwi}


def test_models_are_listed_and_described_without_torch(tmp_path: Path, tiny_model: Path) -> None:
    """What the panel does on opening, in a process where importing torch (or safetensors.torch) fails."""
    import hashlib
    import shutil

    cache = tmp_path / "home" / "models"
    cache.mkdir(parents=True)
    shutil.copy(tiny_model, cache / "tiny-test.safetensors")
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    (cache / "tiny-test.sha256").write_text(f"{digest}  tiny-test.safetensors\n")
    lines = run_without_torch("""
        from StrokeSegLib.panels.panel import model_choices
        from StrokeSegLib.engine.model_registry import list_models
        choices, default = model_choices()
        described = {e.model_id: (e.metadata.threshold, e.metadata.network_config.required_divisor)
                     for e in list_models()}
        print(repr((choices, default, described, "torch" in sys.modules)))
    """, tmp_path / "home")
    choices, default, described, torch_loaded = eval(lines[-1])
    labels = [label for label, _ in choices]
    assert "tiny-test [cache]" in labels and "strokeseg-starter (ensemble of 2) [bundled]" in labels
    assert default.endswith("strokeseg-starter.safetensors")
    assert described["tiny-test"] == (0.5, 4)
    assert not torch_loaded
