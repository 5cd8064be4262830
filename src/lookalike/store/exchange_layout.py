"""Reading an export for import (see :mod:`.exchange`): find its shards and their columns,
read them in step (embeddings with their metadata), and verify every shard before anything
is written: row counts, partners, identities, dimension, finite vectors, the model."""

from __future__ import annotations

import json
import re
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..errors import CollectionMismatch, InvalidArgument
from ..progress import ProgressCallback, ProgressEvent
from .exchange import FORMAT_NAME, FORMAT_VERSION, FORMATS, SIDECAR, ImportReport, load_pyarrow
from .exchange_export import identity_digest, update_digest, update_vector_digest

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["discover", "Layout", "Shard", "read_sidecar", "verify", "batches", "Checked"]

#: Norms further than this from 1 are renormalised (float16 rounding is ~1e-3) ...
RENORM_TOL = 1e-5
#: ... and further than this are reported: such vectors were likely never normalised.
UNIT_TOL = 1e-2
_NOTHING = "(nothing was imported)"


@dataclass
class Shard:
    """One pair of files: the vectors (an .npy, or the parquet file itself) and their rows."""

    index: int
    vectors: Path
    metadata: Path
    rows: int | None = None          # as the sidecar records it
    digest: str | None = None        # of the identities, as the sidecar records it
    vector_digest: str | None = None  # of the vectors as stored, likewise

    def name(self, root: Path) -> str:
        return _rel(self.metadata, root)


@dataclass
class Layout:
    """What :func:`discover` found: the shards in order, and how to read their columns."""

    root: Path
    kind: str                        # "parquet" or "clip-retrieval"
    shards: list[Shard]
    sidecar: dict[str, Any] | None = None
    fields: dict[str, str] = field(default_factory=dict)   # item field -> column
    meta: dict[str, str] | None = None                     # column -> key; None: every other column

    def meta_columns(self, names: list[str]) -> dict[str, str]:
        """``{column: metadata key}`` among a file's column ``names``."""
        if self.meta is not None:
            return {c: k for c, k in self.meta.items() if c in names}
        special = set(self.fields.values())
        return {c: c for c in names if c not in special and not c.startswith("__index_level_")}


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _refuse(root: Path, message: str) -> InvalidArgument:
    return InvalidArgument(f"{root}: {message} {_NOTHING}")


# ---------------------------------------------------------------------------------- discovery
def read_sidecar(root: Path) -> dict[str, Any] | None:
    """The parsed ``lookalike-export.json`` of a folder, None if it has none."""
    path = root / SIDECAR
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _refuse(root, f"{SIDECAR} is unreadable ({exc}).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME or data.get("layout") not in FORMATS:
        raise _refuse(root, f"{SIDECAR} is not a lookalike export description.")
    if data.get("complete") is not True:
        raise _refuse(root, f"this export was interrupted before it finished ({SIDECAR} says so); export again.")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise _refuse(root, f"the export is format {data['format_version']}, newer than this lookalike reads "
                            f"({FORMAT_VERSION}); upgrade lookalike.")
    return data


def discover(path: Path, identity: str | None = None) -> Layout:
    """The layout at ``path``: a lookalike export (its sidecar), a clip-retrieval output folder,
    a folder of parquet files, or one parquet file. ``identity`` names the column that holds
    each item's identity in data from elsewhere (default: image_path, path or url).

    Raises:
        InvalidArgument: nothing importable, a listed file missing, an unlisted shard, a vector
            file without its metadata partner (or the reverse).
    """
    if path.is_file():
        if path.suffix != ".parquet":
            raise InvalidArgument(f"{path}: import reads a .parquet file or an export folder")
        return _foreign(Layout(path.parent, "parquet", [Shard(0, path, path)]), identity)
    if not path.is_dir():
        raise InvalidArgument(f"{path}: no such file or folder")
    sidecar = read_sidecar(path)
    if sidecar is not None:
        layout = _from_sidecar(path, sidecar)
        if identity is not None and identity != layout.fields["path"]:
            raise InvalidArgument(f"{path}: a lookalike export keeps its identities in {layout.fields['path']!r}; "
                                  f"an identity column ({identity!r}) is only for data from elsewhere")
        return layout
    if (path / "img_emb").is_dir():
        return _foreign(Layout(path, "clip-retrieval", _clip_shards(path)), identity)
    parts = sorted(path.glob("*.parquet"))
    if not parts:
        raise InvalidArgument(f"{path}: not an export: no {SIDECAR}, no img_emb/ folder, no .parquet files")
    return _foreign(Layout(path, "parquet", [Shard(i, p, p) for i, p in enumerate(parts)]), identity)


def _numbered(folder: Path, pattern: str, root: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = re.fullmatch(pattern, p.name)
        if m is None:
            continue
        if int(m[1]) in out:
            raise _refuse(root, f"{_rel(out[int(m[1])], root)} and {_rel(p, root)} are both shard {int(m[1])}.")
        out[int(m[1])] = p
    return out


def _clip_shards(root: Path) -> list[Shard]:
    vecs = _numbered(root / "img_emb", r"img_emb_(\d+)\.npy", root)
    metas = _numbered(root / "metadata", r"metadata_(\d+)\.parquet", root)
    for i in sorted(set(vecs) ^ set(metas)):
        if i in vecs:
            raise _refuse(root, f"{_rel(vecs[i], root)} has no metadata/metadata_{i}.parquet: without it its rows "
                                f"cannot be matched to images; re-export shard {i}.")
        raise _refuse(root, f"{_rel(metas[i], root)} has no img_emb/img_emb_{i}.npy: the embeddings of shard {i} "
                            f"are missing; re-export shard {i}.")
    if not vecs:
        raise _refuse(root, "img_emb/ holds no img_emb_N.npy files.")
    return [Shard(i, vecs[i], metas[i]) for i in sorted(vecs)]


def _foreign(layout: Layout, identity: str | None) -> Layout:
    """Columns of data from elsewhere: the identity and the vector; everything else is metadata."""
    names = parquet_file(layout.root, layout.shards[0].metadata).schema_arrow.names
    order: tuple[str, ...] = (("image_path", "path", "url") if layout.kind == "clip-retrieval"
                              else ("path", "image_path", "url"))
    if identity is not None:
        order = (identity,)
    ident = next((c for c in order if c in names), None)
    if ident is None:
        raise _refuse(layout.root, f"{layout.shards[0].name(layout.root)} has no identity column (one of "
                                   f"{', '.join(order)}); its columns are {', '.join(names)}.")
    layout.fields = {"path": ident}
    if layout.kind == "parquet":
        vec = next((c for c in ("vector", "embedding") if c in names), None)
        if vec is None:
            raise _refuse(layout.root, f"{layout.shards[0].name(layout.root)} has no vector column "
                                       f"('vector' or 'embedding').")
        layout.fields["vector"] = vec
    return layout


def _from_sidecar(root: Path, sidecar: dict[str, Any]) -> Layout:
    try:
        return _sidecar_layout(root, sidecar)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refuse(root, f"{SIDECAR} is malformed ({type(exc).__name__}: {exc}); export again.") from exc


def _sidecar_layout(root: Path, sidecar: dict[str, Any]) -> Layout:
    kind = sidecar["layout"]
    shards = []
    for s in sidecar["shards"]:
        vec, meta = root / s["vectors"], root / s["metadata"]
        for p in {vec, meta}:
            if root.resolve() not in p.resolve().parents:
                raise _refuse(root, f"{SIDECAR} lists {p}, outside the export.")
            if not p.is_file():
                raise _refuse(root, f"{_rel(p, root)} is missing ({SIDECAR} lists it); re-export shard {s['index']}.")
        shards.append(Shard(int(s["index"]), vec, meta, int(s["rows"]), s.get("identities_sha256"),
                            s.get("vectors_sha256")))
    listed = {p for s in shards for p in (s.vectors, s.metadata)}
    on_disk = (set(root.glob("*.parquet")) if kind == "parquet" else
               set((root / "img_emb").glob("*.npy")) | set((root / "metadata").glob("*.parquet")))
    extra = sorted(on_disk - listed)
    if extra:
        raise _refuse(root, f"{_rel(extra[0], root)} is not part of the export {SIDECAR} describes; remove it, "
                            "or re-export into an empty folder.")
    if sum(s.rows or 0 for s in shards) != int(sidecar.get("rows", -1)):
        raise _refuse(root, f"{SIDECAR} is inconsistent: its shards do not add up to its {sidecar.get('rows')} rows.")
    return Layout(root, kind, shards, sidecar, dict(sidecar["columns"]), dict(sidecar.get("metadata", {})))


# ---------------------------------------------------------------------------------- reading
def parquet_file(root: Path, path: Path) -> Any:
    """``pyarrow.parquet.ParquetFile(path)``, or a refusal naming the file."""
    _, pq = load_pyarrow("Importing embeddings")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several kinds (ArrowInvalid, OSError) for a bad file
        raise _refuse(root, f"{_rel(path, root)} is not a readable parquet file ({exc}).") from exc


def _open_npy(layout: Layout, shard: Shard, dim: int) -> np.ndarray:
    try:
        arr = np.load(shard.vectors, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _refuse(layout.root, f"{_rel(shard.vectors, layout.root)} is not a readable .npy file ({exc}).") from exc
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise _refuse(layout.root, f"{_rel(shard.vectors, layout.root)} holds {arr.dtype} of shape {arr.shape}, "
                                   "not a 2-D array of floats.")
    return arr


def _list_vectors(layout: Layout, shard: Shard, column: Any, offset: int, dim: int) -> np.ndarray:
    """A parquet vector column (fixed-size or variable lists of floats) as ``(n, dim)``."""
    pa, _ = load_pyarrow("Importing embeddings")
    import pyarrow.compute as pc

    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    where = f"{shard.name(layout.root)} rows {offset}..{offset + len(col) - 1}"
    if col.null_count:
        raise _refuse(layout.root, f"{where}: {col.null_count} vectors are null.")
    if not (pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type) or
            pa.types.is_large_list(col.type)) or not pa.types.is_floating(col.type.value_type):
        raise _refuse(layout.root, f"{shard.name(layout.root)}: the vector column is {col.type}, not a list of floats.")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != dim).any():
        bad = int(np.argmax(lengths != dim))
        raise CollectionMismatch(f"{layout.root}: {shard.name(layout.root)} row {offset + bad} has a "
                                 f"{lengths[bad]}-d vector, but the collection's vectors are {dim}-d: these "
                                 f"embeddings come from another model {_NOTHING}")
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)


def batches(layout: Layout, shard: Shard, dim: int, batch_rows: int, columns: list[str] | None
             ) -> Iterator[tuple[Any, np.ndarray, int]]:
    """``(record batch, its vectors as read, offset)`` over a shard, embeddings and metadata
    read in step (the row counts were checked equal before)."""
    pf = parquet_file(layout.root, shard.metadata)
    npy = _open_npy(layout, shard, dim) if shard.vectors != shard.metadata else None
    offset = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        n = batch.num_rows
        if npy is not None:
            vectors = np.asarray(npy[offset : offset + n])
        else:
            vectors = _list_vectors(layout, shard, batch.column(layout.fields["vector"]), offset, dim)
        yield batch, vectors, offset
        offset += n


# ---------------------------------------------------------------------------------- verifying
class _Seen:
    """Identities seen so far, in a temporary SQLite file: memory stays flat at any size."""

    def __init__(self, folder: str) -> None:
        self.conn = sqlite3.connect(Path(folder) / "seen.sqlite")
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("CREATE TABLE seen (path TEXT PRIMARY KEY, shard TEXT, row INTEGER) WITHOUT ROWID")

    def add(self, root: Path, paths: list[Any], shard: str, offset: int) -> None:
        for i, p in enumerate(paths):
            if not isinstance(p, str) or not p:
                raise _refuse(root, f"{shard} row {offset + i} has no identity (path {p!r}).")
        before = self.conn.total_changes
        with self.conn:  # one transaction per batch, not one per row
            self.conn.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                                  ((p, shard, offset + i) for i, p in enumerate(paths)))
        if self.conn.total_changes - before == len(paths):
            return
        for i, p in enumerate(paths):
            first_shard, first_row = self.conn.execute("SELECT shard, row FROM seen WHERE path = ?", (p,)).fetchone()
            if (first_shard, first_row) != (shard, offset + i):
                raise _refuse(root, f"{p} appears twice: {first_shard} row {first_row} and {shard} row {offset + i}; "
                                    "each item must appear once.")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Checked:
    """What verification counted: rows, and norms off unit length (see the tolerances)."""

    rows: int = 0
    renormalise: int = 0
    far: int = 0
    odd: int = 0                     # identities neither absolute paths nor http(s) URLs ...
    odd_example: str | None = None   # ... and the first of them


def _check_vectors(layout: Layout, shard: Shard, vectors: np.ndarray, offset: int, dim: int,
                   checked: Checked) -> None:
    where = shard.vectors if shard.vectors != shard.metadata else shard.metadata
    if vectors.shape[1] != dim:
        raise CollectionMismatch(f"{layout.root}: {_rel(where, layout.root)} holds {vectors.shape[1]}-d vectors, but "
                                 f"the collection's are {dim}-d: these embeddings come from another model {_NOTHING}")
    v = np.asarray(vectors, dtype=np.float32)
    finite = np.isfinite(v).all(axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], v, 0.0), axis=1)
    bad = np.flatnonzero(~finite | (norms == 0))
    if len(bad):
        what = "is not finite" if not finite[bad[0]] else "is all zeros"
        raise _refuse(layout.root, f"{_rel(where, layout.root)} row {offset + int(bad[0])}: the vector {what}.")
    off = np.abs(norms - 1.0)
    checked.renormalise += int((off > RENORM_TOL).sum())
    checked.far += int((off > UNIT_TOL).sum())


def _count_odd(paths: list[str], checked: Checked) -> None:
    for p in paths:
        if not p.startswith(("/", "http://", "https://")):
            checked.odd += 1
            checked.odd_example = checked.odd_example or p


def _check_shard(layout: Layout, shard: Shard, dim: int, seen: _Seen, checked: Checked, batch_rows: int,
                 emit: ProgressCallback, total: int) -> None:
    root, name = layout.root, shard.name(layout.root)
    pf = parquet_file(root, shard.metadata)
    n_meta, names = pf.metadata.num_rows, pf.schema_arrow.names
    ident = layout.fields["path"]
    for col in {ident, layout.fields.get("vector", ident)}:
        if col not in names:
            raise _refuse(root, f"{name} has no {col!r} column; its columns are {', '.join(names)}.")
    if shard.vectors != shard.metadata:
        n_vec, n_dim = _open_npy(layout, shard, dim).shape
        if n_dim != dim:
            raise CollectionMismatch(f"{root}: {_rel(shard.vectors, root)} holds {n_dim}-d vectors, but the "
                                     f"collection's are {dim}-d: these embeddings come from another model {_NOTHING}")
        if n_vec != n_meta:
            vec = _rel(shard.vectors, root)
            raise _refuse(root, f"{name} has {n_meta} rows but {vec} has {n_vec}: the metadata is out of line "
                                f"with the embeddings; re-export shard {shard.index}.")
    if shard.rows is not None and n_meta != shard.rows:
        raise _refuse(root, f"{name} has {n_meta} rows but {SIDECAR} records {shard.rows}: the file changed "
                            f"since the export; re-export shard {shard.index}.")
    digest, vec_digest = identity_digest(), identity_digest()
    columns = [ident] + ([layout.fields["vector"]] if "vector" in layout.fields else [])
    for batch, vectors, offset in batches(layout, shard, dim, batch_rows, columns):
        paths = batch.column(ident).to_pylist()
        seen.add(root, paths, name, offset)
        _check_vectors(layout, shard, vectors, offset, dim, checked)
        update_digest(digest, paths)
        _count_odd(paths, checked)
        update_vector_digest(vec_digest, vectors)
        checked.rows += len(paths)
        emit(ProgressEvent("verify", done=checked.rows, total=total))
    if shard.digest is not None and digest.hexdigest() != shard.digest:
        raise _refuse(root, f"{name} does not hold the items {SIDECAR} records for it (their paths or order "
                            f"differ): it changed since the export; re-export shard {shard.index}.")
    if shard.vector_digest is not None and vec_digest.hexdigest() != shard.vector_digest:
        vec = _rel(shard.vectors, root)
        raise _refuse(root, f"{vec} does not hold the vectors {SIDECAR} records for shard {shard.index}: it changed "
                            f"since the export, or belongs to another shard; re-export shard {shard.index}.")


def _check_model(layout: Layout, storage: "Storage", report: ImportReport) -> None:
    manifest = storage.manifest
    if layout.sidecar is None:
        report.warnings.append(f"{layout.root} does not record the model that made its vectors (no {SIDECAR}): "
                               f"only their dimension ({manifest.dim}) was checked against model "
                               f"'{manifest.model_id}'.")
        return
    model = layout.sidecar.get("model") or {}
    if model.get("model_id") != manifest.model_id or model.get("fingerprint") != manifest.fingerprint:
        raise CollectionMismatch(
            f"{layout.root} was exported with model '{model.get('model_id')}' (fingerprint "
            f"{model.get('fingerprint')}), but {storage.path} uses '{manifest.model_id}' (fingerprint "
            f"{manifest.fingerprint}): vectors of different models cannot be mixed. Import into a new "
            f"collection instead: lookalike import {layout.root} --collection NEW.lkl {_NOTHING}")
    report.model_checked = True


def verify(layout: Layout, storage: "Storage", report: ImportReport, batch_rows: int,
           emit: ProgressCallback) -> Checked:
    """Check the whole of ``layout`` against ``storage`` (the model, then every shard), reading
    the identities and vectors once; raises on the first fault, having written nothing."""
    _check_model(layout, storage, report)
    total = sum(parquet_file(layout.root, s.metadata).metadata.num_rows for s in layout.shards)
    checked = Checked()
    with tempfile.TemporaryDirectory(prefix="lookalike-import-") as folder:
        seen = _Seen(folder)
        try:
            for shard in layout.shards:
                _check_shard(layout, shard, storage.manifest.dim, seen, checked, batch_rows, emit, total)
        finally:
            seen.close()
    return checked
