"""The API's request and response bodies (pydantic): what the OpenAPI spec documents."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TermIn", "Filters", "FilterParams", "SearchRequest", "ItemRef", "HitOut", "SearchResponse", "ItemOut", "InfoOut", "ErrorOut",
           "HealthOut"]

_MAX_TEXT = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TermIn(_Strict):
    """One weighted part of a query: exactly one of ``text``, ``id`` or ``url``."""

    text: Optional[str] = Field(None, min_length=1, max_length=_MAX_TEXT, description="words to search for")
    id: Optional[int] = Field(None, ge=0, le=2**63 - 1, description="a stored item, by id")
    url: Optional[str] = Field(None, max_length=2048,
                               description="an image to fetch; only hosts on the server's allow-list")
    weight: float = Field(1.0, ge=-100, le=100, description="negative weights push results away")

    @model_validator(mode="after")
    def _one_source(self) -> "TermIn":
        given = [name for name in ("text", "id", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a term needs exactly one of text, id or url")
        return self


class Filters(_Strict):
    """Which items may be returned; every given condition must hold."""

    under: list[str] = Field(default_factory=list, max_length=50,
                             description="folders (absolute, as stored) the items must lie below")
    glob: Optional[str] = Field(None, max_length=500, description="shell pattern over the full path")
    modified_after: Optional[datetime] = None
    modified_before: Optional[datetime] = None
    min_width: Optional[int] = Field(None, ge=0, le=10**9)
    min_height: Optional[int] = Field(None, ge=0, le=10**9)
    max_width: Optional[int] = Field(None, ge=0, le=10**9)
    max_height: Optional[int] = Field(None, ge=0, le=10**9)


class FilterParams(Filters):
    """:class:`Filters` as query parameters (``?min_width=800&under=/a&under=/b``); other
    parameters of the route sit beside them, so unknown names are not refused here."""

    model_config = ConfigDict(extra="ignore")

    def as_filters(self) -> Filters:
        return Filters.model_validate(self.model_dump())


class SearchRequest(_Strict):
    """A search: ``q`` (text, ``id:N`` and weights, as on the command line), ``terms``, or both."""

    q: Optional[str] = Field(None, max_length=_MAX_TEXT, description="e.g. 'red apple', 'id:42 + 0.5:sunset'")
    terms: list[TermIn] = Field(default_factory=list, max_length=200)
    k: int = Field(24, ge=1, le=1000, description="results to return")
    offset: int = Field(0, ge=0, le=100_000, description="results to skip (pagination)")
    min_score: Optional[float] = Field(None, ge=-1, le=1)
    filters: Filters = Field(default_factory=Filters)

    @model_validator(mode="after")
    def _something(self) -> "SearchRequest":
        if not (self.q and self.q.strip()) and not self.terms:
            raise ValueError("give q, terms, or both")
        return self


class ItemRef(BaseModel):
    """What every item in an answer carries: its id, file and where to fetch its pixels."""

    id: int
    path: str
    name: str
    width: Optional[int] = None
    height: Optional[int] = None
    thumbnail: str = Field(description="URL of a 256-pixel thumbnail")
    image: str = Field(description="URL of the original file")

    @staticmethod
    def links(item_id: int) -> dict[str, str]:
        return {"thumbnail": f"/api/items/{item_id}/thumbnail?size=256", "image": f"/api/items/{item_id}/image"}


class HitOut(ItemRef):
    score: float


class SearchResponse(BaseModel):
    query: str = Field(description="the query as understood, e.g. 'red apple - 0.5*id:4 + [image]'")
    k: int
    offset: int
    hits: list[HitOut]
    has_more: bool = Field(description="whether asking with a larger offset can return more")
    took_ms: float


class ItemOut(ItemRef):
    folder: str
    size: int
    modified: datetime
    hash: Optional[str] = None


class IndexOut(BaseModel):
    kind: str = Field(description="'exact', or the approximate index's configuration")
    recall: Optional[float] = Field(None, description="measured recall@10 of the approximate index")
    p50_ms: Optional[float] = None


class InfoOut(BaseModel):
    name: str
    model: str
    dim: int
    items: int
    failed: int
    text_search: bool = Field(description="whether the model embeds text (else image queries only)")
    index: IndexOut
    thumbnail_sizes: list[int]
    max_upload_bytes: int
    url_queries: bool = Field(description="whether the server fetches query images from (allowed) URLs")


class HealthOut(BaseModel):
    status: str
    items: int


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. 'not_found', 'bad_query'")
    message: str = Field(description="what went wrong and what to do")


class ErrorOut(BaseModel):
    error: ErrorBody
