"""The segmentation network: a 3-D U-Net with attention gates on the skip connections (Oktay et al. 2018).

Why attention gates: acute lesions are small and sparse, and the gates let the coarse decoder context suppress skip
features from healthy tissue (and the bright DWI artefacts near the skull base) before they reach the full-resolution
decoder. Why instance norm: batches are tiny (1-4 patches), where batch statistics are useless.

Layout (``features=(f0, ..., fL)``): encoder level 0 keeps the input resolution, each deeper level halves it with a
strided 3x3x3 convolution; the decoder climbs back with transposed convolutions, each level concatenating the
attention-gated skip. The input size along each axis must therefore be divisible by ``config.required_divisor``
(``2 ** (len(features) - 1)``).
"""
from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .network_config import NetworkConfig

__all__ = ["AttentionGate", "AttentionUNet3D", "ConvBlock", "NetworkConfig", "count_parameters"]


class ConvBlock(nn.Sequential):
    """Two 3x3x3 conv + InstanceNorm + LeakyReLU; the first conv may stride 2 to downsample (no pooling)."""

    def __init__(self, in_ch: int, out_ch: int, negative_slope: float, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            nn.InstanceNorm3d(out_ch, affine=True),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_ch, affine=True),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention: alpha = sigmoid(psi(relu(W_x x + W_g g))), resampled to x's size, returns x * alpha.

    ``x`` is the skip connection, ``g`` the gating signal from the next coarser decoder level (half x's resolution);
    W_x is a kernel-2, stride-2 convolution so both terms meet on g's grid, as in the paper. Set
    ``keep_coefficients`` to keep the last coefficients (full skip resolution) in ``coefficients`` for inspection.
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int) -> None:
        super().__init__()
        self.theta_x = nn.Conv3d(skip_ch, inter_ch, kernel_size=2, stride=2, bias=False)
        self.phi_g = nn.Conv3d(gate_ch, inter_ch, kernel_size=1, bias=True)
        self.psi = nn.Conv3d(inter_ch, 1, kernel_size=1, bias=True)
        self.keep_coefficients = False
        self.coefficients: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        theta = self.theta_x(x)
        phi = self.phi_g(g)
        if phi.shape[2:] != theta.shape[2:]:
            phi = F.interpolate(phi, size=theta.shape[2:], mode="trilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        alpha = F.interpolate(alpha, size=x.shape[2:], mode="trilinear", align_corners=False)
        if self.keep_coefficients:
            self.coefficients = alpha.detach()
        return x * alpha


class DecoderLevel(nn.Module):
    """Upsample the coarser features, gate the skip with them, concatenate, convolve."""

    def __init__(self, coarse_ch: int, skip_ch: int, negative_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(coarse_ch, skip_ch, kernel_size=2, stride=2, bias=False)
        self.gate = AttentionGate(skip_ch, coarse_ch, max(1, skip_ch // 2))
        self.conv = ConvBlock(2 * skip_ch, skip_ch, negative_slope)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        gated = self.gate(skip, coarse)
        return self.conv(torch.cat([self.up(coarse), gated], dim=1))


class AttentionUNet3D(nn.Module):
    """Attention U-Net returning logits ``(N, out_channels, z, y, x)``.

    With ``config.deep_supervision`` and in training mode the forward returns a list of logits, full resolution first,
    then one per coarser decoder level (each at its own resolution); in eval mode always a single tensor.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else NetworkConfig()
        feats = self.config.features
        slope = self.config.negative_slope
        self.encoder = nn.ModuleList(
            [ConvBlock(self.config.in_channels, feats[0], slope)]
            + [ConvBlock(feats[i - 1], feats[i], slope, stride=2) for i in range(1, len(feats))]
        )
        # decoder[i] produces level i (i = 0 is full resolution) from level i + 1.
        self.decoder = nn.ModuleList([DecoderLevel(feats[i + 1], feats[i], slope) for i in range(len(feats) - 1)])
        self.head = nn.Conv3d(feats[0], self.config.out_channels, kernel_size=1)
        # One auxiliary head per coarser decoder level (levels 1 .. L-2); empty without deep supervision.
        self.aux_heads = nn.ModuleList(
            [nn.Conv3d(feats[i], self.config.out_channels, kernel_size=1) for i in range(1, len(feats) - 1)]
            if self.config.deep_supervision
            else []
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(module.weight, a=self.config.negative_slope, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def required_divisor(self) -> int:
        """Each spatial input size must be a multiple of this."""
        return self.config.required_divisor

    @property
    def attention_gates(self) -> list[AttentionGate]:
        """The gates, full resolution first (set ``keep_coefficients`` on them to inspect the coefficients)."""
        return [cast(AttentionGate, level.gate) for level in self.decoder]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x)
        skips: list[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        decoded: list[torch.Tensor] = []
        for level in reversed(range(len(self.decoder))):
            x = self.decoder[level](x, skips[level])
            decoded.append(x)
        logits = self.head(x)
        if not (self.training and self.config.deep_supervision):
            return logits
        # decoded is coarsest first; decoded[-1] is level 0, decoded[-1 - i] is level i.
        aux = [head(decoded[-1 - i]) for i, head in enumerate(self.aux_heads, start=1)]
        return [logits, *aux]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"network input must be (N, {self.config.in_channels}, z, y, x), got {tuple(x.shape)}"
            )
        divisor = self.required_divisor
        if any(s % divisor for s in x.shape[2:]):
            raise ValueError(f"network input size {tuple(x.shape[2:])} must be divisible by {divisor} on each axis")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (reported in model cards and benchmarks)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def full_resolution(out: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The full-resolution logits of a forward pass that may also return deep-supervision outputs (a list, highest
    resolution first, in training mode)."""
    return out if isinstance(out, torch.Tensor) else out[0]
