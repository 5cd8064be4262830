"""Exploring a collection over HTTP: its clusters, zero-shot labels, the 2-D map and
similarity matrices (the Map and Clusters pages are built on these).

The map's points travel as binary buffers, not JSON: ``GET /api/map`` answers a small
summary (bounds, colour categories, a ``generation`` token) with the URLs of Float32 ``x, y``
pairs, the item ids and one Uint16 category index per point for each colouring. A million
points are 8 MB of coordinates that a page hands to WebGL as they arrive. The buffers are
made once per state of the collection (:class:`MapBuffers`) and cached by the browser
under the token.

Computing a clustering, labels or a map (the POST routes) writes only the collection's own
derived data, never a user's file; it holds the collection's lock while it runs, so other
requests wait, and a run longer than the request deadline goes on to the end in its worker
thread (its answer is dropped; ask the GET route again).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional

import numpy as np
from fastapi import APIRouter, Path as P, Query as Q
from fastapi.responses import Response

from ..store.explore_types import NOISE
from .schemas import (ClusteringOut, ClusterMembersOut, ClusterOut, ClusterRequest, ErrorOut, ItemRef, LabelCountOut,
                      LabellingOut, LabelRequest, MapBounds, MapCategory, MapColor, MapColoring, MapOut, MapRequest,
                      MatrixOut)
from ..store.item_bytes import item_kind
from .service import ApiError, Service, display_name

if TYPE_CHECKING:
    from ..store.explore_types import Clustering, Labelling, MapPoints
    from ..store.items import Item

__all__ = ["explore_routes", "MapBuffers"]

_NONE = 0xFFFF  # a point's colour index when it has no category
_BINARY = {200: {"content": {"application/octet-stream": {}}, "description": "little-endian binary, one per point"}}
_ID_DIGITS = r"^\d{1,19}(,\d{1,19})*$"


def _missing(code: str, what: str, command: str) -> dict:
    return {404: {"model": ErrorOut, "description": f"the collection has no {what} yet (code {code}): {command}"}}


def explore_routes(svc: Service) -> APIRouter:
    """The explore routes over ``svc``'s collection."""
    router = APIRouter(tags=["explore"])
    maps = MapBuffers(svc)
    _cluster_routes(router, svc, maps)
    _map_routes(router, svc, maps)
    _matrix_route(router, svc)
    return router


def _cluster_routes(router: APIRouter, svc: Service, maps: "MapBuffers") -> None:
    """``/api/clusters`` and ``/api/labels``: read and (re)compute."""
    name = svc.coll.path.name

    def no_clusters() -> ApiError:
        return ApiError(404, "no_clusters", "this collection has no clusters yet: run `lookalike cluster "
                                            f"--collection {name}`, or POST /api/clusters")

    @router.get("/api/clusters", response_model=ClusteringOut, summary="The stored clustering",
                responses=_missing("no_clusters", "clusters", "lookalike cluster"))
    def clusters() -> ClusteringOut:
        with svc.lock:
            clustering = svc.coll.clustering()
        if clustering is None:
            raise no_clusters()
        return _clustering_out(clustering)

    @router.post("/api/clusters", response_model=ClusteringOut, summary="Cluster the collection (or again)")
    def cluster(req: ClusterRequest) -> ClusteringOut:
        with svc.lock:
            clustering = svc.coll.cluster(req.k, method=req.method, min_cluster_size=req.min_cluster_size,
                                          refresh=req.refresh)
        maps.forget()  # the map's cluster colours changed
        return _clustering_out(clustering)

    @router.get("/api/clusters/{cluster_id}/members", response_model=ClusterMembersOut,
                summary="A cluster's members, closest to its centre first",
                responses=_missing("no_clusters", "clusters", "lookalike cluster"))
    def members(cluster_id: int = P(..., ge=-1, le=2**31), offset: int = Q(0, ge=0, le=10_000_000),
                limit: int = Q(48, ge=1, le=500)) -> ClusterMembersOut:
        with svc.lock:
            clustering = svc.coll.clustering()
            if clustering is None:
                raise no_clusters()
            found = clustering.by_id(cluster_id)
            if found is None and not (cluster_id == NOISE and clustering.noise):
                raise ApiError(404, "not_found", f"there is no cluster {cluster_id}; GET /api/clusters lists them")
            hits = svc.coll.cluster_members(cluster_id, offset=offset, limit=limit + 1)
        name, size = (found.name, found.size) if found is not None else ("noise", clustering.noise)
        # The noise group has no centre: its members come by id, with no score (0 here).
        hits = [h if math.isfinite(h.score) else replace(h, score=0.0) for h in hits]
        return ClusterMembersOut(cluster=cluster_id, name=name, size=size, offset=offset,
                                 hits=svc.hits_out(hits[:limit]), has_more=len(hits) > limit)

    @router.get("/api/labels", response_model=LabellingOut, summary="The stored zero-shot label set and counts",
                responses=_missing("no_labels", "labels", "lookalike label"))
    def labels() -> LabellingOut:
        with svc.lock:
            labelling = svc.coll.labelling()
        if labelling is None:
            raise ApiError(404, "no_labels", "this collection has no labels yet: run `lookalike label --collection "
                                             f"{name} --labels \"cat, dog, beach\"`, or POST /api/labels")
        return _labelling_out(labelling)

    @router.post("/api/labels", response_model=LabellingOut, summary="Label every item zero-shot (text models)")
    def label(req: LabelRequest) -> LabellingOut:
        with svc.lock:
            labelling = svc.coll.label(req.labels, multi=req.multi, min_score=req.min_score)
        maps.forget()
        return _labelling_out(labelling)


def _map_routes(router: APIRouter, svc: Service, maps: "MapBuffers") -> None:
    """``/api/map``: the summary, the binary buffers, and making the map."""

    @router.get("/api/map", response_model=MapOut, summary="The 2-D map: summary and the URLs of its buffers",
                responses=_missing("no_map", "map", "lookalike map"))
    def map_meta() -> MapOut:
        return maps.get().meta

    @router.post("/api/map", response_model=MapOut, summary="Lay the collection out in 2-D (or refit)")
    def make_map(req: MapRequest) -> MapOut:
        with svc.lock:
            svc.coll.map(method=req.method, refresh=req.refresh)
            maps.forget()
            return maps.get().meta

    def binary(data: bytes, g: Optional[str], token: str) -> Response:
        # Under the current token the bytes never change: the browser keeps them. Any other
        # token (an old page) gets today's bytes, not to be kept.
        cache = "private, max-age=31536000, immutable" if g == token else "no-cache"
        return Response(data, media_type="application/octet-stream",
                        headers={"cache-control": cache, "x-map-generation": token,
                                 "x-content-type-options": "nosniff"})

    token_q = Q(None, max_length=100, description="the map's generation token (GET /api/map)")

    @router.get("/api/map/points", summary="Float32 x, y pairs, interleaved", response_class=Response,
                responses={**_BINARY, **_missing("no_map", "map", "lookalike map")})
    def map_points(g: Optional[str] = token_q) -> Response:
        data = maps.get(g)
        return binary(data.points, g, data.token)

    @router.get("/api/map/ids", summary="The points' item ids (Uint32, or Float64 past 2**32)",
                response_class=Response, responses={**_BINARY, **_missing("no_map", "map", "lookalike map")})
    def map_ids(g: Optional[str] = token_q) -> Response:
        data = maps.get(g)
        return binary(data.ids, g, data.token)

    @router.get("/api/map/colors", summary="Uint16 category index per point (65535: none)",
                response_class=Response, responses={**_BINARY, **_missing("no_map", "map", "lookalike map")})
    def map_colors(by: MapColor = Q("cluster"), g: Optional[str] = token_q) -> Response:
        data = maps.get(g)
        return binary(data.colors[by], g, data.token)


def _matrix_route(router: APIRouter, svc: Service) -> None:
    """``/api/matrix``: pairwise similarities of stored items."""

    @router.get("/api/matrix", response_model=MatrixOut, summary="Cosine similarity of every pair of items")
    def matrix(ids: str = Q(..., min_length=1, max_length=20_000, pattern=_ID_DIGITS,
                            description="item ids, comma-separated (at most 64)")) -> MatrixOut:
        from ..apps.matrix import MATRIX_LIMIT, similarity_matrix

        wanted = list(dict.fromkeys(int(x) for x in ids.split(",")))
        if len(wanted) > MATRIX_LIMIT:
            raise ApiError(422, "too_many", f"a matrix takes at most {MATRIX_LIMIT} items; this names {len(wanted)}")
        items = [svc.item(i) for i in wanted]  # a 404 for an unknown or deleted id
        with svc.lock:
            m = similarity_matrix(svc.coll, wanted, limit=MATRIX_LIMIT)
        return MatrixOut(items=[item_ref(it) for it in items],
                         matrix=[[round(float(v), 6) for v in row] for row in np.asarray(m.matrix)])



def item_ref(item: "Item") -> ItemRef:
    return ItemRef(id=item.id, path=item.path, name=display_name(item.path), kind=item_kind(item.path),
                   width=item.width, height=item.height, **ItemRef.links(item.id))


def _clustering_out(c: "Clustering") -> ClusteringOut:
    return ClusteringOut(method=c.method, k=c.k, k_chosen_by=c.k_chosen_by,
                         k_scores={str(k): round(float(v), 6) for k, v in c.k_scores.items()},
                         noise=c.noise, unassigned=c.unassigned,
                         clusters=[ClusterOut(id=cl.id, name=cl.name, size=cl.size,
                                              central=[item_ref(it) for it in cl.central if it.status == "ok"])
                                   for cl in c.clusters])


def _labelling_out(lab: "Labelling") -> LabellingOut:
    return LabellingOut(labels=list(lab.labels), templates=list(lab.templates), multi=lab.multi,
                        min_score=lab.min_score, counts=[LabelCountOut(label=c.label, count=c.count)
                                                         for c in lab.counts], labelled=lab.labelled)


# --------------------------------------------------------------------------- the map's buffers
@dataclass(frozen=True)
class _MapData:
    points_read: "MapPoints"  # what the library answered; the same object while nothing changed
    epoch: int
    token: str
    meta: MapOut
    points: bytes
    ids: bytes
    colors: dict[str, bytes]


class MapBuffers:
    """The map as the page wants it, made once per state of the collection.

    :meth:`Collection.map_points` answers the same object until the collection changes (in
    this process or another); the buffers are made again when it answers another one, or
    when this server changed the clustering, labels or map (:meth:`forget`). The token handed
    to clients counts the rebuilds and carries a per-process nonce, so a restarted server
    never matches a browser's cached buffers by accident.
    """

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._epoch = 0
        self._builds = 0
        self._nonce = secrets.token_hex(4)
        self._data: _MapData | None = None

    def forget(self) -> None:
        with self.svc.lock:
            self._epoch += 1
            self._data = None

    def get(self, token: str | None = None) -> _MapData:
        """The current map's buffers; a 404 ``no_map`` when the collection has none.

        A buffer asked for under the token of the buffers made last is answered from them
        without asking the library: a token names one build, and the summary that handed it
        out checked that it was current (reading the map again costs a scan of the items).
        """
        svc = self.svc
        with svc.lock:
            data = self._data
            if token is not None and data is not None and data.token == token:
                return data
            points = svc.coll.map_points()  # places items added since, if any
            if points is None:
                raise ApiError(404, "no_map", "this collection has no map yet: run `lookalike map --collection "
                                              f"{svc.coll.path.name}`, or POST /api/map")
            data = self._data
            if data is not None and data.points_read is points and data.epoch == self._epoch:
                return data
            self._builds += 1
            token = f"{self._builds}-{self._nonce}"
            data = self._data = _build(points, svc.coll.clustering(), self._epoch, token)
            return data


def _build(points: "MapPoints", clustering: "Clustering | None", epoch: int, token: str) -> _MapData:
    n = len(points)
    xy = np.nan_to_num(np.asarray(points.xy, dtype=np.float32).reshape(n, 2))
    ids = np.asarray(points.ids, dtype=np.int64)
    wide = n > 0 and int(ids.max()) >= 2**32
    lo = xy.min(axis=0) if n else np.zeros(2, np.float32)
    hi = xy.max(axis=0) if n else np.zeros(2, np.float32)
    colors, categories = {}, {}
    for by, (index, cats) in {"cluster": _cluster_index(points.clusters, clustering),
                              "label": _plain_index(points.labels, points.label_names),
                              "folder": _plain_index(points.folders, points.folder_names)}.items():
        colors[by] = index.astype("<u2").tobytes()
        counts = np.bincount(index[index != _NONE], minlength=len(cats)) if n else np.zeros(len(cats), int)
        categories[by] = [MapCategory(name=nm, value=v, count=int(c)) for (nm, v), c in zip(cats, counts)]
    query = f"?g={token}"
    meta = MapOut(method=points.method, count=n,
                  bounds=MapBounds(min_x=float(lo[0]), min_y=float(lo[1]), max_x=float(hi[0]), max_y=float(hi[1])),
                  sampled=points.sampled, fitted_on=points.fitted_on, placed=points.placed, generation=token,
                  points=f"/api/map/points{query}", ids=f"/api/map/ids{query}",
                  ids_dtype="float64" if wide else "uint32",
                  colors={by: MapColoring(categories=categories[by], url=f"/api/map/colors{query}&by={by}")
                          for by in colors})
    return _MapData(points_read=points, epoch=epoch, token=token, meta=meta, points=xy.astype("<f4").tobytes(),
                    ids=ids.astype("<f8" if wide else "<u4").tobytes(), colors=colors)


def _plain_index(index: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[tuple[str, int | None]]]:
    """Category = the index itself; none where it is negative or past what a Uint16 holds."""
    idx = np.asarray(index, dtype=np.int64)
    out = np.where((idx < 0) | (idx >= min(len(names), _NONE)), _NONE, idx).astype(np.uint16)
    return out, [(str(nm), None) for nm in names[:_NONE]]


def _cluster_index(clusters: np.ndarray, clustering: "Clustering | None") -> tuple[np.ndarray, list[tuple[str, int | None]]]:
    """Category i = the clustering's i-th cluster (largest first), then the noise group if any
    point is in it; none for points in no (known) cluster."""
    cids = np.asarray(clusters, dtype=np.int64)
    cats: list[tuple[str, int | None]] = [(c.name, c.id) for c in (clustering.clusters if clustering else [])]
    if len(cids) and (cids == NOISE).any():
        cats.append(("noise", NOISE))
    cats = cats[:_NONE]
    if not cats:
        return np.full(len(cids), _NONE, np.uint16), []
    values = np.array([v for _, v in cats], dtype=np.int64)
    order = np.argsort(values, kind="stable")
    pos = np.clip(np.searchsorted(values[order], cids), 0, len(values) - 1)
    found = values[order][pos] == cids
    return np.where(found, order[pos], _NONE).astype(np.uint16), cats
