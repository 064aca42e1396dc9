"""The CUDA path on a real GPU: precision (AMP on and off, bf16 and the fp16 + gradient-scaler path), a step that
never waits for the GPU, a real out-of-memory fallback, sliding window and augmentation equal to the CPU's, and a
whole tiny training run. Every test is marked ``cuda`` and skips where torch sees no GPU (see conftest.py);
``bench/gpu_check.sh`` runs them on a lent GPU machine.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from train_fixtures import random_batch, tiny_config, write_synthetic_root

from StrokeSegLib.engine import devices
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
from StrokeSegLib.engine.sliding_window import sliding_window_predict
from StrokeSegTrainLib.augmentation import augment_batch
from StrokeSegTrainLib.config import AugmentationConfig, LossConfig, TrainConfig
from StrokeSegTrainLib.losses import DeepSupervisionLoss, SegmentationLoss
from StrokeSegTrainLib.trainer import train, train_step

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
SHAPE = (32, 32, 32)


def _network(seed: int = 0) -> AttentionUNet3D:
    torch.manual_seed(seed)
    return AttentionUNet3D(NetworkConfig(features=(8, 16, 32), deep_supervision=True))


def _step_parts(amp: bool, network: torch.nn.Module):
    config = TrainConfig(network=NetworkConfig(features=(8, 16, 32), deep_supervision=True), patch_size=SHAPE, amp=amp)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=devices.uses_grad_scaler(CUDA, amp))
    return config, optimizer, scaler, DeepSupervisionLoss(SegmentationLoss(LossConfig()))


def _batch(nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    image, mask = random_batch(SHAPE, nan)
    return image.to(CUDA), mask.to(CUDA)


def _weights(network: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in network.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_training_step_precision_and_skip(amp: bool) -> None:
    network = _network().to(CUDA).train()
    config, optimizer, scaler, loss_fn = _step_parts(amp, network)
    seen: list[torch.dtype] = []
    network.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    before = _weights(network)
    loss = train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CUDA)
    expected = devices.autocast_dtype(CUDA) if amp else torch.float32
    assert seen == [expected] and bool(torch.isfinite(loss))
    assert not _same(before, _weights(network))
    moved = _weights(network)
    loss = train_step(network, optimizer, scaler, loss_fn, *_batch(nan=True), config, CUDA)
    assert bool(torch.isnan(loss)) and _same(moved, _weights(network)), "a non-finite loss must not move weights"


def test_bf16_on_this_gpu_follows_its_compute_capability() -> None:
    major, _ = torch.cuda.get_device_capability(CUDA)
    assert devices.autocast_dtype(CUDA) == (torch.bfloat16 if major >= 8 else torch.float16)


def test_fp16_and_grad_scaler_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a V100 or T4 runs: fp16 autocast with loss scaling; a non-finite loss halves the scale and skips."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert devices.autocast_dtype(CUDA) == torch.float16 and devices.uses_grad_scaler(CUDA, True)
    network = _network().to(CUDA).train()
    config, optimizer, scaler, loss_fn = _step_parts(True, network)
    assert scaler.is_enabled()
    seen: list[torch.dtype] = []
    network.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    losses = [float(train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CUDA)) for _ in range(3)]
    assert seen == [torch.float16] * 3 and all(v == v for v in losses)
    scale, weights = scaler.get_scale(), _weights(network)
    assert bool(torch.isnan(train_step(network, optimizer, scaler, loss_fn, *_batch(nan=True), config, CUDA)))
    assert _same(weights, _weights(network)) and scaler.get_scale() == scale / 2


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_training_step_never_waits_for_the_gpu(amp: bool) -> None:
    """No host synchronisation inside a step (torch raises on one in sync-debug mode), also when it is skipped."""
    network = _network().to(CUDA).train()
    config, optimizer, scaler, loss_fn = _step_parts(amp, network)
    train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CUDA)  # first-step set-up may synchronise
    if scaler.is_enabled():
        pytest.skip("the gradient scaler reads its inf flag on the host unless the optimiser is fused")
    batches = [_batch(), _batch(nan=True)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for image, mask in batches:
            train_step(network, optimizer, scaler, loss_fn, image, mask, config, CUDA)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_sliding_window_on_cuda_equals_cpu(amp: bool) -> None:
    network = _network()  # in eval mode it returns the full-resolution logits alone
    image = torch.randn(2, 40, 56, 48, generator=torch.Generator().manual_seed(2))
    cpu = sliding_window_predict(network, image, SHAPE, batch_size=2, device="cpu", amp=False)
    info: dict = {}
    gpu = sliding_window_predict(network, image, SHAPE, batch_size=4, device=CUDA, amp=amp, run_info=info)
    assert info["device"].startswith("cuda") and gpu.device.type == "cpu"
    # float32 convolutions may use TF32 on Ampere and newer; half precision keeps about 3 significant digits
    torch.testing.assert_close(gpu, cpu, atol=2e-2 if amp else 2e-3, rtol=0)


def test_out_of_memory_falls_back_to_cpu_and_the_network_returns_to_the_gpu() -> None:
    """A real CUDA out-of-memory error (an impossible allocation on the GPU), then training goes on."""
    network = _network()

    class Greedy(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, x: torch.Tensor):
            if x.is_cuda:
                torch.empty(1 << 50, dtype=torch.uint8, device=x.device)  # a petabyte
            return self.inner(x)

    greedy = Greedy(network).to(CUDA)
    image = torch.randn(2, 32, 40, 36)
    info: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sliding_window_predict(greedy, image, SHAPE, batch_size=4, device=CUDA, amp=True, run_info=info)
    assert info == {"device": "cpu", "batch_size": 1}
    assert any("restarting on the CPU" in str(w.message) for w in caught)
    assert all(p.is_cuda for p in greedy.parameters()), "the network must be back on the GPU"
    expected = sliding_window_predict(network.to("cpu"), image, SHAPE, device="cpu", amp=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    network.to(CUDA).train()  # the validation-then-train sequence that used to fail with a device mismatch
    config, optimizer, scaler, loss_fn = _step_parts(True, network)
    assert bool(torch.isfinite(train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CUDA)))


def test_augmentation_on_cuda_equals_cpu() -> None:
    config = AugmentationConfig(rotation_probability=1.0, scale_probability=1.0, elastic_probability=1.0,
                                noise_probability=1.0, blur_probability=1.0, gamma_probability=1.0)
    generator = torch.Generator().manual_seed(5)
    image = torch.randn(2, 2, 24, 32, 32, generator=generator)
    mask = torch.zeros(2, 1, 24, 32, 32)
    mask[:, :, 6:16, 8:22, 10:20] = 1.0
    cpu = augment_batch(image, mask, config, torch.Generator().manual_seed(9))
    gpu = augment_batch(image.to(CUDA), mask.to(CUDA), config, torch.Generator().manual_seed(9))
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-2, rtol=1e-2)  # convolutions may use TF32
    assert (gpu[1].cpu() != cpu[1]).float().mean() < 1e-3  # a voxel at exactly 0.5 may round either way


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_tiny_training_run_on_cuda(tmp_path, amp: bool) -> None:
    """Prefetch threads pinning and augmenting on the GPU, the fused optimiser, sharded validation, export."""
    root = write_synthetic_root(tmp_path / "isles")
    config = tiny_config(epochs=2, iterations_per_epoch=4, amp=amp, deterministic=False, prefetch_batches=2)
    result = train(config, root, tmp_path / "run", 0, device="cuda")
    rows = result.history.rows
    assert len(rows) == 2 and all(r["nonfinite_steps"] == 0 for r in rows)
    assert all(r["train_loss"] == r["train_loss"] for r in rows)
    assert result.model_path is not None and result.model_path.is_file()
