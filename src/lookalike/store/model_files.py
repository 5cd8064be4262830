"""How a collection's model runs: which runtime and precision, and the int8 file it keeps.

fp32 vectors are the same on every runtime (an export is checked against torch to cosine
0.9999), so an fp32 collection records the runtime it was built with for ``info`` only, and
each process runs whatever is fastest for it (``auto``, or ``--runtime``). An int8 model's
vectors depend on its calibration and on the runtime's int8 kernels, so an int8 collection
is tied to both: its manifest names them, the model's fingerprint covers them, and the
collection keeps its own copy of the quantized model (``models/``), so queries work on
another machine or after the model cache is cleared.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CollectionCorrupt, CollectionMismatch
from ..fsutil import atomic_writer
from ..models.lazy import LazyModel

if TYPE_CHECKING:
    from ..models.base import EmbeddingModel
    from .manifest import Manifest

__all__ = ["MODELS_DIR", "keep_model_files", "keep_int8_model", "lazy_model", "load_named", "check_request",
           "precision_of"]

#: The collection's folder for model files it cannot do without (an int8 model).
MODELS_DIR = "models"


def keep_model_files(root: Path, model: "EmbeddingModel") -> dict[str, Any]:
    """Copy into the collection at ``root`` the files its model cannot be loaded without (an
    int8 model's graph); returns the manifest's model entry, which names them.

    Written before the manifest, so a collection never names a file it lacks.
    """
    return keep_int8_model(root, model)


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
    if precision_of(entry) != "int8":
        return LazyModel(model_id, fingerprint, owner=owner, device=device, runtime=runtime, compile=compile)
    path = root / str(entry.get("int8_file", ""))
    if not entry.get("int8_file") or not path.is_file():
        raise CollectionCorrupt(
            f"{owner}: this int8 collection's quantized model {path} is missing, so its vectors cannot be "
            "reproduced for queries. Restore the file from a backup, or rebuild the collection."
        )
    return LazyModel(model_id, fingerprint, owner=owner, device=device, runtime=str(entry.get("runtime")),
                     precision="int8", calibration=path, compile=compile)


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
