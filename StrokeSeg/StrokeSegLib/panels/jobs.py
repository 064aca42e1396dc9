"""The Slicer panels' one way to run a command-line job in a child process (no Qt, testable anywhere).

Why it is more than ``Popen``: inside Slicer the child is started through ``PythonSlicer``, a CTK AppLauncher that
starts the real Python as *its* child and does not forward signals. ``Popen.terminate()`` therefore stops only the
launcher, leaving the real work running (on the GPU, for hours of training, even after Slicer quits), and the
grandchild keeps the output pipe open, so a reader waiting for end of file never returns. Here:

* the child starts in its own process group (POSIX) or process group + no console (Windows), output merged and read
  line by line on a daemon thread; :meth:`ChildJob.poll` only takes what has arrived, so the GUI thread never waits;
* :meth:`ChildJob.cancel` first asks nicely (creates the cancel file the command polls, see
  :class:`~StrokeSegLib.common.progress.CancelFile`), then, from a timer thread, ends the whole process tree: the
  process group on POSIX plus every descendant found (psutil when importable, ``/proc`` on Linux), ``taskkill /T`` on
  Windows;
* jobs still running when Python exits are ended the same way.
"""
from __future__ import annotations

import atexit
import os
import queue
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..common.progress import parse_progress_line

#: How long a cooperative cancel may take before the process tree is killed.
CANCEL_GRACE_S = 1.0
#: After the child exits, how long to keep collecting output that a stray descendant might still hold open.
DRAIN_AFTER_EXIT_S = 2.0
#: Log lines kept for the error dialog.
LOG_TAIL = 200


@dataclass
class JobUpdate:
    """What :meth:`ChildJob.poll` found since the last call."""

    progress: tuple[str, float] | None = None  # the latest (stage, fraction), if any arrived
    log: list[str] = field(default_factory=list)  # ordinary output lines, without line ends
    done: bool = False  # the job has ended and its output is collected
    returncode: int | None = None
    cancelled: bool = False


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first). psutil when importable; else ``/proc`` on Linux; else none."""
    try:
        import psutil

        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    except ImportError:
        pass
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    parents: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 2:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_process_tree(process: subprocess.Popen) -> None:
    """End ``process`` and everything it started, at once (SIGKILL / TerminateProcess). Never raises, never waits
    for more than ``taskkill`` itself on Windows."""
    pids = _descendants(process.pid)  # before the launcher dies: orphans lose their parent link
    if os.name == "nt":
        try:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, timeout=10,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the child leads its own group (start_new_session)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for pid in pids:  # descendants that left the group
        try:
            os.kill(pid, signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    try:
        process.kill()
    except OSError:
        pass


_running: weakref.WeakSet[ChildJob] = weakref.WeakSet()


@atexit.register
def _end_running_jobs() -> None:
    """No job outlives the process that started it (Slicer quitting in the middle of a run)."""
    for job in list(_running):
        job.kill()


class ChildJob:
    """One command in a child process: start, poll from a GUI timer, cancel. Every method returns at once."""

    def __init__(self, command: Sequence[str], environment: Mapping[str, str] | None = None,
                 cancel_file: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 grace_s: float = CANCEL_GRACE_S) -> None:
        """``environment`` is added to this process's environment; ``cancel_file`` is the path the command polls
        (its ``--cancel-file``), created by :meth:`cancel`."""
        self.command = [str(c) for c in command]
        self.environment = dict(environment or {})
        self.cancel_file = None if cancel_file is None else Path(cancel_file)
        self.cwd = cwd
        self.grace_s = float(grace_s)
        self.process: subprocess.Popen | None = None
        self.log_tail: list[str] = []
        self.cancelled = False
        self._lines: queue.Queue[str] = queue.Queue()
        self._eof = threading.Event()
        self._exited_at: float | None = None
        self._killer: threading.Timer | None = None

    # ---- lifecycle ----

    def start(self) -> ChildJob:
        """Start the command; raises OSError when it cannot be started."""
        if self.process is not None:
            raise RuntimeError("this job was already started")
        if self.cancel_file is not None:
            self.cancel_file.unlink(missing_ok=True)
        env = {**os.environ, **self.environment}
        options: dict = {}
        if os.name == "nt":
            options["creationflags"] = (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                                        | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            options["start_new_session"] = True
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", bufsize=1, env=env, cwd=self.cwd, **options)
        _running.add(self)
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True,
                         name="StrokeSeg job output").start()
        return self

    def _pump(self, stream) -> None:
        try:
            for line in iter(stream.readline, ""):
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._eof.set()
            try:
                stream.close()
            except OSError:
                pass

    @property
    def running(self) -> bool:
        """Started and not yet exited."""
        return self.process is not None and self.process.poll() is None

    def poll(self) -> JobUpdate:
        """Progress and log lines received so far, and whether the job is over (never blocks)."""
        update = JobUpdate(cancelled=self.cancelled)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            progress = parse_progress_line(line)
            if progress is not None:
                update.progress = progress
            else:
                text = line.rstrip("\r\n")
                update.log.append(text)
        if update.log:
            self.log_tail = (self.log_tail + update.log)[-LOG_TAIL:]
        if self.process is None:
            return update
        returncode = self.process.poll()
        if returncode is None:
            return update
        now = time.monotonic()
        if self._exited_at is None:
            self._exited_at = now
        # Done once the output is complete; a stray descendant holding the pipe open is waited for only so long.
        if not self._eof.is_set() and now - self._exited_at <= DRAIN_AFTER_EXIT_S:
            return update
        if not self._lines.empty():
            return update  # lines still queued: the next poll returns them, then says done
        update.done = True
        update.returncode = returncode
        _running.discard(self)
        if self._killer is not None:
            self._killer.cancel()
        return update

    def cancel(self) -> None:
        """Ask the command to stop (cancel file), and end its whole process tree after ``grace_s`` from a timer thread.

        Returns at once; :meth:`poll` reports ``done`` (with ``cancelled``) once the processes are gone.
        """
        if self.process is None or self.cancelled:
            return
        self.cancelled = True
        if self.cancel_file is not None:
            try:
                self.cancel_file.parent.mkdir(parents=True, exist_ok=True)
                self.cancel_file.touch()
            except OSError:
                pass
        if self.grace_s <= 0:
            self.kill()
            return
        self._killer = threading.Timer(self.grace_s, self.kill)
        self._killer.daemon = True
        self._killer.start()

    def kill(self) -> None:
        """End the whole process tree now (also used when Slicer quits or the scene closes)."""
        self.cancelled = self.cancelled or self.process is not None
        if self.process is not None:
            kill_process_tree(self.process)
        _running.discard(self)

    def last_error(self, prefixes: Sequence[str] = ("strokeseg:", "strokeseg-train ")) -> str:
        """The command's own last word (e.g. ``strokeseg: error: ...``), else ''."""
        for line in reversed(self.log_tail):
            if line.startswith(tuple(prefixes)):
                return line
        return ""
