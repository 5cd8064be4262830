"""Choosing the compute device and the precision to run at."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "autocast_dtype", "tune_cuda"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is taken as given."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Reduced precision for the forward pass where it is fast and safe: bf16, else fp16, on CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def tune_cuda() -> None:
    """Let cuDNN time its convolution algorithms once per input shape and keep the fastest.

    Batches come in a few fixed shapes (the batch size, and a last partial batch), so the
    one-off timing pays back at once; conv nets such as ``lite`` gain the most. Process-wide,
    and only ever switched on for a model running on CUDA.
    """
    torch.backends.cudnn.benchmark = True
