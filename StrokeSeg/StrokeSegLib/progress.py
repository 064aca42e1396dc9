"""Progress reporting and cancellation shared by the CLI (tqdm), batch runs and the Slicer panel.

Long operations take a ``progress`` callable and a ``cancel`` object; both are optional so the core stays usable from
a plain script. The Slicer panel polls the same callbacks from a worker.
"""
from __future__ import annotations

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
