"""Start a training run from an existing model's weights (fine-tuning), e.g. the bundled starter model.

The source is a StrokeSeg model file or an installed model id, read through the same pickle-free loader as inference.
Fine-tuning only makes sense when the weights were trained on the same input: the network's shape and the
preprocessing that defines what its input values mean (spacing, clipping, ADC normalisation) must match the run's
configuration, otherwise the run is refused before any work, naming the file and every difference. Patch size,
augmentation, loss and schedule may differ; the network spacing only with ``init_from_other_spacing``. The exported
model carries no deep-supervision heads, so those start from their random initialisation; every other tensor is
taken from the file. An ensemble file starts the run from its first member (training makes one network; the members
share shape and preprocessing), and the log and the run's provenance name that member.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.engine.ensemble import member_networks
from StrokeSegLib.engine.model_file import ModelMetadata, load_model, read_metadata
from StrokeSegLib.engine.model_registry import resolve_model

from .config import TrainConfig
from .export import AUX_HEADS_PREFIX, inference_network_config

log = logging.getLogger("StrokeSegTrain")


def _differences(metadata: ModelMetadata, config: TrainConfig) -> list[str]:
    """Human-readable list of what in the model file does not match the training configuration."""
    diffs: list[str] = []
    have, wanted = metadata.network_config.to_dict(), inference_network_config(config).to_dict()
    diffs += [f"network.{k}: model {have[k]!r}, configuration {v!r}" for k, v in wanted.items() if have[k] != v]
    trained, wanted_pre = metadata.preprocess_config().input_definition(), config.preprocess.input_definition()
    if config.init_from_other_spacing:
        del trained["target_spacing"], wanted_pre["target_spacing"]
    diffs += [f"{k}: model {trained[k]!r}, configuration {v!r}" for k, v in wanted_pre.items() if trained[k] != v]
    return diffs


def check_initial_weights(config: TrainConfig) -> Path:
    """The file ``config.init_from`` names, after checking its metadata (not its tensors) against ``config``.

    Raises :class:`StrokeSegError` (naming the file) when the model cannot serve as a starting point.
    """
    path = resolve_model(config.init_from)
    metadata = read_metadata(path)
    diffs = _differences(metadata, config)
    if diffs:
        raise StrokeSegError("cannot fine-tune from this model, it does not match the training configuration: "
                             + "; ".join(diffs), path)
    return path


def load_initial_weights(network: torch.nn.Module, config: TrainConfig) -> dict[str, Any]:
    """Copy ``config.init_from``'s weights into the training ``network``; returns where they came from."""
    path = check_initial_weights(config)
    loaded = load_model(path)
    members = loaded.metadata.members
    weights = member_networks(loaded.network)[0].state_dict()  # an ensemble's first member, or the network
    result = network.load_state_dict(weights, strict=False)
    stray = [k for k in result.missing_keys if not k.startswith(AUX_HEADS_PREFIX)]
    if stray or result.unexpected_keys:  # cannot happen when the configs match; guards future network changes
        raise StrokeSegError(f"the model's tensors do not fit the training network (missing {stray[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]})", path)
    source: dict[str, Any] = {"model_id": loaded.metadata.model_id, "path": str(path.resolve()),
                              "sha256": loaded.sha256}
    if members:
        source["member"] = {"index": 0, **members[0]}
        log.info("%s is an ensemble of %d models: fine-tuning starts from its first member, %s", source["model_id"],
                 len(members), members[0]["model_id"])
    log.info("initialised from %s (%s, sha256 %s); %d deep-supervision tensors start fresh", source["model_id"],
             path, loaded.sha256[:12], len(result.missing_keys))
    return source
