"""Shared fixtures: where the real scans are, and a temporary output folder.

Real data lives beside the project in ``../shared/data`` (never copied into the repository); tests that need it skip
with a clear reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STROKESEG_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
ISLES_ROOT = SHARED_DATA / "ISLES-2022"
NONSTRIPPED_CASE = SHARED_DATA / "acute-dwi-nonstripped" / "subject02"

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip cleanly where torch sees no GPU (CI, this project's CPU machines)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def isles_root() -> Path:
    """The real ISLES 2022 cases (Zenodo layout); skips when ../shared/data is absent."""
    if not (ISLES_ROOT / "sub-strokecase0009").is_dir():
        pytest.skip(f"real ISLES data not found at {ISLES_ROOT}")
    return ISLES_ROOT


@pytest.fixture(scope="session")
def nonstripped_case() -> Path:
    """The real non-skull-stripped acute DWI case; skips when absent."""
    if not (NONSTRIPPED_CASE / "dwi.nii.gz").is_file():
        pytest.skip(f"real non-stripped case not found at {NONSTRIPPED_CASE}")
    return NONSTRIPPED_CASE


def write_tiny_model(path: Path, model_id: str = "tiny-test", seed: int = 0, **metadata) -> Path:
    """Save a randomly initialised tiny network (features 4-8-16, 3 mm spacing) with ``metadata`` overriding the
    defaults: enough to exercise every step, fast on CPU."""
    from StrokeSegLib.engine.model_file import ModelMetadata, save_model
    from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig

    torch.manual_seed(seed)
    config = NetworkConfig(in_channels=2, out_channels=1, features=(4, 8, 16))
    network = AttentionUNet3D(config)
    from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

    fields = {"preprocess": PreprocessConfig(target_spacing=(3.0, 3.0, 3.0), adc_normalization="zscore"),
              "patch_size": (32, 32, 32), "threshold": 0.5,
              "min_lesion_mm3": 0.0, **metadata}
    save_model(path, network, ModelMetadata(model_id=model_id, network=config.to_dict(), **fields))
    return path


@pytest.fixture(scope="session")
def make_tiny_model():
    """:func:`write_tiny_model`, for tests that need a tiny model with other metadata."""
    return write_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny network: enough to exercise every step, fast on CPU."""
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def scene(monkeypatch: pytest.MonkeyPatch):
    """A fresh MRML scene (slicer-core wheel) with the default colour tables, also published as ``slicer.mrmlScene``
    as in the application; skips where the wheel is not installed."""
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLScene(scene)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    yield scene
    colors.SetMRMLScene(None)
    scene.Clear(1)
