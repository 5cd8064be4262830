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

from typing import TYPE_CHECKING

import numpy as np

from ..images.traits import ImageTraits
from ..index.grouping import PERCEPTUAL, NodeData, PairRule, group_pairs
from ..index.neighbours import KnnGraph
from ..progress import ProgressCallback, ProgressEvent
from .dupes import TIERS, DuplicateGroup, DuplicateSettings, Member, SimilarityHistogram, Tier, choose_kept
from .metadata import ItemRow
from .neighbours import neighbour_graph

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["find_duplicates", "similarity_histogram", "nearest_similarities"]


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
    t_ids, phash, dhash, mirror, has = storage.db.trait_arrays()
    pos = np.searchsorted(t_ids, ids)  # ids of searchable items are all in t_ids
    node = np.searchsorted(graph.rows, rows)
    n = len(graph.rows)
    out = [np.zeros(n, np.int64) for _ in range(3)] + [np.zeros(n, bool)]
    first = np.unique(node, return_index=True)[1]
    for arr, src in zip(out, (phash, dhash, mirror, has)):
        arr[node[first]] = src[pos[first]]
    return NodeData(storage.vectors(), graph.rows, out[0], out[1], out[2], out[3])


def _copies(ids: np.ndarray, rows: np.ndarray, graph: KnnGraph) -> dict[int, list[int]]:
    """``node -> item ids`` for nodes (rows) that several items share."""
    node = np.searchsorted(graph.rows, rows)
    order = np.lexsort((ids, node))
    node, ids = node[order], ids[order]
    starts = np.flatnonzero(np.r_[True, node[1:] != node[:-1]])
    ends = np.r_[starts[1:], len(node)]
    return {int(node[s]): ids[s:e].tolist() for s, e in zip(starts, ends) if e - s > 1}


_TIER_NAME: dict[int, Tier] = {PERCEPTUAL: "perceptual", 2: "semantic"}


def _build(node_groups: list[tuple[list[int], list[float], list[Tier]]], rows_by_id: dict[int, ItemRow],
           traits: dict[int, ImageTraits], settings: DuplicateSettings) -> list[DuplicateGroup]:
    groups = []
    for item_ids, sims, tiers in node_groups:
        members = [Member(rows_by_id[i].public(), traits.get(i), s, t, False, False)
                   for i, s, t in zip(item_ids, sims, tiers) if i in rows_by_id]
        if len(members) < 2:
            continue
        times = [m.traits.taken for m in members if m.traits is not None and m.traits.taken is not None]
        burst = (settings.burst_seconds is not None and len(times) == len(members)
                 and "exact" not in {m.tier for m in members} and max(times) - min(times) <= settings.burst_seconds)
        chosen = choose_kept(members, settings, burst=burst)
        weakest = max((m.tier for m in chosen), key=TIERS.index)
        groups.append(DuplicateGroup(id=item_ids[0], kind="burst" if burst else "duplicate", tier=weakest,
                                     similarity=float(min(m.similarity for m in chosen)), members=chosen))
    groups.sort(key=lambda g: (-len(g.members), -g.similarity, g.id))
    return groups


def find_duplicates(storage: "Storage", settings: DuplicateSettings, default_threshold: float, *,
                    save: bool = True, progress: ProgressCallback | None = None) -> list[DuplicateGroup]:
    """Implementation of :meth:`Collection.duplicates` (``save``: the caller holds the writer
    lock, so the neighbour cache may be written)."""
    graph = neighbour_graph(storage, save=save, progress=progress)
    threshold = _threshold(storage, graph, settings, default_threshold)
    ids, rows = storage.searchable()
    data = _node_data(storage, graph, ids, rows)
    perceptual = "perceptual" in settings.tiers
    rule = PairRule(threshold if "semantic" in settings.tiers else None,
                    settings.hash_bits if perceptual else None, settings.flips)
    a, b, sims = graph.pairs(-np.inf if perceptual else threshold)
    pos = np.searchsorted(graph.rows, np.stack([a, b])) if len(a) else np.empty((2, 0), np.int64)
    if rule.threshold is None and rule.hash_bits is None:
        pos, sims = pos[:, :0], sims[:0]  # exact tier alone: only copies group
    grouping = group_pairs(len(graph.rows), pos[0], pos[1], data, rule, sims)
    if progress is not None:
        progress(ProgressEvent("group", done=len(grouping), total=len(grouping)))
    copies = _copies(ids, rows, graph)
    node_item = dict(zip(np.searchsorted(graph.rows, rows).tolist(), ids.tolist()))
    node_groups: list[tuple[list[int], list[float], list[Tier]]] = []
    grouped: set[int] = set()
    for members, sims, tiers in zip(grouping.members, grouping.similarity, grouping.tier):
        item_ids: list[int] = []
        item_sims: list[float] = []
        item_tiers: list[Tier] = []
        nodes = members.tolist()
        # The medoid's own tier is the strongest link it has: exact with copies of its own.
        medoid_tier = "exact" if nodes[0] in copies else _TIER_NAME[int(tiers[1:].min())]
        for k, (node, s, t) in enumerate(zip(nodes, sims.tolist(), tiers.tolist())):
            on_node = copies.get(node, [node_item[node]])
            for j, item_id in enumerate(on_node):
                item_ids.append(item_id)
                item_sims.append(1.0 if k == 0 else s)
                item_tiers.append("exact" if k == 0 and j else medoid_tier if k == 0 else _TIER_NAME[t])
            grouped.add(node)
        node_groups.append((item_ids, item_sims, item_tiers))
    for node, item_ids in copies.items():
        if node not in grouped:
            node_groups.append((item_ids, [1.0] * len(item_ids), ["exact"] * len(item_ids)))
    wanted = [i for g in node_groups for i in g[0]]
    return _build(node_groups, storage.db.get_many(wanted), storage.db.traits(wanted), settings)

