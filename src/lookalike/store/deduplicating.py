"""The duplicate-finding methods of :class:`~lookalike.store.collection.Collection` (a mixin:
the collection stays one facade while each concern keeps its own module)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ..models.names import duplicate_defaults
from .dupe_finder import DuplicateGroups, find_duplicates, similarity_histogram
from .dupes import DuplicateGroup, DuplicateSettings, SimilarityHistogram
from .neighbours import neighbour_graph
from .traits import backfill_traits

if TYPE_CHECKING:
    from ..progress import ProgressCallback
    from .manifest import Manifest
    from .storage import Storage

__all__ = ["Deduplicating"]


class Deduplicating:
    """Near-duplicate groups and the similarity histogram, over ``self._storage``."""

    _storage: "Storage"

    @property
    def manifest(self) -> "Manifest":  # provided by Collection
        raise NotImplementedError

    @property
    def default_duplicate_threshold(self) -> float:
        """The model's calibrated near-duplicate threshold (cosine similarity)."""
        return duplicate_defaults(self.manifest.model_id).threshold

    def duplicates(self, threshold: float | None = None, *, settings: DuplicateSettings | None = None,
                   lazy: bool = False, progress: "ProgressCallback | None" = None,
                   **fields: Any) -> "list[DuplicateGroup] | DuplicateGroups":
        """Groups of near-duplicate images, largest first (see :mod:`lookalike.store.dupes`).

        ``threshold``: the cosine similarity from which two images are semantic duplicates
        (default: :attr:`default_duplicate_threshold`); ``fields``: any other
        :class:`DuplicateSettings` field, or pass ``settings`` whole. Neighbour lists are
        cached in the collection, and only what changed is searched again. ``lazy`` answers a
        :class:`~lookalike.store.dupe_finder.DuplicateGroups`, which reads a group's items
        only when it is read (a page of groups costs a page of reads).

        Raises:
            InvalidArgument: a setting out of range, an unknown tier or keep rule.
        """
        if settings is None:
            settings = DuplicateSettings(threshold=threshold, **fields)
        elif threshold is not None or fields:
            settings = replace(settings, **({"threshold": threshold} if threshold is not None else {}), **fields)
        with self._storage.writer_if_free() as writer:
            # Without the writer lock (an index run is on), nothing is backfilled or cached.
            if writer and "perceptual" in settings.tiers:
                backfill_traits(self._storage, progress=progress)
            return find_duplicates(self._storage, settings, duplicate_defaults(self.manifest.model_id), save=writer,
                                   lazy=lazy, progress=progress)

    def duplicate_histogram(self, bins: int = 50) -> SimilarityHistogram:
        """How similar each item's nearest neighbour is, for choosing a threshold.

        Raises:
            InvalidArgument: ``bins`` below 1.
        """
        if bins < 1:
            raise InvalidArgument(f"bins must be at least 1, not {bins}")
        with self._storage.writer_if_free() as writer:
            graph = neighbour_graph(self._storage, save=writer)
            return similarity_histogram(self._storage, graph, self.default_duplicate_threshold, bins)
