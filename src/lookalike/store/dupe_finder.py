"""Finding a collection's near-duplicate groups: from cached neighbour lists to
:class:`~lookalike.store.dupes.DuplicateGroup` records.

::

    neighbour_graph(storage)              k nearest rows of every live row (cached, incremental)
    threshold                             given, or the quantile for ``fraction``, or the model's
    candidate pairs                       graph pairs (all of them when the perceptual tier is on)
    index.grouping.group_pairs            complete-linkage groups of vector rows, never chaining
    rows -> items                         copies (several items on one row) are exact matches
    choose_kept                           reference, prefer, keep rule

Nodes of the grouping are vector rows, not items: copies of a file share a row, so they are
one node, and an exact group of their own when nothing else matches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..images.traits import ImageTraits
from ..index.grouping import EXACT, PERCEPTUAL, SEMANTIC, Grouping, NodeData, PairRule, group_pairs
from ..index.neighbours import KnnGraph
from ..models.names import DuplicateDefaults
from ..progress import ProgressCallback, ProgressEvent
from .dupes import TIERS, DuplicateGroup, DuplicateSettings, Member, SimilarityHistogram, Tier, choose_kept
from .metadata import ItemRow
from .neighbours import neighbour_graph

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["DuplicateGroups", "find_duplicates", "similarity_histogram", "nearest_similarities"]


def nearest_similarities(storage: "Storage", graph: KnnGraph) -> np.ndarray:
    """Each live row's similarity to its nearest other item (1.0 for a row shared by copies)."""
    ids, rows = storage.searchable()
    nearest = graph.nearest().astype(np.float64).copy()
    shared = np.flatnonzero(np.bincount(np.searchsorted(graph.rows, rows), minlength=len(graph.rows)) > 1)
    nearest[shared] = 1.0
    return nearest[np.isfinite(nearest)]


def similarity_histogram(storage: "Storage", graph: KnnGraph, default_threshold: float,
                         bins: int = 50) -> SimilarityHistogram:
    """The distribution of nearest-neighbour similarities (see :class:`SimilarityHistogram`)."""
    near = nearest_similarities(storage, graph)
    low = float(np.floor(min(near.min(initial=1.0), default_threshold) * 20) / 20) if len(near) else 0.5
    low = min(max(low, -1.0), 0.95)
    edges = np.linspace(low, 1.0, bins + 1)
    counts, _ = np.histogram(np.clip(near, low, 1.0), bins=edges)
    above = [int((near >= e).sum()) for e in edges]
    return SimilarityHistogram([round(float(e), 6) for e in edges], [int(c) for c in counts], default_threshold,
                               above)


def _threshold(storage: "Storage", graph: KnnGraph, settings: DuplicateSettings, default: float) -> float:
    if settings.threshold is not None:
        return settings.threshold
    if settings.fraction is not None:
        near = nearest_similarities(storage, graph)
        return float(np.quantile(near, 1.0 - settings.fraction)) if len(near) else default
    return default


def _node_data(storage: "Storage", graph: KnnGraph, ids: np.ndarray, rows: np.ndarray) -> NodeData:
    """Hashes per node (vector row), from the first item on each row."""
    t_ids, phash, dhash, mirror, has = storage.trait_arrays()
    pos = np.searchsorted(t_ids, ids)  # ids of searchable items are all in t_ids
    node = np.searchsorted(graph.rows, rows)
    n = len(graph.rows)
    out = [np.zeros(n, np.int64) for _ in range(3)] + [np.zeros(n, bool)]
    first = np.unique(node, return_index=True)[1]
    for arr, src in zip(out, (phash, dhash, mirror, has)):
        arr[node[first]] = src[pos[first]]
    return NodeData(storage.vectors(), graph.rows, out[0], out[1], out[2], out[3])


@dataclass
class _NodeItems:
    """The items on each node (vector row): copies of a file share one. CSR by node."""

    starts: np.ndarray  # (n + 1,)
    ids: np.ndarray     # item ids, by node, then id

    @classmethod
    def of(cls, ids: np.ndarray, rows: np.ndarray, graph: KnnGraph) -> "_NodeItems":
        node = np.searchsorted(graph.rows, rows)
        order = np.lexsort((ids, node))
        counts = np.bincount(node, minlength=len(graph.rows))
        return cls(np.concatenate([[0], np.cumsum(counts)]), ids[order])

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def items(self, node: int) -> list[int]:
        return self.ids[self.starts[node]:self.starts[node + 1]].tolist()


_TIER_NAME: dict[int, Tier] = {EXACT: "exact", PERCEPTUAL: "perceptual", SEMANTIC: "semantic"}


def _build_one(item_ids: list[int], sims: list[float], tiers: list[Tier], rows_by_id: dict[int, ItemRow],
               traits: dict[int, ImageTraits], settings: DuplicateSettings) -> DuplicateGroup | None:
    members = [Member(rows_by_id[i].public(), traits.get(i), s, t, False, False)
               for i, s, t in zip(item_ids, sims, tiers) if i in rows_by_id]
    if len(members) < 2:
        return None  # its rows were removed since the grouping
    times = [m.traits.taken for m in members if m.traits is not None and m.traits.taken is not None]
    burst = (settings.burst_seconds is not None and len(times) == len(members)
             and "exact" not in {m.tier for m in members} and max(times) - min(times) <= settings.burst_seconds)
    chosen = choose_kept(members, settings, burst=burst)
    weakest = max((m.tier for m in chosen), key=TIERS.index)
    return DuplicateGroup(id=item_ids[0], kind="burst" if burst else "duplicate", tier=weakest,
                          similarity=float(min(m.similarity for m in chosen)), members=chosen)


_READ_CHUNK = 500


class DuplicateGroups(Sequence[DuplicateGroup]):
    """The groups of one grouping, in order (most files, then closest, then lowest id first),
    made into :class:`DuplicateGroup` records only when read: a page of groups costs a page
    of database reads, however many groups there are.

    ``len``, the order, ``files`` and ``threshold`` are known without reading a row. A group
    read after some of its items were removed from the collection is read as what remains of
    it, or left out when fewer than two remain (a slice can then come out short).
    """

    def __init__(self, storage: "Storage", grouping: Grouping, node_items: _NodeItems,
                 settings: DuplicateSettings, threshold: float) -> None:
        self._storage, self._settings, self._node_items = storage, settings, node_items
        self._grouping = grouping
        counts = node_items.counts
        if len(grouping):
            lengths = np.fromiter((len(m) for m in grouping.members), np.int64, len(grouping))
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            files = np.add.reduceat(counts[np.concatenate(grouping.members)], starts)
            closest = np.minimum.reduceat(np.concatenate(grouping.similarity), starts)
            medoids = np.fromiter((m[0] for m in grouping.members), np.int64, len(grouping))
            first_id = node_items.ids[node_items.starts[medoids]]
            self._order = np.lexsort((first_id, -closest, -files))
        else:
            files, first_id, self._order = (np.empty(0, np.int64),) * 3
        self._ids = first_id  # a group's id: its medoid's (first) item id
        self.files = int(files.sum())  #: items in all groups
        self.threshold = threshold  #: the cosine threshold used (given, from ``fraction``, or the default)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self._read(self._order[index])
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        got = self._read(self._order[index:index + 1 or None])
        if not got:
            raise IndexError(f"group {index} is gone from the collection")
        return got[0]

    def find(self, ids: Sequence[int]) -> dict[int, DuplicateGroup]:
        """The groups with these ids (those there are), reading only them."""
        wanted = np.isin(self._ids, np.asarray(list(ids), dtype=np.int64))
        return {g.id: g for g in self._read(np.flatnonzero(wanted))}

    def __iter__(self) -> Iterator[DuplicateGroup]:
        for start in range(0, len(self), _READ_CHUNK):  # a chunk of groups per read
            yield from self._read(self._order[start:start + _READ_CHUNK])

    def _expand(self, g: int) -> tuple[list[int], list[float], list[Tier]]:
        """Group ``g`` as items: every item of each node, the medoid's first."""
        nodes = self._grouping.members[g].tolist()
        sims = self._grouping.similarity[g].tolist()
        tiers = self._grouping.tier[g].tolist()
        items = [self._node_items.items(n) for n in nodes]
        # The medoid's own tier is the strongest link it has: exact when it has copies.
        medoid = "exact" if len(items[0]) > 1 else _TIER_NAME[min(tiers[1:], default=EXACT)]
        ids, out_s, out_t = [], [], []
        for k, (on_node, s, t) in enumerate(zip(items, sims, tiers)):
            for j, item_id in enumerate(on_node):
                ids.append(item_id)
                out_s.append(1.0 if k == 0 else s)
                out_t.append(("exact" if j else medoid) if k == 0 else _TIER_NAME[t])
        return ids, out_s, out_t

    def _read(self, which: np.ndarray) -> list[DuplicateGroup]:
        expanded = [self._expand(int(g)) for g in which]
        wanted = [i for ids, _, _ in expanded for i in ids]
        rows, traits = self._storage.db.get_many(wanted), self._storage.db.traits(wanted)
        built = (_build_one(*e, rows, traits, self._settings) for e in expanded)
        return [g for g in built if g is not None]


def find_duplicates(storage: "Storage", settings: DuplicateSettings, defaults: DuplicateDefaults, *,
                    save: bool = True, lazy: bool = False,
                    progress: ProgressCallback | None = None) -> "list[DuplicateGroup] | DuplicateGroups":
    """Implementation of :meth:`Collection.duplicates` (``defaults``: the model's, for what
    ``settings`` leaves unset; ``save``: the caller holds the writer
    lock, so the neighbour cache may be written; ``lazy``: answer :class:`DuplicateGroups`,
    which reads a group's items only when it is read)."""
    graph = neighbour_graph(storage, save=save, progress=progress)
    threshold = _threshold(storage, graph, settings, defaults.threshold)
    floor = defaults.perceptual_floor if settings.perceptual_floor is None else settings.perceptual_floor
    bits = defaults.hash_bits if settings.hash_bits is None else settings.hash_bits
    ids, rows = storage.searchable()
    data = _node_data(storage, graph, ids, rows)
    perceptual = "perceptual" in settings.tiers
    rule = PairRule(threshold if "semantic" in settings.tiers else None,
                    bits if perceptual else None, settings.flips, floor)
    # A perceptual match needs the floor similarity too: no pair below every tier's bar matches.
    bars = [x for x in (rule.threshold, floor if perceptual else None) if x is not None]
    a, b, sims = graph.pairs(min(bars)) if bars else (np.empty(0, np.int64),) * 2 + (np.empty(0, np.float32),)
    pos = np.searchsorted(graph.rows, np.stack([a, b])) if len(a) else np.empty((2, 0), np.int64)
    grouping = group_pairs(len(graph.rows), pos[0], pos[1], data, rule, sims)
    node_items = _NodeItems.of(ids, rows, graph)
    # Copies of a file matching nothing else are an exact group of their own: one node.
    lone = np.setdiff1d(np.flatnonzero(node_items.counts > 1),
                        np.concatenate(grouping.members) if len(grouping) else [])
    for node in lone:
        grouping.members.append(np.array([node]))
        grouping.similarity.append(np.ones(1, np.float32))
        grouping.tier.append(np.full(1, EXACT, np.int8))
    if progress is not None:
        progress(ProgressEvent("group", done=len(grouping), total=len(grouping)))
    groups = DuplicateGroups(storage, grouping, node_items, settings, threshold)
    return groups if lazy else groups[:]

