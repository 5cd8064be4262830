"""Exporting a collection's embeddings, and importing embeddings made elsewhere.

Two layouts, both written in bounded-memory chunks so that a collection of any size exports
and imports with flat memory:

* ``parquet``: ``part-00000.parquet``, ... with row groups; columns ``id``, ``path`` (the
  item's identity: a path, a URL or ``shard#member``), ``vector`` (a fixed-size list of
  float32 or float16), the item's ``width``, ``height``, ``size``, ``mtime_ns``, ``hash``,
  its image traits, and one column per metadata key (``caption`` included).
* ``clip-retrieval``: ``img_emb/img_emb_N.npy`` with ``metadata/metadata_N.parquet`` (an
  ``image_path`` column, then the same columns as above), as clip-retrieval's inference
  writes them, so that autofaiss and clip-retrieval's back end load the export as it is.

Both carry ``lookalike-export.json``, written last (an export without it is unfinished):
the model that made the vectors, the columns, and each shard's row count and a digest of its
identities. :func:`import_embeddings` reads either layout (or one parquet file, or a
clip-retrieval output folder from elsewhere) and verifies it before writing anything: row
counts per shard, shard pairs, identities, dimension, the model, finite vectors. It refuses
misaligned input, rather than importing metadata shifted against its embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtra

if TYPE_CHECKING:
    from ..progress import ProgressCallback
    from .collection import Collection

__all__ = ["export_collection", "import_embeddings", "create_for_import", "ExportReport", "ImportReport", "FORMATS",
           "SIDECAR"]

#: The export layouts, and the vector dtype each writes unless told otherwise.
FORMATS = {"parquet": "float32", "clip-retrieval": "float16"}
DTYPES = ("float32", "float16")
SIDECAR = "lookalike-export.json"
FORMAT_NAME = "lookalike-export"
#: Bump on any change an older importer could misread.
FORMAT_VERSION = 1
#: Default rows per parquet file or clip-retrieval shard.
ROWS_PER_FILE = 1_000_000
#: Vector bytes per chunk (a parquet row group): memory stays flat at any collection size.
CHUNK_BYTES = 64 << 20

#: Item fields exported as columns (besides the identity and the vector), in order.
ITEM_FIELDS = ("id", "width", "height", "size", "mtime_ns", "hash")
TRAIT_FIELDS = ("phash", "dhash", "phash_mirror", "sharpness", "taken", "exif_tags")
#: The identity column of each layout.
IDENTITY = {"parquet": "path", "clip-retrieval": "image_path"}


@dataclass
class ExportReport:
    """What :func:`export_collection` wrote: ``files`` are relative to ``out_dir``."""

    out_dir: Path
    format: str
    dtype: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ImportReport:
    """What :func:`import_embeddings` did.

    ``added`` items are new paths, ``updated`` paths were in the collection already (a re-run
    of the same import updates, never duplicates); ``reused`` rows share a vector already
    stored (same content hash, or the same vector at the same path), so they add no vector
    row. ``renormalised`` rows were not unit length within 1e-5 (float16 exports always are
    off by a little); ``far_from_unit`` were off by more than 1e-2, which suggests vectors that
    were never normalised for cosine search. ``warnings`` are for people to read.
    """

    source: Path
    format: str
    shards: int = 0
    rows: int = 0
    added: int = 0
    updated: int = 0
    reused: int = 0
    renormalised: int = 0
    far_from_unit: int = 0
    model_checked: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_pyarrow(purpose: str) -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or MissingExtra naming the ``scale`` extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtra("pyarrow", "scale", purpose) from exc
    return pa, pq


def export_collection(coll: "Collection", out_dir: str | os.PathLike[str], *, format: str = "parquet",
                      dtype: str | None = None, rows_per_file: int = ROWS_PER_FILE, overwrite: bool = False,
                      progress: "ProgressCallback | None" = None) -> ExportReport:
    """Write every embedded item of ``coll`` (id, identity, vector, fields, metadata) to ``out_dir``.

    ``format`` is ``parquet`` or ``clip-retrieval``; ``dtype`` is ``float32`` or ``float16``
    (default: float32 for parquet, float16 for clip-retrieval, as clip-retrieval writes). The
    collection is read in one snapshot: items added meanwhile are not exported, and every file
    agrees with every other. ``out_dir`` must be empty or missing; ``overwrite`` replaces a
    lookalike export already there. Each file is written atomically and the sidecar last.

    Raises:
        InvalidArgument: an unknown format or dtype, ``rows_per_file`` below 1, or an
            ``out_dir`` holding other files.
        MissingExtra: pyarrow is not installed.
    """
    from .exchange_export import write_export

    return write_export(coll._storage, Path(out_dir), fmt=format, dtype=dtype, rows_per_file=rows_per_file,
                        overwrite=overwrite, progress=progress)


def import_embeddings(coll: "Collection", in_dir: str | os.PathLike[str], *, identity: str | None = None,
                      progress: "ProgressCallback | None" = None) -> ImportReport:
    """Add the items of an export (either layout, a single parquet file, or clip-retrieval
    output from elsewhere) to ``coll``, row for row, after verifying all of it.

    Before anything is written: every shard's embeddings and metadata have the same number of
    rows (and, with a sidecar, the numbers and identities it recorded); every vector file has
    its metadata partner; identities are present and unique; the vectors are finite, nonzero
    and of the collection's dimension; and the sidecar's model is the collection's. Vectors
    are then L2-normalised and written in batches; an item whose path is already in the
    collection is updated in place (so a re-run changes nothing), and ids recorded by a
    lookalike export are kept where they are free. Without a sidecar the model that made the
    vectors is unknown: only the dimension is checked, and the report says so; ``identity``
    then names the column holding each item's identity (default: ``image_path``, ``path`` or
    ``url``, whichever comes first; clip-retrieval's webdataset mode stores sample keys in
    ``image_path``, so ``url`` names those items better).

    Raises:
        InvalidArgument: misaligned, incomplete or malformed input (the message names the file).
        CollectionMismatch: the vectors come from another model, or have another dimension.
        CollectionError: another process is writing to the collection.
        MissingExtra: pyarrow is not installed.
    """
    from .exchange_import import run_import

    return run_import(coll._storage, coll._model, Path(in_dir), identity=identity, progress=progress)


def create_for_import(path: str | os.PathLike[str], source: str | os.PathLike[str], *, model: str | None = None,
                      device: str | None = None) -> "Collection":
    """A new, empty collection at ``path`` for the vectors at ``source``: for a lookalike export,
    with the model its sidecar records (nothing is loaded: the model loads when a query first
    needs it); for data from elsewhere, with ``model``, which must then be given.

    Raises:
        CollectionExists: ``path`` holds a collection already (open it instead).
        CollectionMismatch: ``model`` is not the model the export records.
        InvalidArgument: ``source`` records no model and ``model`` is None.
    """
    from ..errors import CollectionError, CollectionExists, InvalidArgument
    from ..fsutil import user_path
    from ..models.lazy import LazyModel
    from ..models.names import parse_model_name
    from ..version import __version__
    from .collection import Collection
    from .exchange_layout import read_sidecar
    from .manifest import Manifest
    from .storage import MANIFEST, Storage

    root, src = Path(user_path(path)), Path(source)
    sidecar = read_sidecar(src) if src.is_dir() else None
    if sidecar is None:
        if model is None:
            raise InvalidArgument(f"{src} does not record the model that made its vectors: name it (the same model, "
                                  f"e.g. --model openclip:ViT-B-32) to create {root}")
        return Collection.create(root, model=model, device=device)
    recorded = dict(sidecar["model"])
    if model is not None and parse_model_name(model).model_id != recorded.get("model_id"):
        raise LazyModel(str(recorded.get("model_id")), str(recorded.get("fingerprint")), owner=str(src)).mismatch(model)
    if (root / MANIFEST).exists():
        raise CollectionExists(f"{root}: a collection already exists here; import into it, or pick another path")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise CollectionError(f"{root}: exists and is not an empty directory; pick another path")
    manifest = Manifest(model=recorded, lookalike_version=__version__)
    return Collection(Storage.initialise(root, manifest), device=device)
