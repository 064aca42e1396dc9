"""What the Segment Editor effect "Stroke lesion (AI)" decides without Qt: when a preview is stale, and one monotonic
progress value for a dialog that shows several stages.

A preview belongs to the inputs it was computed from; applying it after the source volume, the ADC (or their
voxels), the model or TTA changed would write a lesion computed from other data, so :class:`PreviewKey` records them
and the effect recomputes instead. The engine reports each stage from 0 to 1; a progress dialog fed those values
jumps back to 0 at each stage (and, with auto-reset, forgets a Cancel pressed between stages), so
:class:`OverallProgress` turns them into one value that only grows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _node_state(node: Any) -> tuple[str, int, int]:
    """ID, and modification times of the node and of its voxels (an edit of the volume changes them)."""
    if node is None:
        return ("", 0, 0)
    image = node.GetImageData() if hasattr(node, "GetImageData") else None
    transform = node.GetParentTransformNode() if hasattr(node, "GetParentTransformNode") else None
    mtime = int(image.GetMTime()) if image is not None else 0
    return (str(node.GetID()), mtime, int(transform.GetMTime()) if transform is not None else 0)


@dataclass(frozen=True)
class PreviewKey:
    """The inputs a preview was computed from."""

    dwi: tuple[str, int, int]
    adc: tuple[str, int, int]
    model: str
    tta: bool

    @classmethod
    def of(cls, dwi: Any, adc: Any, model: str | None, tta: bool) -> PreviewKey:
        return cls(_node_state(dwi), _node_state(adc), str(model or ""), bool(tta))


class OverallProgress:
    """Maps ``(stage, fraction)`` callbacks to a percentage that never decreases.

    Each new stage name moves the base up by one share (``expected_stages`` shares in all); the value stays below
    100 until :meth:`finish`, so a dialog never reaches its end (and closes or resets) before the work is done.
    """

    def __init__(self, expected_stages: int = 8) -> None:
        self.expected_stages = max(int(expected_stages), 1)
        self.stages: list[str] = []
        self.percent = 0
        self.label = ""

    def update(self, stage: str, fraction: float) -> int:
        if not self.stages or stage != self.stages[-1]:
            self.stages.append(stage)
        index = min(len(self.stages) - 1, self.expected_stages - 1)
        value = int(100 * (index + min(max(float(fraction), 0.0), 1.0)) / self.expected_stages)
        self.percent = max(self.percent, min(value, 99))
        self.label = stage
        return self.percent

    def finish(self) -> int:
        self.percent = 100
        return self.percent
