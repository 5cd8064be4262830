"""``/api/duplicates``: near-duplicate groups a page at a time, the similarity histogram the
threshold slider is drawn over, and resolving chosen groups (only with ``--allow-actions``).

Grouping is the library's (:meth:`~lookalike.store.collection.Collection.duplicates`); the
:class:`~lookalike.server.service.Service` keeps the last grouping, so every page at one
setting is a slice of it. Files are only ever moved to the quarantine folder the server was
started with: no request names a path that reaches the file system as a destination.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query as Q

from ..errors import InvalidArgument
from .schemas import (DuplicateParams, DuplicateSettingsIn, DuplicatesResponse, ErrorOut, GroupChoice, GroupOut, HistogramOut,
                      MemberOut, ResolveRequest, ResolveResponse, StepOut, StepProblem)
from ..store.item_bytes import item_kind
from .service import ApiError, Service, display_name

if TYPE_CHECKING:
    from ..store.dupe_finder import DuplicateGroups
    from ..store.dupes import DuplicateGroup, DuplicateSettings, Member

__all__ = ["dupes_routes"]

MAX_PER_PAGE = 200
_READ_ONLY = ("this server is read-only: start it with `lookalike serve --allow-actions` to move duplicates to "
              "its quarantine folder")


def dupes_routes(svc: Service) -> APIRouter:
    """The duplicates routes over ``svc``'s collection."""
    router = APIRouter(tags=["duplicates"])
    config = svc.config

    @router.get("/api/duplicates", response_model=DuplicatesResponse,
                summary="Near-duplicate groups, a page at a time (largest groups and closest matches first)")
    def duplicates(page: int = Q(1, ge=1, le=10_000_000, description="1-based page number"),
                   per_page: int = Q(20, ge=1, le=MAX_PER_PAGE, description="groups per page"),
                   *, params: Annotated[DuplicateParams, Q()]) -> DuplicatesResponse:
        t0 = time.perf_counter()
        settings = _settings(params.as_settings())
        groups = svc.duplicate_groups(settings)
        start = (page - 1) * per_page
        shown = groups[start:start + per_page]
        return DuplicatesResponse(
            threshold=groups.threshold, default_threshold=_default_threshold(svc),
            groups=[group_out(g) for g in shown], total_groups=len(groups),
            total_files=groups.files, page=page, per_page=per_page,
            pages=max(1, math.ceil(len(groups) / per_page)), actions_allowed=config.allow_actions,
            took_ms=round((time.perf_counter() - t0) * 1e3, 2))

    @router.get("/api/duplicates/histogram", response_model=HistogramOut,
                summary="How nearest-neighbour similarities are spread: what each threshold would keep")
    def histogram(bins: int = Q(50, ge=5, le=500, description="number of bins")) -> HistogramOut:
        t0 = time.perf_counter()
        h = svc.duplicate_histogram(bins)
        return HistogramOut(edges=[float(e) for e in h.edges], counts=[int(c) for c in h.counts],
                            pairs_above=[int(p) for p in h.pairs_above],
                            default_threshold=float(h.default_threshold),
                            took_ms=round((time.perf_counter() - t0) * 1e3, 2))

    @router.post("/api/duplicates/resolve", response_model=ResolveResponse,
                 summary="Plan (dry run) or apply an action on chosen groups; needs serve --allow-actions",
                 responses={403: {"model": ErrorOut, "description": "the server was not started with --allow-actions"},
                            409: {"model": ErrorOut,
                                  "description": "a group is not in the grouping any more; list them again"}})
    def resolve_groups(req: ResolveRequest) -> ResolveResponse:
        if not config.allow_actions:
            raise ApiError(403, "actions_disabled", _READ_ONLY)
        from ..apps.dupes import resolve

        settings = _settings(req.settings)
        with svc.lock:  # the grouping and the files it names must not change between choosing and acting
            chosen = _chosen(svc.duplicate_groups(settings), req.groups)
            quarantine = config.quarantine_dir
            report = resolve(svc.coll, chosen, req.action, to=quarantine if req.action == "move" else None,
                             apply=req.apply)
            if req.apply:
                svc.forget_duplicates()
        return ResolveResponse(
            applied=report.applied, action=req.action, steps=[_step(s) for s in report.steps], done=len(report.done),
            failed=[StepProblem(step=_step(s), reason=r) for s, r in report.failed],
            skipped=[StepProblem(step=_step(s), reason=r) for s, r in report.skipped],
            bytes_freed=report.bytes_freed, journal=str(report.journal) if report.journal else None,
            quarantine=str(quarantine) if req.action == "move" else None)

    return router


def _settings(given: DuplicateSettingsIn) -> "DuplicateSettings":
    """The library's settings (it validates them; its refusal is a 422 here)."""
    from ..store.dupes import DuplicateSettings

    fields = given.model_dump()
    for name in ("tiers", "prefer", "reference"):
        fields[name] = tuple(dict.fromkeys(fields[name]))  # order kept, repeats dropped
    try:
        return DuplicateSettings(**fields)
    except InvalidArgument as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None


def _default_threshold(svc: Service) -> float:
    with svc.lock:
        return float(svc.coll.default_duplicate_threshold)


def _chosen(groups: "DuplicateGroups", choices: list[GroupChoice]) -> list["DuplicateGroup"]:
    """The groups named by ``choices``, with their keep and trash choices applied."""
    from ..apps.dupes.resolve import with_choice

    by_id = groups.find([c.id for c in choices])
    seen: set[int] = set()
    out = []
    for choice in choices:
        if choice.id in seen:
            raise ApiError(422, "invalid_request", f"group {choice.id} is named twice")
        seen.add(choice.id)
        group = by_id.get(choice.id)
        if group is None:
            raise ApiError(409, "stale_group", f"there is no group {choice.id} at these settings (any more); "
                                               "list the duplicates again and choose from what is there")
        members = {m.item.id for m in group.members}
        keep = set(choice.keep) if choice.keep is not None else {group.kept.item.id}
        trash = set(choice.trash) if choice.trash is not None else members - keep
        strangers = (keep | trash) - members
        if strangers:
            raise ApiError(422, "invalid_request", f"group {choice.id} has no member with id "
                                                   f"{', '.join(map(str, sorted(strangers)))}")
        if not keep:
            raise ApiError(422, "invalid_request", f"group {choice.id}: keep at least one member")
        if keep & trash:
            raise ApiError(422, "invalid_request", f"group {choice.id}: items "
                                                   f"{', '.join(map(str, sorted(keep & trash)))} are both kept "
                                                   "and trashed")
        out.append(with_choice(group, keep, trash))
    return out


def group_out(group: "DuplicateGroup") -> GroupOut:
    """One group as the API shows it."""
    return GroupOut(id=group.id, kind=group.kind, tier=group.tier, similarity=round(float(group.similarity), 6),
                    members=[_member_out(m) for m in group.members])


def _member_out(m: "Member") -> MemberOut:
    item = m.item
    return MemberOut(id=item.id, path=item.path, name=display_name(item.path), folder=os.path.dirname(item.path),
                     kind=item_kind(item.path),
                     width=item.width, height=item.height, size=item.size, modified=item.modified,
                     taken=_taken(m),
                     similarity=round(float(m.similarity), 6), tier=m.tier, keep=m.keep, reference=m.reference,
                     **MemberOut.links(item.id))


def _taken(m: "Member") -> datetime | None:
    """The EXIF capture time, if the file has a usable one."""
    seconds = m.traits.taken if m.traits is not None else None
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc) if seconds is not None else None
    except (OverflowError, OSError, ValueError):  # a camera's clock far out of range
        return None


def _step(step: object) -> StepOut:
    return StepOut(**{k: v for k, v in asdict(step).items() if k in StepOut.model_fields})  # type: ignore[call-overload]
