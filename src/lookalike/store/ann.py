"""A collection's approximate index: when to build it, keeping it in step, and trusting it.

Policy (the numbers are module constants, documented in the README):

* ``--index auto`` (the default) searches exactly below :data:`AUTO_THRESHOLD` vectors,
  where a chunked matrix product is already fast, and above it builds the index that
  :func:`~lookalike.index.tune.auto_index` chooses by measured recall.
* Adding images appends them to the index, without retraining.
* Drift: IVF and PQ structures are trained on a sample; once the vectors added since then
  exceed :data:`DRIFT_REBUILD` times that sample, or deleted rows make up more than
  :data:`STALE_REBUILD` of the index, it is rebuilt (and, for ``auto``, re-tuned).
* Deleted items never surface: whenever the index holds rows that are no longer live,
  searches pass the live rows as an ID selector.
* Agreement: the index records the vector file generation it indexes. An index made for
  another generation, holding rows beyond the committed ones, or unreadable, is never
  used: a writer rebuilds it, a reader falls back to exact search.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CollectionCorrupt, LookalikeError
from ..index.tune import DEFAULT_LATENCY_MS

if TYPE_CHECKING:
    from ..index.faiss_index import AnnIndex
    from .collection import Collection

__all__ = ["IndexSettings", "load_index", "refresh_index", "build_index", "AUTO_THRESHOLD", "INDEX_MODES"]

log = logging.getLogger("lookalike")

INDEX_FILE = "index.npz"
#: Below this many vectors ``auto`` searches exactly (about 25 ms a query at 512-d on 2 cores).
AUTO_THRESHOLD = 50_000
#: Rebuild when vectors added since training exceed this multiple of the training sample.
DRIFT_REBUILD = 0.5
#: Rebuild when more than this share of the index's rows are deleted.
STALE_REBUILD = 0.3
INDEX_MODES = ("auto", "exact", "flat", "hnsw", "ivf", "ivfpq", "sq8", "fp16", "binary")


@dataclass(frozen=True)
class IndexSettings:
    """What the user asked for (stored in the manifest under ``index``)."""

    mode: str = "auto"
    recall: float = 0.95
    memory_bytes: int | None = None
    #: Median single-query latency budget for ``auto`` (None: memory alone decides).
    latency_ms: float | None = DEFAULT_LATENCY_MS

    def __post_init__(self) -> None:
        if self.mode not in INDEX_MODES:
            raise ValueError(f"unknown index mode {self.mode!r}; use one of {', '.join(INDEX_MODES)}")
        if not 0.0 < self.recall <= 1.0:
            raise ValueError(f"recall target must be in (0, 1], not {self.recall}")
        if self.latency_ms is not None and self.latency_ms <= 0:
            raise ValueError(f"latency budget must be positive (or None for none), not {self.latency_ms}")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError(f"memory budget must be positive (or None for none), not {self.memory_bytes}")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "recall": self.recall, "memory_bytes": self.memory_bytes,
                "latency_ms": self.latency_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "IndexSettings":
        data = data or {}
        return cls(mode=data.get("mode", "auto"), recall=float(data.get("recall", 0.95)),
                   memory_bytes=data.get("memory_bytes"), latency_ms=data.get("latency_ms", DEFAULT_LATENCY_MS))


def _live_rows(coll: "Collection") -> np.ndarray:
    return np.unique(coll.searchable()[1])


def _wants_index(coll: "Collection", settings: IndexSettings, n_live: int) -> bool:
    if settings.mode == "exact":
        return False
    if settings.mode == "auto":
        return n_live >= AUTO_THRESHOLD
    return n_live > 0


def load_index(coll: "Collection") -> "AnnIndex | None":
    """The collection's index if it exists and agrees with the committed vectors, else None.

    Live rows missing from it (a run killed between committing vectors and saving the index)
    are appended in memory, so it is complete even before a writer saves it again.
    """
    path = coll.path / INDEX_FILE
    if not path.exists():
        return None
    meta = coll.manifest.index_state or {}
    if meta.get("vector_file") != coll.vectors_file.path.name:
        log.warning("%s: index was built for another vector file generation; searching exactly", coll.path)
        return None
    try:
        from ..index.faiss_index import AnnIndex

        ann = AnnIndex.load(path)
    except (CollectionCorrupt, LookalikeError) as exc:
        log.warning("%s; searching exactly", exc)
        return None
    if len(ann.rows) and int(ann.rows.max()) >= coll.vector_rows:
        log.warning("%s: index refers to vectors that were never committed; searching exactly", coll.path)
        return None
    missing = np.setdiff1d(_live_rows(coll), ann.rows, assume_unique=True)
    if len(missing):
        ann.add(coll.vectors(), missing)
    return ann


def build_index(coll: "Collection", settings: IndexSettings) -> "AnnIndex | None":
    """Build (or remove) the index that ``settings`` call for, save it and record it."""
    live = _live_rows(coll)
    path = coll.path / INDEX_FILE
    if not _wants_index(coll, settings, len(live)):
        path.unlink(missing_ok=True)
        coll.set_index_state(settings, None)
        return None
    from ..index.tune import auto_index, candidate_specs, spec_for

    vectors = coll.vectors()
    if settings.mode == "auto":
        # Matryoshka truncation is only offered for models trained for it (their info says so).
        candidates = candidate_specs(len(live), vectors.shape[1],
                                     matryoshka=bool(coll.manifest.model.get("matryoshka")))
        result = auto_index(vectors, live, recall=settings.recall, memory_bytes=settings.memory_bytes,
                            latency_ms=settings.latency_ms, candidates=candidates)
    else:
        spec = spec_for(settings.mode, len(live), vectors.shape[1])
        # A forced kind is tuned for recall alone: the fastest setting reaching it is taken,
        # and its latency is shown, not held against it.
        result = auto_index(vectors, live, recall=settings.recall, latency_ms=None, candidates=[spec])
    ann = result.index
    ann.save(path)
    coll.set_index_state(settings, {
        "spec": ann.spec.to_dict(),
        "label": ann.spec.label(),
        "measured": result.chosen.to_dict(),
        "met_target": result.met_target,
        "missed": list(result.missed),
        "vector_file": coll.vectors_file.path.name,
        "built_at": time.time(),
        "built_on": len(live),
        "built_with": settings.to_dict(),
    })
    return ann


def refresh_index(coll: "Collection") -> "AnnIndex | None":
    """After an add: append new rows, or rebuild when drift or deletions call for it."""
    settings = coll.index_settings
    live = _live_rows(coll)
    if not _wants_index(coll, settings, len(live)):
        if (coll.path / INDEX_FILE).exists():
            return build_index(coll, settings)  # removes it and records "no index"
        return None
    ann = load_index(coll)
    built_with = (coll.manifest.index_state or {}).get("built_with")
    if ann is None or built_with != settings.to_dict():
        return build_index(coll, settings)
    stale = 1.0 - len(live) / ann.ntotal if ann.ntotal else 0.0
    if ann.drift() > DRIFT_REBUILD or stale > STALE_REBUILD:
        log.info("%s: rebuilding the index (drift %.2f, deleted share %.2f)", coll.path, ann.drift(), stale)
        return build_index(coll, settings)
    ann.save(coll.path / INDEX_FILE)
    return ann
