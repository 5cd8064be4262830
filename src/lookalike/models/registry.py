"""Loading a model by name: the name is parsed by :mod:`.names` (no torch), then the
backend module is imported and builds the model."""

from __future__ import annotations

from typing import Callable

import torch

from .base import EmbeddingModel
from .names import DEFAULT_MODEL, ModelSpec, parse_model_name

__all__ = ["load_model", "parse_model_name"]


def _loader(backend: str) -> Callable[[ModelSpec, str | torch.device | None], EmbeddingModel]:
    if backend == "lite":
        from .lite import LiteModel

        return lambda spec, device: LiteModel(device)
    if backend == "openclip":
        from .openclip import OpenClipModel

        return OpenClipModel.from_spec
    from .timm import TimmModel

    return TimmModel.from_spec


def load_model(name: str = DEFAULT_MODEL, *, device: str | torch.device | None = None) -> EmbeddingModel:
    """Load a model by name (see :func:`parse_model_name`) onto ``device`` (default: best available).

    Raises:
        UnknownModel: the name does not parse or does not exist.
        MissingExtra: the backend's optional package is not installed.
        ModelLoadError: the weights could not be loaded (e.g. not downloaded and offline).
    """
    spec = parse_model_name(name)
    return _loader(spec.backend)(spec, device)
