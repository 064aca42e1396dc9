"""The preprocessing settings (:class:`PreprocessConfig`), apart from the preprocessing so that the training
configuration embeds them and a model file's header is read without SimpleITK or torch work.

One definition with one set of defaults: training writes it into its configuration, the exported model file stores it
as written (``ModelMetadata.preprocess``), and inference prepares a case with what the model file says.
:mod:`StrokeSegLib.preprocessing.prepare` re-exports it.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Ways of presenting the ADC to the network: "zscore" clipped and z-scored inside the brain like the DWI (models
#: from before physical ADC), or "physical" (ADC in its detected unit, clipped and scaled in 10^-3 mm^2/s, see
#: ``normalization.normalize_adc_physical``).
ADC_NORMALIZATIONS = ("zscore", "physical")


@dataclass
class PreprocessConfig:
    """Settings that change what the network sees; stored with a model so deployment matches training.

    ``register`` is what training used; an inference run takes the user's choice instead (``SegmentOptions.register``,
    ``None`` = automatic).
    """

    target_spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    register: bool | None = None
    adc_normalization: str = "physical"

    def __post_init__(self) -> None:
        spacing = self.target_spacing
        values = [spacing] * 3 if isinstance(spacing, numbers.Real) else list(spacing)
        if len(values) != 3 or not all(_finite(v) and v > 0 for v in values):
            raise ValueError(f"target_spacing must be three positive numbers, got {self.target_spacing!r}")
        if len(self.clip_percentiles) != 2 or not all(_finite(v) for v in self.clip_percentiles):
            raise ValueError(f"clip_percentiles must be two numbers, got {self.clip_percentiles!r}")
        lower, upper = (float(v) for v in self.clip_percentiles)
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"clip_percentiles must satisfy 0 <= lower < upper <= 100, got {self.clip_percentiles!r}")
        if self.register not in (None, True, False):
            raise ValueError(f"register must be true, false or null, got {self.register!r}")
        if self.adc_normalization not in ADC_NORMALIZATIONS:
            raise ValueError(f"adc_normalization must be one of {ADC_NORMALIZATIONS}, got {self.adc_normalization!r}")
        self.target_spacing = tuple(float(v) for v in values)  # type: ignore[assignment]
        self.clip_percentiles = (lower, upper)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, floats, bool or None)."""
        return {"target_spacing": list(self.target_spacing), "clip_percentiles": list(self.clip_percentiles),
                "register": self.register, "adc_normalization": self.adc_normalization}

    def input_definition(self) -> dict[str, Any]:
        """The settings that define what the network's input values mean (all but ``register``, which each run
        chooses): what a fine-tuning source and the members of an ensemble must share."""
        return {k: v for k, v in self.to_dict().items() if k != "register"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are refused (likely typos)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"preprocessing settings must be a JSON object, got {data!r}")
        unknown = set(data) - {"target_spacing", "clip_percentiles", "register", "adc_normalization"}
        if unknown:
            raise ValueError(f"Unknown preprocessing settings: {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})  # type: ignore[arg-type]


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
