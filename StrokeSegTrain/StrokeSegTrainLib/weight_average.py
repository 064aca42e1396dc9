"""Uniform average of the network weights at the end of the last epochs (stochastic weight averaging, without BN).

Why: a network trained on generated data and then applied to real scans is judged far outside its training
distribution, where the weights of one epoch make errors that the next epoch's do not (false positives come and go
between checkpoints). Averaging the end-of-epoch weights of the last part of the schedule lands in a flatter region
of the loss and smooths those epoch-to-epoch swings at no inference cost. The network uses instance normalisation,
so there are no batch statistics to recompute afterwards.
"""
from __future__ import annotations

from typing import Any

import torch


class WeightAverage:
    """Running mean of ``state_dict``s; non-floating entries (if any) follow the latest update."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    def update(self, state: dict[str, torch.Tensor]) -> None:
        """Fold one set of weights into the mean (kept in float32 on the CPU, whatever the training device)."""
        self.count += 1
        for name, tensor in state.items():
            value = tensor.detach().to("cpu")
            if not torch.is_floating_point(value):
                self.mean[name] = value.clone()
            elif name not in self.mean:
                self.mean[name] = value.float().clone()
            else:
                self.mean[name].add_(value.float() - self.mean[name], alpha=1.0 / self.count)

    def averaged(self, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mean, in the dtypes and on the devices of ``like`` (the live network's state)."""
        if not self.count:
            raise ValueError("no weights have been averaged yet")
        return {name: self.mean[name].to(tensor.device, tensor.dtype) for name, tensor in like.items()}

    def state(self) -> dict[str, Any]:
        """Checkpointable form (tensors and an int: loads with ``weights_only``)."""
        return {"count": self.count, "mean": dict(self.mean)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> WeightAverage:
        average = cls()
        if state:
            average.count = int(state["count"])
            average.mean = {k: v.clone() for k, v in state["mean"].items()}
        return average
