"""Search by person: ``person:`` filters and ``Filter.person`` resolved to ids, and a query of
persons alone ranked by faces.

A query with terms is ranked as usual (by its vector) among the photos that show every person
asked for. A query without terms is those photos ranked by how typical the person's face in
them is: the cosine of the face's descriptor to the mean descriptor of all the person's faces
(1.0 = the typical face). With several persons a photo scores its worst person's face; with
several faces of one person in a photo, its best.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import QueryError
from .filters import Filter, person_key
from .items import Hit

if TYPE_CHECKING:
    from ..query import Query, QueryOptions
    from .collection import Collection

__all__ = ["wants_persons", "search_by_person", "face_ranking"]

#: Ranks queries with terms among the items a filter passes: ``Collection._ranked``.
Ranker = Callable[[Sequence["Query"], int, "float | None", Filter, "QueryOptions"], list[list[Hit]]]


def wants_persons(queries: Sequence["Query"], flt: Filter) -> bool:
    """Whether any query or the filter names a person (then :func:`search_by_person` runs)."""
    return bool(flt.person) or any(q.persons for q in queries)


def search_by_person(coll: "Collection", queries: Sequence["Query"], k: int, min_score: float | None, flt: Filter,
                     options: "QueryOptions", ranked: Ranker) -> list[list[Hit]]:
    """:meth:`Collection.search_batch` for queries whose filter names people.

    Names are resolved first, so an unknown person fails before any embedding. Queries that
    name the same people share one filter (and one ranking call).

    Raises:
        PersonNotFound: a name or id that is no person of the collection.
        QueryError: a query with neither terms nor persons.
    """
    ids: dict[int | str, int] = {}

    def resolve(person: int | str) -> int:
        key = person_key(person)
        if key not in ids:
            ids[key] = int(coll.people.resolve(key))
        return ids[key]

    common = {resolve(p) for p in flt.person}
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(tuple(sorted(common | {resolve(p) for p in q.persons})), []).append(i)
    out: list[list[Hit]] = [[] for _ in queries]
    for persons, members in groups.items():
        group_flt = replace(flt, person=persons)
        with_terms = [i for i in members if queries[i].terms]
        if with_terms:
            for i, hits in zip(with_terms, ranked([queries[i] for i in with_terms], k, min_score, group_flt,
                                                  options)):
                out[i] = hits
        bare = [i for i in members if not queries[i].terms]
        if bare and not persons:
            raise QueryError("empty query: give text, an image path or URL, id:N, or person:NAME")
        if bare:
            hits = face_ranking(coll, persons, group_flt, k, min_score)
            for i in bare:
                out[i] = list(hits)
    return out


def face_ranking(coll: "Collection", persons: Sequence[int], flt: Filter, k: int,
                 min_score: float | None = None) -> list[Hit]:
    """The ``k`` photos passing ``flt`` that show every one of ``persons`` (ids), most typical
    face first; ``Hit.score`` is the cosine of the face to its person's mean face."""
    candidates = {int(i) for i in coll._storage.searchable(replace(flt, person=tuple(persons)))[0]}
    scores: dict[int, float] = {}
    for n, person in enumerate(persons):
        closeness = _closeness(coll, person, candidates)
        scores = closeness if n == 0 else {i: min(s, closeness[i]) for i, s in scores.items() if i in closeness}
    ranked = sorted(((s, i) for i, s in scores.items() if min_score is None or s >= min_score),
                    key=lambda pair: (-pair[0], pair[1]))[:k]
    rows = coll._storage.db.get_many([i for _, i in ranked])
    return [Hit(i, rows[i].path, s) for s, i in ranked if i in rows]


def _closeness(coll: "Collection", person: int, items: set[int]) -> dict[int, float]:
    """``{item id: cosine of the person's closest face in it to the person's mean face}`` for
    the person's photos among ``items``; the mean is over all the person's faces."""
    rows = coll._storage.db.conn.execute("SELECT id, item_id FROM faces WHERE person_id = ? ORDER BY id",
                                         (int(person),)).fetchall()
    if not rows:
        return {}
    vectors = np.asarray(coll.faces.vectors([face_id for face_id, _ in rows]), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    mean = vectors.mean(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    cosines = vectors @ mean
    best: dict[int, float] = {}
    for (_, item_id), cos in zip(rows, cosines.tolist()):
        if item_id in items and cos > best.get(item_id, -2.0):
            best[item_id] = float(cos)
    return best
