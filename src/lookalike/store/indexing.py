"""``Collection``'s approximate-index methods: the settings asked for, what was built, and
building it now. A mixin, as :mod:`.exploring` is, so that :mod:`.collection` stays the facade
for adding and searching; the policy itself is :mod:`.ann`'s."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..index.tune import DEFAULT_LATENCY_MS
from .ann import IndexSettings, IndexState, build_index

if TYPE_CHECKING:
    from ..index.faiss_index import AnnIndex
    from ..index.ondisk import MapFn
    from ..models.lazy import LazyModel
    from .storage import Storage

__all__ = ["Indexing"]


class Indexing:
    """The search index of a collection (mixed into ``Collection``)."""

    _storage: "Storage"
    _model: "LazyModel"

    @property
    def index_settings(self) -> IndexSettings:
        """The index mode and budgets asked for (``auto``, recall 0.95, 2 ms by default)."""
        return self._storage.index_settings()

    @property
    def index_state(self) -> IndexState | None:
        """The approximate index built and how it measured; None when search is exact."""
        return self._storage.index_state()

    def build_index(self, mode: str = "auto", *, recall: float = 0.95, memory_bytes: int | None = None,
                    latency_ms: float | None = DEFAULT_LATENCY_MS, map_fn: "MapFn" = map) -> "AnnIndex | None":
        """Choose, build and save the search index now; see :mod:`lookalike.store.ann`.

        ``mode`` is ``auto`` (exact below the size threshold, else the cheapest index that
        meets ``recall``@10 within the budgets: ``memory_bytes`` of RAM, a median
        single-query latency of ``latency_ms``, None for no bound), ``exact``, or a kind to
        force: ``flat``, ``hnsw``, ``ivf``, ``ivfpq``, ``sq8``, ``fp16``, ``binary``, or
        ``ivfpq-disk`` (IVF-PQ with memory-mapped inverted lists on disk, for collections
        larger than RAM; ``auto`` picks it from ``ann.ONDISK_ABOVE`` vectors or when
        ``memory_bytes`` is below the smallest in-RAM index). ``map_fn`` encodes an on-disk
        build's chunks (``lookalike.distributed.index_build.ray_map`` runs them on Ray).
        Returns None for exact.

        Raises:
            InvalidArgument: an unknown mode or a budget out of range.
            MissingExtra: FAISS is not installed.
        """
        settings = IndexSettings(mode, recall, memory_bytes, latency_ms)
        with self._storage.write_lock():
            return build_index(self._storage, settings, self._model, map_fn=map_fn)
