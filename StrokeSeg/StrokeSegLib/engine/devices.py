"""Choosing the compute device and the mixed-precision context.

Why one place: the CLI, batch runs, training and the Slicer panel all take a device name from the user; "auto" must
pick the same device everywhere, and asking for a device this machine lacks must say so instead of failing deep
inside torch.
"""
from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from ..common.errors import StrokeSegError
from .options import DEVICES as DEVICE_CHOICES


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA, then Apple MPS, then CPU. ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` force one
    and raise :class:`StrokeSegError` when this machine does not have it."""
    if isinstance(name, torch.device):
        name = str(name)
    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise StrokeSegError(
            f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N)."
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StrokeSegError(
                f"Device {name!r} was requested but CUDA is not available here (no NVIDIA GPU, or this torch build "
                "has no CUDA support); use --device cpu or auto."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise StrokeSegError(
                f"Device {name!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise StrokeSegError(
                f"Device {name!r} was requested but Apple MPS is not available here; use --device cpu or auto."
            )
        return device
    raise StrokeSegError(f"Unsupported device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")


# Inference (``strokeseg segment``, batch runs, the Slicer panel) and training validation run at this precision, so
# that a validation score is the score a user gets: mixed precision where :func:`autocast_dtype` offers a type.
INFERENCE_AMP = True

BF16_MIN_CAPABILITY = 8  # Ampere: the first NVIDIA generation with bf16 tensor cores


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The half-precision type used on ``device``: bf16 on GPUs of compute capability 8 or more (no overflow, no
    loss scaling), fp16 on older ones; None off CUDA (CPU autocast is slower than float32 for 3-D convolutions, MPS
    autocast is not reliable across versions).

    ``torch.cuda.is_bf16_supported()`` is not the test: by default it also counts bf16 that the GPU only emulates
    (V100, T4, RTX 20xx), where every 3-D convolution would run in slow fallback kernels.
    """
    if device.type != "cuda":
        return None
    major, _minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= BF16_MIN_CAPABILITY else torch.float16


def uses_grad_scaler(device: torch.device, amp: bool) -> bool:
    """Whether training needs loss scaling: only fp16 autocast, whose small gradients underflow without it."""
    return amp and autocast_dtype(device) == torch.float16


def autocast_context(device: torch.device, enabled: bool = True) -> AbstractContextManager[object]:
    """Autocast to :func:`autocast_dtype` when ``enabled`` and the device has one; a null context otherwise."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
