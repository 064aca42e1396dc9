"""The training step learns: on one fixed lesion patch the loss must fall far below where it started."""
from __future__ import annotations

import torch
from train_fixtures import single_thread  # noqa: F401 (autouse fixture)

from StrokeSegLib.engine.network import AttentionUNet3D, NetworkConfig
from StrokeSegTrainLib.config import LossConfig, TrainConfig
from StrokeSegTrainLib.losses import DeepSupervisionLoss, SegmentationLoss
from StrokeSegTrainLib.trainer import train_step


def test_loss_goes_down_on_a_case_it_can_overfit() -> None:
    torch.manual_seed(0)
    shape = (16, 16, 16)
    image = torch.randn(2, 2, *shape) * 0.3
    mask = torch.zeros(2, 1, *shape)
    mask[0, :, 4:9, 5:11, 6:10] = 1
    mask[1, :, 9:13, 2:6, 8:14] = 1
    image[:, 0:1] += 2.0 * mask  # bright on DWI
    image[:, 1:2] -= 1.5 * mask  # dark on ADC
    config = TrainConfig(network=NetworkConfig(features=(4, 8, 16), deep_supervision=True), patch_size=shape)
    network = AttentionUNet3D(NetworkConfig(features=(4, 8, 16), deep_supervision=True))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = DeepSupervisionLoss(SegmentationLoss(LossConfig()))
    network.train()
    losses = [float(train_step(network, optimizer, scaler, loss_fn, image, mask, config, torch.device("cpu")))
              for _ in range(60)]
    # (1 - TI) ** (1/2) falls slowly while Dice is already high; 0.75 of the start is a clear margin.
    assert losses[-1] < 0.75 * losses[0], losses
    assert min(losses[-5:]) < min(losses[:5])
    network.eval()
    with torch.no_grad():
        predicted = torch.sigmoid(network(image)) >= 0.5
    dice = 2 * (predicted & mask.bool()).sum().item() / (predicted.sum().item() + mask.sum().item())
    assert dice > 0.6
