"""A model that loads on first use, checked against the fingerprint its vectors were made with.

A collection holds one of these instead of a model, so opening a collection never imports
torch, and a search by item id never loads weights. Importing this module is cheap.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import CollectionMismatch

if TYPE_CHECKING:
    from ..images.decode import ImageSource
    from .base import EmbeddingModel

__all__ = ["LazyModel"]


class LazyModel:
    """The model named ``model_id``, loaded by :meth:`get` the first time it is needed.

    ``fingerprint`` is what the model must still have (its weights and preprocessing, and for
    int8 the precision, runtime and calibration); ``owner`` names what holds the vectors (a
    collection's path), for error messages. ``runtime``, ``precision``, ``calibration`` and
    ``compile`` are passed to :func:`~lookalike.models.registry.load_model`. ``name`` is what
    to load when the id is not itself a loadable name (a head model: ``BASE+head:<its folder>``).
    """

    def __init__(self, model_id: str, fingerprint: str, *, owner: str, device: str | None = None,
                 runtime: str | None = None, precision: str = "fp32",
                 calibration: "Sequence[ImageSource] | str | os.PathLike[str] | None" = None,
                 compile: bool = False, name: str | None = None) -> None:
        self.model_id = model_id
        self.name = name or model_id
        self.fingerprint = fingerprint
        self.owner = owner
        self.device = device
        self.runtime = runtime
        self.precision = precision or "fp32"
        self.calibration = calibration
        self.compile = compile
        self.loaded: EmbeddingModel | None = None

    def get(self) -> "EmbeddingModel":
        """The model, loading it now if needed.

        Raises:
            CollectionMismatch: the weights or preprocessing changed since the vectors were made.
            ModelLoadError, MissingExtra, InvalidArgument: as :func:`~lookalike.models.registry.load_model`.
        """
        if self.loaded is None:
            # Imported here: it imports torch, which holding a LazyModel must not.
            from .registry import load_model

            self.use(load_model(self.name, device=self.device, runtime=self.runtime, precision=self.precision,
                                calibration=self.calibration, compile=self.compile))
        assert self.loaded is not None
        return self.loaded

    def use(self, model: "EmbeddingModel") -> None:
        """Take an already loaded model, after checking that it is the right one.

        Raises:
            CollectionMismatch: another model, the same one with other weights, or another
                precision, runtime or calibration (int8).
        """
        if model.model_id != self.model_id:
            raise self.mismatch(model.model_id)
        if model.fingerprint() != self.fingerprint:
            raise CollectionMismatch(self._difference(model))
        self.loaded = model

    def _difference(self, model: "EmbeddingModel") -> str:
        """What differs between ``model`` and what the vectors were made with, and the fix."""
        got = _settings(getattr(model, "precision", "fp32"), getattr(model, "runtime", None),
                        getattr(model, "calibration", None))
        if self.precision == "int8" or getattr(model, "precision", "fp32") != "fp32":
            want = _settings(self.precision, self.runtime, _digest_of(self.calibration))
            if self.precision != "int8" and model.fp32_fingerprint() == self.fingerprint:
                return (f"{self.owner} was built at precision fp32; the model given runs {got}, whose vectors "
                        f"differ. Load it at fp32 (precision='fp32', or drop --precision int8), or index into a "
                        f"new collection: lookalike index FOLDER --collection NEW.lkl --precision int8")
            return (f"{self.owner} was built at {want} (fingerprint {self.fingerprint}); the model given runs {got} "
                    f"(fingerprint {model.fingerprint()}). Load the model the collection names (open it without "
                    f"giving a model), or index into a new collection: lookalike index FOLDER --collection NEW.lkl")
        return (f"{self.owner}: model '{model.model_id}' now has fingerprint {model.fingerprint()}, but the "
                f"collection was built with {self.fingerprint}: its weights or preprocessing changed. "
                "Rebuild into a new collection: lookalike index FOLDER --collection NEW.lkl")

    def mismatch(self, requested: str) -> CollectionMismatch:
        """The error for vectors that cannot be mixed with model ``requested``."""
        return CollectionMismatch(
            f"{self.owner} was built with model '{self.model_id}' (fingerprint {self.fingerprint}); its vectors "
            f"cannot be mixed with '{requested}'. Index into a new collection instead: "
            f"lookalike index FOLDER --collection NEW.lkl --model {requested}"
        )


def _settings(precision: str, runtime: str | None, calibration: str | None) -> str:
    """``precision int8 with runtime openvino, calibration ab12``; fp32 names no calibration."""
    text = f"precision {precision}"
    if runtime and runtime != "auto":
        text += f" with runtime {runtime}"
    if precision == "int8" and calibration:
        text += f", calibration {calibration}"
    return text


def _digest_of(calibration: Any) -> str | None:
    """A short name for the calibration a LazyModel was given: the digest an int8 graph records
    (read only here, on the error path: it imports onnx), or the path itself."""
    if calibration is None:
        return None
    if not isinstance(calibration, (str, os.PathLike)):
        return f"{len(calibration)} images"
    path = os.fspath(calibration)
    if not path.lower().endswith(".onnx"):
        return path
    try:
        from .quantize import read_int8_metadata

        recorded = read_int8_metadata(path).get("lookalike.calibration")
    except Exception:  # noqa: BLE001 - a message helper must not replace the real error
        recorded = None
    # The cache names its graphs image-int8-<runtime>-<digest>.onnx.
    named = re.match(r"image-int8-[a-z]+-([0-9a-f]+)\.onnx$", os.path.basename(path))
    return recorded or (named.group(1) if named else path)
