"""Shared tiny training set-up for the train tests: synthetic ISLES trees and a configuration that runs in seconds."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from StrokeSegLib.apps.phantom import make_synthetic_case, write_synthetic_case
from StrokeSegLib.engine.network_config import NetworkConfig
from StrokeSegLib.preprocessing.preprocess_config import PreprocessConfig
from StrokeSegTrainLib.config import AugmentationConfig, TrainConfig

# Five patients, one with two sessions: the patient-level split must keep sub-p0's sessions together.
CASE_IDS = ("sub-p0_ses-0001", "sub-p0_ses-0002", "sub-p1_ses-0001", "sub-p2_ses-0001", "sub-p3_ses-0001",
            "sub-p4_ses-0001")


def write_synthetic_root(root: Path) -> Path:
    """Six small synthetic cases (32x32x20 voxels of 4x4x6 mm) in the Zenodo layout."""
    for seed, case_id in enumerate(CASE_IDS):
        case = make_synthetic_case(seed=seed, size=(32, 32, 20), spacing=(4.0, 4.0, 6.0))
        write_synthetic_case(case, root, case_id)
    return root


def tiny_config(**overrides) -> TrainConfig:
    """A 3-level network with 4-16 features on 16^3 patches at 4 mm: the whole pipeline, none of the cost."""
    config = TrainConfig(
        network=NetworkConfig(features=(4, 8, 16), deep_supervision=True),
        preprocess=PreprocessConfig(target_spacing=(4.0, 4.0, 4.0)),
        augmentation=AugmentationConfig(rotation_probability=0.5, scale_probability=0.5),
        patch_size=(16, 16, 16), batch_size=2, epochs=2, iterations_per_epoch=2, validate_every=1,
        num_folds=5, deterministic=True, prefetch_batches=1, val_overlap=0.25, val_batch_size=4)
    return config.with_overrides(**overrides) if overrides else config


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """One torch thread for the tiny networks of these tests (imported by each module that trains).

    On a shared 2-core machine, intra-op threads spinning on 16^3 patches cost 3x the wall time; the previous setting
    is restored so other test modules are unaffected.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class CancelInEpoch:
    """Progress callback + cancel token that interrupts the run in the middle of a given epoch (a 'kill')."""

    def __init__(self, epoch: int, epochs: int) -> None:
        self.event = threading.Event()
        self.threshold = (epoch - 1 + 0.5) / epochs

    def __call__(self, stage: str, fraction: float) -> None:
        if stage == "Training" and fraction >= self.threshold:
            self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def run_forked(function: Callable[..., None], args: tuple[Any, ...], processes: int = 2,
               timeout_s: float = 120.0) -> None:
    """``function(rank, *args)`` in ``processes`` forked processes (they inherit the imports, so they start in
    milliseconds); fails the test when one fails, and kills them all rather than hang when they exceed ``timeout_s``
    (a collective that never completes)."""
    context = mp.start_processes(function, args=args, nprocs=processes, join=False, start_method="fork")
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"the {processes} processes did not finish within {timeout_s:.0f} s")


def random_batch(shape: tuple[int, int, int], nan: bool = False):
    """A fixed random (image, mask) training batch of two 2-channel patches; ``nan`` puts one NaN in the image."""
    import torch

    generator = torch.Generator().manual_seed(1)
    image = torch.randn(2, 2, *shape, generator=generator)
    mask = (torch.rand(2, 1, *shape, generator=generator) > 0.8).float()
    if nan:
        image[0, 0, 0, 0, 0] = float("nan")
    return image, mask
