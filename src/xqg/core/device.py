"""Device choice, written once: ``auto`` is the first CUDA GPU when there is one, else the CPU."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; anything else as torch spells it."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(str(device))


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The half type for autocast on ``device``: bf16 where the GPU has it (``auto``/``bf16``), fp16 only when
    asked (mT5 overflows in fp16), None on the CPU or for ``fp32`` (CPU autocast is slower than fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision in ("bf16", "auto") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if precision == "auto" else None


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on the GPU (see :func:`autocast_dtype`); a no-op elsewhere."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
