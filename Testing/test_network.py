"""The attention U-Net: shapes, deep supervision, attention coefficients, config validation."""
from __future__ import annotations

import pytest
import torch

from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig, count_parameters

TINY = (4, 8, 16)


@pytest.mark.parametrize(
    ("config", "size"),
    [
        (NetworkConfig(features=TINY), (16, 24, 32)),
        (NetworkConfig(in_channels=3, out_channels=2, features=(4, 8)), (6, 10, 4)),
        (NetworkConfig(features=(2, 4, 6, 8)), (8, 16, 24)),
    ],
)
def test_forward_shape(config: NetworkConfig, size: tuple[int, int, int]) -> None:
    net = AttentionUNet3D(config).eval()
    x = torch.randn(2, config.in_channels, *size)
    with torch.inference_mode():
        y = net(x)
    assert isinstance(y, torch.Tensor)
    assert y.shape == (2, config.out_channels, *size)
    assert torch.isfinite(y).all()


def test_deep_supervision_train_vs_eval() -> None:
    net = AttentionUNet3D(NetworkConfig(features=(4, 8, 16, 32), deep_supervision=True))
    x = torch.randn(1, 2, 16, 16, 8)
    net.train()
    outs = net(x)
    assert isinstance(outs, list)
    assert [tuple(o.shape) for o in outs] == [(1, 1, 16, 16, 8), (1, 1, 8, 8, 4), (1, 1, 4, 4, 2)]
    sum(o.mean() for o in outs).backward()  # every head takes part in the graph
    assert all(h.weight.grad is not None for h in net.aux_heads)
    net.eval()
    with torch.inference_mode():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 16, 16, 8)


def test_eval_output_matches_training_main_head() -> None:
    torch.manual_seed(0)
    net = AttentionUNet3D(NetworkConfig(features=TINY, deep_supervision=True))
    x = torch.randn(1, 2, 8, 8, 8)
    net.train()
    main = net(x)[0].detach()
    net.eval()  # instance norm has no running stats, so train/eval give the same main output
    with torch.inference_mode():
        torch.testing.assert_close(net(x), main)


def test_without_deep_supervision_training_returns_tensor() -> None:
    net = AttentionUNet3D(NetworkConfig(features=TINY)).train()
    assert isinstance(net(torch.randn(1, 2, 8, 8, 8)), torch.Tensor)
    assert len(net.aux_heads) == 0


def test_attention_coefficients_in_unit_interval() -> None:
    net = AttentionUNet3D(NetworkConfig(features=TINY)).eval()
    for gate in net.attention_gates:
        gate.keep_coefficients = True
    x = torch.randn(1, 2, 8, 12, 16) * 5
    with torch.inference_mode():
        net(x)
    sizes = [tuple(g.coefficients.shape) for g in net.attention_gates]
    assert sizes == [(1, 1, 8, 12, 16), (1, 1, 4, 6, 8)]
    for gate in net.attention_gates:
        assert gate.coefficients.min() >= 0 and gate.coefficients.max() <= 1
        assert gate.coefficients.std() > 0  # they actually depend on the input


def test_gates_modulate_skips() -> None:
    """Forcing the psi bias very negative closes the gates, which must change the output."""
    torch.manual_seed(1)
    net = AttentionUNet3D(NetworkConfig(features=TINY)).eval()
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.inference_mode():
        before = net(x).clone()
        for gate in net.attention_gates:
            gate.psi.bias.fill_(-50.0)
        after = net(x)
    assert not torch.allclose(before, after)


def test_input_not_divisible_is_refused() -> None:
    net = AttentionUNet3D(NetworkConfig(features=TINY))
    assert net.required_divisor == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 8, 8, 10))
    with pytest.raises(ValueError, match=r"\(N, 2, z, y, x\)"):
        net(torch.randn(1, 3, 8, 8, 8))


def test_parameter_count() -> None:
    default = count_parameters(AttentionUNet3D())
    print(f"default AttentionUNet3D parameters: {default}")
    assert 4_000_000 < default < 8_000_000
    tiny = AttentionUNet3D(NetworkConfig(features=TINY))
    assert count_parameters(tiny) == sum(p.numel() for p in tiny.parameters())
    for p in tiny.head.parameters():
        p.requires_grad_(False)
    assert count_parameters(tiny) == sum(p.numel() for p in tiny.parameters()) - sum(
        p.numel() for p in tiny.head.parameters()
    )


def test_config_round_trip() -> None:
    config = NetworkConfig(in_channels=2, out_channels=1, features=(8, 16, 32), deep_supervision=True)
    data = config.to_dict()
    assert data["features"] == [8, 16, 32]
    assert NetworkConfig.from_dict(data) == config
    assert NetworkConfig().required_divisor == 16


@pytest.mark.parametrize(
    "data",
    [
        {"in_channels": 0},
        {"out_channels": -1},
        {"in_channels": 2.5},
        {"features": [16]},
        {"features": [16, 0]},
        {"features": "16,32"},
        {"features": [16, True]},
        {"deep_supervision": "yes"},
        {"negative_slope": -0.1},
        {"negative_slope": float("nan")},
        {"unknown_key": 1},
    ],
)
def test_config_nonsense_refused(data: dict) -> None:
    with pytest.raises(ValueError):
        NetworkConfig.from_dict(data)


def test_config_from_non_dict_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        NetworkConfig.from_dict([1, 2])  # type: ignore[arg-type]
