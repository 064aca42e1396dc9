"""Sliding-window inference (and device selection, which it relies on)."""
from __future__ import annotations

import contextlib
import itertools
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from StrokeSegLib.common.errors import CancelledError, StrokeSegError
from StrokeSegLib.engine import devices
from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
from StrokeSegLib.engine.sliding_window import (
    axis_starts,
    gaussian_importance,
    iter_window_starts,
    sliding_window_predict,
)


class Pointwise(nn.Module):
    """A 1x1x1 convolution: its prediction at a voxel does not depend on the window, so the blended result must equal
    a direct evaluation everywhere; any error in placement, weighting, padding or cropping shows up."""

    def __init__(self, in_ch: int = 2, out_ch: int = 1) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv3d(in_ch, out_ch, 1)
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return self.conv(x)


def _direct(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(net(image[None]))[0]


def test_axis_starts_cover_evenly_with_last_flush() -> None:
    assert axis_starts(10, 16, 0.5) == [0]
    assert axis_starts(16, 16, 0.5) == [0]
    starts = axis_starts(100, 32, 0.5)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    steps = np.diff(starts)
    assert steps.max() <= 16 and steps.max() - steps.min() <= 1  # overlap >= half, evenly spaced
    assert axis_starts(64, 32, 0.0) == [0, 32]
    assert axis_starts(65, 32, 0.0) == [0, 16, 33]


def test_iter_window_starts_product() -> None:
    starts = iter_window_starts((40, 20, 16), (16, 16, 16), 0.5)
    zs, ys, xs = (sorted({s[i] for s in starts}) for i in range(3))
    assert zs == axis_starts(40, 16, 0.5) and ys == [0, 4] and xs == [0]
    assert len(starts) == len(zs) * len(ys) * len(xs) == len(set(starts))
    with pytest.raises(ValueError, match="overlap"):
        iter_window_starts((40, 20, 16), (16, 16, 16), 1.0)


def test_gaussian_symmetric_positive_cached() -> None:
    g = gaussian_importance((16, 12, 9))
    assert g.shape == (16, 12, 9) and g.dtype == torch.float32
    for axis in range(3):
        torch.testing.assert_close(g, g.flip(axis), rtol=0, atol=0)
    assert g.min() > 0 and g.max() == pytest.approx(1.0)
    assert g[8, 6, 4] > g[0, 6, 4] > g[0, 0, 0]
    assert gaussian_importance([16, 12, 9], "cpu") is g


@pytest.mark.parametrize("shape", [(21, 37, 18), (5, 7, 9), (16, 3, 40)])
def test_pointwise_network_matches_direct_everywhere(shape: tuple[int, int, int]) -> None:
    net = Pointwise()
    image = torch.randn(2, *shape)
    out = sliding_window_predict(net, image, (8, 16, 12), overlap=0.5, batch_size=3)
    assert out.shape == (1, *shape) and out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, _direct(net, image), rtol=1e-5, atol=1e-6)


def test_not_divisible_volume_with_attention_unet() -> None:
    net = AttentionUNet3D(NetworkConfig(features=(4, 8, 16)))
    image = torch.randn(2, 19, 26, 13)
    out = sliding_window_predict(net, image, (8, 16, 8), overlap=0.25, batch_size=4)
    assert out.shape == (1, 19, 26, 13)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_smaller_than_patch_is_padded_and_cropped() -> None:
    net = AttentionUNet3D(NetworkConfig(features=(4, 8, 16)))
    image = torch.randn(2, 5, 10, 7)
    out = sliding_window_predict(net, image, (8, 16, 16))
    assert out.shape == (1, 5, 10, 7)
    padded = torch.zeros(2, 8, 16, 16)
    padded[:, 1:6, 3:13, 4:11] = image  # centred padding, as documented
    torch.testing.assert_close(out, _direct(net.eval(), padded)[:, 1:6, 3:13, 4:11], rtol=1e-5, atol=1e-5)


def test_volume_equal_to_patch_equals_direct_forward() -> None:
    torch.manual_seed(0)
    net = AttentionUNet3D(NetworkConfig(features=(4, 8, 16), out_channels=2))
    image = torch.randn(2, 8, 16, 12)
    net.train()  # must be switched to eval inside and restored after
    out = sliding_window_predict(net, image.numpy(), (8, 16, 12))
    assert net.training
    torch.testing.assert_close(out, _direct(net.eval(), image), rtol=1e-5, atol=1e-5)


def test_mirror_tta_averages_eight_flips() -> None:
    torch.manual_seed(0)
    net = AttentionUNet3D(NetworkConfig(features=(4, 8))).eval()
    image = torch.randn(2, 8, 8, 6)
    out = sliding_window_predict(net, image, (8, 8, 6), mirror_tta=True)
    expected = torch.zeros(1, 8, 8, 6)
    for r in range(4):
        for axes in itertools.combinations((1, 2, 3), r):
            flipped = image.flip(axes) if axes else image
            pred = _direct(net, flipped)
            expected += pred.flip(axes) if axes else pred
    torch.testing.assert_close(out, expected / 8, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, _direct(net, image), atol=1e-4)  # TTA did change something


def test_progress_and_cancel() -> None:
    net = Pointwise()
    image = torch.randn(2, 32, 16, 16)
    fractions: list[float] = []
    sliding_window_predict(net, image, (8, 8, 8), batch_size=5, progress=lambda s, f: fractions.append(f))
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert len(fractions) == 1 + -(-len(iter_window_starts((32, 16, 16), (8, 8, 8), 0.5)) // 5)

    event = threading.Event()
    net.batch_sizes.clear()

    def stop_after_first(stage: str, fraction: float) -> None:
        if fraction > 0:
            event.set()

    with pytest.raises(CancelledError):
        sliding_window_predict(net, image, (8, 8, 8), batch_size=5, progress=stop_after_first, cancel=event)
    assert net.batch_sizes == [5]


class FakeOOM(Pointwise):
    """Raises CUDA's out-of-memory error for batches above ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            self.batch_sizes.append(-x.shape[0])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(x)


def test_out_of_memory_halves_batch() -> None:
    net = FakeOOM(limit=1)
    image = torch.randn(2, 24, 16, 16)
    with pytest.warns(ResourceWarning) as record:
        out = sliding_window_predict(net, image, (8, 8, 8), batch_size=4)
    messages = [str(w.message) for w in record]
    assert any("batch size 2" in m for m in messages) and any("batch size 1" in m for m in messages)
    assert net.batch_sizes[:3] == [-4, -2, 1] and set(net.batch_sizes[3:]) == {1}
    torch.testing.assert_close(out, _direct(net, image), rtol=1e-5, atol=1e-6)


def test_out_of_memory_at_batch_one_on_cpu_is_a_clear_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(StrokeSegError, match="Out of memory"):
            sliding_window_predict(FakeOOM(limit=0), torch.randn(2, 8, 8, 8), (8, 8, 8), batch_size=2)


class OutOfMemoryOffCpu(nn.Module):
    """A 1x1x1 convolution that runs out of memory anywhere but on the CPU. It keeps its weights as plain tensors and
    only records where ``.to()`` sends it, so a "GPU" (here the name ``meta``) stands in for a full one and the whole
    fallback path runs on a machine without a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.reference = Pointwise()
        self.place = torch.device("cpu")
        self.moves: list[str] = []
        self.batch_sizes: list[int] = []

    def to(self, *args, **kwargs):  # torch's own signature
        self.place = torch.device(args[0] if args else kwargs["device"])
        self.moves.append(str(self.place))
        return self

    def parameters(self, recurse: bool = True):  # where the network lives, as torch reports it
        return iter([torch.empty(0, device="meta" if self.place.type == "meta" else "cpu")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.place.type != "cpu":
            self.batch_sizes.append(-x.shape[0])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batch_sizes.append(x.shape[0])
        return self.reference.conv(x)


def test_out_of_memory_fallback_restores_the_network_and_reports_the_cpu() -> None:
    net = OutOfMemoryOffCpu()
    image = torch.randn(2, 24, 16, 16)
    info: dict = {}
    with pytest.warns(ResourceWarning) as record:
        out = sliding_window_predict(net, image, (8, 8, 8), batch_size=2, device="meta", run_info=info)
    assert any("restarting on the CPU" in str(w.message) for w in record)
    assert net.batch_sizes[:2] == [-2, -1] and set(net.batch_sizes[2:]) == {1}
    assert info == {"device": "cpu", "batch_size": 1}
    assert net.moves[0] == "meta" and "cpu" in net.moves
    assert net.place == torch.device("meta"), "the caller's network must be back where it was asked to run"
    torch.testing.assert_close(out, _direct(net.reference, image), rtol=1e-5, atol=1e-6)


def test_run_info_reports_the_device_used() -> None:
    info: dict = {}
    sliding_window_predict(Pointwise(), torch.randn(2, 8, 8, 8), (8, 8, 8), batch_size=3, run_info=info)
    assert info == {"device": "cpu", "batch_size": 3}


def test_other_runtime_errors_propagate() -> None:
    class Broken(nn.Conv3d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch somewhere")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        sliding_window_predict(Broken(2, 1, 1), torch.randn(2, 8, 8, 8), (8, 8, 8))


def test_input_validation() -> None:
    net = AttentionUNet3D(NetworkConfig(features=(4, 8, 16)))
    with pytest.raises(ValueError, match="channels"):
        sliding_window_predict(net, torch.randn(3, 8, 8, 8), (8, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        sliding_window_predict(net, torch.randn(2, 8, 8, 8), (8, 8, 6))
    with pytest.raises(ValueError, match=r"\(C, z, y, x\)"):
        sliding_window_predict(net, torch.randn(8, 8, 8), (8, 8, 8))


def test_output_is_an_ordinary_tensor() -> None:
    out = sliding_window_predict(Pointwise(), torch.randn(2, 8, 8, 8), (8, 8, 8))
    out.mul_(2)  # an inference-mode tensor would refuse in-place updates outside inference mode


# --- devices -------------------------------------------------------------------------------------------------------


def test_resolve_device_auto_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")


def test_forcing_unavailable_device_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(StrokeSegError, match="CUDA is not available"):
        devices.resolve_device("cuda")
    with pytest.raises(StrokeSegError, match="MPS is not available"):
        devices.resolve_device("mps")
    with pytest.raises(StrokeSegError, match="Unknown device 'tpu0'"):
        devices.resolve_device("tpu0")


def test_autocast_is_null_on_cpu() -> None:
    ctx = devices.autocast_context(torch.device("cpu"), enabled=True)
    assert isinstance(ctx, contextlib.nullcontext)
    assert devices.autocast_dtype(torch.device("cpu")) is None
    assert not devices.uses_grad_scaler(torch.device("cpu"), amp=True)


@pytest.mark.parametrize(("capability", "dtype"), [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                   ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_bf16_only_from_compute_capability_8(monkeypatch: pytest.MonkeyPatch, capability, dtype) -> None:
    """V100 (7.0) and T4 / RTX 20xx (7.5) only emulate bf16, which torch.cuda.is_bf16_supported() counts by default:
    they must get fp16 with loss scaling, Ampere (8.0) and Hopper (9.0) bf16 without."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda", 0)
    assert devices.autocast_dtype(cuda) == dtype
    assert devices.uses_grad_scaler(cuda, amp=True) == (dtype == torch.float16)
    assert not devices.uses_grad_scaler(cuda, amp=False)
