"""``reproject``: a head applied to a collection's stored vectors, written as a new collection.

The new collection's model is ``BASE+head:HEAD`` (:class:`~lookalike.models.head_model.HeadModel`):
its vectors are the head applied to the stored base vectors (a ``text`` head, which only maps
text queries, leaves them as they are), its items and metadata are the source's, and its index
is rebuilt (:mod:`lookalike.store.derive`). No image is read, so it takes seconds where
indexing again would take the time of decoding and embedding every image; the source is
only read. Images added to the new collection later go through the base and the head, as a
search's query images and texts do.

A head is only meaningful on the vectors it was fitted on: one whose recorded base
fingerprint differs from the collection's is refused before anything is loaded or written.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import CollectionMismatch, InvalidArgument
from ..models.names import HEAD_MARK
from ..store.collection import Collection
from ..store.derive import check_target, derive_collection
from ..store.model_files import precision_of

if TYPE_CHECKING:
    from ..models.head import LoadedHead
    from ..progress import ProgressCallback

__all__ = ["reproject"]


def reproject(collection: "Collection | str | os.PathLike[str]", head: "str | os.PathLike[str] | LoadedHead",
              out: str | os.PathLike[str], *, progress: "ProgressCallback | None" = None) -> Collection:
    """A new collection at ``out``: ``collection``'s items with ``head`` applied to their stored
    vectors, model ``BASE+head:HEAD``, index rebuilt; returned open. No image is decoded and
    ``collection`` (a :class:`Collection` or its folder) is left as it was.

    ``head`` is a head folder (written by ``lookalike train``, ``align`` or ``distill``) or a
    :class:`~lookalike.models.head.LoadedHead`. The new collection keeps a copy of the head, so
    it works after the folder is moved. Progress comes as ``derive`` events, then ``done``.

    Raises:
        CollectionMismatch: the head was fitted on another model's vectors (or on fp32 vectors,
            for an int8 collection).
        UnknownModel, ModelLoadError: ``head`` is not a readable head folder.
        CollectionExists, CollectionError: ``out`` holds a collection or other files.
    """
    from ..models.head import LoadedHead, apply_head, load_head
    from ..models.registry import load_model

    owned = not isinstance(collection, Collection)
    source = Collection.open(collection) if owned else collection
    try:
        check_target(source.path, out)  # before loading anything
        loaded = head if isinstance(head, LoadedHead) else load_head(head)
        _check_fits(source, loaded)
        # Torch on the CPU: only the model's identity and the head's weights are needed here.
        model = load_model(f"{source.manifest.model_id}{HEAD_MARK}{loaded.path}", device="cpu", runtime="torch")
        fitted = model.head  # type: ignore[attr-defined] - a HeadModel
        if fitted.id != loaded.id:
            raise InvalidArgument(f"head folder {loaded.path} now holds head '{fitted.id}', not the '{loaded.id}' "
                                  "given; load the head again (or pass its folder)")
        transform = None if fitted.config.kind == "text" else (lambda v: apply_head(fitted, v))
        report = derive_collection(source, out, model, transform, progress=progress)
    finally:
        if owned:
            source.close()
    return Collection.open(report.path, model=model)


def _check_fits(source: Collection, head: "LoadedHead") -> None:
    """Refuse a head whose base fingerprint is not the collection's (with how to get one that fits)."""
    cfg, manifest = head.config, source.manifest
    if cfg.base_fingerprint == manifest.fingerprint and precision_of(manifest.model) == "fp32":
        return
    model_id = manifest.model_id
    fix = (f"train a head on this collection's model, e.g. `lookalike train LABELLED --base {model_id} --out DIR`, "
           f"or reproject a collection indexed with {cfg.base}")
    if precision_of(manifest.model) == "int8":
        raise CollectionMismatch(
            f"{source.path} holds int8 vectors of '{model_id}' (fingerprint {manifest.fingerprint}); head "
            f"{head.path} ('{head.id}') maps fp32 vectors of '{cfg.base}' (fingerprint {cfg.base_fingerprint}), "
            "and a head model runs on an fp32 base. Index the images with the head model itself "
            f"(lookalike index FOLDER --collection NEW.lkl --model {cfg.base}+head:{head.path}), or into an fp32 "
            f"collection (--model {model_id} --precision fp32) and reproject that")
    raise CollectionMismatch(
        f"{source.path} holds vectors of '{model_id}' (fingerprint {manifest.fingerprint}), but head {head.path} "
        f"('{head.id}') was fitted on vectors of '{cfg.base}' (fingerprint {cfg.base_fingerprint}): applied to "
        f"these vectors its output would be meaningless. {fix[0].upper()}{fix[1:]}")
