"""``lookalike faces`` (index, forget, stats) and ``lookalike people`` (list, name, merge,
split, not, faces, regroup): the faces in a collection and the people they group into.

Parsing and rendering only: the work is :attr:`Collection.faces` and :attr:`Collection.people`.
Tables and JSON lines go to stdout; progress, summaries, hints and errors go to stderr.
``lookalike people`` alone lists the people; each subcommand takes its own ``--collection``
(or the group's: ``people --collection C name 3 Ada`` works too).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import LookalikeError
from ..store.collection import Collection
from .common import CollectionOpt, default_collection, err, fail, out
from .progress import TaskProgress

if TYPE_CHECKING:
    from ..store.face_types import FaceIndexReport, FaceRecord, Person

__all__ = ["faces_app", "people_app"]

QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars, no hints.")
JsonOpt = typer.Option(False, "--json", help="JSON lines, one per record.")
PersonArg = typer.Argument(..., help="A person's id or name (see `lookalike people`).")
FacesArg = typer.Argument(..., help="Face ids (see `lookalike people faces ID`).")

faces_app = typer.Typer(
    name="faces", no_args_is_help=True,
    help="Find the faces in a collection's photos (opt-in, stays local; `faces forget` deletes them all).")
# Its help is the callback's docstring: `lookalike people` alone lists them.
people_app = typer.Typer(name="people", invoke_without_command=True)


# --------------------------------------------------------------------------- helpers
def _plural(n: int, noun: str, many: Optional[str] = None) -> str:
    return f"{n:,} {noun if n == 1 else (many or noun + 's')}"


def _target(ctx: typer.Context, collection: Optional[Path]) -> Path:
    """The subcommand's ``--collection``, else the ``people`` group's, else the default one."""
    group = ctx.obj.get("collection") if isinstance(ctx.obj, dict) else None
    return collection or group or default_collection()


def _c(coll: Collection) -> str:
    """The collection option to paste into a hint."""
    return f"--collection {shlex.quote(str(coll.path))}"


def _hint(quiet: bool, *lines: str) -> None:
    if not quiet:
        for line in lines:
            err.print(Text(line, style="dim"), soft_wrap=True)


def _record(obj: Any) -> dict[str, Any]:
    """A dataclass or named tuple as a dict (for ``stats --json`` and its table)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj._asdict())


def _done(text: str) -> None:
    err.print(Text.assemble(("done", "bold green"), " ", text), soft_wrap=True)


# --------------------------------------------------------------------------- faces
@faces_app.command("index")
def faces_index(
    collection: Optional[Path] = CollectionOpt,
    detector: str = typer.Option("hog", "--detector", help="hog (the default) or cnn (finds more turned and small "
                                "faces; 30-50x slower on a CPU, for a dlib built with CUDA)."),
    min_size: int = typer.Option(80, "--min-size", min=1, help="Smallest face to keep, in pixels (box side)."),
    jitter: int = typer.Option(0, "--jitter", min=0, help="Re-sample each face this many times more for its "
                               "descriptor (slower, slightly steadier)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Photos decoded in parallel."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Scan again the photos that failed before."),
    quiet: bool = QuietOpt,
) -> None:
    """Find the faces in every photo of the collection and group the new ones into people.

    Incremental: photos scanned before and unchanged since are not scanned again."""
    try:
        with Collection.open(collection or default_collection()) as coll:
            with TaskProgress(err, quiet, skips=False, faces="finding faces", people="grouping people") as progress:
                report = coll.faces.index(detector=detector, min_size=min_size, jitter=jitter, workers=workers,
                                          retry_failed=retry_failed, progress=progress)
            _index_summary(report, quiet)
            _hint(quiet, f"see them: lookalike people {_c(coll)}",
                  f"name one: lookalike people name ID NAME {_c(coll)}")
    except LookalikeError as exc:
        fail(exc)


def _index_summary(report: "FaceIndexReport", quiet: bool, shown: int = 20) -> None:
    for path, reason in report.errors[:shown]:
        err.print(Text.assemble(("failed", "yellow"), f" {path}: {reason}"), soft_wrap=True)
    if len(report.errors) > shown:
        err.print(Text(f"... and {len(report.errors) - shown:,} more unreadable photos"), soft_wrap=True)
    rate = f", {report.scanned / report.elapsed_s:.1f} photos/s" if report.scanned and report.elapsed_s else ""
    extra = [f"{n:,} {label}" for label, n in (("without faces", report.no_faces), ("unreadable", report.failed),
                                               ("unchanged", report.skipped)) if n]
    people = (f"{_plural(report.new_people, 'new person', 'new people')}, {report.assigned:,} faces joined known "
              f"people, {_plural(report.unassigned, 'face')} in no person")
    _done(f"{_plural(report.scanned, 'photo')} scanned" + (f" ({', '.join(extra)})" if extra else "")
          + f", {_plural(report.faces, 'face')} found; {people} ({report.elapsed_s:.1f}s{rate})")


@faces_app.command("forget")
def faces_forget(
    collection: Optional[Path] = CollectionOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed when not on a terminal)."),
) -> None:
    """Delete every face, face vector, crop and person (names too) from the collection.

    The collection is compacted so nothing is left on disk; the photos and their image index are untouched."""
    try:
        with Collection.open(collection or default_collection()) as coll:
            if not yes:
                stats = _record(coll.faces.stats())
                what = (f"Delete {_plural(stats['faces'], 'face')} and {_plural(stats['people'], 'person', 'people')} "
                        f"from {coll.path}? This cannot be undone.")
                if not _interactive():
                    err.print(Text(f"{what}\nrefusing without a terminal to ask on: pass --yes to delete them"),
                              style="bold red", soft_wrap=True)
                    raise typer.Exit(2)
                typer.confirm(what, abort=True, err=True)
            deleted = coll.faces.forget()
            _done(f"deleted {_plural(deleted, 'face')} with every person, crop and face vector of {coll.path}")
    except LookalikeError as exc:
        fail(exc)


def _interactive() -> bool:
    """Whether a person can answer a prompt (stdin is a terminal)."""
    return sys.stdin.isatty()


@faces_app.command("stats")
def faces_stats(collection: Optional[Path] = CollectionOpt, as_json: bool = typer.Option(
        False, "--json", help="One JSON object.")) -> None:
    """How many photos were scanned (and wait to be), faces, people, named people, unassigned faces."""
    try:
        with Collection.open(collection or default_collection()) as coll:
            stats = _record(coll.faces.stats())
            indexed = coll.faces.indexed
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps({"indexed": indexed, **stats}) + "\n")
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in stats.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    out.print(table)
    if not indexed:
        _hint(False, "faces were never indexed here: lookalike faces index --collection ...")


# --------------------------------------------------------------------------- people
@people_app.callback()
def people(
    ctx: typer.Context,
    collection: Optional[Path] = CollectionOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON line per person: id, name, faces, photos "
                                 "(the paths)."),
    min_faces: int = typer.Option(1, "--min-faces", min=1, help="Only people with at least this many faces."),
    quiet: bool = QuietOpt,
) -> None:
    """List the people found by `lookalike faces index`: id, name, faces, photos, a sample photo.

    The subcommands name, merge, split and regroup them."""
    ctx.obj = {"collection": collection}
    if ctx.invoked_subcommand is not None:
        return
    try:
        with Collection.open(collection or default_collection()) as coll:
            found = coll.people(min_faces=min_faces)
            if as_json:
                for p in found:
                    paths = [item.path for item in coll.people.photos(p.id)]
                    sys.stdout.write(json.dumps({"id": p.id, "name": p.name, "faces": p.faces, "photos": paths},
                                                ensure_ascii=False) + "\n")
            elif found:  # no header over nothing: the summary says why there is no one
                _people_table(found)
            _people_summary(coll, found, quiet or as_json)
    except LookalikeError as exc:
        fail(exc)


def _people_table(found: List["Person"]) -> None:
    table = Table(box=None, header_style="bold")
    for name in ("id", "name", "faces", "photos"):
        table.add_column(name, justify="right" if name != "name" else "left", no_wrap=True)
    table.add_column("sample", overflow="fold")
    for p in found:
        name = Text(p.name) if p.name else Text("(unnamed)", style="dim")
        table.add_row(str(p.id), name, f"{p.faces:,}", f"{p.photos:,}", Text(p.sample_path or ""))
    out.print(table)


def _people_summary(coll: Collection, found: List["Person"], quiet: bool) -> None:
    if found:
        named = sum(1 for p in found if p.name)
        unassigned = _record(coll.faces.stats()).get("unassigned_faces", 0)
        err.print(Text(f"{_plural(len(found), 'person', 'people')} ({named:,} named), "
                       f"{_plural(unassigned, 'face')} in no person"), soft_wrap=True)
        _hint(quiet, f"name one: lookalike people name ID NAME {_c(coll)}",
              f"merge two: lookalike people merge ID OTHER_ID {_c(coll)}",
              f"their faces: lookalike people faces ID {_c(coll)}",
              f"their photos: lookalike search person:ID {_c(coll)}")
    elif not coll.faces.indexed:
        err.print(Text(f"no people: faces have not been indexed in this collection; find them with "
                       f"`lookalike faces index {_c(coll)}`"), soft_wrap=True)
    else:
        err.print(Text("no people: the faces found do not group into any yet (each person needs enough alike "
                       f"faces); try `lookalike people regroup --min-faces 1 {_c(coll)}`, or index more photos "
                       f"with `lookalike faces index {_c(coll)}`"), soft_wrap=True)


def _describe(p: "Person") -> str:
    return f"{p.label} (id {p.id}: {_plural(p.faces, 'face')} in {_plural(p.photos, 'photo')})"


@people_app.command("name")
def people_name(
    ctx: typer.Context,
    person: str = PersonArg,
    new_name: str = typer.Argument(..., help="The new name; \"\" clears it."),
    collection: Optional[Path] = CollectionOpt,
) -> None:
    """Name (or rename) a person. Its faces are pinned: a regroup never moves them."""
    try:
        with Collection.open(_target(ctx, collection)) as coll:
            named = coll.people.name(person, new_name or None)
            _done(f"named {_describe(named)}" if new_name else f"cleared the name of {_describe(named)}")
    except LookalikeError as exc:
        fail(exc)


@people_app.command("merge")
def people_merge(
    ctx: typer.Context,
    into: str = typer.Argument(..., help="The person that stays (id or name)."),
    others: List[str] = typer.Argument(..., help="The people merged into it (ids or names)."),
    collection: Optional[Path] = CollectionOpt,
) -> None:
    """Merge people into one: their faces move to INTO (pinned) and they are deleted."""
    try:
        with Collection.open(_target(ctx, collection)) as coll:
            kept = coll.people.get(into).id  # an unknown INTO is named first
            gone = [coll.people.get(o).label for o in others]  # for the message: they go
            merged = coll.people.merge(kept, *others)
            _done(f"merged {', '.join(gone)} into {_describe(merged)}")
    except LookalikeError as exc:
        fail(exc)


@people_app.command("split")
def people_split(
    ctx: typer.Context,
    person: str = PersonArg,
    faces: List[int] = FacesArg,
    name: Optional[str] = typer.Option(None, "--name", help="Name the new person."),
    collection: Optional[Path] = CollectionOpt,
) -> None:
    """Move some of a person's faces into a new person (the old one will not get them back)."""
    try:
        with Collection.open(_target(ctx, collection)) as coll:
            old = coll.people.get(person)
            new = coll.people.split(old.id, faces, name=name)
            _done(f"split {_plural(len(faces), 'face')} from {old.label} into a new person: {_describe(new)}")
    except LookalikeError as exc:
        fail(exc)


@people_app.command("not")
def people_not(
    ctx: typer.Context,
    person: str = PersonArg,
    faces: List[int] = FacesArg,
    collection: Optional[Path] = CollectionOpt,
) -> None:
    """Not this person: the faces leave it and no regroup puts them back there."""
    try:
        with Collection.open(_target(ctx, collection)) as coll:
            who = coll.people.get(person)
            coll.people.reject(who.id, faces)
            _done(f"{_plural(len(faces), 'face')} no longer {who.label} (id {who.id}), and never put back there")
    except LookalikeError as exc:
        fail(exc)


@people_app.command("faces")
def people_faces(
    ctx: typer.Context,
    person: str = PersonArg,
    as_json: bool = JsonOpt,
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many faces."),
    limit: int = typer.Option(100, "--limit", min=1, help="Show at most this many faces."),
    collection: Optional[Path] = CollectionOpt,
) -> None:
    """A person's faces, best first: pick face ids here for `split` and `not`.

    Columns: face id, photo, box (left, top, right, bottom), detector score, size, and whether a person pinned it."""
    try:
        with Collection.open(_target(ctx, collection)) as coll:
            who = coll.people.get(person)
            records = coll.people.faces(who.id, offset=offset, limit=limit)
            if as_json:
                for f in records:
                    sys.stdout.write(json.dumps(_face_json(f), ensure_ascii=False) + "\n")
                return
            _faces_table(records)
            err.print(Text(f"{_describe(who)}; showing {_plural(len(records), 'face')} from #{offset + 1}"),
                      soft_wrap=True)
            _hint(False, f"not this person: lookalike people not {who.id} FACE_ID... {_c(coll)}",
                  f"into a new person: lookalike people split {who.id} FACE_ID... [--name NAME] {_c(coll)}")
    except LookalikeError as exc:
        fail(exc)


def _face_json(f: "FaceRecord") -> dict[str, Any]:
    return {"id": f.id, "item_id": f.item_id, "path": f.path, "box": list(f.box), "score": round(f.score, 4),
            "size": f.size, "person_id": f.person_id, "manual": f.manual}


def _faces_table(records: List["FaceRecord"]) -> None:
    table = Table(box=None, header_style="bold")
    table.add_column("face", justify="right")
    table.add_column("photo", overflow="fold")
    for name in ("box", "score", "size", "pinned"):
        table.add_column(name, justify="right", no_wrap=True)
    for f in records:
        table.add_row(str(f.id), Text(f.path), ",".join(map(str, f.box)), f"{f.score:.2f}", str(f.size),
                      "yes" if f.manual else "")
    out.print(table)


@people_app.command("regroup")
def people_regroup(
    ctx: typer.Context,
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Largest descriptor distance between "
                                              "faces of one person (default: the stored one, first 0.6, dlib's)."),
    min_faces: Optional[int] = typer.Option(None, "--min-faces", min=1, help="Faces a new person needs "
                                            "(default: the stored one, first 3); fewer stay unassigned."),
    quiet: bool = QuietOpt,
    collection: Optional[Path] = CollectionOpt,
) -> None:
    """Group every face into people again (the settings given are kept for later runs).

    Faces of a person you named, merged, split or corrected stay where you put them."""
    try:
        with Collection.open(_target(ctx, collection)) as coll:
            with TaskProgress(err, quiet, people="grouping people") as progress:
                report = coll.people.regroup(threshold=threshold, min_faces=min_faces, progress=progress)
            _done(f"{_plural(report.people, 'person', 'people')}, {report.assigned:,} faces in people, "
                  f"{report.unassigned:,} unassigned ({report.elapsed_s:.1f}s)")
            _hint(quiet, f"see them: lookalike people {_c(coll)}")
    except LookalikeError as exc:
        fail(exc)
