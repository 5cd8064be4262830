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

        return lambda spec, device: LiteModel(device, size=int(spec.tag) if spec.tag else 224)
    if backend == "openclip":
        from .openclip import OpenClipModel

        return OpenClipModel.from_spec
    from .timm import TimmModel

    return TimmModel.from_spec


def _load_head_model(spec: ModelSpec, device: str | torch.device | None) -> EmbeddingModel:
    """``BASE+head:DIR``: the base on ``device`` (fp32, torch: the runtime and precision asked for
    apply to the composed model), then the head, checked against the base's fingerprint."""
    from .head import load_head
    from .head_model import HeadModel

    head = load_head(spec.head)  # before the base: a broken head folder must not cost a model load
    base = _loader(spec.backend)(spec.base, device)
    return HeadModel(base, head)


def load_model(name: str = DEFAULT_MODEL, *, device: str | torch.device | None = None, runtime: str | None = None,
               precision: str | None = None,
               calibration: "Sequence[ImageSource] | str | os.PathLike[str] | None" = None,
               compile: bool = False) -> EmbeddingModel:
    """Load a model by name (see :func:`parse_model_name`) onto ``device`` (default: best available).

    ``BASE+head:DIR`` gives a :class:`~.head_model.HeadModel`: the base, with the head on top.

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
    model = _load_head_model(spec, device) if spec.head is not None else _loader(spec.backend)(spec, device)
    return configure(model, runtime=runtime, precision=precision, calibration=calibration, compile=compile)
