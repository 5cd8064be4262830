"""The PyTorch image engine: a model's forward pass, run the fast way for its device.

What it does with a batch, and why:

* ``torch.inference_mode``: no autograd bookkeeping (version counters, views).
* Reduced precision on CUDA (bf16 where supported, else fp16; :func:`.device.autocast_dtype`).
  On the CPU it stays float32: bf16 on CPUs without AMX is slower and changes the vectors.
* ``channels_last`` input for conv nets, whose kernels run faster in that layout (the
  backend converts its weights too); transformers take the batch as it is.
* Pinned host memory is copied to CUDA with ``non_blocking=True``, so the copy engine moves
  the batch while the CPU goes on. The pipeline's workers assemble batches straight into
  pinned buffers (:mod:`lookalike.pipeline.loader`); a pageable batch is copied the ordinary,
  blocking way (pinning it here would cost one more host copy than it saves).
* Optional ``torch.compile``: checked up front for what it needs (a C++ compiler on the
  CPU, Triton on CUDA), and a compilation that fails on the first batch is reported as a
  :class:`~lookalike.errors.ModelLoadError` naming the fix, never silently run eagerly.
  Graphs are compiled for static shapes; a batch shorter than the largest seen is padded
  to it, so a run's short last batch costs no second compilation.
* cuDNN autotuning (``cudnn.benchmark``) on CUDA, where batch shapes repeat.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from contextlib import nullcontext
from typing import Any, Callable, ContextManager

import numpy as np
import torch

from ..errors import ModelLoadError
from .device import autocast_dtype, tune_cuda

__all__ = ["TorchEngine", "compile_problem"]

Forward = Callable[[torch.Tensor], torch.Tensor]

_COMPILE_FIX = "run without it (drop --compile, or compile=False)"


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` here, or ``None`` when it should.

    Inductor generates C++ on the CPU and Triton kernels on CUDA; without the compiler or
    Triton the first batch would fail deep inside torch with a long, unhelpful trace.
    """
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (it needs torch 2.0 or later)"
    if device.type == "cpu":
        candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in candidates):
            return ("torch.compile on the CPU needs a C++ compiler and none was found on PATH "
                    "(install g++ or clang++, or set CXX)")
    elif device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs the 'triton' package, which is not installed (pip install triton)"
    else:
        return f"torch.compile is not supported here on {device.type!r} devices"
    return None


class TorchEngine:
    """Runs a backend's image tower: ``(B, 3, H, W)`` float32 pixels -> ``(B, dim)`` float32 features.

    Args:
        forward: the backend's forward function (pixels already on ``device`` -> features).
        device: where the weights live.
        channels_last: feed the batch in channels_last layout (conv nets).
        compile: wrap ``forward`` in ``torch.compile``.

    Raises:
        ModelLoadError: ``compile=True`` where torch.compile cannot work (the reason and fix
            are in the message).
    """

    runtime = "torch"

    def __init__(self, forward: Forward, device: torch.device, *, channels_last: bool,
                 compile: bool = False) -> None:
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)
        self.amp_dtype = autocast_dtype(self.device)
        self.compiled = bool(compile)
        self._eager = forward
        self._forward: Forward = forward
        self._compile_checked = False
        self._lock = threading.Lock()  # the first compiled call compiles; others wait for it
        if self.device.type == "cuda":
            tune_cuda()
        if compile:
            problem = compile_problem(self.device)
            if problem is not None:
                raise ModelLoadError(f"cannot compile the model: {problem}; {_COMPILE_FIX}")
            # Static shapes: a graph specialised to the batch shape runs fastest, and _pad keeps
            # the shapes few (a short last batch is padded to the full one, not recompiled).
            self._forward = torch.compile(forward, dynamic=False)
        self._rows = 0  # compiled: the largest batch seen, which shorter ones are padded to

    def autocast(self) -> ContextManager[Any]:
        """Reduced precision where :func:`autocast_dtype` chose one (CUDA), else a no-op."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The batch on :attr:`device` as float32, in the layout the model wants.

        A pinned CPU tensor is copied asynchronously (the caller's results wait for it on the
        same stream, so ordering is kept); a tensor already on the device is not copied.
        """
        batch = torch.as_tensor(pixels)
        if batch.device != self.device:
            non_blocking = self.device.type == "cuda" and batch.device.type == "cpu" and batch.is_pinned()
            batch = batch.to(self.device, non_blocking=non_blocking)
        if batch.dtype != torch.float32:
            batch = batch.float()
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def forward_tensor(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Like :meth:`run` but the features stay on the device, in the forward's dtype."""
        with torch.inference_mode():
            batch = self.to_device(pixels)
            if not self.compiled:
                return self._call(batch)
            n = batch.shape[0]
            batch = self._pad(batch)
            if self._compile_checked:
                return self._call(batch)[:n]
            with self._lock:
                return self._first_compiled_call(batch)[:n]

    def _pad(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch shorter than the largest seen, padded with zeros to its size: a compiled graph
        is specialised to its shape, and the rows are independent, so padding changes no vector."""
        n = batch.shape[0]
        if n > self._rows:
            self._rows = n
            return batch
        if n == self._rows:
            return batch
        pad = batch.new_zeros((self._rows - n, *batch.shape[1:]))
        out = torch.cat([batch, pad])
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def run(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(B, 3, H, W)`` float32 preprocessed -> ``(B, dim)`` float32 features, not normalised, in order."""
        out = self.forward_tensor(pixels)
        return out.float().cpu().numpy().astype(np.float32, copy=False)

    def _call(self, batch: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self._forward(batch)

    def _first_compiled_call(self, batch: torch.Tensor) -> torch.Tensor:
        """Compile on the first batch; a failure becomes a ModelLoadError with the fix."""
        if self._compile_checked:
            return self._call(batch)
        try:
            out = self._call(batch)
        except Exception as exc:  # inductor/dynamo raise many types; all mean the same here
            raise ModelLoadError(
                f"torch.compile failed on {self.device} ({type(exc).__name__}: {_first_line(exc)}); {_COMPILE_FIX}"
            ) from exc
        self._compile_checked = True
        return out

    def __repr__(self) -> str:
        return (f"TorchEngine(device={self.device}, amp={self.amp_dtype}, channels_last={self.channels_last}, "
                f"compile={self.compiled})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "no message"
