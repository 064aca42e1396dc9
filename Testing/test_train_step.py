"""The training step's precision and skip paths, on the CPU: bf16 autocast (the Ampere+ GPU path), the fp16 path's
gradient scaler (``GradScaler("cpu")``), a fused optimiser skipping on the device, and a non-finite loss on one of two
DDP processes (gloo) skipping the update on both."""
from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from train_fixtures import random_batch, run_forked, single_thread  # noqa: F401 (autouse fixture)

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.engine import devices
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
from StrokeSegLib.engine.sliding_window import sliding_window_predict
from StrokeSegTrainLib import distributed
from StrokeSegTrainLib.config import LossConfig, TrainConfig
from StrokeSegTrainLib.losses import DeepSupervisionLoss, SegmentationLoss
from StrokeSegTrainLib.trainer import train_step

SHAPE = (16, 16, 16)


def _parts(amp: bool = False, fused: bool | None = None, seed: int = 0):
    torch.manual_seed(seed)
    config = TrainConfig(network=NetworkConfig(features=(4, 8), deep_supervision=True), patch_size=SHAPE, amp=amp)
    network = AttentionUNet3D(NetworkConfig(features=(4, 8), deep_supervision=True)).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)
    return config, network, optimizer, DeepSupervisionLoss(SegmentationLoss(LossConfig()))


def _batch(nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return random_batch(SHAPE, nan)


def _weights(network: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in network.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


CPU = torch.device("cpu")


@pytest.fixture
def cpu_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CPU choose bf16 autocast, as an Ampere or newer GPU does."""
    original = devices.autocast_dtype
    monkeypatch.setattr(devices, "autocast_dtype",
                        lambda device: torch.bfloat16 if device.type == "cpu" else original(device))


def test_bf16_autocast_step_runs_in_bf16_without_a_scaler(cpu_bf16) -> None:
    config, network, optimizer, loss_fn = _parts(amp=True)
    seen: list[torch.dtype] = []
    network.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    assert not devices.uses_grad_scaler(CPU, amp=True)
    before = _weights(network)
    loss = train_step(network, optimizer, torch.amp.GradScaler("cpu", enabled=False), loss_fn, *_batch(), config,
                      CPU)
    assert seen == [torch.bfloat16]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert not _same(before, _weights(network))
    assert all(p.dtype == torch.float32 for p in network.parameters())


def test_bf16_sliding_window_matches_float32(cpu_bf16) -> None:
    torch.manual_seed(0)
    network = AttentionUNet3D(NetworkConfig(features=(4, 8)))
    image = torch.randn(2, 20, 24, 24)
    half = sliding_window_predict(network, image, (16, 16, 16), amp=True)
    full = sliding_window_predict(network, image, (16, 16, 16), amp=False)
    assert half.dtype == torch.float32
    assert not torch.equal(half, full), "amp=True must have run in bf16"
    torch.testing.assert_close(half, full, atol=2e-2, rtol=0)


def test_grad_scaler_path_steps_then_skips_a_non_finite_loss() -> None:
    config, network, optimizer, loss_fn = _parts()
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    loss = train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CPU)
    assert torch.isfinite(loss) and scaler.get_scale() == 256.0
    weights, state = _weights(network), copy.deepcopy(optimizer.state_dict()["state"])
    loss = train_step(network, optimizer, scaler, loss_fn, *_batch(nan=True), config, CPU)
    assert torch.isnan(loss)
    assert _same(weights, _weights(network)), "a non-finite loss must not move any weight"
    assert all(torch.equal(state[k]["exp_avg"], v["exp_avg"]) for k, v in optimizer.state_dict()["state"].items())
    assert scaler.get_scale() == 128.0


@pytest.mark.parametrize("fused", [None, True], ids=["foreach", "fused"])
def test_non_finite_loss_skips_the_update(fused: bool | None) -> None:
    """Weight decay and momentum would move every weight if the step ran with zero gradients; it must not run. The
    fused optimiser skips on the device (the GPU path), the others on the host."""
    config, network, optimizer, loss_fn = _parts(fused=fused)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CPU)
    weights, steps = _weights(network), [float(s["step"]) for s in optimizer.state.values()]
    loss = train_step(network, optimizer, scaler, loss_fn, *_batch(nan=True), config, CPU)
    assert torch.isnan(loss)
    assert _same(weights, _weights(network))
    assert [float(s["step"]) for s in optimizer.state.values()] == steps
    loss = train_step(network, optimizer, scaler, loss_fn, *_batch(), config, CPU)
    assert torch.isfinite(loss) and not _same(weights, _weights(network))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _nan_on_rank_one(rank: int, world: int, port: int, results: dict) -> None:
    """One DDP process: a normal step, a step whose loss is NaN on rank 1 only, another normal step."""
    torch.set_num_threads(1)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        os.environ.pop(name, None)  # detect() must read the existing group, not the environment
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        info = distributed.detect()
        config, network, optimizer, loss_fn = _parts()
        model = torch.nn.parallel.DistributedDataParallel(network)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        losses = [train_step(model, optimizer, scaler, loss_fn, *_batch(), config, CPU, info)]
        before = _weights(network)
        losses.append(train_step(model, optimizer, scaler, loss_fn, *_batch(nan=rank == 1), config, CPU, info))
        unchanged = _same(before, _weights(network))
        losses.append(train_step(model, optimizer, scaler, loss_fn, *_batch(), config, CPU, info))
        results[rank] = {"info": (info.rank, info.world_size), "losses": [float(v) for v in losses],
                         "unchanged": unchanged, "agree": distributed.replicas_agree(network, info, CPU),
                         "checksum": float(sum(p.double().sum() for p in network.parameters()))}
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_nan_on_one_ddp_process_skips_the_step_on_all() -> None:
    with mp.Manager() as manager:
        results = manager.dict()
        run_forked(_nan_on_rank_one, (2, _free_port(), results))
        results = dict(results)
    assert [results[r]["info"] for r in (0, 1)] == [(0, 2), (1, 2)]
    for rank in (0, 1):
        first, skipped, third = results[rank]["losses"]
        assert first == first and third == third and skipped != skipped, results[rank]  # NaN on both ranks
        assert results[rank]["unchanged"], "rank 0's loss was finite, but its update must be skipped too"
        assert results[rank]["agree"]
    assert results[0]["checksum"] == results[1]["checksum"]


def test_more_processes_than_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes on a 1-GPU machine would share cuda:0 (NCCL refuses that, or it silently runs slower)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("must refuse before the group"))
    with pytest.raises(StrokeSegError, match="2 training processes on this machine but only 1 GPU"):
        distributed.setup("cuda")
