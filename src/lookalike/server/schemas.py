"""The API's request and response bodies (pydantic): what the OpenAPI spec documents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["TermIn", "Filters", "FilterParams", "SearchRequest", "ItemRef", "HitOut", "SearchResponse", "ItemOut", "InfoOut", "ErrorOut",
           "HealthOut", "DuplicateSettingsIn", "DuplicateParams", "MemberOut", "GroupOut", "DuplicatesResponse",
           "HistogramOut", "GroupChoice", "ResolveRequest", "StepOut", "StepProblem", "ResolveResponse",
           "ClusterOut", "ClusteringOut", "ClusterMembersOut", "ClusterRequest", "LabelCountOut", "LabellingOut", "LabelRequest",
           "MapCategory", "MapColoring", "MapBounds", "MapOut", "MapRequest", "MatrixOut"]

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
    label: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50,
        description="zero-shot labels (GET /api/labels); items must carry one of them")
    cluster: list[Annotated[int, Field(ge=-1, le=2**31)]] = Field(
        default_factory=list, max_length=200,
        description="cluster ids (GET /api/clusters; -1 is the noise group); items must be in one of them")
    person: list[Union[Annotated[int, Field(ge=0, le=2**63 - 1)],
                       Annotated[str, StringConstraints(min_length=1, max_length=200)]]] = Field(
        default_factory=list, max_length=20,
        description="people (GET /api/people) by id or name; items must show every one of them")
    conditions: list[Annotated[str, StringConstraints(min_length=3, max_length=500)]] = Field(
        default_factory=list, max_length=50,
        description="metadata conditions, all must hold: key=value, key!=value, key<n, <=, >, >=, 'key in a,b' "
                    "(width, height, size and path are the item's own; other keys are table columns)")


class FilterParams(Filters):
    """:class:`Filters` as query parameters (``?min_width=800&under=/a&under=/b``); other
    parameters of the route sit beside them, so unknown names are not refused here."""

    model_config = ConfigDict(extra="ignore")

    def as_filters(self) -> Filters:
        return Filters.model_validate(self.model_dump())


class SearchRequest(_Strict):
    """A search: ``q`` (text, ``id:N``, ``person:NAME`` and weights, as on the command line),
    ``terms``, or both; or neither with ``filters.person`` (that person's photos)."""

    q: Optional[str] = Field(None, max_length=_MAX_TEXT, description="e.g. 'red apple', 'id:42 + 0.5:sunset'")
    terms: list[TermIn] = Field(default_factory=list, max_length=200)
    k: int = Field(24, ge=1, le=1000, description="results to return")
    offset: int = Field(0, ge=0, le=100_000, description="results to skip (pagination)")
    min_score: Optional[float] = Field(None, ge=-1, le=1)
    filters: Filters = Field(default_factory=Filters)

    @model_validator(mode="after")
    def _something(self) -> "SearchRequest":
        if not (self.q and self.q.strip()) and not self.terms and not self.filters.person:
            raise ValueError("give q, terms, or both (or filters.person alone)")
        return self


class ItemRef(BaseModel):
    """What every item in an answer carries: its id, file and where to fetch its pixels."""

    id: int
    path: str
    name: str
    width: Optional[int] = None
    height: Optional[int] = None
    thumbnail: str = Field(description="URL of a 256-pixel thumbnail")
    image: str = Field(description="URL of the original file (a URL item: its downloaded copy)")
    kind: Literal["file", "url", "member"] = Field(
        "file", description="what path is: a local file, an http(s) URL, or '<tar shard>#<member>'")

    @staticmethod
    def links(item_id: int) -> dict[str, str]:
        return {"thumbnail": f"/api/items/{item_id}/thumbnail?size=256", "image": f"/api/items/{item_id}/image"}


class HitOut(ItemRef):
    score: float
    caption: Optional[str] = Field(None, description="the item's caption, when it has one")


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
    caption: Optional[str] = Field(None, description="the item's caption, when it has one")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="caption and extra table columns stored with the item "
                                                 "(what filters.conditions can select on)")


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
    actions_allowed: bool = Field(False, description="whether the duplicates page may act on files "
                                  "(serve --allow-actions)")
    metadata_keys: list[str] = Field(default_factory=list,
                                     description="metadata keys stored with the items (captions, table columns): "
                                                 "what filters.conditions can name besides width, height, size, path")


class HealthOut(BaseModel):
    status: str
    items: int


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. 'not_found', 'bad_query'")
    message: str = Field(description="what went wrong and what to do")


class ErrorOut(BaseModel):
    error: ErrorBody


# --------------------------------------------------------------------------- duplicates
Tier = Literal["exact", "perceptual", "semantic"]
KeepRule = Literal["largest", "oldest", "newest", "most-metadata", "shortest-path", "sharpest"]
Action = Literal["move", "hardlink", "symlink", "delete"]
_MAX_FOLDERS = 20


class DuplicateSettingsIn(_Strict):
    """How to group duplicates (every field optional; the library's defaults otherwise)."""

    threshold: Optional[float] = Field(None, ge=-1, le=1, description="cosine similarity from which two images match; "
                                       "default: the model's calibrated threshold")
    fraction: Optional[float] = Field(None, gt=0, le=1, description="instead of a threshold: keep the closest "
                                      "share of nearest-neighbour pairs")
    tiers: list[Tier] = Field(default_factory=lambda: ["exact", "perceptual", "semantic"], min_length=1, max_length=3)
    hash_bits: Optional[int] = Field(None, ge=0, le=32, description="perceptual tier: pHash and dHash within this "
                                     "Hamming distance; default: the model's")
    perceptual_floor: Optional[float] = Field(None, ge=-1, le=1, description="perceptual tier: the cosine "
                                              "similarity a hash match needs too; default: the model's")
    flips: bool = Field(True, description="whether a mirror image counts as a duplicate")
    keep: KeepRule = Field("largest", description="which member of a group is kept")
    prefer: list[str] = Field(default_factory=list, max_length=_MAX_FOLDERS,
                              description="folders (absolute, as stored) whose files are kept first")
    reference: list[str] = Field(default_factory=list, max_length=_MAX_FOLDERS,
                                 description="folders (absolute, as stored) never acted on")
    burst_seconds: Optional[float] = Field(None, gt=0, le=86_400, description="shots this close by EXIF time "
                                           "form their own 'burst' groups")


class DuplicateParams(DuplicateSettingsIn):
    """:class:`DuplicateSettingsIn` as query parameters (``?threshold=0.95&tiers=exact&tiers=semantic``),
    beside the paging parameters."""

    model_config = ConfigDict(extra="ignore")

    def as_settings(self) -> DuplicateSettingsIn:
        return DuplicateSettingsIn.model_validate(self.model_dump())


class MemberOut(ItemRef):
    """One file of a duplicate group."""

    folder: str
    size: int = Field(description="bytes")
    modified: datetime
    taken: Optional[datetime] = Field(None, description="EXIF capture time, when the file has one")
    similarity: float = Field(description="cosine similarity to the group's medoid")
    tier: Tier = Field(description="the strongest tier linking it to the medoid")
    keep: bool = Field(description="chosen by the keep rule")
    reference: bool = Field(description="lies in a reference folder: never acted on")


class GroupOut(BaseModel):
    id: int = Field(description="the medoid's item id: names the group in a resolve request")
    kind: Literal["duplicate", "burst"]
    tier: Tier = Field(description="the weakest member tier")
    similarity: float = Field(description="the lowest member-to-medoid similarity")
    members: list[MemberOut] = Field(description="the kept member first")


class DuplicatesResponse(BaseModel):
    threshold: float = Field(description="the cosine threshold used (given, derived from fraction, or the default)")
    default_threshold: float = Field(description="the model's calibrated default")
    groups: list[GroupOut]
    total_groups: int
    total_files: int = Field(description="files in all groups")
    page: int
    per_page: int
    pages: int
    actions_allowed: bool = Field(description="whether POST /api/duplicates/resolve is enabled on this server")
    took_ms: float


class HistogramOut(BaseModel):
    """Nearest-neighbour similarities: what a threshold would keep."""

    edges: list[float] = Field(description="bin edges, ascending (bins + 1 of them)")
    counts: list[int] = Field(description="items whose nearest neighbour's similarity falls in each bin")
    pairs_above: list[int] = Field(description="for each edge, nearest-neighbour pairs at or above it")
    default_threshold: float
    took_ms: float


class GroupChoice(_Strict):
    """What to do with one group: which members stay and which are acted on."""

    id: int = Field(ge=0, le=2**63 - 1, description="the group's id (from GET /api/duplicates)")
    keep: Optional[list[int]] = Field(None, max_length=1000, description="item ids kept; default: the keep rule's")
    trash: Optional[list[int]] = Field(None, max_length=1000, description="item ids acted on; default: every "
                                       "member not kept")


class ResolveRequest(_Strict):
    """Act on chosen duplicate groups: a dry run (the plan) unless ``apply``."""

    settings: DuplicateSettingsIn = Field(default_factory=DuplicateSettingsIn,
                                          description="the settings the groups were listed with")
    action: Action = Field("move", description="move: into the server's quarantine folder; delete: into the "
                           "collection's trash; hardlink/symlink: replace with a link to the kept file")
    groups: list[GroupChoice] = Field(min_length=1, max_length=1000)
    apply: bool = Field(False, description="false: answer the plan and touch nothing")


class StepOut(BaseModel):
    action: Action
    item_id: int
    path: str
    target: Optional[str] = None
    keep_id: int
    group_id: int


class StepProblem(BaseModel):
    step: StepOut
    reason: str


class ResolveResponse(BaseModel):
    applied: bool
    action: Action
    steps: list[StepOut] = Field(description="planned (dry run) or attempted")
    done: int = Field(description="steps applied")
    failed: list[StepProblem]
    skipped: list[StepProblem]
    bytes_freed: int
    journal: Optional[str] = Field(None, description="the journal written (undo: lookalike dupes --undo JOURNAL)")
    quarantine: Optional[str] = Field(None, description="where moved files go")


# --------------------------------------------------------------------------- explore
class ClusterOut(BaseModel):
    id: int = Field(description="the cluster's id (a search filter: filters.cluster)")
    name: str = Field(description="the best zero-shot label of its centre, or its members' most common folder")
    size: int
    central: list[ItemRef] = Field(description="its most central items, the medoid first")


class ClusteringOut(BaseModel):
    method: Literal["kmeans", "hdbscan"]
    k: int = Field(description="clusters, the noise group not counted")
    k_chosen_by: str = Field(description="'given', 'silhouette' (best on a sample over a grid of k) or 'density'")
    k_scores: dict[str, float] = Field(description="the silhouette of each k tried")
    noise: int = Field(description="items in the noise group (id -1; HDBSCAN only)")
    unassigned: int = Field(description="searchable items in no cluster (normally 0)")
    clusters: list[ClusterOut] = Field(description="largest first")


class ClusterMembersOut(BaseModel):
    cluster: int
    name: str
    size: int
    offset: int
    hits: list[HitOut] = Field(description="members, closest to the centre first; score is the cosine to it")
    has_more: bool


class ClusterRequest(_Strict):
    """Compute (or recompute) the clustering."""

    method: Literal["kmeans", "hdbscan"] = "kmeans"
    k: Optional[int] = Field(None, ge=1, le=10_000, description="k-means clusters; default: chosen by silhouette")
    min_cluster_size: Optional[int] = Field(None, ge=2, le=1_000_000, description="HDBSCAN's; default: the library's")
    refresh: bool = Field(True, description="recompute even when a clustering with these settings is stored")


class LabelCountOut(BaseModel):
    label: str
    count: int = Field(description="items whose top label it is")


class LabellingOut(BaseModel):
    labels: list[str]
    templates: list[str]
    multi: bool
    min_score: Optional[float] = None
    counts: list[LabelCountOut]
    labelled: int


class LabelRequest(_Strict):
    """Label every item zero-shot with one of ``labels`` (needs a model that reads text)."""

    labels: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(min_length=1,
                                                                                         max_length=1000)
    multi: bool = Field(False, description="store every label scoring at least min_score, not only the top one")
    min_score: Optional[float] = Field(None, ge=-1, le=1, description="items scoring below get no label")


MapColor = Literal["cluster", "label", "folder"]


class MapCategory(BaseModel):
    name: str
    count: int = Field(description="points of this category")
    value: Optional[int] = Field(None, description="the cluster id (colour by cluster), else none")


class MapColoring(BaseModel):
    categories: list[MapCategory] = Field(description="category i is index i of the colors buffer")
    url: str = Field(description="Uint16 little-endian, one per point: the category index, 65535 for none")


class MapBounds(BaseModel):
    min_x: float
    min_y: float
    max_x: float
    max_y: float


class MapOut(BaseModel):
    """The map's summary; the points themselves travel as binary buffers (the URLs here)."""

    method: str
    count: int
    bounds: MapBounds
    sampled: bool = Field(description="whether the layout was fitted on a sample and the rest placed")
    fitted_on: int
    placed: int
    generation: str = Field(description="changes whenever the map, its colours or the collection do")
    points: str = Field(description="URL: Float32 little-endian x, y interleaved (count * 8 bytes)")
    ids: str = Field(description="URL: item ids, little-endian, of ids_dtype (same order as points)")
    ids_dtype: Literal["uint32", "float64"]
    colors: dict[MapColor, MapColoring]


class MapRequest(_Strict):
    """Compute (or refit) the 2-D map."""

    method: Literal["umap", "tsne", "pca"] = "umap"
    refresh: bool = Field(False, description="refit even when a map made with this method is stored")


class MatrixOut(BaseModel):
    items: list[ItemRef]
    matrix: list[list[float]] = Field(description="cosine similarity of each pair, rows and columns as items")
