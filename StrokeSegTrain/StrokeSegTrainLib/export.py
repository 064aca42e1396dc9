"""Turn the best training checkpoint into a model file that ``strokeseg segment`` and the Slicer module load.

The deep-supervision heads only shape the training signal; they are dropped so the exported network is the plain
inference network (``deep_supervision=False``), exactly what a user's model file describes. Everything needed to
trust and reproduce the model goes into its provenance: data, split, fold, scores, full configuration, date, command
and library versions.
"""
from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from StrokeSegLib.engine.model_file import ModelMetadata, save_model
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig

from .config import TrainConfig

#: State-dict prefix of the deep-supervision heads: trained, never exported (``AttentionUNet3D.aux_heads``).
AUX_HEADS_PREFIX = "aux_heads."


def inference_network_config(config: TrainConfig) -> NetworkConfig:
    """The network a model file describes: the training network without its auxiliary heads."""
    return replace(config.network, deep_supervision=False)


def training_network_config(config: TrainConfig) -> NetworkConfig:
    """The network as trained (with deep supervision when configured)."""
    return config.network


def inference_network(state_dict: dict[str, torch.Tensor], config: TrainConfig) -> AttentionUNet3D:
    """Load trained weights into the inference network, strictly, without the auxiliary heads."""
    network = AttentionUNet3D(inference_network_config(config))
    weights = {k.removeprefix("module."): v for k, v in state_dict.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith(AUX_HEADS_PREFIX)}
    network.load_state_dict(weights, strict=True)
    return network.eval()


def export_model(state_dict: dict[str, torch.Tensor], config: TrainConfig, path: str | Path, model_id: str,
                 provenance: dict[str, Any], description: str = "") -> Path:
    """Write ``path`` (safetensors + metadata) from trained weights and the run's provenance."""
    network = inference_network(state_dict, config)
    provenance = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **provenance,
        "config": config.to_dict(),
    }
    metadata = ModelMetadata(
        model_id=model_id,
        network=network.config.to_dict(),
        preprocess=config.preprocess,
        patch_size=tuple(config.patch_size),  # type: ignore[arg-type]
        threshold=float(config.threshold),
        min_lesion_mm3=float(config.min_lesion_mm3),
        provenance=provenance,
        description=description,
    )
    return save_model(path, network, metadata)
