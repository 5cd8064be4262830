"""What runs an image tower: the :class:`ImageEngine` protocol and the one place that builds
an engine for a runtime.

An engine maps a preprocessed ``(B, 3, H, W)`` float32 batch to ``(B, dim)`` float32 features,
not normalised, in input order. The model (:class:`~.base.EmbeddingModel`) normalises and
owns everything else (preprocessing, batching, the fingerprint).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from .base import EmbeddingModel

__all__ = ["ImageEngine", "TextEngine", "build_image_engine", "build_text_engine", "as_numpy"]


@runtime_checkable
class ImageEngine(Protocol):
    """Runs an image tower. ``runtime`` is the resolved runtime: torch, onnx or openvino."""

    runtime: str

    def run(self, pixels: "np.ndarray | torch.Tensor") -> np.ndarray:
        """(B,3,H,W) float32 preprocessed -> (B, dim) float32 features, NOT normalised, in order."""
        ...


class TextEngine(Protocol):
    """Runs an exported text tower on tokenised inputs (named int64 arrays)."""

    runtime: str

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Named token arrays -> (B, dim) float32 features, not normalised."""
        ...


def as_numpy(pixels: Any) -> np.ndarray:
    """A contiguous float32 numpy batch from a numpy array or a (CPU or device) tensor."""
    if not isinstance(pixels, np.ndarray):
        pixels = pixels.detach().to("cpu").numpy()
    return np.ascontiguousarray(pixels, dtype=np.float32)


def build_image_engine(model: "EmbeddingModel", runtime: str, *, path: Path | None = None,
                       precision: str = "fp32", compile: bool = False) -> ImageEngine:
    """The engine running ``model``'s image tower on ``runtime`` (resolved, not ``auto``).

    ``path`` is the ONNX file for onnx/openvino; None exports (or reuses) the fp32 graph.

    Raises:
        MissingExtra: the runtime's package is not installed.
        ModelLoadError: the export failed or does not match torch.
    """
    if runtime == "torch":
        from .torch_engine import TorchEngine

        return TorchEngine(model._forward_images, model.device, channels_last=model.channels_last, compile=compile)
    if path is None:
        from .export import export_image_onnx

        path = export_image_onnx(model)
    if runtime == "onnx":
        from .onnx_engine import OnnxEngine

        return OnnxEngine(path, model.device)
    if runtime == "openvino":
        from .openvino_engine import OpenVinoEngine

        return OpenVinoEngine(path, precision=precision)
    raise ValueError(f"not a resolved runtime: {runtime!r}")  # check_runtime() ran before: a bug


def build_text_engine(model: "EmbeddingModel", runtime: str) -> TextEngine:
    """The exported fp32 text tower of ``model`` on ``runtime`` (onnx or openvino)."""
    from .export import export_text_onnx

    path = export_text_onnx(model)
    if runtime == "onnx":
        from .onnx_engine import OnnxEngine

        return OnnxEngine(path, model.device)
    from .openvino_engine import OpenVinoEngine

    return OpenVinoEngine(path, precision="fp32")
