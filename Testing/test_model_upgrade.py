"""Model files of every earlier format version still load, through the one upgrade function, and give the same masks
as the same weights written in the current format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import save_file

from StrokeSegLib.apps.phantom import make_synthetic_case
from StrokeSegLib.common.errors import ModelFileError
from StrokeSegLib.engine.model_file import (
    FORMAT_VERSION,
    METADATA_KEY,
    ModelMetadata,
    load_model,
    read_metadata,
    save_model,
)
from StrokeSegLib.engine.model_registry import DEFAULT_MODEL_ID, resolve_model
from StrokeSegLib.engine.model_upgrade import upgrade_metadata
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
from StrokeSegLib.engine.segmentation import SegmentOptions, segment_images
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

CONFIG = NetworkConfig(features=(4, 8, 16))
BASE_V1 = {"model_id": "old", "network": CONFIG.to_dict(), "format_version": 1, "channels": ["DWI", "ADC"],
           "patch_size": [32, 32, 32], "threshold": 0.5, "min_lesion_mm3": 0.0, "provenance": {}, "description": ""}

# Every shape a version-1 file was written in, and the preprocessing its network was trained with.
VERSION_1 = {
    "v1 physical ADC (bundled and exported models)": (
        {"target_spacing": [3.0, 3.0, 3.0],
         "normalization": {"method": "percentile_zscore", "clip_percentiles": [0.5, 99.5], "adc": "physical"}},
        PreprocessConfig(target_spacing=(3.0, 3.0, 3.0), adc_normalization="physical")),
    "v1 before physical ADC (no normalization.adc)": (
        {"target_spacing": [3.0, 3.0, 3.0], "normalization": {"method": "percentile_zscore",
                                                              "clip_percentiles": [1.0, 99.0]}},
        PreprocessConfig(target_spacing=(3.0, 3.0, 3.0), clip_percentiles=(1.0, 99.0), adc_normalization="zscore")),
    "v1 with every optional field left out": (
        {}, PreprocessConfig(target_spacing=(2.0, 2.0, 2.0), adc_normalization="zscore")),
}


def _write_raw(path: Path, metadata: dict, network: torch.nn.Module) -> Path:
    """A model file exactly as an earlier StrokeSeg wrote it (header written by hand, not by ``save_model``)."""
    tensors = {k: v.contiguous() for k, v in network.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return path


@pytest.mark.parametrize("name", list(VERSION_1))
def test_a_version_1_file_loads_as_the_current_version_and_gives_the_same_mask(tmp_path: Path, name: str) -> None:
    fields, expected = VERSION_1[name]
    torch.manual_seed(3)
    network = AttentionUNet3D(CONFIG)
    old = _write_raw(tmp_path / "old.safetensors", BASE_V1 | fields, network)

    meta = read_metadata(old)
    assert meta.format_version == FORMAT_VERSION == 2
    assert meta.preprocess == expected
    current = dict(BASE_V1, format_version=FORMAT_VERSION, preprocess=expected.to_dict())
    new = save_model(tmp_path / "new.safetensors", network, ModelMetadata.from_dict(current))
    assert read_metadata(new) == meta

    case = make_synthetic_case(seed=5, size=(40, 36, 20), adc_units=1e-3)
    options = SegmentOptions(device="cpu", threshold=0.5)
    old_result = segment_images(case.dwi, case.adc, old, options)
    new_result = segment_images(case.dwi, case.adc, new, options)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(old_result.mask), sitk.GetArrayFromImage(new_result.mask))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(old_result.probability),
                                  sitk.GetArrayFromImage(new_result.probability))


def test_the_bundled_ensemble_reads_as_written_and_a_resaved_copy_gives_the_same_mask(tmp_path: Path) -> None:
    """The bundled file is read through the same upgrade path as any file; written again, it segments identically."""
    path = resolve_model(DEFAULT_MODEL_ID)
    header = json.loads(json.dumps(_raw_metadata(path)))
    assert header["format_version"] == 3 and len(header["members"]) == 2
    meta = read_metadata(path)
    assert meta.preprocess == PreprocessConfig.from_dict(header["preprocess"])
    assert (meta.threshold, meta.min_lesion_mm3, list(meta.patch_size)) == \
        (header["threshold"], header["min_lesion_mm3"], header["patch_size"])
    resaved = save_model(tmp_path / "bundled-copy.safetensors", load_model(path).network, meta)
    assert _raw_metadata(resaved)["members"] == header["members"]
    case = make_synthetic_case(seed=2, size=(48, 40, 24), adc_units=1e-3)
    masks = [sitk.GetArrayFromImage(segment_images(case.dwi, case.adc, p, SegmentOptions(device="cpu")).mask)
             for p in (path, resaved)]
    np.testing.assert_array_equal(masks[0], masks[1])


def _raw_metadata(path: Path) -> dict:
    import struct

    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(json.loads(handle.read(length))["__metadata__"][METADATA_KEY])


def test_a_new_file_stores_its_preprocessing_in_full(tmp_path: Path) -> None:
    chosen = PreprocessConfig(target_spacing=(2.5, 2.5, 3.0), clip_percentiles=(1.0, 99.0), register=False,
                              adc_normalization="physical")
    path = save_model(tmp_path / "m.safetensors", AttentionUNet3D(CONFIG),
                      ModelMetadata(model_id="m", network=CONFIG, preprocess=chosen, patch_size=(16, 16, 16)))
    stored = _raw_metadata(path)
    assert stored["format_version"] == FORMAT_VERSION
    assert stored["preprocess"] == {"target_spacing": [2.5, 2.5, 3.0], "clip_percentiles": [1.0, 99.0],
                                    "register": False, "adc_normalization": "physical"}
    assert "normalization" not in stored and "target_spacing" not in stored
    # The run's --register choice applies at inference, not the one training used.
    assert read_metadata(path).preprocess_config(register=None).register is None


@pytest.mark.parametrize(("data", "message"), [
    (BASE_V1 | {"preprocess": {}}, "version 1 file has target_spacing"),
    (BASE_V1 | {"normalization": [0.5, 99.5]}, "normalization must be a JSON object"),
    (BASE_V1 | {"normalization": {"adc": "minmax"}}, "adc_normalization"),
    (BASE_V1 | {"target_spacing": 2.0}, "target_spacing must be a list"),
    (BASE_V1 | {"format_version": 0}, "positive integer"),
])
def test_broken_old_metadata_is_refused_with_its_reason(tmp_path: Path, data: dict, message: str) -> None:
    path = _write_raw(tmp_path / "bad.safetensors", data, AttentionUNet3D(CONFIG))
    with pytest.raises(ModelFileError, match=message):
        read_metadata(path)


def test_upgrading_never_changes_the_callers_dict() -> None:
    data = BASE_V1 | {"target_spacing": [3.0, 3.0, 3.0]}
    before = json.dumps(data, sort_keys=True)
    upgrade_metadata(data)
    assert json.dumps(data, sort_keys=True) == before
