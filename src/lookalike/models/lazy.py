"""A model that loads on first use, checked against the fingerprint its vectors were made with.

A collection holds one of these instead of a model, so opening a collection never imports
torch, and a search by item id never loads weights. Importing this module is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CollectionMismatch

if TYPE_CHECKING:
    from .base import EmbeddingModel

__all__ = ["LazyModel"]


class LazyModel:
    """The model named ``model_id``, loaded by :meth:`get` the first time it is needed.

    ``fingerprint`` is what the model must still have (its weights and preprocessing);
    ``owner`` names what holds the vectors (a collection's path), for error messages.
    """

    def __init__(self, model_id: str, fingerprint: str, *, owner: str, device: str | None = None) -> None:
        self.model_id = model_id
        self.fingerprint = fingerprint
        self.owner = owner
        self.device = device
        self.loaded: EmbeddingModel | None = None

    def get(self) -> "EmbeddingModel":
        """The model, loading it now if needed.

        Raises:
            CollectionMismatch: the weights or preprocessing changed since the vectors were made.
            ModelLoadError, MissingExtra: as :func:`~lookalike.models.registry.load_model`.
        """
        if self.loaded is None:
            # Imported here: it imports torch, which holding a LazyModel must not.
            from .registry import load_model

            self.use(load_model(self.model_id, device=self.device))
        assert self.loaded is not None
        return self.loaded

    def use(self, model: "EmbeddingModel") -> None:
        """Take an already loaded model, after checking that it is the right one.

        Raises:
            CollectionMismatch: another model, or the same one with other weights.
        """
        if model.model_id != self.model_id:
            raise self.mismatch(model.model_id)
        if model.fingerprint() != self.fingerprint:
            raise CollectionMismatch(
                f"{self.owner}: model '{model.model_id}' now has fingerprint {model.fingerprint()}, but the "
                f"collection was built with {self.fingerprint}: its weights or preprocessing changed. "
                "Rebuild into a new collection: lookalike index FOLDER --collection NEW.lkl"
            )
        self.loaded = model

    def mismatch(self, requested: str) -> CollectionMismatch:
        """The error for vectors that cannot be mixed with model ``requested``."""
        return CollectionMismatch(
            f"{self.owner} was built with model '{self.model_id}' (fingerprint {self.fingerprint}); its vectors "
            f"cannot be mixed with '{requested}'. Index into a new collection instead: "
            f"lookalike index FOLDER --collection NEW.lkl --model {requested}"
        )
