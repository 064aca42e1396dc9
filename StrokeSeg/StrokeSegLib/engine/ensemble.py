"""Ensembles: several networks of one shape whose sigmoid probabilities are averaged, stored as one model file.

Why one file: an ensemble is used, imported, checksummed and listed like any model, and everything the members must
share (network shape, preprocessing, patch size, threshold, minimum lesion size) is stated once in its metadata. Each
member's tensors live under ``members.<i>.``; the metadata's ``members`` list records where each came from (model id
and file checksum) and a checksum of its tensors as stored, so a damaged or swapped member is refused when loading.

Members are averaged in probability space (:func:`.sliding_window.sliding_window_predict` runs every window batch
through every member), then blended, thresholded and post-processed exactly as one model's output would be.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..common.errors import ModelFileError, StrokeSegError
from .model_file import ENSEMBLE_FORMAT_VERSION, MODEL_SUFFIX, ModelMetadata, network_from_tensors
from .network import AttentionUNet3D, full_resolution
from .network_config import NetworkConfig

MEMBER_PREFIX = "members."
#: What every member of an ensemble must share, as ModelMetadata fields (``preprocess`` compared without
#: ``register``, which is the run's choice at inference).
SHARED_FIELDS = ("network", "channels", "preprocess", "patch_size", "threshold", "min_lesion_mm3")


class EnsembleNetwork(nn.Module):
    """Networks of one :class:`NetworkConfig`, averaged in probability space by the sliding window.

    ``forward`` returns the logit of the members' mean probability, so that code treating this as one network (a
    warm-up, a peer's sliding window) gets the ensemble's probabilities from ``sigmoid``; StrokeSeg's own sliding
    window averages the members' sigmoids itself (see :func:`member_networks`), which for a single member is exactly
    that member's computation.
    """

    def __init__(self, members: Sequence[AttentionUNet3D]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        configs = {m.config for m in members}
        if len(configs) != 1:
            raise ValueError(f"ensemble members must share one network config, got {sorted(map(str, configs))}")
        self.config: NetworkConfig = members[0].config
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.sigmoid(full_resolution(m(x)).float()) for m in self.members]).mean(0)
        return torch.logit(mean, eps=1e-7)



def member_networks(network: nn.Module) -> Sequence[nn.Module]:
    """The networks whose probabilities are averaged: an ensemble's members, or the network itself."""
    return list(network.members) if isinstance(network, EnsembleNetwork) else [network]


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the tensors' names, dtypes, shapes and bytes in name order: the same for a network's
    ``state_dict`` and for the same tensors read back from a file, whatever their order or file layout."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def ensemble_from_tensors(tensors: dict[str, torch.Tensor], metadata: ModelMetadata, path: Path) -> EnsembleNetwork:
    """The ensemble a file's ``tensors`` hold, each member checked against its recorded tensor checksum."""
    per_member: list[dict[str, torch.Tensor]] = [{} for _ in metadata.members]
    for name, tensor in tensors.items():
        index, _, rest = name[len(MEMBER_PREFIX):].partition(".") if name.startswith(MEMBER_PREFIX) else ("", "", "")
        if not index.isdigit() or int(index) >= len(per_member) or not rest:
            raise ModelFileError(f"tensor '{name}' belongs to none of the {len(per_member)} ensemble members "
                                 f"(expected names '{MEMBER_PREFIX}<0..{len(per_member) - 1}>.<tensor>')", path)
        per_member[int(index)][rest] = tensor
    networks = []
    for i, (member, own) in enumerate(zip(metadata.members, per_member, strict=True)):
        what = f"ensemble member {i} ('{member['model_id']}')"
        if not own:
            raise ModelFileError(f"{what} has no tensors in the file (expected '{MEMBER_PREFIX}{i}.*')", path)
        networks.append(network_from_tensors(own, metadata.network_config, path, what=f"the weights of {what}"))
        if weights_sha256(own) != member["weights_sha256"]:
            raise ModelFileError(f"the weights of {what} differ from the checksum recorded when the ensemble was "
                                 "built: the file is damaged or was altered", path)
    return EnsembleNetwork(networks)


def _shared(meta: ModelMetadata) -> dict[str, object]:
    values = {name: getattr(meta, name) for name in SHARED_FIELDS}
    values["preprocess"] = meta.preprocess.input_definition()
    values["patch_size"] = list(meta.patch_size)
    return values


def check_compatible(members: Sequence[tuple[Path, ModelMetadata]]) -> None:
    """Refuse (StrokeSegError naming both files and the field) members that cannot be averaged: every
    :data:`SHARED_FIELDS` value must equal the first member's; an ensemble cannot be a member."""
    for path, meta in members:
        if meta.members:
            raise StrokeSegError(f"is itself an ensemble of {len(meta.members)} models; list its member model files "
                                 "instead", path)
    first_path, first = members[0]
    reference = _shared(first)
    for path, meta in members[1:]:
        for name, value in _shared(meta).items():
            if value != reference[name]:
                raise StrokeSegError(
                    f"cannot be ensembled with {first_path}: {name} differs ({first_path.name}: {reference[name]!r}, "
                    f"{path.name}: {value!r}); ensemble members must share {', '.join(SHARED_FIELDS)}", path)


def build_ensemble(members: Sequence[str | Path], out: str | Path, model_id: str, description: str = "") -> Path:
    """Write (atomically) an ensemble file of ``members`` (model files or installed ids) under ``model_id``."""
    from .model_file import load_model, save_model
    from .model_registry import check_model_id, resolve_model

    target = Path(out)
    if not target.name.endswith(MODEL_SUFFIX):
        raise StrokeSegError(f"an ensemble file must end in {MODEL_SUFFIX}", target)
    check_model_id(model_id, target)
    if not members:
        raise StrokeSegError("an ensemble needs at least one member model")
    loaded = [load_model(resolve_model(str(m))) for m in members]
    check_compatible([(m.path, m.metadata) for m in loaded])
    first = loaded[0].metadata
    registers = {m.metadata.preprocess.register for m in loaded}
    records = [{"model_id": m.metadata.model_id, "file_sha256": m.sha256,
                "weights_sha256": weights_sha256(m.network.state_dict())} for m in loaded]
    names = ", ".join(r["model_id"] for r in records)
    metadata = ModelMetadata(
        model_id=model_id,
        network=first.network,
        format_version=ENSEMBLE_FORMAT_VERSION,
        channels=first.channels,
        preprocess=first.preprocess_config(register=registers.pop() if len(registers) == 1 else None),
        patch_size=first.patch_size,
        threshold=first.threshold,
        min_lesion_mm3=first.min_lesion_mm3,
        provenance={"ensemble_of": [m.metadata.provenance for m in loaded]},
        description=description or f"ensemble of {len(records)} models: {names}",
        members=records,
    )
    network = EnsembleNetwork([m.network for m in loaded])  # type: ignore[misc]
    return save_model(target, network, metadata)
