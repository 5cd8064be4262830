"""Writing an export (see :mod:`.exchange`): one database snapshot, read in chunks, written
shard by shard through atomic writers, the sidecar last."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..fsutil import atomic_writer
from ..progress import ProgressCallback, ProgressEvent
from ..version import __version__
from .exchange import (CHUNK_BYTES, DTYPES, FORMAT_NAME, FORMAT_VERSION, FORMATS, IDENTITY, ITEM_FIELDS, SIDECAR,
                       TRAIT_FIELDS, ExportReport, load_pyarrow)
from .manifest import atomic_write_text
from .metadata import ItemRow

if TYPE_CHECKING:
    from .metadata import MetadataDB
    from .storage import Storage

__all__ = ["write_export", "metadata_types", "identity_digest"]

_FIELD_TYPES = {"id": "int64", "width": "int64", "height": "int64", "size": "int64", "mtime_ns": "int64",
                "hash": "string", "phash": "int64", "dhash": "int64", "phash_mirror": "int64",
                "sharpness": "float64", "taken": "float64", "exif_tags": "int64"}


def identity_digest() -> Any:
    """The running digest of a shard's identities, in order (recorded in the sidecar)."""
    return hashlib.sha256()


def update_digest(digest: Any, identities: Sequence[str]) -> None:
    for ident in identities:
        digest.update(ident.encode("utf-8", "surrogatepass") + b"\n")


def update_vector_digest(digest: Any, vectors: np.ndarray) -> None:
    """Add vectors as stored (their dtype, little-endian) to a shard's running digest."""
    digest.update(np.ascontiguousarray(vectors, dtype=vectors.dtype.newbyteorder("<")).tobytes())


def metadata_types(db: "MetadataDB") -> dict[str, str]:
    """``{key: arrow type name}`` of every metadata key: ``int64`` when every value is an
    integer, ``float64`` for numbers, ``string`` as soon as one value is text."""
    seen: dict[str, set[str]] = {}
    for key, kind in db.conn.execute("SELECT key, typeof(value) FROM item_meta GROUP BY key, typeof(value)"):
        seen.setdefault(key, set()).add(kind)
    out = {}
    for key, kinds in sorted(seen.items()):
        kinds.discard("null")
        if not kinds:
            continue
        out[key] = ("int64" if kinds == {"integer"} else "float64" if kinds <= {"integer", "real"}
                    else "binary" if kinds == {"blob"} else "string")
    return out


def _columns(fmt: str, meta_types: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(item fields -> columns, metadata columns -> keys)``; a key that would take a field's
    column name is written as ``meta.<key>``."""
    fields = {"path": IDENTITY[fmt], **{f: f for f in ITEM_FIELDS + TRAIT_FIELDS}}
    if fmt == "parquet":
        fields["vector"] = "vector"
    taken = set(fields.values())
    meta = {}
    # clip-retrieval's metadata starts with image_path and caption: keep the caption first.
    for key in sorted(meta_types, key=lambda k: (k != "caption", k)):
        meta[f"meta.{key}" if key in taken else key] = key
    return fields, meta


class _Shape:
    """The arrow schema of the table (or metadata) files, and how to fill it from a chunk."""

    def __init__(self, pa: Any, fmt: str, dtype: str, dim: int, meta_types: dict[str, str]) -> None:
        self.pa, self.fmt, self.dtype, self.dim = pa, fmt, dtype, dim
        self.fields, self.meta = _columns(fmt, meta_types)
        self.meta_types = {col: meta_types[key] for col, key in self.meta.items()}
        order = ["id", "path", "vector"] if fmt == "parquet" else ["path"]
        order += [f for f in ITEM_FIELDS + TRAIT_FIELDS if f not in order]
        cols: list[tuple[str, Any]] = []
        for f in order:
            if f == "vector":
                cols.append(("vector", pa.list_(pa.float16() if dtype == "float16" else pa.float32(), dim)))
            else:
                cols.append((self.fields[f], pa.string() if f == "path" else getattr(pa, _FIELD_TYPES[f])()))
        meta_cols = [(col, getattr(pa, kind)()) for col, kind in self.meta_types.items()]
        if fmt == "clip-retrieval":  # image_path, caption, other metadata, then the item's fields
            cols = cols[:1] + meta_cols + cols[1:]
        else:
            cols += meta_cols
        self.schema = pa.schema(cols)

    def table(self, rows: list[ItemRow], vectors: np.ndarray, meta: dict[int, dict[str, Any]],
              traits: dict[int, Any]) -> Any:
        pa = self.pa
        data: dict[str, Any] = {}
        for f, col in self.fields.items():
            if f == "vector":
                flat = pa.array(np.ascontiguousarray(vectors, dtype=self.dtype).reshape(-1))
                data[col] = pa.FixedSizeListArray.from_arrays(flat, self.dim)
            elif f in TRAIT_FIELDS:
                data[col] = [getattr(traits[r.id], f) if r.id in traits else None for r in rows]
            else:
                data[col] = [getattr(r, f) for r in rows]
        for col, key in self.meta.items():
            kind = self.meta_types[col]
            values = [meta.get(r.id, {}).get(key) for r in rows]
            if kind == "string":
                values = [v if v is None or isinstance(v, str) else str(v) for v in values]
            elif kind == "float64":
                values = [None if v is None else float(v) for v in values]
            data[col] = values
        return pa.Table.from_pydict(data, schema=self.schema)


#: Files an export writes, relative to its folder (atomic writers' temporary files included).
_OURS = re.compile(r"(part-\d+\.parquet|img_emb/img_emb_\d+\.npy|metadata/metadata_\d+\.parquet"
                   r"|(img_emb/|metadata/)?\..+\.tmp)")


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """An empty ``out_dir``; with ``overwrite``, the lookalike export there is removed first
    (the sidecar before the files, so an interruption never leaves it looking complete).
    Nothing is removed unless every file there is one an export writes."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgument(f"{out_dir}: exists and is not a folder; export into an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not any(out_dir.iterdir()):
        return
    sidecar = out_dir / SIDECAR
    if not sidecar.is_file():
        raise InvalidArgument(f"{out_dir}: folder is not empty; pick an empty folder")
    if not overwrite:
        raise InvalidArgument(f"{out_dir}: folder is not empty (it holds an export); pass overwrite=True "
                              "(--overwrite) to replace it, or pick an empty folder")
    files = [p for p in out_dir.rglob("*") if not p.is_dir() and p != sidecar]
    foreign = sorted(rel for p in files if not _OURS.fullmatch(rel := p.relative_to(out_dir).as_posix()))
    if foreign:
        raise InvalidArgument(f"{out_dir}: holds files that are not part of a lookalike export "
                              f"({', '.join(foreign[:5])}); pick an empty folder")
    sidecar.unlink()
    for p in files:
        p.unlink()
    for sub in ("img_emb", "metadata"):
        if (out_dir / sub).is_dir() and not any((out_dir / sub).iterdir()):
            (out_dir / sub).rmdir()


def _ok_rows(db: "MetadataDB") -> Iterator[ItemRow]:
    return (row for row in db.iter_rows(page=10_000) if row.status == "ok" and row.vec_row is not None)


def _shard_names(fmt: str, index: int, shards: int) -> tuple[str, str]:
    if fmt == "parquet":
        name = f"part-{index:05d}.parquet"
        return name, name
    # clip-retrieval pads the partition number to the digits of the partition count.
    num = str(index).zfill(len(str(shards)))
    return f"img_emb/img_emb_{num}.npy", f"metadata/metadata_{num}.parquet"


def write_export(storage: "Storage", out_dir: Path, *, fmt: str, dtype: str | None, rows_per_file: int,
                 overwrite: bool, progress: ProgressCallback | None) -> ExportReport:
    """Implementation of :func:`.exchange.export_collection`."""
    if fmt not in FORMATS:
        raise InvalidArgument(f"export format {fmt!r}: use one of {', '.join(FORMATS)}")
    dtype = dtype or FORMATS[fmt]
    if dtype not in DTYPES:
        raise InvalidArgument(f"export dtype {dtype!r}: use float32 or float16")
    if rows_per_file < 1:
        raise InvalidArgument(f"rows_per_file must be at least 1, not {rows_per_file}")
    pa, pq = load_pyarrow("Exporting embeddings")
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    out_dir = Path(out_dir)
    _prepare(out_dir, overwrite)
    # First a sidecar that says "unfinished": an interrupted export is refused on import, and
    # overwritten by the next export, rather than imported as a short folder of parquet files.
    begun = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "layout": fmt, "complete": False}
    atomic_write_text(out_dir / SIDECAR, json.dumps(begun) + "\n")
    report = ExportReport(out_dir=out_dir, format=fmt, dtype=dtype)
    db, dim = storage.db, storage.manifest.dim
    chunk = max(1024, min(65536, CHUNK_BYTES // (4 * dim)))
    shards: list[dict[str, Any]] = []
    # One snapshot for the whole export: rows, metadata and vectors agree, whatever is added
    # meanwhile (a compaction's unlink leaves the open memory map readable).
    with db.snapshot():
        total = db.counts()["ok"]
        mm = storage.vectors()
        shape = _Shape(pa, fmt, dtype, dim, metadata_types(db))
        rows = _ok_rows(db)
        n_shards = math.ceil(total / rows_per_file)
        for index in range(n_shards):
            n = min(rows_per_file, total - index * rows_per_file)
            names = _shard_names(fmt, index, n_shards)
            digests = _write_shard(out_dir, names, n, rows, mm, shape, pq, db, chunk, report, emit, total)
            shards.append({"index": index, "rows": n, "vectors": names[0], "metadata": names[1],
                           "identities_sha256": digests[0], "vectors_sha256": digests[1]})
            report.files += sorted(set(names))
        if next(rows, None) is not None:
            raise AssertionError("more rows than counted in one snapshot")  # cannot happen
    sidecar = {**begun, "complete": True, "lookalike_version": __version__, "created": time.time(),
               "source": str(storage.path), "model": storage.manifest.model, "dim": dim, "dtype": dtype, "rows": total,
               "columns": shape.fields, "metadata": shape.meta, "shards": shards}
    atomic_write_text(out_dir / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
    report.files.append(SIDECAR)
    report.seconds = time.perf_counter() - t0
    emit(ProgressEvent("done", done=report.rows, total=total))
    return report


def _write_shard(out_dir: Path, names: tuple[str, str], n: int, rows: Iterator[ItemRow], mm: np.ndarray,
                 shape: _Shape, pq: Any, db: "MetadataDB", chunk: int, report: ExportReport,
                 emit: ProgressCallback, total: int) -> tuple[str, str]:
    """Write one shard of ``n`` rows; returns the digests of its identities and its vectors."""
    digest, vec_digest = identity_digest(), identity_digest()
    vec_name, meta_name = names
    little = np.dtype(shape.dtype).newbyteorder("<")
    with ExitStack() as files:
        # Closed in reverse: the vectors land before their metadata, and a shard whose
        # metadata is missing is refused on import.
        meta_file = files.enter_context(atomic_writer(out_dir / meta_name))
        vec_file = files.enter_context(atomic_writer(out_dir / vec_name)) if vec_name != meta_name else None
        if vec_file is not None:
            np.lib.format.write_array_header_1_0(vec_file, {"descr": np.lib.format.dtype_to_descr(little),
                                                            "fortran_order": False, "shape": (n, shape.dim)})
        with pq.ParquetWriter(meta_file, shape.schema) as writer:
            left = n
            while left:
                batch = list(islice(rows, min(chunk, left)))
                if not batch:
                    raise AssertionError("fewer rows than counted in one snapshot")  # cannot happen
                ids = [r.id for r in batch]
                vectors = np.ascontiguousarray(mm[np.array([r.vec_row for r in batch])], dtype=little)
                writer.write_table(shape.table(batch, vectors, db.meta.get(ids), db.traits(ids)))
                if vec_file is not None:
                    vec_file.write(vectors.tobytes())
                update_vector_digest(vec_digest, vectors)
                update_digest(digest, [r.path for r in batch])
                left -= len(batch)
                report.rows += len(batch)
                emit(ProgressEvent("export", done=report.rows, total=total))
    return digest.hexdigest(), vec_digest.hexdigest()
