"""Fine-tuning: a training run that starts from an existing model file's weights (``init_from`` / ``--init-from``)."""
from __future__ import annotations

import pytest
import torch
from train_fixtures import CancelInEpoch, single_thread, tiny_config, write_synthetic_root  # noqa: F401

from StrokeSegLib.common.errors import CancelledError, StrokeSegError
from StrokeSegLib.engine.model_file import file_sha256, load_model
from StrokeSegLib.engine.network import AttentionUNet3D
from StrokeSegLib.engine.network_config import NetworkConfig
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig
from StrokeSegTrainLib.export import training_network_config
from StrokeSegTrainLib.initial_weights import load_initial_weights
from StrokeSegTrainLib.trainer import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_synthetic_root(tmp_path_factory.mktemp("isles"))


@pytest.fixture(scope="module")
def source_model(data_root, tmp_path_factory):
    """A model exported by a short training run: the starting point of the fine-tuning runs below."""
    out = tmp_path_factory.mktemp("source")
    return train(tiny_config(epochs=1), data_root, out, fold=0, device="cpu", cache_dir=out / "cache").model_path


def test_initial_weights_are_the_files_and_only_the_deep_supervision_heads_start_fresh(source_model) -> None:
    config = tiny_config(init_from=str(source_model))
    torch.manual_seed(1)
    network = AttentionUNet3D(training_network_config(config))
    heads_before = {k: v.clone() for k, v in network.state_dict().items() if k.startswith("aux_heads.")}
    assert heads_before, "the tiny network has deep supervision; otherwise the head check proves nothing"
    source = load_initial_weights(network, config)

    expected = load_model(source_model).network.state_dict()
    state = network.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
    for name, tensor in heads_before.items():
        assert torch.equal(state[name], tensor), name
    assert source["sha256"] == file_sha256(source_model)


def test_a_fine_tuning_run_starts_from_the_model_and_records_it(source_model, data_root, tmp_path) -> None:
    """With a learning rate of 0 the run cannot move the weights: its export must equal the starting model, which
    proves the trainer really loaded it (a random start would differ in every tensor)."""
    config = tiny_config(epochs=1, init_from=str(source_model))
    config.optim.learning_rate = 0.0
    result = train(config, data_root, tmp_path / "ft", fold=0, device="cpu", cache_dir=tmp_path / "cache")
    tuned = load_model(result.model_path)
    original = load_model(source_model).network.state_dict()
    for name, tensor in tuned.network.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    init = tuned.metadata.provenance["initial_weights"]
    assert init["sha256"] == file_sha256(source_model) and init["path"] == str(source_model.resolve())
    assert tuned.metadata.provenance["config"]["init_from"] == str(source_model)


def test_a_resumed_fine_tuning_run_still_records_its_start_and_needs_no_file(source_model, data_root, tmp_path) -> None:
    """The starting model is read once; after a kill the checkpoint carries the weights and where they came from, so
    the resumed run neither reloads (the file may be gone) nor forgets the provenance."""
    copy = tmp_path / "start.safetensors"
    copy.write_bytes(source_model.read_bytes())
    config = tiny_config(epochs=2, init_from=str(copy))
    killer = CancelInEpoch(epoch=2, epochs=2)
    with pytest.raises(CancelledError):
        train(config, data_root, tmp_path / "ft", 0, killer, killer, device="cpu", cache_dir=tmp_path / "cache")
    copy.unlink()
    result = train(config, data_root, tmp_path / "ft", fold=0, device="cpu", cache_dir=tmp_path / "cache", resume=True)
    assert load_model(result.model_path).metadata.provenance["initial_weights"]["sha256"] == file_sha256(source_model)


@pytest.mark.parametrize("change, message", [
    ({"network": NetworkConfig(features=(4, 8, 32), deep_supervision=True)}, "network.features"),
    ({"preprocess": PreprocessConfig(target_spacing=(4.0, 4.0, 4.0), adc_normalization="zscore")},
     "adc_normalization"),
    ({"preprocess": PreprocessConfig(target_spacing=(3.0, 3.0, 3.0))}, "target_spacing"),
])
def test_a_model_that_does_not_match_is_refused_before_any_preprocessing(source_model, data_root, tmp_path, change,
                                                                         message) -> None:
    config = tiny_config(init_from=str(source_model), **change)
    with pytest.raises(StrokeSegError, match=message) as caught:
        train(config, data_root, tmp_path / "ft", fold=0, device="cpu", cache_dir=tmp_path / "cache")
    assert str(source_model) in str(caught.value)
    assert not (tmp_path / "cache").exists(), "the mismatch must be found before the cache is built"


def test_an_unknown_starting_model_is_a_clear_error(data_root, tmp_path) -> None:
    config = tiny_config(init_from="no-such-model")
    with pytest.raises(StrokeSegError, match="Unknown model 'no-such-model'"):
        train(config, data_root, tmp_path / "ft", fold=0, device="cpu", cache_dir=tmp_path / "cache")


def test_with_init_from_other_spacing_a_model_fine_tunes_on_another_grid(source_model, data_root, tmp_path) -> None:
    """The opt-in lets the weights move to another network spacing (learning rate 0: the export is the start's
    weights), and the exported model declares the new spacing, which is what inference will resample to."""
    source_spacing = load_model(source_model).metadata.target_spacing
    finer = tuple(s * 0.75 for s in source_spacing)
    config = tiny_config(epochs=1, init_from=str(source_model), init_from_other_spacing=True,
                         preprocess=PreprocessConfig(target_spacing=finer))
    config.optim.learning_rate = 0.0
    result = train(config, data_root, tmp_path / "ft", fold=0, device="cpu", cache_dir=tmp_path / "cache")
    tuned = load_model(result.model_path)
    assert tuned.metadata.target_spacing == pytest.approx(finer)
    original = load_model(source_model).network.state_dict()
    for name, tensor in tuned.network.state_dict().items():
        assert torch.equal(tensor, original[name]), name


def test_init_from_other_spacing_still_refuses_every_other_difference(source_model, data_root, tmp_path) -> None:
    config = tiny_config(init_from=str(source_model), init_from_other_spacing=True,
                         preprocess=PreprocessConfig(target_spacing=(3.0, 3.0, 3.0), adc_normalization="zscore"))
    with pytest.raises(StrokeSegError, match="adc_normalization") as caught:
        train(config, data_root, tmp_path / "ft", fold=0, device="cpu", cache_dir=tmp_path / "cache")
    assert "target_spacing" not in str(caught.value)
