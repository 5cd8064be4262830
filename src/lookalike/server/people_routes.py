"""``/api/people`` and ``/api/faces``: the people found in a collection's photos, their faces,
and the edits a person makes to them (name, merge, split, "not this person").

Faces are found by ``lookalike faces index`` (never by the server). The edits are allowed
without ``serve --allow-actions``: they change only the collection's own face metadata, never
a user's file, just as naming a cluster would. Face crops are personal data: a server with
no token that listens beyond loopback answers 403 for them (:attr:`ServerConfig.crops_allowed`),
and the People page then shows a notice instead.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from fastapi import APIRouter, Path as P, Query as Q
from fastapi.responses import Response

from ..errors import FaceNotFound, PersonNotFound
from ..store.item_bytes import item_kind
from .people_schemas import (FaceOut, ItemFaceOut, ItemFacesOut, MergeIn, NameIn, PeopleOut, PersonFacesOut,
                             PersonOut, PersonPhotosOut, RejectIn, RejectOut, SplitIn)
from .schemas import ErrorOut, ItemRef
from .service import MAX_ID, ApiError, Service, display_name

if TYPE_CHECKING:
    from ..store.face_types import FaceRecord, Person

__all__ = ["people_routes"]

SAMPLE_FACES = 4  # faces besides the cover on a person's card
_PERSON = P(..., min_length=1, max_length=200, description="a person's id, or its name (any case)")
_NOT_FOUND = {404: {"model": ErrorOut, "description": "no such person (or face, or item)"}}
_NO_CROPS = ("face crops are hidden: this server listens beyond loopback without a token; serve it with "
             "--token (or LOOKALIKE_TOKEN), or on 127.0.0.1, to see them")


@contextmanager
def _found() -> Iterator[None]:
    """The library's PersonNotFound and FaceNotFound as 404s (they are QueryErrors, 400 elsewhere)."""
    try:
        yield
    except (PersonNotFound, FaceNotFound) as exc:
        raise ApiError(404, "not_found", str(exc)) from None


def people_routes(svc: Service) -> APIRouter:
    """The people and faces routes over ``svc``'s collection."""
    router = APIRouter(tags=["people"])
    _read_routes(router, svc)
    _edit_routes(router, svc)
    _face_routes(router, svc)
    return router


def _read_routes(router: APIRouter, svc: Service) -> None:
    config = svc.config

    @router.get("/api/people", response_model=PeopleOut, summary="The people found, most faces first")
    def people(offset: int = Q(0, ge=0, le=10_000_000), limit: int = Q(200, ge=1, le=1000),
               min_faces: int = Q(1, ge=1, le=1_000_000)) -> PeopleOut:
        with svc.lock:
            everyone = svc.coll.people(min_faces=min_faces)
            shown = [person_out(svc, p) for p in everyone[offset:offset + limit]]
            stats = svc.coll.faces.stats()
            indexed = svc.coll.faces.indexed
        return PeopleOut(people=shown, total=len(everyone), offset=offset, unassigned=stats.unassigned_faces,
                         indexed=indexed, crops_allowed=config.crops_allowed)

    @router.get("/api/people/{person}", response_model=PersonFacesOut, responses=_NOT_FOUND,
                summary="A person and a page of its faces, best first")
    def person(person: str = _PERSON, offset: int = Q(0, ge=0, le=10_000_000),
               limit: int = Q(100, ge=1, le=1000)) -> PersonFacesOut:
        with svc.lock, _found():
            found = svc.coll.people.get(person)
            faces = svc.coll.people.faces(found.id, offset=offset, limit=limit + 1)
            out = person_out(svc, found)
        return PersonFacesOut(person=out, faces=[face_out(f) for f in faces[:limit]], offset=offset,
                              has_more=len(faces) > limit, crops_allowed=config.crops_allowed)

    @router.get("/api/people/{person}/photos", response_model=PersonPhotosOut, responses=_NOT_FOUND,
                summary="A person's photos, by id")
    def photos(person: str = _PERSON, offset: int = Q(0, ge=0, le=10_000_000),
               limit: int = Q(48, ge=1, le=500)) -> PersonPhotosOut:
        with svc.lock, _found():
            pid = svc.coll.people.resolve(person)
            items = svc.coll.people.photos(pid, offset=offset, limit=limit + 1)
        hits = [ItemRef(id=it.id, path=it.path, name=display_name(it.path), kind=item_kind(it.path), width=it.width,
                        height=it.height, **ItemRef.links(it.id)) for it in items[:limit]]
        return PersonPhotosOut(person=pid, offset=offset, hits=hits, has_more=len(items) > limit)


def _edit_routes(router: APIRouter, svc: Service) -> None:
    """Name, merge, split, "not this person": no --allow-actions needed (see the module's note)."""

    @router.post("/api/people/merge", response_model=PersonOut, responses=_NOT_FOUND,
                 summary="Merge people into one (their faces move to `into`, and stay there)")
    def merge(req: MergeIn) -> PersonOut:
        into, others = req.into, req.others
        with svc.lock, _found():
            ids = [svc.coll.people.resolve(p) for p in (into, *others)]
            if ids[0] in ids[1:]:
                raise ApiError(422, "invalid_request", f"person {ids[0]} cannot be merged into itself")
            return person_out(svc, svc.coll.people.merge(ids[0], *dict.fromkeys(ids[1:])))

    @router.post("/api/people/{person}/name", response_model=PersonOut, responses=_NOT_FOUND,
                 summary="Name a person (an empty name clears it); a name taken by another person is refused")
    def name(req: NameIn, person: str = _PERSON) -> PersonOut:
        new = (req.name or "").strip() or None
        with svc.lock, _found():
            return person_out(svc, svc.coll.people.name(person, new))

    @router.post("/api/people/{person}/split", response_model=PersonOut, responses=_NOT_FOUND,
                 summary="Move some of a person's faces to a new person")
    def split(req: SplitIn, person: str = _PERSON) -> PersonOut:
        new_name = (req.name or "").strip() or None
        with svc.lock, _found():
            return person_out(svc, svc.coll.people.split(person, list(dict.fromkeys(req.faces)), name=new_name))

    @router.post("/api/people/{person}/reject", response_model=RejectOut, responses=_NOT_FOUND,
                 summary="Not this person: the faces leave it and are never put back into it")
    def reject(req: RejectIn, person: str = _PERSON) -> RejectOut:
        faces = list(dict.fromkeys(req.faces))
        with svc.lock, _found():
            pid = svc.coll.people.resolve(person)
            svc.coll.people.reject(pid, faces)
            try:
                after: PersonOut | None = person_out(svc, svc.coll.people.get(pid))
            except PersonNotFound:  # a person left with no faces may be gone
                after = None
        return RejectOut(rejected=len(faces), person=after)


def _face_routes(router: APIRouter, svc: Service) -> None:
    config = svc.config

    @router.get("/api/faces/{face_id}/crop", summary="A face's small square crop (JPEG)", response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}}, **_NOT_FOUND,
                           403: {"model": ErrorOut, "description": "crops are hidden: no token, beyond loopback"}})
    def crop(face_id: int = P(..., ge=0, le=MAX_ID)) -> Response:
        if not config.crops_allowed:
            raise ApiError(403, "crops_hidden", _NO_CROPS)
        with svc.lock, _found():
            data = svc.coll.faces.crop(face_id)
        # A face id is never reused, so its crop never changes; private: it is a person's face.
        return Response(data, media_type="image/jpeg",
                        headers={"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"})

    @router.get("/api/items/{item_id}/faces", response_model=ItemFacesOut, responses=_NOT_FOUND,
                summary="The faces found in an item, with their person")
    def item_faces(item_id: int = P(..., ge=0, le=MAX_ID)) -> ItemFacesOut:
        item = svc.item(item_id)
        with svc.lock:
            faces = svc.coll.faces.of_item(item.id)
            indexed = svc.coll.faces.indexed
            labels = {}
            for pid in {f.person_id for f in faces if f.person_id is not None}:
                try:
                    labels[pid] = svc.coll.people.get(pid).label
                except PersonNotFound:  # deleted between the two reads: show the face unlabelled
                    pass
        return ItemFacesOut(item_id=item.id, width=item.width, height=item.height, indexed=indexed,
                            faces=[ItemFaceOut(id=f.id, box=list(f.box), person_id=f.person_id,
                                               person_label=labels.get(f.person_id) if f.person_id is not None else None)
                                   for f in faces])


def person_out(svc: Service, p: "Person") -> PersonOut:
    """A person as the API shows it, with a few face ids for its card (call under the lock)."""
    sample = [f.id for f in svc.coll.people.faces(p.id, limit=SAMPLE_FACES + 1) if f.id != p.cover_face]
    return PersonOut(id=p.id, name=p.name, label=p.label, faces=p.faces, photos=p.photos, cover_face=p.cover_face,
                     sample_faces=sample[:SAMPLE_FACES])


def face_out(f: "FaceRecord") -> FaceOut:
    return FaceOut(id=f.id, item_id=f.item_id, path=f.path, box=list(f.box), score=round(float(f.score), 6),
                   manual=f.manual)
