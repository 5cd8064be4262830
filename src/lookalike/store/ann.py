"""A collection's approximate index: when to build it, keeping it in step, and trusting it.

Policy (the numbers are module constants, documented in the README):

* ``--index auto`` (the default) searches exactly below :data:`~lookalike.index.rank.EXACT_BELOW` vectors,
  where a chunked matrix product is already fast, and above it builds the index that
  :func:`~lookalike.index.tune.auto_index` chooses by measured recall.
* From :data:`ONDISK_ABOVE` vectors, or when even the smallest in-RAM candidate's estimated
  size exceeds the ``--memory`` budget, ``auto`` builds ``ivfpq-disk`` instead: IVF-PQ whose
  codes sit in a memory-mapped file beside the index (:mod:`lookalike.index.ondisk`), built
  chunk by chunk in bounded memory, its nprobe and re-rank depth tuned by measured recall
  like any other. ``--index ivfpq-disk`` forces it at any size.
* Adding images appends them to the index, without retraining (for ``ivfpq-disk``, to an
  in-RAM delta beside the mapped file).
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
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CollectionCorrupt, InvalidArgument, LookalikeError
from ..models.lazy import LazyModel
from ..index import rank
from ..index.faiss_index import AnnIndex
from ..index.prompts import tuning_prompts
from ..index.candidates import estimated_memory
from ..index.disk_index import DiskAnnIndex, build_disk_index
from ..index.ondisk import MapFn, remove_disk_files
from ..index.spec import IndexSpec
from ..index.tune import DEFAULT_LATENCY_MS, Measurement, auto_index, candidate_specs, spec_for

if TYPE_CHECKING:
    from .storage import Storage  # storage imports this module: the type only, to avoid a cycle

__all__ = ["IndexSettings", "IndexState", "load_index", "refresh_index", "build_index", "wants_disk", "INDEX_MODES",
           "INDEX_FILE", "ONDISK_ABOVE"]

log = logging.getLogger("lookalike")

INDEX_FILE = "index.npz"
#: Rebuild when vectors added since training exceed this multiple of the training sample.
DRIFT_REBUILD = 0.5
#: Rebuild when more than this share of the index's rows are deleted.
STALE_REBUILD = 0.3
INDEX_MODES = ("auto", "exact", "flat", "hnsw", "ivf", "ivfpq", "ivfpq-disk", "sq8", "fp16", "binary")
#: ``auto`` builds the on-disk index from this many live vectors. The in-RAM tuner builds
#: candidates up to float vectors (IVF-Flat, HNSW: 4 d bytes each, 10 GB at 5M x 512-d)
#: in one process, and its smallest (PQ, sign bits) still need d/8 to d/4 bytes a vector;
#: the on-disk build holds one chunk at a time and keeps only the row map (8 bytes a
#: vector), centroids and codebooks in RAM.
ONDISK_ABOVE = 5_000_000
#: The prefix of the on-disk files (``index-<token>.faissindex`` and ``.ivfdata``): every
#: build writes new ones, so processes still mapping the old ones keep a consistent view.
ONDISK_PREFIX = "index-"


@dataclass(frozen=True)
class IndexSettings:
    """What the user asked for (stored in the manifest under ``index.settings``).

    Raises:
        InvalidArgument: a mode or budget outside what is accepted.
    """

    mode: str = "auto"
    recall: float = 0.95
    memory_bytes: int | None = None
    #: Median single-query latency budget for ``auto`` (None: memory alone decides).
    latency_ms: float | None = DEFAULT_LATENCY_MS

    def __post_init__(self) -> None:
        if self.mode not in INDEX_MODES:
            raise InvalidArgument(f"unknown index mode {self.mode!r}; use one of {', '.join(INDEX_MODES)}")
        if not 0.0 < self.recall <= 1.0:
            raise InvalidArgument(f"recall target must be in (0, 1], not {self.recall}; e.g. 0.95")
        if self.latency_ms is not None and self.latency_ms <= 0:
            raise InvalidArgument(f"latency budget must be positive (or None for none), not {self.latency_ms}")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise InvalidArgument(f"memory budget must be positive (or None for none), not {self.memory_bytes}")

    @property
    def forced(self) -> bool:
        """Whether the user chose an index kind (used whatever the collection's size)."""
        return self.mode not in ("auto", "exact")

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "recall": self.recall, "memory_bytes": self.memory_bytes,
                "latency_ms": self.latency_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "IndexSettings":
        data = data or {}
        return cls(mode=data.get("mode", "auto"), recall=float(data.get("recall", 0.95)),
                   memory_bytes=data.get("memory_bytes"), latency_ms=data.get("latency_ms", DEFAULT_LATENCY_MS))


def _measurement(data: dict[str, Any] | None) -> Measurement | None:
    return Measurement.from_dict(data) if data else None


@dataclass(frozen=True)
class IndexState:
    """What index is built and how it measured (stored in the manifest under ``index.state``).

    ``measured`` is the tuner's measurement on the held-out rows it chose with;
    ``confirmed`` the same setting on an independent held-out set; ``text`` and
    ``text_confirmed`` the same on the embeddings of the shipped text prompts (models with
    a text tower only). Older manifests lack the last three: they read as None.
    """

    spec: dict[str, Any]
    label: str
    measured: Measurement
    vector_file: str
    built_on: int
    built_with: IndexSettings
    met_target: bool = True
    missed: tuple[str, ...] = ()
    built_at: float = field(default_factory=time.time)
    confirmed: Measurement | None = None
    text: Measurement | None = None
    text_confirmed: Measurement | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "label": self.label, "measured": self.measured.to_dict(),
            "confirmed": self.confirmed.to_dict() if self.confirmed else None,
            "text": self.text.to_dict() if self.text else None,
            "text_confirmed": self.text_confirmed.to_dict() if self.text_confirmed else None,
            "met_target": self.met_target, "missed": list(self.missed), "vector_file": self.vector_file,
            "built_at": self.built_at, "built_on": self.built_on, "built_with": self.built_with.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "IndexState | None":
        if not data:
            return None
        try:
            return cls(spec=dict(data["spec"]), label=str(data["label"]), measured=_measurement(data["measured"]),
                       vector_file=str(data["vector_file"]), built_on=int(data.get("built_on", 0)),
                       built_with=IndexSettings.from_dict(data.get("built_with")),
                       met_target=bool(data.get("met_target", True)), missed=tuple(data.get("missed") or ()),
                       built_at=float(data.get("built_at", 0.0)), confirmed=_measurement(data.get("confirmed")),
                       text=_measurement(data.get("text")), text_confirmed=_measurement(data.get("text_confirmed")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CollectionCorrupt(f"the manifest's index state is unreadable ({exc}); "
                                    "rebuild it with `lookalike index --index auto`") from exc


#: The tuning prompts embedded, per model fingerprint: every index build of a process (a
#: server, a test session) reuses them instead of embedding some 450 texts again.
_PROMPT_VECTORS: dict[tuple[str, int], np.ndarray] = {}


def _text_queries(storage: "Storage", model: LazyModel) -> np.ndarray | None:
    """The shipped tuning prompts in the collection's space; None for an image-only model."""
    if "text" not in storage.manifest.model.get("modalities", ()):
        return None
    prompts = tuning_prompts()
    key = (storage.manifest.fingerprint, hash(tuple(prompts)))
    if key not in _PROMPT_VECTORS:
        _PROMPT_VECTORS[key] = model.get().encode_text(prompts)
    return _PROMPT_VECTORS[key]


def _wants_index(settings: IndexSettings, n_live: int) -> bool:
    if settings.mode == "exact":
        return False
    if settings.mode == "auto":
        return rank.uses_index(n_live, forced=False)
    return n_live > 0


def wants_disk(settings: IndexSettings, n_live: int, dim: int) -> bool:
    """Whether ``settings`` call for the on-disk index over ``n_live`` vectors of ``dim``:
    forced, or ``auto`` from :data:`ONDISK_ABOVE` vectors or when the smallest in-RAM
    candidate is estimated over the memory budget."""
    if settings.mode == "ivfpq-disk":
        return True
    if settings.mode != "auto":
        return False
    if n_live >= ONDISK_ABOVE:
        return True
    if settings.memory_bytes is None:
        return False
    in_ram = candidate_specs(n_live, dim)[:-1]  # flat, the exact fallback, is never smaller
    return min(estimated_memory(s, n_live, dim) for s in in_ram) > settings.memory_bytes


def load_index(storage: "Storage") -> "AnnIndex | None":
    """The collection's index if it exists and agrees with the committed vectors, else None.

    Live rows missing from it (a run killed between committing vectors and saving the index)
    are appended in memory, so it is complete even before a writer saves it again.
    """
    path = storage.path / INDEX_FILE
    if not path.exists():
        return None
    state = storage.index_state()
    if state is None or state.vector_file != storage.vector_file.path.name:
        log.warning("%s: index was built for another vector file generation; searching exactly", storage.path)
        return None
    try:
        index = AnnIndex.load(path)
    except (CollectionCorrupt, LookalikeError) as exc:
        log.warning("%s; searching exactly", exc)
        return None
    if len(index.rows) and int(index.rows.max()) >= storage.vector_rows:
        log.warning("%s: index refers to vectors that were never committed; searching exactly", storage.path)
        return None
    missing = np.setdiff1d(storage.live_rows(), index.rows, assume_unique=True)
    if len(missing):
        index.add(storage.vectors(), missing)
    return index


def build_index(storage: "Storage", settings: IndexSettings, model: LazyModel, *,
                map_fn: MapFn = map) -> "AnnIndex | None":
    """Build (or remove) the index that ``settings`` call for, save it and record it.

    ``model`` embeds the shipped tuning prompts when the model has a text tower (loaded only
    when an index is actually built). ``map_fn`` encodes the chunks of an on-disk build
    (the builtin ``map``: in this process, one after another; a map over Ray tasks spreads them)."""
    live = storage.live_rows()
    path = storage.path / INDEX_FILE
    if not _wants_index(settings, len(live)):
        path.unlink(missing_ok=True)
        storage.record_index(settings, None)
        remove_disk_files(storage.path, ONDISK_PREFIX)
        return None
    vectors = storage.vectors()
    builder = None
    if wants_disk(settings, len(live), vectors.shape[1]):
        stem = f"{ONDISK_PREFIX}{uuid.uuid4().hex[:12]}"

        def builder(spec: IndexSpec, rows: np.ndarray) -> AnnIndex:
            return build_disk_index(spec, vectors, rows, storage.path, stem=stem, map_fn=map_fn)

        candidates = [spec_for("ivfpq-disk", len(live), vectors.shape[1])]
        # Forced: tuned for recall alone, like any forced kind; auto keeps its latency budget.
        latency_ms = settings.latency_ms if settings.mode == "auto" else None
    elif settings.mode == "auto":
        # Matryoshka truncation is only offered for models trained for it (their info says so).
        candidates = candidate_specs(len(live), vectors.shape[1],
                                     matryoshka=bool(storage.manifest.model.get("matryoshka")))
        latency_ms = settings.latency_ms
    else:
        # A forced kind is tuned for recall alone: the fastest setting reaching it is taken,
        # and its latency is shown, not held against it.
        candidates, latency_ms = [spec_for(settings.mode, len(live), vectors.shape[1])], None
    try:
        result = auto_index(vectors, live, recall=settings.recall, memory_bytes=settings.memory_bytes,
                            latency_ms=latency_ms, candidates=candidates, text_queries=_text_queries(storage, model),
                            builder=builder)
    except BaseException:
        if builder is not None:
            remove_disk_files(storage.path, stem)  # a failed build leaves no files behind
        raise
    index = result.index
    index.save(path)
    storage.record_index(settings, IndexState(
        spec=index.spec.to_dict(), label=index.spec.label(), measured=result.chosen, confirmed=result.confirmed,
        text=result.text, text_confirmed=result.text_confirmed, met_target=result.met_target,
        missed=tuple(result.missed), vector_file=storage.vector_file.path.name, built_on=len(live),
        built_with=settings))
    # The previous on-disk files (if any) are no longer referenced by the saved index.
    remove_disk_files(storage.path, ONDISK_PREFIX, keep=index.files if isinstance(index, DiskAnnIndex) else ())
    return index


def refresh_index(storage: "Storage", model: LazyModel, *, map_fn: MapFn = map) -> "AnnIndex | None":
    """After an add: append new rows, or rebuild when drift, deletions or new settings call for it
    (``map_fn`` as for :func:`build_index`: a Ray run passes a map over Ray tasks)."""
    settings = storage.index_settings()
    live = storage.live_rows()
    if not _wants_index(settings, len(live)):
        if (storage.path / INDEX_FILE).exists():
            return build_index(storage, settings, model, map_fn=map_fn)  # removes it and records "no index"
        return None
    index = load_index(storage)
    state = storage.index_state()
    if index is None or state is None or state.built_with != settings:
        return build_index(storage, settings, model, map_fn=map_fn)
    stale = 1.0 - len(live) / index.ntotal if index.ntotal else 0.0
    if index.drift() > DRIFT_REBUILD or stale > STALE_REBUILD:
        log.info("%s: rebuilding the index (drift %.2f, deleted share %.2f)", storage.path, index.drift(), stale)
        return build_index(storage, settings, model, map_fn=map_fn)
    index.save(storage.path / INDEX_FILE)
    return index
