"""``BASE+head:DIR``: a loaded base model with a head (:mod:`.head`) on top, as one model.

Images: ``normalise(head(normalise(base image features)))``. :meth:`HeadModel.image_module`
composes the base's image module, the normalisation and the head, so the ONNX and OpenVINO
runtimes (and int8) run the whole thing as one exported graph through the usual engine.
A ``text`` head (align) leaves the images to the base, unchanged.

Text, by the head's kind:

- ``projection`` (train): ``normalise(head(base text vector))``;
- ``text`` (align): ``normalise(head(base.text_features(t)))``;
- ``student`` (distill): the teacher's own text vectors (the student's images live in the
  teacher's space); the teacher is loaded by name on the first text query, and only then.

A head is only valid on the weights it was fitted on: a base whose fingerprint differs from
the one the head recorded is refused when the model loads.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import LookalikeError, ModelLoadError, UnknownModel
from .base import EmbeddingModel, normalise_rows
from .head import LoadedHead, ProjectionHead
from .names import HEAD_MARK, parse_model_name, read_head_json

__all__ = ["HeadModel", "name_has_text", "check_teacher"]


class HeadModel(EmbeddingModel):
    """A base :class:`EmbeddingModel` and a :class:`~.head.LoadedHead`; see the module docstring."""

    def __init__(self, base: EmbeddingModel, head: LoadedHead) -> None:
        super().__init__(base.device)
        self.base = base
        self.head = head
        self.kind = head.config.kind
        _check_fits(base, head)
        self.model_id = f"{base.model_id}{HEAD_MARK}{head.id}"
        self.dim = base.dim if self.kind == "text" else head.config.out_dim
        self.preprocess = base.preprocess
        self.channels_last = base.channels_last
        self.text_dynamic_length = base.text_dynamic_length
        self.modalities = frozenset({"image", "text"}) if self._has_text() else frozenset({"image"})
        head.module.to(self.device).eval()
        self._teacher: EmbeddingModel | None = None
        self._teacher_lock = threading.Lock()

    def _has_text(self) -> bool:
        if self.kind == "text":
            return self.base.supports_text  # align needs the base's text tower to fit anything
        if self.kind == "student":
            try:
                return name_has_text(str(self.head.config.teacher))
            except LookalikeError:  # a teacher gone from disk: images still work; a text query says why
                return True
        return self.base.supports_text

    # ----------------------------------------------------------------- identity
    def _weights_identity(self) -> str:
        # The base's fp32 vectors and the head's weights and config decide this model's vectors.
        return f"{self.base.fp32_fingerprint()}:{self.head.digest}"

    # ----------------------------------------------------------------- images
    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.base._forward_images(pixels)
        if self.kind == "text":
            return features
        return self.head.module(torch.nn.functional.normalize(features.float(), dim=-1))

    def image_module(self) -> torch.nn.Module:
        """The base's image module, normalisation and head as one module (what runtimes export)."""
        if self.kind == "text":
            return self.base.image_module()
        return _ComposedTower(self.base.image_module(), self.head.module).eval()

    # ----------------------------------------------------------------- text
    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        if not self.supports_text:
            return super()._forward_text(texts)
        return torch.from_numpy(self.encode_text(texts, normalize=False)).to(self.device)

    def encode_text(self, texts: Sequence[str] | str, *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Texts into this model's image space (by the head's kind; see the module docstring).

        Raises:
            UnsupportedModality: the base (or a student's teacher) has no text tower.
            ModelLoadError: a student's teacher cannot be loaded, or is not the model it was
                distilled from.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not self.supports_text:
            super()._forward_text([])  # raises the explanation
        if self.kind == "student":
            return self.teacher.encode_text(texts, batch_size=batch_size, normalize=normalize)
        base = self._base_for_text()
        if self.kind == "text":
            features = base.text_features(texts, batch_size=batch_size)
        else:
            features = base.encode_text(texts, batch_size=batch_size)
        return self._through_head(features, normalize)

    def text_features(self, texts: Sequence[str] | str, *, batch_size: int = 64) -> np.ndarray:
        """A ``text`` head's input space is its base's text encoder; other kinds' is their image space."""
        if self.kind == "text":
            return self._base_for_text().text_features(texts, batch_size=batch_size)
        return self.encode_text(texts, batch_size=batch_size)

    @property
    def text_dim(self) -> int:
        return self.base.text_dim if self.kind == "text" else self.dim

    def _through_head(self, features: np.ndarray, normalize: bool) -> np.ndarray:
        module = self.head.module
        x = torch.from_numpy(normalise_rows(features)).to(self.device)
        with torch.inference_mode():
            out = module(x).float()
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def _base_for_text(self) -> EmbeddingModel:
        """The base, with this model's runtime for its text tower: on onnx/openvino the base's
        exported text graph (shared with the plain base model's cache) runs the text."""
        self.base.runtime = self.runtime if self.runtime in ("onnx", "openvino") else "torch"
        return self.base

    @property
    def teacher(self) -> EmbeddingModel:
        """A student's teacher, loaded on first use on this model's device (torch; text only).

        Raises:
            ModelLoadError: the teacher's weights are not the ones the student was distilled from.
        """
        if self._teacher is None:
            with self._teacher_lock:
                if self._teacher is None:
                    self._teacher = _load_teacher(self.head, self.device)
        return self._teacher

    def info(self) -> dict[str, Any]:
        """As :meth:`EmbeddingModel.info`, plus the head (id, kind, name, base)."""
        cfg = self.head.config
        return {**super().info(), "head": {"id": self.head.id, "kind": cfg.kind, "name": cfg.name, "base": cfg.base,
                                           **({"teacher": cfg.teacher} if cfg.teacher else {})}}


class _ComposedTower(torch.nn.Module):
    """``head(normalise(base(pixels)))``: one module, so the exporter sees both sets of weights."""

    def __init__(self, base: torch.nn.Module, head: ProjectionHead) -> None:
        super().__init__()
        self.base = base
        self.head = head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.normalize(self.base(pixels).float(), dim=-1))


def _check_fits(base: EmbeddingModel, head: LoadedHead) -> None:
    """Refuse a head fitted on other weights, or on vectors of another size."""
    cfg = head.config
    fix = (f"retrain the head on '{base.model_id}' (lookalike train / align / distill), or use it on the "
           f"model it was fitted on ({cfg.base})")
    if cfg.base_fingerprint not in (base.fp32_fingerprint(), base.fingerprint()):
        raise ModelLoadError(
            f"head {head.path} ('{head.id}') was fitted on {cfg.base} with fingerprint {cfg.base_fingerprint}, "
            f"but '{base.model_id}' now has fingerprint {base.fp32_fingerprint()}: the base model or its weights "
            f"changed, so the head's output would be meaningless; {fix}")
    expected = base.text_dim if cfg.kind == "text" else base.dim
    if cfg.in_dim != expected:
        side = "text features" if cfg.kind == "text" else "image vectors"
        raise ModelLoadError(f"head {head.path} takes {cfg.in_dim}-d vectors, but '{base.model_id}' gives "
                             f"{expected}-d {side}; {fix}")
    if cfg.kind == "text" and cfg.out_dim != base.dim:
        raise ModelLoadError(f"text head {head.path} maps into a {cfg.out_dim}-d image space, but "
                             f"'{base.model_id}' has {base.dim}-d image vectors; {fix}")


def _load_teacher(head: LoadedHead, device: torch.device) -> EmbeddingModel:
    from .registry import load_model

    cfg = head.config
    try:
        teacher = load_model(str(cfg.teacher), device=device, runtime="torch")
    except (ModelLoadError, UnknownModel) as exc:
        raise ModelLoadError(f"student head {head.path} answers text with its teacher '{cfg.teacher}', which "
                             f"could not be loaded: {exc}. Make the teacher available again (its weights "
                             "downloaded, its folder back in place) to search by text") from exc
    check_teacher(head, teacher)
    return teacher


def check_teacher(head: LoadedHead, teacher: EmbeddingModel) -> None:
    """Refuse a teacher whose weights are not those the student head was distilled from.

    Raises:
        ModelLoadError: naming both fingerprints and the fix.
    """
    cfg = head.config
    if cfg.teacher_fingerprint not in (teacher.fp32_fingerprint(), teacher.fingerprint()):
        raise ModelLoadError(
            f"student head {head.path} was distilled from '{cfg.teacher}' with fingerprint "
            f"{cfg.teacher_fingerprint}, but that model now has {teacher.fp32_fingerprint()}: its text vectors "
            "would not match the student's images; distill the student again from the teacher as it is now")


def name_has_text(name: str) -> bool:
    """Whether the model ``name`` answers text queries, from its name (and head files) alone."""
    spec = parse_model_name(name)
    if spec.head is not None:
        config = read_head_json(Path(spec.head)).get("config") or {}
        if config.get("kind") == "student" and config.get("teacher"):
            return name_has_text(str(config["teacher"]))
        if config.get("kind") == "text":
            return True
        return name_has_text(spec.base.canonical)
    return spec.backend != "timm"
