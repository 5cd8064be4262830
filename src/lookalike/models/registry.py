"""Loading a model by name: the name is parsed by :mod:`.names` (no torch), then the
backend module is imported and builds the model, which :mod:`.runtime_setup` puts on its
runtime and precision."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .base import EmbeddingModel
from .names import DEFAULT_MODEL, ModelSpec, parse_model_name
from .runtime_setup import check_settings, configure

if TYPE_CHECKING:
    from ..images.decode import ImageSource

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


def load_model(name: str = DEFAULT_MODEL, *, device: str | torch.device | None = None, runtime: str | None = None,
               precision: str | None = None,
               calibration: "Sequence[ImageSource] | str | os.PathLike[str] | None" = None,
               compile: bool = False) -> EmbeddingModel:
    """Load a model by name (see :func:`parse_model_name`) onto ``device`` (default: best available).

    Args:
        runtime: ``torch``, ``onnx``, ``openvino`` or ``auto`` (measure once on this machine, keep
            the fastest); None means ``$LOOKALIKE_RUNTIME``, else ``auto``.
        precision: ``fp32`` (default; the same vectors on every runtime) or ``int8`` (a quantized
            image tower, onnx or openvino only; its vectors, and fingerprint, are its own).
        calibration: for int8, the calibration images (a list, or a folder), or the path of an
            int8 ``.onnx`` quantized before (what a collection keeps).
        compile: ``torch.compile`` the torch runtime's forward pass.

    Raises:
        UnknownModel: the name does not parse or does not exist.
        InvalidArgument: an unknown runtime or precision, or settings that do not go together.
        MissingExtra: the backend's or runtime's optional package is not installed.
        ModelLoadError: the weights could not be loaded (e.g. not downloaded and offline), or the
            ONNX export does not reproduce torch's vectors.
    """
    # Checked before loading: a typo must not cost a model load.
    check_settings(runtime, precision, calibration, compile)
    spec = parse_model_name(name)
    model = _loader(spec.backend)(spec, device)
    return configure(model, runtime=runtime, precision=precision, calibration=calibration, compile=compile)
