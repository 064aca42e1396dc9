"""The network's description (:class:`NetworkConfig`), apart from the network so that reading a model file's header
needs no torch: the Slicer panel lists and describes models without loading PyTorch into Slicer's process.
:mod:`StrokeSegLib.engine.network` re-exports it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _default_features() -> tuple[int, ...]:
    return (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network; stored as JSON inside each model file."""

    in_channels: int = 2
    out_channels: int = 1
    features: tuple[int, ...] = field(default_factory=_default_features)
    deep_supervision: bool = False
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first nonsensical field (a model file's metadata goes through here)."""
        for name in ("in_channels", "out_channels"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"network {name} must be a positive integer, got {value!r}")
        if len(self.features) < 2:
            raise ValueError(f"network features must list at least 2 levels, got {self.features!r}")
        if any(not _is_int(f) or f < 1 for f in self.features):
            raise ValueError(f"network features must be positive integers, got {self.features!r}")
        if not isinstance(self.deep_supervision, bool):
            raise ValueError(f"network deep_supervision must be true or false, got {self.deep_supervision!r}")
        slope = self.negative_slope
        if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not math.isfinite(slope) or slope < 0:
            raise ValueError(f"network negative_slope must be a finite number >= 0, got {slope!r}")

    @property
    def required_divisor(self) -> int:
        """Each input axis must be a multiple of this (one halving per level below the first)."""
        return 2 ** (len(self.features) - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (features as a list)."""
        data = asdict(self)
        data["features"] = list(self.features)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so a typo is never silently ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"network config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown network config keys: {', '.join(unknown)}")
        values = dict(data)
        if "features" in values:
            features = values["features"]
            if not isinstance(features, (list, tuple)):
                raise ValueError(f"network features must be a list of integers, got {features!r}")
            values["features"] = tuple(features)
        return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
