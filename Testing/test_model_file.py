"""Model files: round trip, and refusal of everything that is not a valid StrokeSeg safetensors file."""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from StrokeSegLib.common.errors import ModelFileError
from StrokeSegLib.engine.model_file import (
    ENSEMBLE_FORMAT_VERSION,
    FORMAT_VERSION,
    LoadedModel,
    ModelMetadata,
    file_sha256,
    load_model,
    read_metadata,
    save_model,
)
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

CONFIG = NetworkConfig(features=(4, 8, 16))


def _metadata(**overrides) -> ModelMetadata:
    values = dict(model_id="tiny-test", network=CONFIG.to_dict(), patch_size=(16, 16, 16), threshold=0.4,
                  min_lesion_mm3=12.5, provenance={"data": "synthetic", "folds": [0]}, description="test")
    values.update(overrides)
    return ModelMetadata(**values)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, AttentionUNet3D]:
    torch.manual_seed(0)
    net = AttentionUNet3D(CONFIG)
    path = save_model(tmp_path / "tiny.safetensors", net, _metadata())
    return path, net


def _write_header(path: Path, header: dict, payload: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)
    return path


def test_round_trip_equal_outputs(saved: tuple[Path, AttentionUNet3D]) -> None:
    path, net = saved
    loaded = load_model(path)
    assert isinstance(loaded, LoadedModel)
    assert not loaded.network.training
    assert loaded.metadata == _metadata()
    assert loaded.metadata.network_config == CONFIG
    assert loaded.sha256 == file_sha256(path) and len(loaded.sha256) == 64
    assert loaded.path == path
    x = torch.randn(1, 2, 8, 8, 8)
    net.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded.network(x), net(x), rtol=0, atol=0)


def test_read_metadata_only(saved: tuple[Path, AttentionUNet3D]) -> None:
    path, _ = saved
    meta = read_metadata(path)
    assert meta.format_version == FORMAT_VERSION
    assert meta.patch_size == (16, 16, 16) and meta.threshold == 0.4 and meta.min_lesion_mm3 == 12.5
    assert meta.channels == ["DWI", "ADC"]
    assert meta.preprocess == PreprocessConfig()


def test_save_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    net = AttentionUNet3D(CONFIG)
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(ValueError):
        save_model(target, net, _metadata(threshold=2.0))
    assert target.read_bytes() == b"old"
    save_model(target, net, _metadata())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_save_refuses_metadata_of_another_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not describe"):
        save_model(tmp_path / "m.safetensors", AttentionUNet3D(CONFIG),
                   _metadata(network=NetworkConfig(features=(4, 8, 32)).to_dict()))


class _Marker:
    """Unpickling this would create a file: proof that a loader ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_torch_pickle_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    torch.save({"state_dict": AttentionUNet3D(CONFIG).state_dict(), "x": _Marker(marker)}, path)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match=r"not a StrokeSeg model file \(safetensors expected\)") as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_legacy_raw_pickle_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Marker(marker), protocol=2))
    with pytest.raises(ModelFileError, match="safetensors expected"):
        load_model(path)
    with pytest.raises(ModelFileError, match="safetensors expected"):
        read_metadata(path)
    assert not marker.exists()


def test_zip_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.bin", b"\0" * 100)
    with pytest.raises(ModelFileError, match="safetensors expected"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"abc", os.urandom(4096), b"\x10\0\0\0\0\0\0\0[1, 2, 3, 4, 5, 6]"])
def test_garbage_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="safetensors expected"):
        load_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def test_plain_safetensors_without_metadata_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file(AttentionUNet3D(CONFIG).state_dict(), str(path))
    with pytest.raises(ModelFileError, match="no StrokeSeg metadata"):
        load_model(path)


def _with_metadata(tmp_path: Path, data, tensors=None) -> Path:
    path = tmp_path / "m.safetensors"
    tensors = AttentionUNet3D(CONFIG).state_dict() if tensors is None else tensors
    text = data if isinstance(data, str) else json.dumps(data)
    save_file(tensors, str(path), metadata={"strokeseg": text})
    return path


def test_newer_format_version_refused(tmp_path: Path) -> None:
    data = _metadata().to_dict() | {"format_version": ENSEMBLE_FORMAT_VERSION + 1}
    with pytest.raises(ModelFileError, match="newer than this StrokeSeg supports"):
        load_model(_with_metadata(tmp_path, data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"patch_size": [15, 16, 16]}, "divisible"),
        ({"patch_size": [16, 16]}, "patch_size"),
        ({"preprocess": {"target_spacing": [2.0, -1.0, 2.0]}}, "target_spacing"),
        ({"preprocess": [2.0, 2.0, 2.0]}, "preprocess"),
        ({"preprocess": {"spacing": 2.0}}, "spacing"),
        ({"channels": ["DWI"]}, "channels"),
        ({"network": {"features": [4]}}, "features"),
        ({"min_lesion_mm3": "ten"}, "min_lesion_mm3"),
        ({"model_id": ""}, "model_id"),
        ({"surprise": 1}, "unknown metadata"),
        ({"preprocess": {"adc_normalization": "minmax"}}, "adc_normalization"),
        ({"normalization": {"adc": "physical"}}, "unknown metadata fields normalization"),
    ],
)
def test_wrong_metadata_refused(tmp_path: Path, change: dict, message: str) -> None:
    data = _metadata().to_dict() | change
    with pytest.raises(ModelFileError, match=message):
        load_model(_with_metadata(tmp_path, data))


def test_missing_metadata_fields_and_bad_json_refused(tmp_path: Path) -> None:
    data = _metadata().to_dict()
    del data["network"]
    with pytest.raises(ModelFileError, match="lacks network"):
        read_metadata(_with_metadata(tmp_path, data))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_metadata(_with_metadata(tmp_path, "{not json"))


def test_mismatched_tensors_refused(tmp_path: Path) -> None:
    other = AttentionUNet3D(NetworkConfig(features=(4, 8, 32))).state_dict()
    with pytest.raises(ModelFileError, match="do not match the network"):
        load_model(_with_metadata(tmp_path, _metadata().to_dict(), tensors=other))
    partial = dict(AttentionUNet3D(CONFIG).state_dict())
    partial.pop("head.weight")
    with pytest.raises(ModelFileError, match="head.weight"):
        load_model(_with_metadata(tmp_path, _metadata().to_dict(), tensors=partial))


def test_truncated_file_refused(saved: tuple[Path, AttentionUNet3D], tmp_path: Path) -> None:
    path, _ = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ModelFileError):
        load_model(cut)


def test_header_not_object_refused(tmp_path: Path) -> None:
    path = _write_header(tmp_path / "x.safetensors", {"__metadata__": {"other": "1"}})
    with pytest.raises(ModelFileError, match="no StrokeSeg metadata"):
        read_metadata(path)
