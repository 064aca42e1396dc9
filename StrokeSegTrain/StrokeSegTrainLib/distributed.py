"""Multi-process training: the same command run under ``torchrun --nproc_per_node=N`` trains with DDP.

``torchrun`` announces a distributed run through the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT);
without those variables everything here is a no-op, so single-process code needs no special case. NCCL is used when
the processes train on GPUs and gloo on the CPU. Only rank 0 writes files; the others wait at barriers and receive
decisions (validation scores, early stopping) by broadcast so that every process takes the same branch.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from StrokeSegLib.devices import resolve_device

COLLECTIVE_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs, history and models."""
        return self.rank == 0


def detect() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun); defaults describe a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def setup(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by torchrun and pick this process's device.

    Each process of a GPU run takes ``cuda:LOCAL_RANK``; a CPU run uses gloo.
    """
    info = detect()
    device = resolve_device(device_name)
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        # Rank 0 alone preprocesses the whole data set (and validates) while the others wait at a barrier; NCCL's
        # default 10-minute timeout would kill a first run on a few hundred cases.
        dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    return info, device


def cleanup() -> None:
    """Tear the process group down (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (e.g. until rank 0 has written the preprocessing cache)."""
    if info.enabled:
        dist.barrier()


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every process."""
    if not info.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """Mean of a scalar over processes (the epoch's training loss)."""
    if not info.enabled:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def replicas_agree(module: torch.nn.Module, info: DistInfo, device: torch.device) -> bool:
    """True when every process holds bit-identical parameters (DDP kept the replicas in sync).

    Compares a float64 checksum of all parameters through an all-reduce of its min and max; a cheap end-of-run check
    that would reveal a process that skipped a step or loaded a different checkpoint.
    """
    if not info.enabled:
        return True
    with torch.no_grad():
        total = sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(module.parameters()))
    low = torch.tensor([float(total)], dtype=torch.float64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(low.item() == high.item())
