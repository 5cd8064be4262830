"""``lookalike dupes``: find near-duplicate images, report them, act on them, undo that.

Parsing and rendering only: grouping is :meth:`Collection.duplicates`, acting is
:func:`lookalike.apps.dupes.resolve` / :func:`~lookalike.apps.dupes.undo`, and the JSON, CSV
and HTML forms are :mod:`lookalike.apps.dupes.report`. Data (the table, JSON, CSV, the steps)
goes to stdout; progress, summaries and errors go to stderr.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

import typer
from rich.table import Table
from rich.text import Text

from ..apps.dupes.report import html_destination, reclaimable_bytes, save_html, write_csv, write_json_lines
from ..errors import InvalidArgument, LookalikeError
from ..store.collection import Collection
from .common import CollectionOpt, DeviceOpt, default_collection, err, fail, human_bytes, out
from .progress import TaskProgress

if TYPE_CHECKING:
    from ..apps.dupes import ResolveReport, Step, UndoReport
    from ..store.dupes import DuplicateGroup

__all__ = ["dupes"]

#: How each action reads in a summary, "{}" standing for "N files": (dry run, applied).
_VERBS = {"move": ("would move {}", "moved {}"),
          "hardlink": ("would replace {} with hard links", "replaced {} with hard links"),
          "symlink": ("would replace {} with symbolic links", "replaced {} with symbolic links"),
          "delete": ("would delete {} (into the collection's trash)", "deleted {} (into the collection's trash)")}


def dupes(
    collection: Optional[Path] = CollectionOpt,
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", help="Cosine similarity a pair needs (default: the model's calibrated one)."),
    fraction: Optional[float] = typer.Option(
        None, "--fraction", help="Instead of a threshold: keep the closest share of neighbour pairs (0-1]."),
    tiers: Optional[str] = typer.Option(
        None, "--tiers", help="Comma-separated: exact (same bytes), perceptual (pHash+dHash), semantic "
        "(embedding) (default: all three)."),
    hash_bits: Optional[int] = typer.Option(None, "--hash-bits", help="Perceptual tier: Hamming distance "
                                            "both hashes must be within (default: the model's calibrated one)."),
    perceptual_floor: Optional[float] = typer.Option(
        None, "--perceptual-floor", help="Perceptual tier: the cosine similarity a hash match needs too "
        "(default: the model's calibrated one)."),
    flips: bool = typer.Option(True, "--flips/--no-flips", help="Count mirror images as duplicates."),
    keep: Optional[str] = typer.Option(
        None, "--keep", help="Which file a group keeps: largest (default), oldest, newest, most-metadata, "
        "shortest-path or sharpest."),
    prefer: List[Path] = typer.Option([], "--prefer", help="Keep files in this folder first; repeatable, in order."),
    reference: List[Path] = typer.Option(
        [], "--reference", help="Folder whose files are never moved or deleted (a group holding one keeps it); "
        "repeatable."),
    burst_seconds: Optional[float] = typer.Option(
        None, "--burst-seconds", help="Shots taken within this many seconds (EXIF time) form burst groups."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per group (or per step, with --action)."),
    as_csv: bool = typer.Option(False, "--csv", help="One CSV row per group member."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report with thumbnails."),
    action: Optional[str] = typer.Option(
        None, "--action", help="move (needs --to), hardlink, symlink or delete: what to do with the files not "
        "kept. A dry run unless --apply."),
    to: Optional[Path] = typer.Option(None, "--to", help="Quarantine folder for --action move (paths kept below it)."),
    apply: bool = typer.Option(False, "--apply", help="Carry out --action, writing a journal for --undo."),
    undo: Optional[Path] = typer.Option(None, "--undo", help="Reverse the actions recorded in this journal."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    device: str = DeviceOpt,
) -> None:
    """Find near-duplicate images: show them, report them, or move, link or delete the extra copies
    (a dry run unless --apply; --undo JOURNAL puts everything back)."""
    grouping = {"threshold": threshold, "fraction": fraction, "hash_bits": hash_bits,
                "perceptual_floor": perceptual_floor, "keep": keep,
                "burst_seconds": burst_seconds, "tiers": _tiers(tiers) if tiers is not None else None,
                "flips": None if flips else False, "prefer": tuple(map(str, prefer)) or None,
                "reference": tuple(map(str, reference)) or None}
    try:
        _check_combination(grouping, as_json, as_csv, html, action, to, apply, undo)
        if html is not None:
            html = html_destination(html)  # a mistyped folder fails now, not after the grouping
        target = collection or (_journal_collection(undo) if undo is not None else None) or default_collection()
        with Collection.open(target, device=device) as coll:
            if undo is not None:
                _print_undo(_undo(coll, undo, quiet), as_json)
                return
            fields = {k: v for k, v in grouping.items() if v is not None and k != "threshold"}
            with TaskProgress(err, quiet) as progress:
                groups = coll.duplicates(threshold, progress=progress, **fields)
            if html is not None:
                _html(coll, groups, html, threshold, fraction, quiet)
            if action is None:
                _show(coll, groups, as_json, as_csv, html is not None, threshold, fraction)
            else:
                _print_resolve(_resolve(coll, groups, action, to, apply, quiet), action, as_json)
    except LookalikeError as exc:
        fail(exc)


def _journal_collection(journal: Path) -> Optional[Path]:
    """The collection an action ran on, as its journal names it: ``--undo`` needs no ``--collection``."""
    from ..apps.dupes import read_journal

    owner = read_journal(journal).header.get("collection")
    return Path(owner) if owner else None


def _tiers(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _check_combination(grouping: dict[str, Any], as_json: bool, as_csv: bool, html: Optional[Path],
                       action: Optional[str], to: Optional[Path], apply: bool, undo: Optional[Path]) -> None:
    """Options that cannot go together, named, before anything is read."""
    if as_json and as_csv:
        raise InvalidArgument("--json and --csv both write to stdout; choose one")
    if undo is not None:
        given = ["--no-flips" if k == "flips" else f"--{k.replace('_', '-')}" for k, v in grouping.items()
                 if v is not None]
        given += [name for name, v in (("--csv", as_csv), ("--html", html), ("--action", action), ("--to", to),
                                       ("--apply", apply)) if v]
        if given:
            raise InvalidArgument(f"--undo takes only the journal (and --collection, --json), not {', '.join(given)}")
        return
    if action is None:
        if apply or to is not None:
            option = "--apply" if apply else "--to"
            raise InvalidArgument(f"{option} needs --action (move, hardlink, symlink or delete)")
        return
    if action not in _VERBS:
        raise InvalidArgument(f"--action must be move, hardlink, symlink or delete, not {action!r}")
    if as_csv:
        raise InvalidArgument("--csv lists groups; with --action use --json for the steps, or drop --action")
    if action == "move" and to is None:
        raise InvalidArgument("--action move needs --to FOLDER (the quarantine the files go to)")
    if action != "move" and to is not None:
        raise InvalidArgument(f"--to is for --action move; --action {action} works in place")


# --------------------------------------------------------------------------- groups
def _threshold_text(coll: Collection, threshold: Optional[float], fraction: Optional[float]) -> str:
    if threshold is not None:
        return f"{threshold:g}"
    if fraction is not None:
        return f"the closest {fraction:g} of neighbour pairs"
    return f"{coll.default_duplicate_threshold:g}, the model's default"


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _show(coll: Collection, groups: Sequence["DuplicateGroup"], as_json: bool, as_csv: bool, wrote_html: bool,
          threshold: Optional[float], fraction: Optional[float]) -> None:
    if as_json:
        write_json_lines(groups, sys.stdout)
    elif as_csv:
        write_csv(groups, sys.stdout)
    elif not wrote_html:
        _table(groups)
    extra = sum(len(g.others) for g in groups)
    free = sum(reclaimable_bytes(g) for g in groups)
    summary = (f"{_plural(len(groups), 'group')}, {_plural(extra, 'file')} not kept, {human_bytes(free)} to free"
               if groups else "no duplicates found")
    err.print(Text(f"{summary} (threshold {_threshold_text(coll, threshold, fraction)})"), soft_wrap=True)


def _table(groups: Sequence["DuplicateGroup"]) -> None:
    table = Table(box=None, header_style="bold")
    for name in ("group", "kind", "tier", "similarity", "members"):
        table.add_column(name, justify="right" if name in ("group", "similarity", "members") else "left")
    table.add_column("kept", overflow="fold")
    for name in ("resolution", "size", "to free"):
        table.add_column(name, justify="right", no_wrap=True)
    for g in groups:
        item = g.kept.item
        res = f"{item.width}x{item.height}" if item.width and item.height else "?"
        table.add_row(str(g.id), g.kind, g.tier, f"{g.similarity:.3f}", str(len(g.members)), Text(item.path), res,
                      human_bytes(item.size), human_bytes(reclaimable_bytes(g)))
    out.print(table)


def _html(coll: Collection, groups: Sequence["DuplicateGroup"], dest: Path, threshold: Optional[float],
          fraction: Optional[float], quiet: bool) -> None:
    meta = {"collection": str(coll.path), "threshold": _threshold_text(coll, threshold, fraction)}
    with TaskProgress(err, quiet, embed="thumbnails") as progress:
        written = save_html(groups, dest, meta=meta, progress=progress, collection=coll)
    err.print(Text(f"wrote {written} ({_plural(len(groups), 'group')})"), soft_wrap=True)


# --------------------------------------------------------------------------- actions
def _resolve(coll: Collection, groups: Sequence["DuplicateGroup"], action: str, to: Optional[Path], apply: bool,
             quiet: bool) -> "ResolveReport":
    from ..apps.dupes import resolve

    with TaskProgress(err, quiet or not apply, skips=False) as progress:  # the report lists the skips
        return resolve(coll, list(groups), action, to=to, apply=apply, progress=progress)  # type: ignore[arg-type]


def _step_text(step: "Step") -> str:
    if step.action == "delete":
        return f"delete {step.path}" + (f" (to {step.target})" if step.target else "")
    return f"{step.action} {step.path} -> {step.target}"


def _step_json(step: "Step", status: str, reason: str | None = None) -> str:
    record = {"status": status, "action": step.action, "path": step.path, "target": step.target,
              "item_id": step.item_id, "keep_id": step.keep_id, "group_id": step.group_id}
    if reason is not None:
        record["reason"] = reason
    return json.dumps(record, ensure_ascii=False)


def _print_resolve(report: "ResolveReport", action: str, as_json: bool) -> None:
    skipped = {id(s): r for s, r in report.skipped}
    failed = {id(s): r for s, r in report.failed}
    done = {id(s) for s in report.done}
    for step in report.steps:
        status = ("skipped" if id(step) in skipped else "failed" if id(step) in failed
                  else "done" if id(step) in done else "planned")
        if as_json:
            sys.stdout.write(_step_json(step, status, skipped.get(id(step), failed.get(id(step)))) + "\n")
        elif status == "planned" or status == "done":
            out.print(Text(_step_text(step)), highlight=False)
    for label, pairs in (("skip", report.skipped), ("failed", report.failed)):
        for step, reason in pairs:
            err.print(Text.assemble((label, "yellow" if label == "skip" else "bold red"), f" {step.path}: {reason}"),
                      soft_wrap=True)
    would, did = _VERBS[action]
    if not report.applied:
        count = len(report.steps) - len(report.skipped)
        err.print(Text(f"{would.format(_plural(count, 'file'))}, {_freeing(action, report.bytes_freed)}"
                       f"{_count(report.skipped, 'skipped')}; run again with --apply"), soft_wrap=True)
        return
    err.print(Text(f"{did.format(_plural(len(report.done), 'file'))}, {_freeing(action, report.bytes_freed)}"
                   f"{_count(report.skipped, 'skipped')}{_count(report.failed, 'failed')}"), soft_wrap=True)
    if report.journal is not None:  # it names the collection: undo needs no --collection
        err.print(Text(f"journal: {report.journal}\nundo with: lookalike dupes --undo "
                       f"{shlex.quote(str(report.journal))}"), soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)


def _freeing(action: str, size: int) -> str:
    # A delete is a move into the trash: the space comes back when the user empties it.
    if action == "delete":
        return f"{human_bytes(size)} to free once you empty the trash"
    return f"freeing {human_bytes(size)}"


def _count(pairs: Sequence[Any], label: str) -> str:
    return f", {len(pairs):,} {label}" if pairs else ""


def _undo(coll: Collection, journal: Path, quiet: bool) -> "UndoReport":
    from ..apps.dupes import undo

    with TaskProgress(err, quiet, skips=False, resolve="restoring files") as progress:
        return undo(journal, coll=coll, progress=progress)


def _print_undo(report: "UndoReport", as_json: bool) -> None:
    for step in report.restored:
        if as_json:
            sys.stdout.write(_step_json(step, "restored") + "\n")
        else:
            out.print(Text(f"restored {step.path}"), highlight=False)
    for step, reason in report.failed:
        if as_json:
            sys.stdout.write(_step_json(step, "refused", reason) + "\n")
        err.print(Text.assemble(("refused", "bold red"), f" {step.path}: {reason}"), soft_wrap=True)
    if not report.restored and not report.failed:
        err.print(Text(f"nothing left to undo in {report.journal} (undone already, or nothing was applied)"),
                  soft_wrap=True)
        return
    err.print(Text(f"restored {_plural(len(report.restored), 'file')}{_count(report.failed, 'refused')} "
                   f"(journal {report.journal})"), soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
