"""The interface every embedding model implements.

A backend subclasses :class:`EmbeddingModel` and provides two forward functions; the base
class supplies batching, the parallel decode pipeline, device placement, reduced precision
on CUDA, L2 normalisation and the fingerprint that collections use to refuse mixing models.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import numpy as np
import torch

from ..errors import ModelLoadError, UnsupportedModality
from ..images.decode import ImageSource
from ..images.transforms import PreprocessConfig, build_transform
from ..pipeline.embed import embed_sources
from ..progress import ProgressCallback
from .device import autocast_dtype, resolve_device
from .names import ModelInfo

__all__ = ["EmbeddingModel", "ModelInfo", "Modality", "local_folder_identity", "load_failure"]

Modality = str  # "image" or "text"


class EmbeddingModel(ABC):
    """An image (and possibly text) encoder producing L2-normalised float32 vectors.

    Subclasses set :attr:`model_id`, :attr:`dim`, :attr:`modalities` and
    :attr:`preprocess`, and implement :meth:`_forward_images` (and :meth:`_forward_text`
    for models with a text tower).
    """

    model_id: str
    dim: int
    modalities: frozenset[str]
    preprocess: PreprocessConfig
    #: Conv nets run faster in channels_last memory format, on CUDA and on CPU alike (2x for
    #: EfficientNet-Lite0 on a 2-core CPU); transformers do not care.
    channels_last: bool = False

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = resolve_device(device)
        self._amp_dtype = autocast_dtype(self.device)
        self._transform: Callable[[Any], np.ndarray] | None = None

    # ----------------------------------------------------------------- backend hooks
    @abstractmethod
    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map a preprocessed ``(B, 3, H, W)`` batch on :attr:`device` to ``(B, dim)`` features."""

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        """Map texts to ``(B, dim)`` features in the image space. Image-only models keep this."""
        raise UnsupportedModality(
            f"model '{self.model_id}' embeds images only, so it cannot search by text. "
            "Search with an example image or id instead, or use a model with a text tower "
            "such as 'lite' or an openclip: model (see `lookalike models`)."
        )

    def _weights_identity(self) -> str:
        """A string that changes when the weights do (file digest, hub revision...)."""
        return ""

    def _autocast(self) -> ContextManager[Any]:
        """Reduced precision where :func:`autocast_dtype` chose one (CUDA), else a no-op."""
        if self._amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    # ----------------------------------------------------------------- public API
    @property
    def supports_text(self) -> bool:
        return "text" in self.modalities

    @property
    def image_transform(self) -> Callable[[Any], np.ndarray]:
        """The PIL image -> ``(3, H, W)`` float32 transform built from :attr:`preprocess`."""
        if self._transform is None:
            self._transform = build_transform(self.preprocess)
        return self._transform

    def fingerprint(self) -> str:
        """A short digest of everything that determines the vectors: id, weights, preprocessing."""
        payload = json.dumps(
            {
                "model_id": self.model_id,
                "dim": self.dim,
                "preprocess": self.preprocess.to_dict(),
                "weights": self._weights_identity(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @torch.inference_mode()
    def embed_pixels(self, pixels: np.ndarray | torch.Tensor, *, normalize: bool = True) -> np.ndarray:
        """Embed an already preprocessed ``(B, 3, H, W)`` batch; returns float32 ``(B, dim)``."""
        batch = torch.as_tensor(pixels)
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self._forward_images(batch)
        return _finish(out, normalize)

    def encode_images(
        self,
        images: Sequence[ImageSource] | ImageSource,
        *,
        batch_size: int = 32,
        normalize: bool = True,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Embed images given as paths, encoded bytes or PIL images.

        One image (a path, ``Path``, bytes or PIL image) is taken as a list of one.
        Returns a float32 ``(N, dim)`` array in input order, L2-normalised unless
        ``normalize=False``. Decoding runs in parallel and overlaps the forward pass.

        Raises:
            UnreadableImage: for the first image that cannot be decoded. To index a folder
                where some files may be bad, use :meth:`lookalike.Collection.add`, which
                records failures and carries on.
        """
        if isinstance(images, (str, bytes, os.PathLike)) or hasattr(images, "mode"):
            images = [images]  # one image, as encode_text takes one string
        return embed_sources(
            self, images, batch_size=batch_size, normalize=normalize, workers=workers, progress=progress
        )

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str] | str, *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Embed texts into the image space; float32 ``(N, dim)``.

        Raises:
            UnsupportedModality: the model has no text tower.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not self.supports_text:
            self._forward_text([])  # raises the model's own explanation
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            with self._autocast():
                out = self._forward_text(chunk)
            chunks.append(_finish(out, normalize))
        return np.concatenate(chunks, axis=0)

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable description, stored in collection manifests."""
        return {
            "model_id": self.model_id,
            "dim": self.dim,
            "modalities": sorted(self.modalities),
            "preprocess": self.preprocess.to_dict(),
            "fingerprint": self.fingerprint(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim}, device={self.device})"


def _finish(out: torch.Tensor, normalize: bool) -> np.ndarray:
    out = out.float()
    if normalize:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.cpu().numpy().astype(np.float32, copy=False)


def load_failure(model_id: str, exc: Exception) -> ModelLoadError:
    """The error for weights that could not be loaded, with the usual offline explanation."""
    return ModelLoadError(
        f"model '{model_id}' could not be loaded ({type(exc).__name__}: {exc}). If you are offline, "
        "the weights must already be in the Hugging Face cache, or point to a local folder."
    )


def local_folder_identity(folder: Path, config_name: str, weight_globs: Sequence[str]) -> str:
    """Identify a local model folder by its config's content and its weight files' size and mtime.

    Hashing multi-gigabyte checkpoints on every load would be slow; a rewrite of the
    weights changes their mtime, which is what a fingerprint needs to notice.
    """
    h = hashlib.sha256((folder / config_name).read_bytes())
    for pattern in weight_globs:
        for f in sorted(folder.glob(pattern)):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
