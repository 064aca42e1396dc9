"""Ensemble model files: what they hold, how they predict, and every way a bad one is refused."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import load_file, save_file
from torchless import run_without_torch

from StrokeSegLib.apps.phantom import make_synthetic_case
from StrokeSegLib.cli import main as strokeseg
from StrokeSegLib.common.errors import ModelFileError, StrokeSegError
from StrokeSegLib.engine.ensemble import EnsembleNetwork, build_ensemble, weights_sha256
from StrokeSegLib.engine.model_file import (
    ENSEMBLE_FORMAT_VERSION,
    FORMAT_VERSION,
    METADATA_KEY,
    file_sha256,
    load_model,
    read_metadata,
)
from StrokeSegLib.engine.segmentation import SegmentOptions, segment_images
from StrokeSegLib.engine.sliding_window import sliding_window_predict
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory, make_tiny_model) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("members")
    return (make_tiny_model(folder / "a.safetensors", model_id="member-a", seed=1),
            make_tiny_model(folder / "b.safetensors", model_id="member-b", seed=2))


@pytest.fixture(scope="module")
def pair(members: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ensemble(members, tmp_path_factory.mktemp("ens") / "pair.safetensors", "pair")


def _image(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((2, 36, 32, 40), generator=generator)


@pytest.mark.parametrize("tta", [False, True])
def test_an_ensemble_of_one_predicts_exactly_what_its_member_does(members, tmp_path, tta) -> None:
    single = load_model(members[0])
    one = load_model(build_ensemble([members[0]], tmp_path / "one.safetensors", "one"))
    assert isinstance(one.network, EnsembleNetwork) and len(one.network.members) == 1
    image = _image()
    kwargs = dict(patch_size=(32, 32, 32), overlap=0.5, batch_size=2, mirror_tta=tta)
    expected = sliding_window_predict(single.network, image, **kwargs)
    torch.testing.assert_close(sliding_window_predict(one.network, image, **kwargs), expected, rtol=0, atol=0)


@pytest.mark.parametrize("tta", [False, True])
def test_two_members_give_the_mean_of_their_probabilities(members, pair, tta) -> None:
    image = _image(1)
    kwargs = dict(patch_size=(32, 32, 32), overlap=0.5, batch_size=3, mirror_tta=tta)
    alone = [sliding_window_predict(load_model(m).network, image, **kwargs) for m in members]
    assert (alone[0] - alone[1]).abs().max() > 1e-3, "members this alike would not show an average"
    together = sliding_window_predict(load_model(pair).network, image, **kwargs)
    torch.testing.assert_close(together, (alone[0] + alone[1]) / 2, rtol=0, atol=1e-6)
    # the module's own forward (for code that treats the ensemble as one network) agrees
    window = image[None, :, :32, :32, :32]
    with torch.inference_mode():
        probs = [torch.sigmoid(load_model(m).network(window)) for m in members]
        torch.testing.assert_close(torch.sigmoid(load_model(pair).network(window)), (probs[0] + probs[1]) / 2,
                                   rtol=0, atol=1e-6)


def test_a_segmented_phantom_gets_the_members_mean_probability_and_the_report_names_them(members, pair) -> None:
    case = make_synthetic_case(seed=3, size=(40, 40, 24), spacing=(2.0, 2.0, 3.0))
    options = SegmentOptions(register=False)
    alone = [sitk.GetArrayFromImage(segment_images(case.dwi, case.adc, m, options).probability) for m in members]
    result = segment_images(case.dwi, case.adc, pair, options)
    mean = (alone[0] + alone[1]) / 2
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.probability), mean, rtol=0, atol=1e-6)
    assert result.probability.GetSize() == case.dwi.GetSize()
    assert [m["model_id"] for m in result.report["model_members"]] == ["member-a", "member-b"]
    assert result.report["model_id"] == "pair" and result.report["model_sha256"] == file_sha256(pair)


def test_round_trip_keeps_every_members_tensors_and_records_where_they_came_from(members, pair) -> None:
    meta = read_metadata(pair)
    assert meta.format_version == ENSEMBLE_FORMAT_VERSION and meta.member_count == 2
    assert meta.patch_size == (32, 32, 32) and meta.threshold == 0.5
    assert meta.preprocess == PreprocessConfig(target_spacing=(3.0, 3.0, 3.0), adc_normalization="zscore")
    loaded = load_model(pair)
    stored = load_file(str(pair))
    assert all(name.startswith(("members.0.", "members.1.")) for name in stored)
    for i, path in enumerate(members):
        member = load_model(path)
        assert meta.members[i] == {"model_id": member.metadata.model_id, "file_sha256": file_sha256(path),
                                   "weights_sha256": weights_sha256(member.network.state_dict())}
        expected = member.network.state_dict()
        got = loaded.network.members[i].state_dict()
        assert got.keys() == expected.keys()
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
            assert torch.equal(stored[f"members.{i}.{name}"], expected[name]), name


def test_a_single_model_is_still_written_as_before(members) -> None:
    """No ``members`` key and format version 2 in a single model's header: old readers keep reading new files."""
    raw = json.loads(read_header_metadata(members[0]))
    assert "members" not in raw and raw["format_version"] == FORMAT_VERSION == 2
    assert read_metadata(members[0]).member_count == 1


def read_header_metadata(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.metadata()[METADATA_KEY]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"preprocess": PreprocessConfig(target_spacing=(2.0, 2.0, 2.0), adc_normalization="zscore")}, "preprocess"),
        ({"patch_size": (16, 32, 32)}, "patch_size"),
        ({"threshold": 0.4}, "threshold"),
        ({"min_lesion_mm3": 10.0}, "min_lesion_mm3"),
    ],
)
def test_members_that_differ_are_refused_naming_both_files_and_the_field(members, make_tiny_model, tmp_path, change,
                                                                         field) -> None:
    odd = make_tiny_model(tmp_path / "odd.safetensors", model_id="odd", **change)
    with pytest.raises(StrokeSegError, match=rf"odd\.safetensors.*a\.safetensors.*{field} differs"):
        build_ensemble([members[0], odd], tmp_path / "bad.safetensors", "bad")
    assert not (tmp_path / "bad.safetensors").exists()


def test_members_of_another_network_shape_are_refused(members, tmp_path) -> None:
    from StrokeSegLib.engine.model_file import ModelMetadata, save_model
    from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig

    config = NetworkConfig(features=(4, 8, 32))
    meta = read_metadata(members[0])
    meta.network, meta.model_id = config.to_dict(), "wide"
    wide = save_model(tmp_path / "wide.safetensors", AttentionUNet3D(config), ModelMetadata(**vars(meta)))
    with pytest.raises(StrokeSegError, match=r"wide\.safetensors.*network differs"):
        build_ensemble([members[0], wide], tmp_path / "bad.safetensors", "bad")


def test_an_ensemble_cannot_be_a_member_and_the_id_must_be_a_file_name(members, pair, tmp_path) -> None:
    with pytest.raises(StrokeSegError, match=r"pair\.safetensors.*itself an ensemble of 2"):
        build_ensemble([pair, members[0]], tmp_path / "nested.safetensors", "nested")
    with pytest.raises(ModelFileError, match="cannot be used as a file name"):
        build_ensemble(members, tmp_path / "x.safetensors", "no/slash")


def _rewrite(pair: Path, target: Path, edit) -> Path:
    tensors = load_file(str(pair))
    edit(tensors)
    save_file(tensors, str(target), metadata={METADATA_KEY: read_header_metadata(pair)})
    return target


def test_missing_altered_or_stray_member_tensors_are_refused(pair, tmp_path) -> None:
    def drop_member_1(tensors):
        for name in [n for n in tensors if n.startswith("members.1.")]:
            del tensors[name]

    missing = _rewrite(pair, tmp_path / "missing.safetensors", drop_member_1)
    with pytest.raises(ModelFileError, match=r"missing\.safetensors.*member 1 \('member-b'\) has no tensors"):
        load_model(missing)

    def nudge(tensors):
        name = next(n for n in sorted(tensors) if n.startswith("members.0.") and tensors[n].is_floating_point())
        tensors[name] = tensors[name] + 1e-3

    altered = _rewrite(pair, tmp_path / "altered.safetensors", nudge)
    with pytest.raises(ModelFileError, match=r"member 0 \('member-a'\) differ from the checksum"):
        load_model(altered)

    def drop_one(tensors):
        del tensors[next(n for n in sorted(tensors) if n.startswith("members.0."))]

    with pytest.raises(ModelFileError, match=r"weights of ensemble member 0 .* do not match the network"):
        load_model(_rewrite(pair, tmp_path / "short.safetensors", drop_one))

    def stray(tensors):
        tensors["members.2.head.bias"] = torch.zeros(1)

    with pytest.raises(ModelFileError, match=r"'members\.2\.head\.bias' belongs to none of the 2"):
        load_model(_rewrite(pair, tmp_path / "stray.safetensors", stray))


def test_ensemble_metadata_without_members_or_from_the_future_is_refused(pair, tmp_path) -> None:
    data = json.loads(read_header_metadata(pair))
    for change, message in [({"members": []}, "lists no members"),
                            ({"format_version": FORMAT_VERSION}, "lists ensemble members but has format_version 2"),
                            ({"format_version": ENSEMBLE_FORMAT_VERSION + 1}, "newer than this StrokeSeg supports"),
                            ({"members": [{"model_id": "x"}]}, r"members\[0\] must be an object")]:
        target = tmp_path / "edited.safetensors"
        save_file(load_file(str(pair)), str(target), metadata={METADATA_KEY: json.dumps(data | change)})
        with pytest.raises(ModelFileError, match=message):
            read_metadata(target)


def test_cli_builds_imports_lists_and_verifies_an_ensemble(members, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STROKESEG_HOME", str(tmp_path / "home"))
    out = tmp_path / "cli-pair.safetensors"
    assert strokeseg(["models", "ensemble", str(members[0]), str(members[1]), "--out", str(out),
                      "--name", "cli-pair"]) == 0
    assert read_metadata(out).member_count == 2
    assert strokeseg(["models", "import", str(out)]) == 0
    # an installed id works as a member too
    assert strokeseg(["models", "ensemble", "cli-pair", "--out", str(tmp_path / "x.safetensors"),
                      "--name", "x"]) == 2
    assert "itself an ensemble" in capsys.readouterr().err
    assert strokeseg(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cli-pair"))
    assert "ensemble of 2" in line and "checksum ok" in line
    assert strokeseg(["models", "verify"]) == 0
    assert strokeseg(["models", "ensemble", str(members[0]), "--name", "y"]) == 2  # no --out
    assert strokeseg(["models", "import", str(members[0]), "--out", "z.safetensors"]) == 2


def test_listing_without_torch_shows_the_member_count(pair, tmp_path) -> None:
    cache = tmp_path / "home" / "models"
    cache.mkdir(parents=True)
    (cache / "pair.safetensors").write_bytes(pair.read_bytes())
    (cache / "pair.sha256").write_text(f"{file_sha256(pair)}  pair.safetensors\n")
    lines = run_without_torch("""
        from StrokeSegLib.panels.panel import model_choices
        from StrokeSegLib.cli import main
        main(["models"])
        print(repr(([label for label, _ in model_choices()[0]], "torch" in sys.modules)))
    """, tmp_path / "home")
    labels, torch_loaded = eval(lines[-1])
    assert "pair (ensemble of 2) [cache]" in labels and not torch_loaded
    assert any(ln.startswith("pair\t") and "ensemble of 2" in ln for ln in lines)


def test_fine_tuning_from_an_ensemble_starts_from_its_first_member(members, pair) -> None:
    from train_fixtures import tiny_config

    from StrokeSegLib.engine.network import AttentionUNet3D
    from StrokeSegTrainLib.export import training_network_config
    from StrokeSegTrainLib.initial_weights import load_initial_weights

    meta = read_metadata(pair)  # a training configuration for the members' network and preprocessing
    config = dataclasses.replace(tiny_config(init_from=str(pair)), preprocess=meta.preprocess_config(),
                                 network=dataclasses.replace(meta.network_config, deep_supervision=True))
    network = AttentionUNet3D(training_network_config(config))
    source = load_initial_weights(network, config)
    state = network.state_dict()
    first, second = (load_model(m).network.state_dict() for m in members)
    assert all(torch.equal(state[name], tensor) for name, tensor in first.items())
    assert not all(torch.equal(state[name], tensor) for name, tensor in second.items())
    assert source["model_id"] == "pair" and source["member"]["index"] == 0
    assert source["member"]["model_id"] == "member-a"


def test_out_of_memory_halving_runs_every_member_at_the_smaller_batch() -> None:
    from test_sliding_window import FakeOOM, Pointwise, _direct

    from StrokeSegLib.engine.network_config import NetworkConfig

    first, second = FakeOOM(limit=1), Pointwise()
    with torch.no_grad():
        second.conv.weight.mul_(-2.0)
    for member in (first, second):
        member.config = NetworkConfig(features=(4, 8))  # what EnsembleNetwork and the window checks read
    ensemble = EnsembleNetwork([first, second])
    image = torch.randn(2, 24, 16, 16)
    with pytest.warns(ResourceWarning, match="batch size 1"):
        out = sliding_window_predict(ensemble, image, (8, 8, 8), batch_size=4)
    assert first.batch_sizes[:3] == [-4, -2, 1] and set(second.batch_sizes) == {1}
    torch.testing.assert_close(out, (_direct(first, image) + _direct(second, image)) / 2, rtol=1e-5, atol=1e-6)
