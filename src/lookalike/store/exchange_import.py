"""Importing an export (see :mod:`.exchange`): verified whole first (:mod:`.exchange_layout`),
then written in batches with the indexer's durability order (vectors appended and fsynced,
then the rows that refer to them in one transaction), and the index refreshed as an add does.

An item whose path is already in the collection is updated in place and keeps its id; its
vector row is kept when the vector is the same, and an item whose content hash is stored
shares that vector row (copies share a row, as indexing makes them), so re-running an import
adds nothing. Ids recorded by a lookalike export are kept where they are free.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..images.traits import ImageTraits
from ..progress import ProgressCallback, ProgressEvent
from .assign import assign_pending
from .exchange import CHUNK_BYTES, TRAIT_FIELDS, ImportReport
from .exchange_layout import RENORM_TOL, UNIT_TOL, Layout, batches, discover, verify
from .indexer import AddReport, finish_add
from .metadata import ItemRow

if TYPE_CHECKING:
    from pathlib import Path

    from ..models.lazy import LazyModel
    from .metadata import MetadataDB
    from .storage import Storage

__all__ = ["run_import"]

#: What an item lacks when the export does not say (clip-retrieval output from elsewhere):
#: size 0 and mtime -1 never match a real file, so indexing that file later embeds it afresh.
_DEFAULTS: dict[str, Any] = {"size": 0, "mtime_ns": -1}


def run_import(storage: "Storage", model: "LazyModel", source: "Path", *, identity: str | None = None,
               progress: ProgressCallback | None = None) -> ImportReport:
    """Implementation of :func:`.exchange.import_embeddings`."""
    t0 = time.perf_counter()
    emit = progress or (lambda event: None)
    layout = discover(source, identity)
    report = ImportReport(source=source, format=layout.kind, shards=len(layout.shards))
    dim = storage.manifest.dim
    batch_rows = max(1024, min(65536, CHUNK_BYTES // (4 * dim)))
    with storage.write_lock():
        checked = verify(layout, storage, report, batch_rows, emit)
        report.renormalised, report.far_from_unit = checked.renormalise, checked.far
        if checked.far:
            report.warnings.append(f"{checked.far} of {checked.rows} vectors were not unit length (off by more "
                                   f"than {UNIT_TOL}); they were normalised, but may not be embeddings meant for "
                                   "cosine search.")
        if checked.odd:
            report.warnings.append(f"{checked.odd} identities in column {layout.fields['path']!r} are neither "
                                   f"absolute paths nor URLs (e.g. {checked.odd_example!r}): those items are "
                                   "searchable, but their images cannot be shown or read again; another column "
                                   "may name them better (identity=..., --identity-column).")
        untraited = False
        for shard in layout.shards:
            for batch, vectors, _ in batches(layout, shard, dim, batch_rows, None):
                untraited |= _commit(storage, layout, batch, _normalised(vectors), report)
                emit(ProgressEvent("import", done=report.rows, total=checked.rows))
        if untraited:  # once at the end: it scans every row without traits
            with storage.db.transaction():
                storage.db.copy_traits_by_hash()
                storage.db.bump_generation()
        finish_add(storage, [], AddReport(), model, None)
    report.seconds = time.perf_counter() - t0
    emit(ProgressEvent("done", done=report.rows, total=report.rows))
    return report


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Float32 unit rows; a row already within :data:`RENORM_TOL` of unit length is left
    bit for bit, so a float32 round trip gives identical scores."""
    v = np.array(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1)
    off = np.abs(norms - 1.0) > RENORM_TOL
    v[off] /= norms[off, None]
    return v


def _scalar(value: Any) -> Any:
    """A metadata value as SQLite keeps it (JSON scalars; anything nested as JSON text)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _columns(layout: Layout, batch: Any) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """``(item field -> values, metadata of each row)`` of a record batch."""
    names = batch.schema.names
    n = batch.num_rows
    fields = {f: batch.column(c).to_pylist() for f, c in layout.fields.items() if f != "vector" and c in names}
    metas: list[dict[str, Any]] = [{} for _ in range(n)]
    for col, key in layout.meta_columns(names).items():
        for meta, value in zip(metas, batch.column(col).to_pylist()):
            if value is not None:
                meta[key] = _scalar(value)
    return fields, metas


def _stored_hashes(db: "MetadataDB", hashes: list[str]) -> dict[str, int]:
    """``{hash: vec_row}`` of embedded items with these content hashes."""
    out: dict[str, int] = {}
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        # Only the hash in SQL: with "status = 'ok'" there too, SQLite may pick the status
        # index and scan every item for each chunk.
        sql = f"SELECT hash, vec_row, status FROM items WHERE hash IN ({','.join('?' * len(chunk))})"
        out.update((h, v) for h, v, status in db.conn.execute(sql, chunk) if status == "ok" and v is not None)
    return out


def _traits(fields: Mapping[str, list[Any]], i: int) -> ImageTraits | None:
    if "phash" not in fields:
        return None  # data from elsewhere: no traits at all
    if any(f not in fields or fields[f][i] is None for f in TRAIT_FIELDS if f != "taken"):
        return None
    return ImageTraits(*(fields[f][i] if f in fields else None for f in TRAIT_FIELDS))


def _commit(storage: "Storage", layout: Layout, batch: Any, vectors: np.ndarray, report: ImportReport) -> bool:
    """Write one batch: new vectors first (fsynced), then rows, traits and metadata at once.
    True when some row has a content hash but no traits (a copy may lend it its traits)."""
    db = storage.db
    fields, metas = _columns(layout, batch)
    paths: list[str] = fields["path"]
    existing = db.rows_for_paths(paths)
    ids = _ids(db, fields.get("id"), paths, existing)
    vec_rows, new = _vector_rows(storage, fields.get("hash") or [None] * len(paths), paths, existing, vectors, report)
    inserts, upserts, traits, untraited = [], [], [], False
    for i, path in enumerate(paths):
        value = {f: fields[f][i] if f in fields and fields[f][i] is not None else _DEFAULTS.get(f)
                 for f in ("size", "mtime_ns", "hash", "width", "height")}
        item = (path, value["size"], value["mtime_ns"], value["hash"], value["width"], value["height"], "ok", None,
                vec_rows[i])
        t = _traits(fields, i)
        untraited |= t is None and bool(value["hash"])
        if path not in existing and i in ids:
            inserts.append((ItemRow(ids[i], *item), t))  # with the id the export recorded
        else:
            upserts.append(item)
            if t is not None:
                traits.append((t, path))
    report.added += len(paths) - len(existing)
    report.updated += len(existing)

    def write() -> None:
        db.insert_rows(inserts)
        db.upsert(upserts)
        db.set_traits(traits)
        db.meta.set_by_id((ids[i], metas[i]) for i in range(len(paths)) if i in ids)
        db.meta.set((paths[i], metas[i]) for i in range(len(paths)) if i not in ids)

    storage.commit_vectors(np.stack(new) if new else None, write)
    assign_pending(storage)  # new items join a stored clustering and labelling, as indexed ones do
    report.rows += len(paths)
    return untraited


def _vector_rows(storage: "Storage", hashes: list[str | None], paths: list[str], existing: dict[str, ItemRow],
                 vectors: np.ndarray, report: ImportReport) -> tuple[list[int], list[np.ndarray]]:
    """Each row's vector row, and the vectors to append: an item imported again keeps its row
    when its vector is the same; content already stored (by hash) shares that row."""
    known = _stored_hashes(storage.db, sorted({h for h in hashes if h}))
    stored, first_new = storage.vectors(), storage.vector_rows
    rows: list[int] = []
    new: list[np.ndarray] = []
    for i, path in enumerate(paths):
        old, digest = existing.get(path), hashes[i]
        if old is not None and old.vec_row is not None and np.array_equal(stored[old.vec_row], vectors[i]):
            rows.append(old.vec_row)
        elif digest and digest in known:
            rows.append(known[digest])
        else:
            rows.append(first_new + len(new))
            new.append(vectors[i])
            if digest:
                known[digest] = rows[-1]
            continue
        report.reused += 1
    return rows, new


def _ids(db: "MetadataDB", exported: list[Any] | None, paths: list[str], existing: dict[str, ItemRow]
         ) -> dict[int, int]:
    """``{row: item id}`` where the id is known before writing: the stored item's for a path in
    the collection, the exported id for a new path when no stored item has it."""
    out = {i: existing[p].id for i, p in enumerate(paths) if p in existing}
    wanted = [(i, int(exported[i])) for i in range(len(paths))
              if exported is not None and i not in out and exported[i] is not None and int(exported[i]) > 0]
    taken = set(db.get_many([item_id for _, item_id in wanted]))
    for i, item_id in wanted:
        if item_id not in taken:
            taken.add(item_id)
            out[i] = item_id
    return out
