"""Multi-process training: the same command run under ``torchrun --nproc_per_node=N`` trains with DDP.

``torchrun`` announces a distributed run through the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT);
without those variables everything here is a no-op, so single-process code needs no special case. NCCL is used when
the processes train on GPUs and gloo on the CPU. Only rank 0 writes files; the others wait at barriers. Decisions
(validation scores, early stopping, skipping a non-finite step) come from collectives, so that every process takes the
same branch. One process group serves a whole run, all folds of ``cv`` included (re-creating NCCL groups can hang).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from StrokeSegLib.common.errors import StrokeSegError
from StrokeSegLib.engine.devices import resolve_device

COLLECTIVE_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun, or a process group exists: DDP even for a single process

    @property
    def enabled(self) -> bool:
        """Whether this run uses a process group and DDP (several processes, or one started by torchrun, which
        makes a 1-GPU ``torchrun`` a real check of NCCL and DDP; one process trains the same either way)."""
        return self.world_size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs, history and models."""
        return self.rank == 0


def detect() -> DistInfo:
    """This process's place: from the process group when one exists (``cv`` creates it once for all folds, a caller
    may have created its own), else from RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun); defaults describe a
    single process."""
    launched = group_exists()
    if launched:
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        launched = "TORCHELASTIC_RUN_ID" in os.environ  # set by torchrun
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world_size=world, local_rank=local, launched=launched)


def _gpu_for(info: DistInfo) -> torch.device:
    """``cuda:LOCAL_RANK``; more processes on this machine than GPUs is refused (sharing a GPU between DDP processes
    is slower than one process using it, and NCCL refuses two ranks on one GPU)."""
    count = torch.cuda.device_count()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(info.local_rank + 1)))
    if max(local_world, info.local_rank + 1) > count:
        raise StrokeSegError(f"{local_world} training processes on this machine but only {count} GPU(s); start "
                             f"torchrun with --nproc_per_node={count} or fewer, or train on the CPU (--device cpu)")
    return torch.device("cuda", info.local_rank)


def setup(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by torchrun (unless one exists) and pick this process's device.

    Each process of a GPU run takes ``cuda:LOCAL_RANK``; a CPU run uses gloo.
    """
    info = detect()
    device = resolve_device(device_name)
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = _gpu_for(info)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        # Rank 0 alone preprocesses the whole data set while the others wait at a barrier; NCCL's default 10-minute
        # timeout would kill a first run on a few hundred cases.
        dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size,
                                timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    return info, device


def group_exists() -> bool:
    """Whether a process group is initialised (by this run or by a caller)."""
    return dist.is_available() and dist.is_initialized()


def cleanup() -> None:
    """Tear the process group down (safe to call when none exists)."""
    if group_exists():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (e.g. until rank 0 has written the preprocessing cache)."""
    if info.enabled:
        dist.barrier()


def all_true(flag: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``flag`` (a bool tensor) and-ed over processes, on the device: no host synchronisation (NCCL queues the
    all-reduce on the GPU stream), so a training step can use it without waiting for the GPU."""
    if not info.enabled:
        return flag
    as_int = flag.to(torch.int32)
    dist.all_reduce(as_int, op=dist.ReduceOp.MIN)
    return as_int.bool()


def all_gather(value: Any, info: DistInfo) -> list[Any]:
    """Every process's ``value``, in rank order, on every process."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


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
