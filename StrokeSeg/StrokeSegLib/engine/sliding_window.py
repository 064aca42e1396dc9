"""Whole-volume prediction from a patch-trained network: overlapping windows blended with a Gaussian importance map.

Why Gaussian blending: a convolutional network is least reliable near its patch border (little context), so each
window's prediction is weighted towards its centre; overlapping windows then hide the seams. Why the memory fallbacks:
users run this on laptops and shared GPUs, and running out of GPU memory should cost speed, never the result.

The loop avoids needless copies: the image moves to the device once, accumulators are preallocated there in float32,
and each window's weighted probabilities are added in place into views of them.

An ensemble (:class:`.ensemble.EnsembleNetwork`) runs each window batch through every member; the members' sigmoid
probabilities are averaged (with the mirror flips, when asked) before the Gaussian weighting, so everything after that
is what a single model gets. A single model's arithmetic is unchanged.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..common.errors import StrokeSegError
from ..common.progress import CancelToken, ProgressCallback, check_cancel, report
from .devices import autocast_context
from .ensemble import member_networks
from .network import full_resolution

log = logging.getLogger(__name__)

STAGE = "Predicting"
_GAUSSIAN_FLOOR = 1e-4  # relative to the centre: no voxel of a window gets zero weight
_FLIP_AXES: tuple[tuple[int, ...], ...] = tuple(
    axes for r in range(4) for axes in itertools.combinations((2, 3, 4), r)
)  # the 8 mirror combinations of a (N, C, z, y, x) batch, identity first


def axis_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Window starts along one axis: evenly spaced, adjacent windows overlapping by at least ``overlap`` of the patch,
    first at 0 and last flush with the end (a single window when the axis is not longer than the patch)."""
    if size <= patch:
        return [0]
    step = max(patch * (1.0 - overlap), 1.0)
    count = math.ceil((size - patch) / step) + 1
    span = size - patch
    return sorted({round(i * span / (count - 1)) for i in range(count)})


def iter_window_starts(
    shape: Sequence[int], patch: Sequence[int], overlap: float = 0.5
) -> list[tuple[int, int, int]]:
    """All window starts ``(z, y, x)`` covering a volume of ``shape`` with windows of ``patch``, z slowest."""
    _check_overlap(overlap)
    per_axis = [axis_starts(int(s), int(p), overlap) for s, p in zip(shape, patch, strict=True)]
    return [tuple(start) for start in itertools.product(*per_axis)]  # type: ignore[misc]


def _check_overlap(overlap: float) -> None:
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")


@functools.lru_cache(maxsize=8)
def _gaussian_cached(patch: tuple[int, int, int], device: str) -> torch.Tensor:
    grids = []
    for p in patch:
        centre = (p - 1) / 2.0
        sigma = p / 8.0
        coords = np.arange(p, dtype=np.float64)
        grids.append(np.exp(-0.5 * ((coords - centre) / sigma) ** 2))
    weights = np.einsum("i,j,k->ijk", *grids)
    weights /= weights.max()
    np.maximum(weights, _GAUSSIAN_FLOOR, out=weights)
    return torch.from_numpy(weights.astype(np.float32)).to(device)


def gaussian_importance(patch: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Importance map ``(z, y, x)`` float32: Gaussian with sigma = patch/8 per axis, peak 1, floor 1e-4.
    Cached per (patch, device); treat the returned tensor as read-only."""
    return _gaussian_cached(tuple(int(p) for p in patch), str(torch.device(device)))


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _network_device(network: nn.Module) -> torch.device:
    for param in network.parameters():
        return param.device
    return torch.device("cpu")


def _predict_batch(
    network: nn.Module, batch: torch.Tensor, gauss: torch.Tensor, device: torch.device, amp: bool, mirror_tta: bool
) -> torch.Tensor:
    """Gaussian-weighted sigmoid probabilities (float32) of one batch of windows, averaged over the ensemble members
    and the mirror flips when there are several. The result is an inference tensor: only read it."""
    flips = _FLIP_AXES if mirror_tta else _FLIP_AXES[:1]
    members = member_networks(network)
    count = len(flips) * len(members)
    total: torch.Tensor | None = None
    with torch.inference_mode():
        for axes in flips:
            view = batch.flip(axes) if axes else batch
            probs: torch.Tensor | None = None
            for member in members:
                with autocast_context(device, amp):
                    logits = full_resolution(member(view))
                member_probs = torch.sigmoid(logits.float())
                if probs is None:
                    probs = member_probs
                else:
                    probs += member_probs
            assert probs is not None
            if axes:
                probs = probs.flip(axes)
            if total is None:
                total = probs
            else:
                total += probs
        assert total is not None
        total.mul_(gauss if count == 1 else gauss / count)
    return total


def pad_to_patch(image: torch.Tensor, patch: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad (centred) axes shorter than the patch; return the padded image and the slices that undo it."""
    sizes = tuple(image.shape[1:])
    pads: list[tuple[int, int]] = []
    for size, p in zip(sizes, patch, strict=True):
        missing = max(p - size, 0)
        pads.append((missing // 2, missing - missing // 2))
    crop = (slice(None),) + tuple(slice(before, before + size) for (before, _), size in zip(pads, sizes))
    if not any(before or after for before, after in pads):
        return image, crop
    flat = [value for pair in reversed(pads) for value in pair]  # F.pad wants the last axis first
    return F.pad(image, flat, mode="constant", value=0.0), crop


def _validate(network: nn.Module, image: torch.Tensor, patch: tuple[int, ...], batch_size: int) -> None:
    if image.dim() != 4:
        raise ValueError(f"image must be (C, z, y, x), got shape {tuple(image.shape)}")
    if len(patch) != 3 or any(p < 1 for p in patch):
        raise ValueError(f"patch_size must be 3 positive integers (z, y, x), got {patch}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    config = getattr(network, "config", None)
    if config is not None:
        if image.shape[0] != config.in_channels:
            raise ValueError(f"image has {image.shape[0]} channels, the network expects {config.in_channels}")
        if any(p % config.required_divisor for p in patch):
            raise ValueError(f"patch_size {patch} must be divisible by {config.required_divisor} for this network")


def sliding_window_predict(
    network: nn.Module,
    image: torch.Tensor | np.ndarray,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    amp: bool = True,
    mirror_tta: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    run_info: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Probabilities ``(out, z, y, x)`` float32 on the CPU for ``image`` ``(C, z, y, x)``.

    ``device`` None runs where the network is; otherwise the network is moved there (and stays there). On
    out-of-memory the batch is halved down to 1, then the prediction restarts on the CPU, with a warning each time;
    the network is moved back to ``device`` afterwards, so a caller that keeps training it finds it where it was.
    ``run_info``, when given, receives the ``device`` and ``batch_size`` actually used. The network is evaluated in
    eval mode and its previous mode restored.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    patch = tuple(int(p) for p in patch_size)
    _check_overlap(overlap)
    _validate(network, image, patch, int(batch_size))
    if device is None:
        device = _network_device(network)
    else:
        device = torch.device(device)
        network.to(device)

    was_training = network.training
    network.eval()
    try:
        probabilities, used_device, used_batch = _run(
            network, image, patch, overlap, int(batch_size), device, amp, mirror_tta, progress, cancel)  # type: ignore[arg-type]
    finally:
        network.train(was_training)
        network.to(device)  # undo an out-of-memory move to the CPU (a no-op otherwise)
    if run_info is not None:
        run_info.update(device=str(used_device), batch_size=used_batch)
    return probabilities


def _run(
    network: nn.Module,
    image: torch.Tensor,
    patch: tuple[int, int, int],
    overlap: float,
    batch_size: int,
    device: torch.device,
    amp: bool,
    mirror_tta: bool,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> tuple[torch.Tensor, torch.device, int]:
    """The prediction, the device it ran on and its final batch size."""
    report(progress, STAGE, 0.0)
    padded, crop = pad_to_patch(image.to(device=device, dtype=torch.float32), patch)
    spatial = tuple(padded.shape[1:])
    starts = iter_window_starts(spatial, patch, overlap)
    gauss = gaussian_importance(patch, device)
    acc: torch.Tensor | None = None  # allocated once the output channel count is known
    weight = torch.zeros((1, *spatial), dtype=torch.float32, device=device)
    pz, py, px = patch
    done = 0
    while done < len(starts):
        check_cancel(cancel)
        chunk = starts[done : done + batch_size]
        out_of_memory = False
        try:
            batch = torch.stack([padded[:, z : z + pz, y : y + py, x : x + px] for z, y, x in chunk])
            probs = _predict_batch(network, batch, gauss, device, amp, mirror_tta)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            out_of_memory = True
        if out_of_memory:  # handled outside the except block so the failed batch's tensors can be freed
            batch = probs = None  # type: ignore[assignment]
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size = max(batch_size // 2, 1)
                _warn(f"Out of memory on {device}; retrying with batch size {batch_size}.")
                continue
            if device.type == "cpu":
                raise StrokeSegError(
                    f"Out of memory predicting a single {patch} patch on the CPU; close other programs or use a "
                    "model with a smaller patch size."
                )
            _warn(f"Out of memory on {device} even with batch size 1; restarting on the CPU (slower).")
            cpu = torch.device("cpu")
            network.to(cpu)
            padded = acc = weight = gauss = None  # type: ignore[assignment]  # free the device's buffers first
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return _run(network, image, patch, overlap, 1, cpu, amp, mirror_tta, progress, cancel)

        if acc is None:
            acc = torch.zeros((probs.shape[1], *spatial), dtype=torch.float32, device=device)
        for k, (z, y, x) in enumerate(chunk):
            acc[:, z : z + pz, y : y + py, x : x + px] += probs[k]
            weight[:, z : z + pz, y : y + py, x : x + px] += gauss
        done += len(chunk)
        report(progress, STAGE, done / len(starts))

    assert acc is not None
    acc /= weight
    return acc[crop].to("cpu").contiguous(), device, batch_size


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, ResourceWarning, stacklevel=3)
