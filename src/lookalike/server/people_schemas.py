"""The People API's request and response bodies (pydantic), beside :mod:`.schemas`."""

from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .schemas import ItemRef

__all__ = ["PersonOut", "PeopleOut", "FaceOut", "PersonFacesOut", "PersonPhotosOut", "ItemFaceOut", "ItemFacesOut",
           "NameIn", "MergeIn", "SplitIn", "RejectIn", "RejectOut", "PersonRef"]

#: A person as a client names one: the id, or the name (any case).
PersonRef = Union[Annotated[int, Field(ge=0, le=2**63 - 1)], Annotated[str, StringConstraints(min_length=1,
                                                                                               max_length=200)]]
_FaceIds = list[Annotated[int, Field(ge=0, le=2**63 - 1)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonOut(BaseModel):
    id: int
    name: Optional[str] = Field(None, description="the name a person gave it; None until named")
    label: str = Field(description="the name, else 'person ID'")
    faces: int
    photos: int = Field(description="distinct items showing this person")
    cover_face: Optional[int] = Field(None, description="the face to show for this person (GET /api/faces/{id}/crop)")
    sample_faces: list[int] = Field(default_factory=list, description="a few more of its faces, best first")


class PeopleOut(BaseModel):
    people: list[PersonOut]
    total: int = Field(description="people with at least min_faces faces")
    offset: int
    unassigned: int = Field(description="faces in no person (too few alike to form one)")
    indexed: bool = Field(description="whether `lookalike faces index` has run on this collection")
    crops_allowed: bool = Field(description="whether this server shows face crops (a token, or loopback only)")


class FaceOut(BaseModel):
    id: int
    item_id: int
    path: str
    box: list[int] = Field(description="left, top, right, bottom in the original image's (upright) pixels")
    score: float
    manual: bool = Field(description="a person put it in this person (a regroup leaves it there)")


class PersonFacesOut(BaseModel):
    person: PersonOut
    faces: list[FaceOut]
    offset: int
    has_more: bool
    crops_allowed: bool


class PersonPhotosOut(BaseModel):
    person: int
    offset: int
    hits: list[ItemRef] = Field(description="the person's photos, by id")
    has_more: bool


class ItemFaceOut(BaseModel):
    id: int
    box: list[int] = Field(description="left, top, right, bottom in pixels of the image width x height")
    person_id: Optional[int] = None
    person_label: Optional[str] = None


class ItemFacesOut(BaseModel):
    item_id: int
    width: Optional[int] = Field(None, description="the upright image's width, the boxes' frame")
    height: Optional[int] = None
    indexed: bool = Field(description="whether faces were looked for in this collection")
    faces: list[ItemFaceOut]


class NameIn(_Strict):
    name: Optional[Annotated[str, StringConstraints(max_length=200)]] = Field(
        description="the new name; null or empty clears it")


class MergeIn(_Strict):
    into: PersonRef = Field(description="the person that stays (it keeps its name, or takes the first other's)")
    others: list[PersonRef] = Field(min_length=1, max_length=1000, description="people merged into it and deleted")


class SplitIn(_Strict):
    faces: _FaceIds = Field(min_length=1, max_length=10_000, description="faces of the person that form a new one")
    name: Optional[Annotated[str, StringConstraints(max_length=200)]] = None


class RejectIn(_Strict):
    faces: _FaceIds = Field(min_length=1, max_length=10_000,
                            description="faces that are not this person (never put back into it)")


class RejectOut(BaseModel):
    rejected: int
    person: Optional[PersonOut] = Field(None, description="the person afterwards (None if it has gone)")
