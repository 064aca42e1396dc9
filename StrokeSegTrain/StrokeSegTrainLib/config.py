"""Training configuration: one JSON-serialisable tree of dataclasses, so a run is fully described by one file.

The configuration is read from JSON (PyYAML is not part of the product's dependencies, so YAML is not supported). A
file only needs the keys it changes; unknown keys are refused with a message naming them, because a misspelt key that
silently does nothing is the most common way to waste a training run.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.engine.network_config import NetworkConfig
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

from .sampler import FOREGROUND_SAMPLING

# Default patch (z, y, x) at the 2 mm network spacing: 128 x 192 x 192 mm. ISLES 2022 brains resampled to 2 mm are
# about 73 x 112 x 112 voxels, so a patch spans the whole axial extent of the brain (the context a radiologist uses to
# compare hemispheres) and more than half of it in z; every side is divisible by 16 for the 5-level U-Net.
DEFAULT_PATCH_SIZE = (64, 96, 96)


def _training_network() -> NetworkConfig:
    """Training's network: the library's defaults, with deep supervision (the exported model drops its heads)."""
    return NetworkConfig(deep_supervision=True)


@dataclass
class AugmentationConfig:
    """Probability and range of every augmentation; a probability of 0 switches it off.

    Spatial transforms act identically on image and mask; intensity transforms act on the image only, per channel.
    Ranges are (low, high) sampled uniformly. Angles are degrees.
    """

    flip_axes: tuple[int, ...] = (0, 1, 2)
    flip_probability: float = 0.5
    rotation_probability: float = 0.2
    rotation_degrees: tuple[float, float] = (-15.0, 15.0)
    scale_probability: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.25)
    elastic_probability: float = 0.0
    elastic_magnitude: float = 0.03
    elastic_grid: int = 4
    gamma_probability: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    brightness_probability: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    contrast_probability: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    noise_probability: float = 0.1
    noise_std: tuple[float, float] = (0.0, 0.1)
    blur_probability: float = 0.1
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    lowres_probability: float = 0.1
    lowres_factor: tuple[float, float] = (1.0, 2.0)
    # DWI-only mimics (label unchanged): smooth bright blobs on the DWI channel alone (susceptibility pile-up, T2
    # shine-through, bright cortex at the brain's edge) with the ADC left normal, so the network learns that an infarct
    # needs a low ADC and not only a bright DWI. Amplitude in z-scored DWI units, sigma in network-grid voxels.
    dwi_mimic_probability: float = 0.3
    dwi_mimic_count: tuple[int, int] = (1, 4)
    dwi_mimic_sigma: tuple[float, float] = (1.5, 7.0)
    dwi_mimic_amplitude: tuple[float, float] = (1.0, 3.5)


@dataclass
class LossConfig:
    """Focal Tversky (Abraham & Khan 2019), optionally plus BCE or soft Dice; see ``losses.focal_tversky``."""

    alpha: float = 0.25
    beta: float = 0.85
    gamma: float = 2.0
    focal_convention: str = "inverse"
    smooth: float = 1.0
    batch_reduction: bool = True
    bce_weight: float = 0.0
    dice_weight: float = 0.0
    #: Small-lesion weighting of the BCE term (0 = off): a lesion voxel with n lesion voxels in its 9x9x9
    #: neighbourhood weighs max(1, small_lesion_voxels / n), so a lesion of a few voxels counts in the BCE as much as
    #: one of ``small_lesion_voxels`` voxels (see ``losses.small_lesion_weights``).
    small_lesion_voxels: float = 0.0


@dataclass
class OptimConfig:
    """AdamW plus either ReduceLROnPlateau on validation Dice (the reference) or polynomial decay per epoch."""

    learning_rate: float = 3e-4
    weight_decay: float = 1e-5
    scheduler: str = "plateau"
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    min_learning_rate: float = 1e-6
    poly_exponent: float = 0.9
    grad_clip: float = 12.0


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved into every checkpoint and exported model."""

    #: The network trained (``StrokeSegLib``'s own :class:`NetworkConfig`; the exported model drops the
    #: deep-supervision heads); 2 input channels (DWI, ADC) and 1 output.
    network: NetworkConfig = field(default_factory=_training_network)
    #: The preprocessing (``StrokeSegLib``'s own :class:`PreprocessConfig`): stored as written in the exported model
    #: file and part of the cache key.
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    patch_size: tuple[int, int, int] = DEFAULT_PATCH_SIZE
    batch_size: int = 2
    foreground_fraction: float = 0.33
    #: "voxel": a foreground patch is centred on any lesion voxel alike; "lesion": on a lesion drawn uniformly among
    #: the case's lesions first, so small lesions are seen as often as large ones (see ``sampler``).
    foreground_sampling: str = "voxel"
    epochs: int = 300
    iterations_per_epoch: int = 250
    validate_every: int = 1
    early_stopping_patience: int = 50
    num_folds: int = 5
    split_seed: int = 12345
    seed: int = 0
    deterministic: bool = False
    amp: bool = True
    cache_dtype: str = "float32"
    prefetch_batches: int = 2
    val_overlap: float = 0.5
    val_batch_size: int = 2
    threshold: float = 0.5
    min_lesion_mm3: float = 0.0
    #: Average the weights at the end of the last N epochs (0: off); the final validation scores the average, and it
    #: is exported when it validates best (see ``weight_average``).
    average_last_epochs: int = 0
    #: Fine-tuning: a StrokeSeg model file or installed model id whose weights start the run ("" = random
    #: initialisation). Its network and preprocessing must match this configuration (see ``initial_weights``).
    init_from: str = ""
    #: Fine-tuning onto another network grid: accept ``init_from`` weights trained at another ``target_spacing`` (a
    #: convolution network transfers across voxel sizes; everything else must still match). Off by default, since a
    #: spacing mismatch is more often a mistaken file than a plan. Without a starting model it does nothing (a
    #: configuration file may leave the model to ``--init-from``).
    init_from_other_spacing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Defaults overridden by ``data``; unknown keys raise :class:`StrokeSegError`."""
        return _build(cls, data, "config")

    def with_overrides(self, **values: Any) -> TrainConfig:
        """Copy with top-level fields replaced (used by the CLI's --epochs and the tests)."""
        return dataclasses.replace(self, **values)

    def validate(self) -> None:
        """Refuse settings that would fail much later, deep in a training run."""
        problems: list[str] = []
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            problems.append(f"patch_size must be three positive integers, got {self.patch_size}")
        depth_factor = 2 ** (len(self.network.features) - 1)
        if any(p % depth_factor for p in self.patch_size):
            problems.append(f"patch_size {self.patch_size} must be divisible by {depth_factor} for "
                            f"{len(self.network.features)} network levels")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            problems.append("foreground_fraction must be within 0..1")
        if self.foreground_sampling not in FOREGROUND_SAMPLING:
            problems.append(f"foreground_sampling must be one of {FOREGROUND_SAMPLING}, "
                            f"got {self.foreground_sampling!r}")
        if self.batch_size < 1 or self.iterations_per_epoch < 1 or self.epochs < 1:
            problems.append("batch_size, iterations_per_epoch and epochs must be at least 1")
        if not 0 <= self.average_last_epochs <= self.epochs:
            problems.append(f"average_last_epochs must be within 0..epochs ({self.epochs}), got "
                            f"{self.average_last_epochs}")
        if self.num_folds < 2:
            problems.append("num_folds must be at least 2")
        if self.optim.scheduler not in ("plateau", "poly"):
            problems.append(f"optim.scheduler must be 'plateau' or 'poly', got {self.optim.scheduler!r}")
        if not (math.isfinite(self.loss.small_lesion_voxels) and self.loss.small_lesion_voxels >= 0.0):
            problems.append("loss.small_lesion_voxels must be 0 (off) or positive, got "
                            f"{self.loss.small_lesion_voxels}")
        elif self.loss.small_lesion_voxels and not self.loss.bce_weight:
            problems.append("loss.small_lesion_voxels weighs the BCE term, which loss.bce_weight = 0 turns off")
        if self.loss.focal_convention not in ("inverse", "power"):
            problems.append("loss.focal_convention must be 'inverse' ((1-TI)^(1/gamma)) or 'power' ((1-TI)^gamma)")
        if (self.network.in_channels, self.network.out_channels) != (2, 1):
            problems.append("network.in_channels must be 2 (DWI, ADC) and network.out_channels 1 (lesion), got "
                            f"{self.network.in_channels} and {self.network.out_channels}")
        if not isinstance(self.init_from, str):
            problems.append(f"init_from must be a model file path or model id (a string), got {self.init_from!r}")
        if self.cache_dtype not in ("float16", "float32"):
            problems.append("cache_dtype must be 'float16' or 'float32'")
        if problems:
            raise StrokeSegError("Invalid training configuration: " + "; ".join(problems))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Recursively construct dataclass ``cls`` from ``data``, converting lists back to tuples."""
    if not isinstance(data, dict):
        raise StrokeSegError(f"{where} must be a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise StrokeSegError(f"Unknown key(s) in {where}: {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    defaults = cls()
    values: dict[str, Any] = {}
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            values[name] = _build(type(current), value, f"{where}.{name}")
        elif isinstance(current, tuple) and isinstance(value, (list, tuple)):
            values[name] = tuple(value)
        else:
            values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # the library's configs validate themselves
        raise StrokeSegError(f"Invalid {where}: {exc}") from None


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` over it; where both hold a JSON object, merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a JSON training configuration (``None`` gives the defaults) with ``overrides`` merged over it (nested
    objects key by key, as a recipe stage's ``train.overrides``) and validate it."""
    data: Any = {}
    if path is not None:
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            raise StrokeSegError("YAML configuration is not supported (PyYAML is not a dependency); use JSON", path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise StrokeSegError("configuration file not found", path) from exc
        except json.JSONDecodeError as exc:
            raise StrokeSegError(f"not valid JSON: {exc}", path) from exc
    config = TrainConfig.from_dict(_merged(data, overrides) if overrides and isinstance(data, dict) else data)
    config.validate()
    return config
