"""Installed models: listing, import with checksums, verification, and resolving what the user typed."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from StrokeSegLib.common.errors import ModelFileError, StrokeSegError
from StrokeSegLib.engine import model_registry as reg
from StrokeSegLib.engine.model_file import ModelMetadata, file_sha256, save_model
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig

CONFIG = NetworkConfig(features=(4, 8))


@pytest.fixture()
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("STROKESEG_HOME", str(tmp_path / "home"))
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setattr(reg, "BUNDLED_DIR", bundled)
    return tmp_path / "home" / "models", bundled


def _model(path: Path, model_id: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    meta = ModelMetadata(model_id=model_id, network=CONFIG.to_dict(), patch_size=(8, 8, 8))
    return save_model(path, AttentionUNet3D(CONFIG), meta)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STROKESEG_HOME", str(tmp_path))
    assert reg.cache_dir() == tmp_path / "models"
    monkeypatch.delenv("STROKESEG_HOME")
    assert reg.cache_dir() == Path.home() / ".cache" / "strokeseg" / "models"
    assert reg.BUNDLED_DIR.name == "models" and reg.BUNDLED_DIR.parent.name == "StrokeSegLib"


def test_import_then_list_verify_resolve(homes: tuple[Path, Path], tmp_path: Path) -> None:
    cache, _ = homes
    source = _model(tmp_path / "downloaded-name.safetensors", "my-model")
    entry = reg.import_model(source)
    assert entry.model_id == "my-model" and entry.source == "cache" and entry.sha256_ok
    assert entry.path == cache / "my-model.safetensors"
    assert file_sha256(entry.path) == file_sha256(source)
    assert (cache / "my-model.sha256").read_text().split()[0] == file_sha256(source)
    assert sorted(p.name for p in cache.iterdir()) == ["my-model.safetensors", "my-model.sha256"]  # no temp left

    [listed] = reg.list_models()
    assert listed.model_id == "my-model" and listed.sha256_ok and listed.metadata.patch_size == (8, 8, 8)
    [(verified, ok, message)] = reg.verify_models()
    assert ok and message == "ok" and verified.path == entry.path
    assert reg.resolve_model("my-model") == entry.path
    assert reg.import_model(source).path == entry.path  # same file again: fine


def test_import_refuses_invalid_and_conflicting(homes: tuple[Path, Path], tmp_path: Path) -> None:
    cache, _ = homes
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="safetensors expected"):
        reg.import_model(bad)
    assert not cache.exists() or not any(cache.iterdir())

    reg.import_model(_model(tmp_path / "a.safetensors", "m", seed=0))
    other = _model(tmp_path / "b.safetensors", "m", seed=1)
    with pytest.raises(StrokeSegError, match="already installed"):
        reg.import_model(other)
    entry = reg.import_model(other, replace=True)
    assert file_sha256(entry.path) == file_sha256(other)

    unsafe = _model(tmp_path / "c.safetensors", "../escape")
    with pytest.raises(ModelFileError, match="cannot be used as a file name"):
        reg.import_model(unsafe)


def test_verify_flags_damage_missing_checksum_and_wrong_id(homes: tuple[Path, Path], tmp_path: Path) -> None:
    cache, bundled = homes
    damaged = reg.import_model(_model(tmp_path / "x.safetensors", "damaged")).path
    with open(damaged, "r+b") as handle:  # flip bytes in the weights, leaving the header intact
        handle.seek(-16, 2)
        handle.write(b"\xff" * 16)
    _model(bundled / "nochecksum.safetensors", "nochecksum")
    renamed = _model(bundled / "renamed.safetensors", "original-id")
    (bundled / "renamed.sha256").write_text(file_sha256(renamed) + "\n")

    results = {entry.model_id: (entry, ok, msg) for entry, ok, msg in reg.verify_models()}
    assert set(results) == {"damaged", "nochecksum", "renamed"}
    assert not results["damaged"][1] and "checksum mismatch" in results["damaged"][2]
    assert not results["nochecksum"][1] and "no checksum file" in results["nochecksum"][2]
    assert not results["renamed"][1] and "original-id" in results["renamed"][2]
    assert results["nochecksum"][0].source == "bundled" and results["damaged"][0].source == "cache"


def test_resolve_default_missing_is_helpful(homes: tuple[Path, Path]) -> None:
    with pytest.raises(StrokeSegError, match="No StrokeSeg model is installed") as info:
        reg.resolve_model(None)
    assert "strokeseg models import" in str(info.value) and "strokeseg-train" in str(info.value)


def test_a_bundled_id_always_means_the_bundled_file(homes: tuple[Path, Path], tmp_path: Path) -> None:
    cache, bundled = homes
    bundled_file = _model(bundled / f"{reg.DEFAULT_MODEL_ID}.safetensors", reg.DEFAULT_MODEL_ID)
    assert reg.resolve_model() == bundled_file
    # An imported model may not take the default's id (every plain run would silently use it) ...
    with pytest.raises(StrokeSegError, match="bundled with StrokeSeg"):
        reg.import_model(_model(tmp_path / "new.safetensors", reg.DEFAULT_MODEL_ID, seed=5))
    assert not (cache / f"{reg.DEFAULT_MODEL_ID}.safetensors").exists()
    # ... and a file put in the cache by hand under that id is never used.
    cache.mkdir(parents=True, exist_ok=True)
    _model(cache / f"{reg.DEFAULT_MODEL_ID}.safetensors", reg.DEFAULT_MODEL_ID, seed=6)
    assert reg.resolve_model() == reg.resolve_model(reg.DEFAULT_MODEL_ID) == bundled_file
    assert [e.source for e in reg.list_models()] == ["cache", "bundled"]


def test_resolve_paths_and_unknown_ids(homes: tuple[Path, Path], tmp_path: Path) -> None:
    path = _model(tmp_path / "loose.safetensors", "loose")
    assert reg.resolve_model(path) == path
    assert reg.resolve_model(str(path)) == path
    with pytest.raises(ModelFileError, match="not found"):
        reg.resolve_model(tmp_path / "missing.safetensors")
    with pytest.raises(StrokeSegError, match="Unknown model 'nope'.*installed: none"):
        reg.resolve_model("nope")


def test_remove_model(homes: tuple[Path, Path], tmp_path: Path) -> None:
    cache, _ = homes
    reg.import_model(_model(tmp_path / "r.safetensors", "gone"))
    assert reg.remove_model("gone") == cache / "gone.safetensors"
    assert not any(cache.iterdir())
    with pytest.raises(StrokeSegError, match="no imported model"):
        reg.remove_model("gone")
