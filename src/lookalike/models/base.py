"""The interface every embedding model implements.

A backend subclasses :class:`EmbeddingModel` and provides two forward functions; the base
class supplies batching, the parallel decode pipeline, device placement, reduced precision
on CUDA, L2 normalisation and the fingerprint that collections use to refuse mixing models.

The image forward pass runs through an engine (:mod:`.engine`): torch itself, or the
exported graph on ONNX Runtime or OpenVINO; :mod:`.runtime_setup` chooses it when the model
is loaded. fp32 vectors are the same on every runtime (within cosine 0.9999), so the fp32
fingerprint does not depend on it; an int8 model's does.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
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

__all__ = ["EmbeddingModel", "ModelInfo", "Modality", "local_folder_identity", "load_failure", "normalise_rows",
           "ForwardModule"]

Modality = str  # "image" or "text"

#: Held while an engine is built (an export may take seconds); reentrant, as building one
#: tower's engine never waits for another's.
_BUILD_LOCK = threading.RLock()


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

    #: Whether an exported text tower takes inputs of any length (padding to the longest text),
    #: or a fixed context length (CLIP's tokenizer always pads to it).
    text_dynamic_length: bool = True

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = resolve_device(device)
        self._amp_dtype = autocast_dtype(self.device)
        self._transform: Callable[[Any], np.ndarray] | None = None
        #: The runtime the image tower runs on (resolved: torch, onnx or openvino), and at what precision.
        self.runtime: str = "torch"
        self.precision: str = "fp32"
        #: int8 only: the calibration images' digest, the quantized graph and its recipe number.
        self.calibration: str | None = None
        self.int8_path: Path | None = None
        self.recipe: int | None = None
        #: What ``auto`` measured on this machine to choose :attr:`runtime` (None when not measured).
        self.measurement: Any = None
        self.compile: bool = False
        self._engine: Any = None
        self._text_engine: Any = None

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

    def image_module(self) -> torch.nn.Module:
        """The image tower as a module (pixels -> features, not normalised), for ONNX export."""
        return ForwardModule(self._forward_images, getattr(self, "net", None))

    def text_module(self) -> torch.nn.Module:
        """The text tower as a module taking :meth:`tokenize_text`'s arrays, in that order, as
        positional tensors and returning features in the image space (not normalised)."""
        self._forward_text([])  # image-only models raise their explanation
        raise NotImplementedError(f"{type(self).__name__} has no exportable text tower")

    def tokenize_text(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The int64 arrays :meth:`text_module` takes for ``texts`` (tokenisation stays in Python)."""
        self._forward_text([])
        raise NotImplementedError(f"{type(self).__name__} has no exportable text tower")

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
        """A short digest of everything that determines the vectors: id, weights, preprocessing,
        and for int8 the precision, runtime, calibration and quantization recipe.

        fp32 vectors agree on every runtime, so an fp32 model's fingerprint is
        :meth:`fp32_fingerprint` whatever it runs on.
        """
        if self.precision == "fp32":
            return self.fp32_fingerprint()
        return _digest({**self._identity_payload(), "precision": self.precision, "runtime": self.runtime,
                        "calibration": self.calibration, "recipe": self.recipe})

    def fp32_fingerprint(self) -> str:
        """The fingerprint of this model's fp32 vectors (keys the export and measurement caches)."""
        return _digest(self._identity_payload())

    def _identity_payload(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "dim": self.dim,
            "preprocess": self.preprocess.to_dict(),
            "weights": self._weights_identity(),
        }

    @property
    def engine(self) -> Any:
        """The :class:`~.engine.ImageEngine` running the image tower (built on first use)."""
        if self._engine is None:
            with _BUILD_LOCK:  # two threads' first batches must not export twice
                if self._engine is None:
                    from .engine import build_image_engine

                    self._engine = build_image_engine(self, self.runtime, path=self.int8_path,
                                                      precision=self.precision, compile=self.compile)
        return self._engine

    def embed_pixels(self, pixels: np.ndarray | torch.Tensor, *, normalize: bool = True) -> np.ndarray:
        """Embed an already preprocessed ``(B, 3, H, W)`` batch; returns float32 ``(B, dim)``."""
        out = self.engine.run(pixels)
        return normalise_rows(out) if normalize else out

    def encode_images(
        self,
        images: Sequence[ImageSource] | ImageSource,
        *,
        batch_size: int = 32,
        normalize: bool = True,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
        gpu_decode: bool = False,
    ) -> np.ndarray:
        """Embed images given as paths, encoded bytes or PIL images.

        One image (a path, ``Path``, bytes or PIL image) is taken as a list of one.
        Returns a float32 ``(N, dim)`` array in input order, L2-normalised unless
        ``normalize=False``. Decoding runs in parallel and overlaps the forward pass.
        ``gpu_decode`` decodes JPEGs on the model's device (nvJPEG on CUDA) when the CPU
        cannot keep up; other images take the CPU path (:mod:`lookalike.pipeline.gpu_decode`).

        Raises:
            UnreadableImage: for the first image that cannot be decoded. To index a folder
                where some files may be bad, use :meth:`lookalike.Collection.add`, which
                records failures and carries on.
        """
        if isinstance(images, (str, bytes, os.PathLike)) or hasattr(images, "mode"):
            images = [images]  # one image, as encode_text takes one string
        return embed_sources(
            self, images, batch_size=batch_size, normalize=normalize, workers=workers, progress=progress,
            gpu_decode=gpu_decode,
        )

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
            if self.runtime in ("onnx", "openvino"):
                # The text tower runs fp32 on the exported graph, whatever the image precision.
                feats = self.text_engine.run_inputs(self.tokenize_text(chunk))
                chunks.append(normalise_rows(feats) if normalize else feats)
                continue
            with torch.inference_mode(), self._autocast():
                out = self._forward_text(chunk)
            chunks.append(_finish(out, normalize))
        return np.concatenate(chunks, axis=0)

    def text_features(self, texts: Sequence[str] | str, *, batch_size: int = 64) -> np.ndarray:
        """Texts in the text encoder's own space: float32 ``(N, text_dim)``, rows normalised.

        What a ``text`` head (``lookalike align``) maps into the image space. For a CLIP-style
        model this is :meth:`encode_text` (its text tower lands in the image space already);
        ``lite`` gives MiniLM's sentence embeddings, before its bridge.

        Raises:
            UnsupportedModality: the model has no text tower.
        """
        return self.encode_text(texts, batch_size=batch_size)

    @property
    def text_dim(self) -> int:
        """The dim of :meth:`text_features` (:attr:`dim` unless a backend says otherwise)."""
        return self.dim

    @property
    def text_engine(self) -> Any:
        """The exported text tower on :attr:`runtime` (onnx or openvino), built on first use."""
        if self._text_engine is None:
            with _BUILD_LOCK:
                if self._text_engine is None:
                    from .engine import build_text_engine

                    self._text_engine = build_text_engine(self, self.runtime)
        return self._text_engine

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable description, stored in collection manifests."""
        return {
            "model_id": self.model_id,
            "dim": self.dim,
            "modalities": sorted(self.modalities),
            "preprocess": self.preprocess.to_dict(),
            "fingerprint": self.fingerprint(),
            "runtime": self.runtime,
            "precision": self.precision,
            **({"calibration": self.calibration} if self.precision == "int8" else {}),
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim}, device={self.device}, "
                f"runtime={self.runtime}, precision={self.precision})")


class ForwardModule(torch.nn.Module):
    """A backend's forward function as a module, with its network registered so the exporter
    sees the weights as parameters."""

    def __init__(self, forward: Callable[..., torch.Tensor], net: torch.nn.Module | None) -> None:
        super().__init__()
        self.net = net
        self._fn = forward
        # Eval mode, always: the exporter restores a module's mode after export, recursively, so
        # a wrapper left in training mode would put the backend's BatchNorms into training.
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self._fn(*inputs)


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def normalise_rows(out: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (as ``torch.nn.functional.normalize``: norms floored at 1e-12)."""
    out = np.asarray(out, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


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
