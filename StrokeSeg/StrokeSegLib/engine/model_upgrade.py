"""Model files of every earlier format version: one function brings their metadata up to the current version.

Version history (``format_version`` in the metadata):

1. ``target_spacing`` and ``normalization`` (``{"method": "percentile_zscore", "clip_percentiles": [lo, hi]}``, plus
   ``"adc": "zscore" | "physical"`` once the physical ADC existed; a file without ``"adc"`` was trained on z-scored
   ADC). The bundled starter model is such a file.
2. ``preprocess``: the :class:`~StrokeSegLib.preprocessing.preprocess_config.PreprocessConfig` the model was trained
   with, as written by training.
3. As 2, plus ``members``: an ensemble file (:mod:`StrokeSegLib.engine.ensemble`) whose tensors are stored per member
   under ``members.<i>.``. Only ensembles are written at version 3; a single model is still written at version 2, so its
   file is byte-for-byte what it was before ensembles existed and older StrokeSeg versions keep reading it, while an
   older StrokeSeg refuses an ensemble with "newer than this StrokeSeg supports" instead of a confusing tensor error.

Reading never rewrites a file (its checksum stays valid); a file newer than this StrokeSeg is refused.
"""
from __future__ import annotations

from typing import Any

#: The version a single-model file is written in.
FORMAT_VERSION = 2
#: The version an ensemble file is written in; also the newest version this StrokeSeg reads.
ENSEMBLE_FORMAT_VERSION = 3


def upgrade_metadata(data: Any) -> dict[str, Any]:
    """A copy of a model file's metadata at :data:`FORMAT_VERSION` (:data:`ENSEMBLE_FORMAT_VERSION` for an ensemble);
    raises ValueError for metadata no version describes (the caller names the file)."""
    if not isinstance(data, dict):
        raise ValueError("metadata must be a JSON object")
    missing = [name for name in ("model_id", "network", "format_version") if name not in data]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"format_version must be a positive integer, got {version!r}")
    if version > ENSEMBLE_FORMAT_VERSION:
        raise ValueError(f"format version {version} is newer than this StrokeSeg supports "
                         f"({ENSEMBLE_FORMAT_VERSION}); update StrokeSeg")
    data = dict(data)
    if version == 1:
        data = _from_version_1(data)
    return data


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """``target_spacing`` + ``normalization`` -> ``preprocess``, keeping what the network was trained to see."""
    if "preprocess" in data:
        raise ValueError("unknown metadata fields preprocess (a version 1 file has target_spacing and normalization)")
    normalization = data.pop("normalization", {})
    if not isinstance(normalization, dict):
        raise ValueError(f"normalization must be a JSON object, got {normalization!r}")
    spacing = data.pop("target_spacing", [2.0, 2.0, 2.0])
    if not isinstance(spacing, (list, tuple)):
        raise ValueError(f"target_spacing must be a list, got {spacing!r}")
    clip = normalization.get("clip_percentiles", [0.5, 99.5])
    if not isinstance(clip, (list, tuple)):
        raise ValueError(f"normalization.clip_percentiles must be a list, got {clip!r}")
    data["preprocess"] = {
        "target_spacing": list(spacing),
        "clip_percentiles": list(clip),
        "register": None,  # version 1 did not record it; at inference the run's choice applies anyway
        "adc_normalization": normalization.get("adc", "zscore"),  # written before the physical ADC existed
    }
    data["format_version"] = 2
    return data
