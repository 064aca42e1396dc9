"""Progress reporting and cancellation shared by the CLI (tqdm), batch runs and the Slicer panel.

Long operations take a ``progress`` callable and a ``cancel`` object; both are optional so the core stays usable from
a plain script. A child process started by the Slicer panel reports through :class:`MachineProgress` lines and
is cancelled through a :class:`CancelFile`.
"""
from __future__ import annotations

import os
from typing import Protocol

from .errors import CancelledError


class ProgressCallback(Protocol):
    def __call__(self, stage: str, fraction: float) -> None:
        """``stage`` is a short human-readable name ("Aligning ADC", "Predicting"); ``fraction`` is 0..1 within it."""


class CancelToken(Protocol):
    def is_set(self) -> bool:
        """True once the user asked to stop (``threading.Event`` satisfies this)."""


def report(progress: ProgressCallback | None, stage: str, fraction: float) -> None:
    """Call ``progress`` when one was given."""
    if progress is not None:
        progress(stage, min(max(float(fraction), 0.0), 1.0))


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`CancelledError` when the user asked to stop; call it between units of work."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("Cancelled by the user.")


# ---- machine progress lines: what a child process prints for the Slicer panels (segmentation and training) ----

#: The one definition of the prefix of ``PREFIX<TAB>stage<TAB>fraction`` lines (``--progress machine``).
PROGRESS_PREFIX = "STROKESEG_PROGRESS"


def progress_line(stage: str, fraction: float) -> str:
    """``STROKESEG_PROGRESS<TAB>stage<TAB>fraction`` (tabs and newlines in ``stage`` become spaces)."""
    clean = " ".join(str(stage).replace("\t", " ").split())
    return f"{PROGRESS_PREFIX}\t{clean}\t{min(max(float(fraction), 0.0), 1.0):.4f}"


def parse_progress_line(line: str) -> tuple[str, float] | None:
    """``(stage, fraction)`` from a progress line, else None (an ordinary log line)."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != 3 or parts[0] != PROGRESS_PREFIX:
        return None
    try:
        fraction = float(parts[2])
    except ValueError:
        return None
    if fraction != fraction:  # NaN
        return None
    return parts[1], min(max(fraction, 0.0), 1.0)


class MachineProgress:
    """A :class:`ProgressCallback` printing progress lines to stdout, flushed at once (the panel reads them live)."""

    def __call__(self, stage: str, fraction: float) -> None:
        print(progress_line(stage, fraction), flush=True)


class CancelFile:
    """A :class:`CancelToken` that is set once a file exists: the Slicer panel's cooperative Cancel for a child process.

    The panel creates the file; the child notices it at its next :func:`check_cancel` and exits cleanly (status 130).
    The panel also ends the whole process tree shortly after, so a child stuck in one long step stops anyway.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else os.fspath(path)

    def is_set(self) -> bool:
        return self.path is not None and os.path.exists(self.path)
