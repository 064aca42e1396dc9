"""The Slicer panels' job runner against a launcher that behaves like PythonSlicer (starts the work as a child,
ignores SIGTERM, forwards nothing): cancel ends every process of the job within 2 s and never blocks the caller."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from StrokeSegLib.common.progress import PROGRESS_PREFIX, CancelFile, parse_progress_line, progress_line
from StrokeSegLib.panels.jobs import ChildJob

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the fake launcher and pid checks are POSIX")

LAUNCHER = Path(__file__).resolve().parent / "fake_applauncher.py"


def worker_script(tmp_path: Path, honour_cancel_file: bool = False) -> Path:
    """The 'real' work: writes its pid, prints progress forever, ignores SIGTERM (so only a kill stops it)."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / 'StrokeSeg')!r})
        from StrokeSegLib.common.progress import CancelFile, MachineProgress
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(sys.argv[1], "w").write(str(os.getpid()))
        cancel = CancelFile(sys.argv[2] if len(sys.argv) > 2 else None)
        progress = MachineProgress()
        print("worker started", flush=True)
        i = 0
        while True:
            progress("Predicting", (i % 100) / 100)
            if {honour_cancel_file!r} and cancel.is_set():
                print("strokeseg: Cancelled by the user.", flush=True)
                sys.exit(130)
            i += 1
            time.sleep(0.02)
    """))
    return script


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2] != "Z"
    except OSError:
        return True


def wait_for_file(path: Path, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not (path.is_file() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return int(path.read_text())


def test_the_fake_launcher_is_faithful_terminate_leaves_the_work_running(tmp_path: Path) -> None:
    """What goes wrong with Popen.terminate() on PythonSlicer, reproduced: the launcher survives, so does the work."""
    pid_file = tmp_path / "pid"
    launcher = subprocess.Popen([sys.executable, str(LAUNCHER), sys.executable, str(worker_script(tmp_path)),
                                 str(pid_file)], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        worker = wait_for_file(pid_file)
        launcher.terminate()
        time.sleep(0.5)
        assert launcher.poll() is None and alive(worker)
        launcher.kill()  # even killing the launcher itself leaves the work running
        launcher.wait(timeout=5)
        time.sleep(0.2)
        assert alive(worker)
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)


def test_cancel_ends_the_whole_tree_within_2_s_without_blocking(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    job = ChildJob([sys.executable, str(LAUNCHER), sys.executable, str(worker_script(tmp_path)), str(pid_file)],
                   cancel_file=tmp_path / "cancel").start()
    worker = wait_for_file(pid_file)
    launcher = job.process.pid
    deadline = time.monotonic() + 10
    progress = None
    while progress is None:
        assert time.monotonic() < deadline, "no progress line arrived"
        progress = job.poll().progress
        time.sleep(0.05)
    assert progress[0] == "Predicting" and "worker started" in job.log_tail

    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 0.1, "cancel() must return at once"
    assert (tmp_path / "cancel").exists(), "the cooperative cancel file is created"
    update = None
    while time.monotonic() - started < 2.0:
        t = time.monotonic()
        update = job.poll()
        assert time.monotonic() - t < 0.05, "poll() must never wait"
        if update.done:
            break
        time.sleep(0.02)
    assert update is not None and update.done and update.cancelled
    assert not alive(worker) and not alive(launcher), "a process of the job survived the cancel"


def test_a_cooperative_child_stops_by_itself_with_status_130(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    job = ChildJob([sys.executable, str(LAUNCHER), sys.executable, str(worker_script(tmp_path, True)), str(pid_file),
                    str(tmp_path / "cancel")], cancel_file=tmp_path / "cancel", grace_s=30.0).start()
    worker = wait_for_file(pid_file)
    job.cancel()
    deadline = time.monotonic() + 5
    while not (update := job.poll()).done:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert update.returncode == 130 and not alive(worker)  # exited cleanly, long before the 30 s kill
    assert job.last_error() == "strokeseg: Cancelled by the user."


def test_a_finished_job_delivers_all_output_and_its_status(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(3): print(sys.argv[1] + f'\\tstep\\t{i / 2}')\nprint('bye')\nsys.exit(3)"
    job = ChildJob([sys.executable, str(LAUNCHER), sys.executable, "-c", code, PROGRESS_PREFIX]).start()
    deadline, updates = time.monotonic() + 20, []
    while not (updates and updates[-1].done):
        assert time.monotonic() < deadline
        updates.append(job.poll())
        time.sleep(0.02)
    assert [p for u in updates for p in [u.progress] if p][-1] == ("step", 1.0)
    assert [line for u in updates for line in u.log] == ["bye"]
    assert updates[-1].returncode == 3 and not updates[-1].cancelled


def test_progress_lines_have_one_definition() -> None:
    assert progress_line("Aligning\tADC", 0.25) == f"{PROGRESS_PREFIX}\tAligning ADC\t0.2500"
    assert parse_progress_line(progress_line("Predicting", 7)) == ("Predicting", 1.0)
    assert parse_progress_line("INFO loading model") is None
    assert parse_progress_line(f"{PROGRESS_PREFIX}\tPredicting\tabc") is None
    assert parse_progress_line(f"{PROGRESS_PREFIX}\tPredicting\tnan") is None
    from StrokeSegLib import cli
    from StrokeSegLib.scene import logic

    assert cli.PROGRESS_PREFIX is logic.PROGRESS_PREFIX is PROGRESS_PREFIX


def test_cancel_file_token(tmp_path: Path) -> None:
    token = CancelFile(tmp_path / "stop")
    assert not token.is_set() and not CancelFile(None).is_set()
    (tmp_path / "stop").touch()
    assert token.is_set()


def test_segment_command_stops_on_its_cancel_file(tmp_path: Path) -> None:
    """The cooperative half wired end to end: ``strokeseg segment --cancel-file`` exits 130 once the file exists."""
    import SimpleITK as sitk

    from StrokeSegLib.apps.phantom import make_synthetic_case

    case = make_synthetic_case(seed=1, size=(24, 20, 10), spacing=(2.0, 2.0, 4.0), oblique=False)
    sitk.WriteImage(case.dwi, str(tmp_path / "dwi.nrrd"))
    sitk.WriteImage(case.adc, str(tmp_path / "adc.nrrd"))
    (tmp_path / "cancel").touch()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "StrokeSeg")}
    done = subprocess.run(
        [sys.executable, "-m", "StrokeSegLib.cli", "segment", "--dwi", str(tmp_path / "dwi.nrrd"), "--adc",
         str(tmp_path / "adc.nrrd"), "--out", str(tmp_path / "mask.nrrd"), "--progress", "machine", "--device", "cpu",
         "--cancel-file", str(tmp_path / "cancel")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Cancelled" in done.stderr and not (tmp_path / "mask.nrrd").exists()


def test_train_command_takes_the_panel_channel() -> None:
    from StrokeSegTrainLib.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--progress", "machine", "--cancel-file",
                                      "c"])
    assert args.progress == "machine" and args.cancel_file == "c"
