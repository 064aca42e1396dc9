"""The model file: one safetensors file holding the weights and, in its header, the JSON metadata needed to use them.

Why safetensors: a model file is something users download and share, and ``torch.load`` on a pickle runs arbitrary
code. A safetensors file is a length-prefixed JSON header plus raw tensor bytes, so reading it can never execute
anything. This module parses the header itself and refuses anything else (pickles, zips, garbage) before handing the
file to the safetensors reader. Reading the header (:func:`read_metadata`) needs no torch, so the Slicer panel lists
and describes models without loading PyTorch into Slicer's process; only saving and loading weights import it.

Earlier format versions are read through :func:`.model_upgrade.upgrade_metadata`, the one place that knows them.

An ensemble file (:mod:`.ensemble`) is the same kind of file: one metadata block shared by all members (network shape,
preprocessing, patch size, threshold) plus a ``members`` list, and each member's tensors under ``members.<i>.``.

Why the metadata lives inside the file: the network shape, the preprocessing (spacing, normalisation), the patch size
and the calibrated threshold belong to the weights; a separate sidecar could be lost or mismatched.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.atomic import atomic_path
from ..common.errors import ModelFileError
from ..preprocessing.preprocess_config import PreprocessConfig
from .model_upgrade import (  # the versions: see model_upgrade
    ENSEMBLE_FORMAT_VERSION,
    FORMAT_VERSION,
    upgrade_metadata,
)
from .network_config import NetworkConfig

if TYPE_CHECKING:  # torch is imported only to save or load weights: reading the header needs none
    import torch

    from .ensemble import EnsembleNetwork
    from .network import AttentionUNet3D

METADATA_KEY = "strokeseg"
MODEL_SUFFIX = ".safetensors"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors reference limit; real headers are a few kB
_NOT_SAFETENSORS = "not a StrokeSeg model file (safetensors expected)"
_SHA256_HEX = frozenset("0123456789abcdef")
MEMBER_FIELDS = ("model_id", "file_sha256", "weights_sha256")


@dataclass
class ModelMetadata:
    """What a model file says about itself. ``patch_size`` is (z, y, x) voxels; ``preprocess`` is the preprocessing the
    network was trained with (its ``target_spacing`` is (x, y, z) mm as SimpleITK orders spacing); ``threshold`` and
    ``min_lesion_mm3`` are the calibrated post-processing defaults. ``members`` is empty for a single model; for an
    ensemble it lists each member as ``{"model_id", "file_sha256", "weights_sha256"}`` (the id and checksum of the file
    it came from, and :func:`.ensemble.weights_sha256` of its tensors as stored here)."""

    model_id: str
    network: dict[str, Any]
    format_version: int = FORMAT_VERSION
    channels: list[str] = field(default_factory=lambda: ["DWI", "ADC"])
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    patch_size: tuple[int, int, int] = (64, 96, 96)
    threshold: float = 0.5
    min_lesion_mm3: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    members: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.network, NetworkConfig):
            self.network = self.network.to_dict()
        if isinstance(self.preprocess, dict):
            self.preprocess = PreprocessConfig.from_dict(self.preprocess)
        self.channels = list(self.channels)
        self.patch_size = tuple(self.patch_size)  # type: ignore[assignment]

    @property
    def network_config(self) -> NetworkConfig:
        """The network description as a validated :class:`NetworkConfig`."""
        return NetworkConfig.from_dict(self.network)

    @property
    def target_spacing(self) -> tuple[float, float, float]:
        """The network grid's spacing (x, y, z) in mm."""
        return self.preprocess.target_spacing

    def preprocess_config(self, register: bool | None = None) -> PreprocessConfig:
        """The preprocessing the model was trained with, i.e. what its input values mean; ``register`` is the
        caller's per-run choice, not the model's."""
        return replace(self.preprocess, register=register)

    @property
    def member_count(self) -> int:
        """How many networks the file holds: 1 for a single model."""
        return len(self.members) or 1

    def validate(self) -> None:
        """Raise ValueError naming the first bad field; a model that passes can be used without further checks."""
        if not isinstance(self.format_version, int) or isinstance(self.format_version, bool) or self.format_version < 1:
            raise ValueError(f"format_version must be a positive integer, got {self.format_version!r}")
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise ValueError("model_id must be a non-empty string")
        config = self.network_config
        if not self.channels or not all(isinstance(c, str) and c for c in self.channels):
            raise ValueError(f"channels must be a list of names, got {self.channels!r}")
        if len(self.channels) != config.in_channels:
            raise ValueError(
                f"channels {self.channels} do not match the network's {config.in_channels} input channels"
            )
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ValueError(f"preprocess must be a JSON object of preprocessing settings, got {self.preprocess!r}")
        if len(self.patch_size) != 3 or not all(_positive_int(p) for p in self.patch_size):
            raise ValueError(f"patch_size must be 3 positive integers (z, y, x), got {self.patch_size!r}")
        if any(p % config.required_divisor for p in self.patch_size):
            raise ValueError(
                f"patch_size {self.patch_size} must be divisible by {config.required_divisor} for this network"
            )
        if not _finite_number(self.threshold) or not 0.0 < self.threshold < 1.0:
            # 0 would mark every brain voxel as lesion, 1 none: either is a broken file, not a choice
            raise ValueError(f"threshold must lie strictly between 0 and 1, got {self.threshold!r}")
        if not _finite_number(self.min_lesion_mm3) or self.min_lesion_mm3 < 0:
            raise ValueError(f"min_lesion_mm3 must be a number >= 0, got {self.min_lesion_mm3!r}")
        if not isinstance(self.provenance, dict):
            raise ValueError(f"provenance must be a JSON object, got {self.provenance!r}")
        if not isinstance(self.description, str):
            raise ValueError("description must be a string")
        _validate_members(self.members, self.format_version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["preprocess"] = self.preprocess.to_dict()
        data["patch_size"] = [int(p) for p in self.patch_size]
        if not self.members:  # a single model's metadata stays exactly what it was before ensembles existed
            del data["members"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ModelMetadata:
        """Build and validate, after :func:`.model_upgrade.upgrade_metadata` brought an earlier format version up to
        this one; raises ValueError (callers that read files turn it into ModelFileError)."""
        data = upgrade_metadata(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown metadata fields {', '.join(unknown)}")
        for key in ("patch_size", "channels", "members"):
            if key in data and not isinstance(data[key], (list, tuple)):
                raise ValueError(f"{key} must be a list, got {data[key]!r}")
        if "preprocess" in data and not isinstance(data["preprocess"], dict):
            raise ValueError(f"preprocess must be a JSON object, got {data['preprocess']!r}")
        meta = cls(**data)
        meta.validate()
        return meta


def _validate_members(members: Any, format_version: int) -> None:
    if not isinstance(members, list):
        raise ValueError(f"members must be a list, got {members!r}")
    if members and format_version != ENSEMBLE_FORMAT_VERSION:
        raise ValueError(f"it lists ensemble members but has format_version {format_version} (an ensemble file is "
                         f"version {ENSEMBLE_FORMAT_VERSION})")
    if not members and format_version == ENSEMBLE_FORMAT_VERSION:
        raise ValueError(f"format_version {ENSEMBLE_FORMAT_VERSION} is an ensemble file but it lists no members")
    for i, member in enumerate(members):
        if not isinstance(member, dict) or sorted(member) != sorted(MEMBER_FIELDS):
            raise ValueError(f"members[{i}] must be an object with exactly {', '.join(MEMBER_FIELDS)}, got {member!r}")
        if not isinstance(member["model_id"], str) or not member["model_id"]:
            raise ValueError(f"members[{i}].model_id must be a non-empty string")
        for key in ("file_sha256", "weights_sha256"):
            digest = member[key]
            if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
                raise ValueError(f"members[{i}].{key} must be 64 lower-case hex digits, got {digest!r}")


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(value: Any) -> bool:
    return _finite_number(value) and value > 0


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class LoadedModel:
    """A ready network (eval mode, on the requested device) with its metadata and the file's checksum; for an ensemble
    file the network is an :class:`.ensemble.EnsembleNetwork` holding every member."""

    network: AttentionUNet3D | EnsembleNetwork
    metadata: ModelMetadata
    sha256: str
    path: Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (model files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(path: str | Path, network: AttentionUNet3D | EnsembleNetwork, metadata: ModelMetadata) -> Path:
    """Write weights + metadata atomically. The metadata's network config must be the network's own (an ensemble's
    is its members'; its tensors are named ``members.<i>.`` by the module structure)."""
    from safetensors.torch import save_file

    metadata.validate()
    config = getattr(network, "config", None)
    if not isinstance(config, NetworkConfig):
        raise ValueError("save_model expects an AttentionUNet3D (a network with a NetworkConfig .config)")
    if metadata.network_config != config:
        raise ValueError(f"metadata.network {metadata.network} does not describe this network {config.to_dict()}")
    held = len(getattr(network, "members", ())) or 1
    if held != metadata.member_count:
        raise ValueError(f"the metadata lists {metadata.member_count} member(s), the network holds {held}")
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in network.state_dict().items()}
    header = {METADATA_KEY: json.dumps(metadata.to_dict(), sort_keys=True)}
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return target


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors JSON header by hand, refusing anything that is not one."""
    if not path.is_file():
        raise ModelFileError("model file not found", path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{_NOT_SAFETENSORS}: the file is too short", path)
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > _MAX_HEADER_BYTES or 8 + length > size:
            raise ModelFileError(f"{_NOT_SAFETENSORS}: no valid header", path)
        raw = handle.read(length)
    if not raw.startswith(b"{"):
        raise ModelFileError(f"{_NOT_SAFETENSORS}: no valid header", path)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{_NOT_SAFETENSORS}: the header is not valid JSON", path) from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{_NOT_SAFETENSORS}: no valid header", path)
    return header


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read and validate the metadata only (no tensors loaded): fast enough for listing many models."""
    path = Path(path)
    header = _read_header(path)
    extra = header.get("__metadata__")
    if not isinstance(extra, dict) or METADATA_KEY not in extra:
        raise ModelFileError(
            "a safetensors file but not a StrokeSeg model: it has no StrokeSeg metadata in its header", path
        )
    try:
        data = json.loads(extra[METADATA_KEY])
    except (TypeError, json.JSONDecodeError):
        raise ModelFileError("the StrokeSeg metadata in the header is not valid JSON", path) from None
    try:
        return ModelMetadata.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"invalid StrokeSeg metadata: {exc}", path) from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network (every member of an ensemble) from the metadata and load the weights strictly; never
    unpickles anything. Weights with NaN/inf are refused, and so is an ensemble member whose tensors are missing or
    differ from the checksum recorded for them."""
    import torch
    from safetensors.torch import load_file

    from .devices import resolve_device

    path = Path(path)
    metadata = read_metadata(path)
    target = resolve_device(device)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for truncated or inconsistent files
        raise ModelFileError(f"the weights could not be read ({exc})", path) from None
    broken = sorted(name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if broken:
        shown = ", ".join(broken[:5]) + (f" and {len(broken) - 5} more" if len(broken) > 5 else "")
        raise ModelFileError(
            f"the weights contain NaN or infinite values ({shown}); such a model would output nothing (or anything)",
            path,
        )
    if metadata.members:
        from .ensemble import ensemble_from_tensors

        network: AttentionUNet3D | EnsembleNetwork = ensemble_from_tensors(tensors, metadata, path)
    else:
        network = network_from_tensors(tensors, metadata.network_config, path)
    network.to(target).eval()
    return LoadedModel(network=network, metadata=metadata, sha256=file_sha256(path), path=path)


def network_from_tensors(tensors: dict[str, torch.Tensor], config: NetworkConfig, path: Path,
                         what: str = "the weights") -> AttentionUNet3D:
    """A network of ``config`` holding exactly ``tensors``; ModelFileError (naming ``path`` and ``what``) otherwise."""
    from .network import AttentionUNet3D

    network = AttentionUNet3D(config)
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelFileError(f"{what} do not match the network described in the metadata: {detail[:600]}",
                             path) from None
    return network
