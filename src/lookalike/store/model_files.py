"""How a collection's model runs: which runtime and precision, and the int8 file it keeps.

fp32 vectors are the same on every runtime (an export is checked against torch to cosine
0.9999), so an fp32 collection records the runtime it was built with for ``info`` only, and
each process runs whatever is fastest for it (``auto``, or ``--runtime``). An int8 model's
vectors depend on its calibration and on the runtime's int8 kernels, so an int8 collection
is tied to both: its manifest names them, the model's fingerprint covers them, and the
collection keeps its own copy of the quantized model (``models/``), so queries work on
another machine or after the model cache is cleared.

A head model (``BASE+head:DIR``, :mod:`lookalike.models.head_model`) is kept the same way:
the collection copies the head folder to ``models/head-<head id>/`` and its manifest records
that folder (``head_dir``), so the collection loads ``BASE+head:<its copy>`` and works after
the original folder is moved or deleted. The head's id (from its weights and config) is the
model id's last part, so every copy is the same model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CollectionCorrupt, CollectionMismatch
from ..fsutil import atomic_writer
from ..models.lazy import LazyModel
from ..models.names import HEAD_FILE, HEAD_MARK

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel
    from .manifest import Manifest

__all__ = ["MODELS_DIR", "keep_model_files", "keep_head", "keep_int8_model", "lazy_model", "load_named",
           "check_request", "precision_of"]

#: The collection's folder for model files it cannot do without (an int8 model).
MODELS_DIR = "models"


def keep_model_files(root: Path, model: "EmbeddingModel") -> dict[str, Any]:
    """Copy into the collection at ``root`` the files its model cannot be loaded without (an
    int8 model's graph); returns the manifest's model entry, which names them.

    Written before the manifest, so a collection never names a file it lacks.
    """
    return keep_head(root, model, keep_int8_model(root, model))


def keep_head(root: Path, model: "EmbeddingModel", info: dict[str, Any]) -> dict[str, Any]:
    """Copy a head model's head folder into ``root/models/head-<id>/`` (``head.json`` last, as
    a head is saved); ``info`` plus ``head_dir`` naming it. Other models: ``info`` as given."""
    head = getattr(model, "head", None)
    folder = getattr(head, "path", None)
    if folder is None or HEAD_MARK not in str(info.get("model_id", "")):
        return info
    name = f"{MODELS_DIR}/head-{head.id}"  # type: ignore[union-attr]
    files = sorted((p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.name == HEAD_FILE)
    for path in files:
        with open(path, "rb") as src, atomic_writer(root / name / path.name) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return {**info, "head_dir": name}


def keep_int8_model(root: Path, model: "EmbeddingModel") -> dict[str, Any]:
    """Copy an int8 model's file into the collection; returns what the manifest records of it.

    Written before the manifest, so a collection never names a file it lacks.
    """
    info = model.info()
    source = getattr(model, "int8_path", None)
    if info.get("precision", "fp32") != "int8" or source is None:
        return info
    name = f"{MODELS_DIR}/image-int8-{info['fingerprint']}.onnx"
    with open(source, "rb") as src, atomic_writer(root / name) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return {**info, "int8_file": name, "fp32_fingerprint": model.fp32_fingerprint()}


def load_named(model: "str | EmbeddingModel", device: str | None, **how: Any) -> "EmbeddingModel":
    """``model`` loaded by name with ``how`` (runtime, precision...), or the loaded model as given."""
    if isinstance(model, str):
        # Imported here, not at the top: it imports torch, which opening a collection never needs.
        from ..models.registry import load_model

        return load_model(model, device=device, **how)
    return model


def precision_of(model_info: dict[str, Any]) -> str:
    """The precision a manifest's model entry records (collections before issue 12: fp32)."""
    return str(model_info.get("precision") or "fp32")


def lazy_model(root: Path, entry: dict[str, Any], *, device: str | None, runtime: str | None = None,
               compile: bool = False) -> LazyModel:
    """The model a manifest's model ``entry`` describes, to load on first use with the runtime
    and precision it needs (the collection lives at ``root``).

    Raises:
        CollectionCorrupt: an int8 collection whose model file is missing.
    """
    owner = str(root)
    model_id, fingerprint = str(entry["model_id"]), str(entry["fingerprint"])
    name = _loadable_name(root, entry)
    if precision_of(entry) != "int8":
        return LazyModel(model_id, fingerprint, owner=owner, device=device, runtime=runtime, compile=compile,
                         name=name)
    path = root / str(entry.get("int8_file", ""))
    if not entry.get("int8_file") or not path.is_file():
        raise CollectionCorrupt(
            f"{owner}: this int8 collection's quantized model {path} is missing, so its vectors cannot be "
            "reproduced for queries. Restore the file from a backup, or rebuild the collection."
        )
    return LazyModel(model_id, fingerprint, owner=owner, device=device, runtime=str(entry.get("runtime")),
                     precision="int8", calibration=path, compile=compile, name=name)


def _loadable_name(root: Path, entry: dict[str, Any]) -> str:
    """The name that loads the model of a manifest's ``entry``: its id, or for a head model
    ``BASE+head:<the collection's copy of the head>``.

    Raises:
        CollectionCorrupt: the head copy is missing.
    """
    model_id = str(entry["model_id"])
    if not entry.get("head_dir"):
        return model_id
    folder = root / str(entry["head_dir"])
    if not (folder / HEAD_FILE).is_file():
        raise CollectionCorrupt(
            f"{root}: this collection's head {folder} is missing, so its model {model_id} cannot embed queries "
            "or new images. Restore the folder from a backup, or copy the head folder it was made with there."
        )
    return f"{model_id.rsplit(HEAD_MARK, 1)[0]}{HEAD_MARK}{folder}"


def check_request(owner: str, manifest: "Manifest", runtime: str | None, precision: str | None) -> None:
    """Refuse a runtime or precision that would make vectors unlike the collection's.

    Raises:
        CollectionMismatch: another precision, or another runtime for an int8 collection.
    """
    entry = manifest.model
    built = precision_of(entry)
    if precision is not None and precision != built:
        raise CollectionMismatch(
            f"{owner} was built at precision {built}; vectors made at {precision} would not match its "
            f"{manifest.model_id} vectors. Omit --precision to use {built}, or index into a new collection: "
            f"lookalike index FOLDER --collection NEW.lkl --precision {precision}"
        )
    if built == "int8" and runtime not in (None, "auto", entry.get("runtime")):
        raise CollectionMismatch(
            f"{owner} holds int8 vectors made by the {entry.get('runtime')} runtime, whose int8 arithmetic "
            f"differs from {runtime}'s. Omit --runtime (the collection uses {entry.get('runtime')}), or index "
            f"into a new collection: lookalike index FOLDER --collection NEW.lkl --runtime {runtime} --precision int8"
        )
