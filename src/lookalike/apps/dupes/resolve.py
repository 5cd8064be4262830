"""Acting on duplicate groups: move, hardlink, symlink or delete the members not kept.

Every action is a dry run unless ``apply=True``: a dry run reads (stats, and the collection)
but creates, writes and moves nothing, not even the journal or the destination folder. An
applied run writes a journal (:mod:`.journal`) and records each step's intent, fsynced,
before touching the file system, so :func:`~lookalike.apps.dupes.undo.undo` can put
everything back, even after a crash.

* ``move`` (``to=DIR``): each file goes to ``DIR/<its path relative to the deepest folder
  common to the files moved in this run>``. Never overwrites: a taken destination skips the
  step. Across file systems the file is copied, fsynced and its hash checked before the
  original is unlinked.
* ``delete``: a move into the collection's trash, ``<collection>/trash/<journal name>/...``,
  so it is undoable like a move; it never unlinks the only copy of anything. Empty the trash
  folder yourself once you are sure.
* ``hardlink`` / ``symlink``: replace the duplicate by a link to the kept file. Only for
  byte-identical files (exact tier, same hash), since the duplicate's own bytes are gone
  afterwards; undo re-creates it from the kept file's bytes.

Members marked ``reference`` and the kept member of each group are never acted on. One
step failing (a vanished file, a permission error, a full disk) fails that step alone, with
a ``failed`` record in the journal; the others go on. After each applied step the collection
is updated (``forget`` for move and delete, ``add`` of the file for links), so searches never
return a moved file.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from ...errors import InvalidArgument, ItemNotFound
from ...fsutil import user_path
from ...progress import ProgressCallback, ProgressEvent
from ...version import __version__
from ...store.item_bytes import item_kind
from .fileops import Exists, failure_reason, file_hash, make_dirs, move_file, remove_empty, replace_with_link, temp_name
from .journal import JournalWriter, journal_stem

if TYPE_CHECKING:
    from ...store.collection import Collection
    from ...store.dupes import DuplicateGroup

__all__ = ["Action", "ACTIONS", "Step", "ResolveReport", "plan", "resolve", "with_choice", "NOT_IDENTICAL"]

Action = Literal["move", "hardlink", "symlink", "delete"]
ACTIONS: tuple[str, ...] = ("move", "hardlink", "symlink", "delete")

#: Why a link action skips a duplicate that is only similar.
NOT_IDENTICAL = "not byte-identical; replacing it with a link would lose its content — use move"


@dataclass(frozen=True)
class Step:
    """One planned file operation on one duplicate.

    ``target`` is the destination (move), the trash path (delete) or the kept file (links).
    """

    action: Action
    item_id: int
    path: str
    target: str | None
    keep_id: int
    group_id: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ResolveReport:
    """What a run did (``applied``) or would do (a dry run).

    ``steps`` are all steps considered, in order; ``done``, ``failed`` and ``skipped`` split
    them (on a dry run ``done`` is empty and the steps neither failed nor skipped are those
    that would run). ``skipped`` steps were refused before anything was touched (a reference
    file, a taken destination, a file only similar for a link); ``failed`` ones went wrong
    and were rolled back. ``bytes_freed``: the bytes moved out or replaced by links (on a dry
    run, what would be).
    """

    steps: list[Step] = field(default_factory=list)
    done: list[Step] = field(default_factory=list)
    failed: list[tuple[Step, str]] = field(default_factory=list)
    skipped: list[tuple[Step, str]] = field(default_factory=list)
    journal: Path | None = None
    applied: bool = False
    bytes_freed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for ``--json`` and the server)."""
        return {"applied": self.applied, "journal": str(self.journal) if self.journal else None,
                "bytes_freed": self.bytes_freed, "steps": [s.to_dict() for s in self.steps],
                "done": [s.to_dict() for s in self.done],
                "failed": [{**s.to_dict(), "reason": r} for s, r in self.failed],
                "skipped": [{**s.to_dict(), "reason": r} for s, r in self.skipped]}


# ---------------------------------------------------------------------------- choosing
def with_choice(group: "DuplicateGroup", keep_ids: Iterable[int], trash_ids: Iterable[int]) -> "DuplicateGroup":
    """``group`` with a user's choice from the UI: the members in ``trash_ids`` (and not in
    ``keep_ids``) become the ``others`` an action acts on; every other member is kept (a
    reference member always is). The member listed first (the one links point to) is the
    first of ``keep_ids`` in group order, else the group's own choice unless trashed, else
    the first member not trashed. Ids of other groups are ignored, so one pair of sets can
    serve every group. Unlike :meth:`DuplicateGroup.with_choice`, a member in neither set
    is left alone rather than acted on.

    Raises:
        InvalidArgument: every member of the group would be trashed.
    """
    keep, trash = {int(i) for i in keep_ids}, {int(i) for i in trash_ids}
    members = [dataclasses.replace(m, keep=m.reference or m.item.id in keep or m.item.id not in trash)
               for m in group.members]
    if not any(m.keep for m in members):
        raise InvalidArgument(f"duplicate group {group.id}: every member is marked for trash, which would leave "
                              f"no copy; keep at least one")
    chosen = [m for m in members if m.item.id in keep]
    own = [m for m in members if m.item.id == group.kept.item.id and m.keep]
    first = (chosen or own or [m for m in members if m.keep])[0]
    return dataclasses.replace(group, members=(first, *(m for m in members if m is not first)))


def _not_a_file(path: str, what: str = "it") -> str | None:
    """Why an item cannot be acted on when it is not a file on disk (a tar member, a URL), or None."""
    kind = item_kind(path)
    if kind == "member":
        return (f"{what} is a member of a tar shard, not a file of its own: only files on disk are moved, "
                "linked or deleted (rewrite the shard without it, then re-index)")
    if kind == "url":
        return (f"{what} is a URL, not a file on this computer: only files on disk are moved, linked or deleted "
                "(drop it from the table it came from, then re-index)")
    return None


def _deepest_common_folder(paths: Sequence[str]) -> str | None:
    if not paths:
        return None
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def _plan(groups: Sequence["DuplicateGroup"], action: str, to: str | None,
          trash: str | None) -> tuple[list[Step], list[tuple[Step, str]], str | None]:
    """``(steps, refused, root)``: the steps to try, those refused outright (reference files,
    kept files, repeats), and the folder the moved files' relative paths start from."""
    if action not in ACTIONS:
        raise InvalidArgument(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}")
    if action == "move" and not to:
        raise InvalidArgument("move needs a destination folder: --to DIR (to=...)")
    if action == "delete" and not trash:
        raise InvalidArgument("delete needs the trash folder (resolve() takes it from the collection)")
    kept_ids = {m.item.id: g.id for g in reversed(groups) for m in g.members if m.keep}
    chosen: list[tuple[Any, Any]] = []
    refused: list[tuple[Step, str]] = []
    seen: set[int] = set()
    for group in groups:
        kept = group.kept
        for m in group.others:
            step = Step(action, m.item.id, m.item.path, None, kept.item.id, group.id)  # type: ignore[arg-type]
            not_a_file = _not_a_file(m.item.path) or (action in ("hardlink", "symlink")
                                                       and _not_a_file(kept.item.path, "the kept item"))
            if not_a_file:
                refused.append((step, not_a_file))
            elif m.reference:
                refused.append((step, "in a reference folder: never moved, linked or deleted"))
            elif m.keep or m.item.id in kept_ids:
                refused.append((step, f"kept in duplicate group {kept_ids.get(m.item.id, group.id)}: never acted on"))
            elif m.item.id in seen:
                refused.append((step, "already acted on in another group of this run"))
            else:
                seen.add(m.item.id)
                chosen.append((m, group))
    root = _deepest_common_folder([m.item.path for m, _ in chosen]) if action in ("move", "delete") else None
    base = to if action == "move" else trash
    steps = []
    for m, group in chosen:
        if action in ("move", "delete"):
            target = os.path.join(base, os.path.relpath(m.item.path, root))  # type: ignore[arg-type]
        else:
            target = group.kept.item.path
        steps.append(Step(action, m.item.id, m.item.path, target,  # type: ignore[arg-type]
                          group.kept.item.id, group.id))
    return steps, refused, root


def plan(groups: Sequence["DuplicateGroup"], action: Action, *, to: str | os.PathLike[str] | None = None,
         trash: str | os.PathLike[str] | None = None) -> list[Step]:
    """The steps ``action`` would take on the ``others`` of each group (reference members and
    kept ones left out), in order. Pure: touches no file.

    Raises:
        InvalidArgument: an unknown action, ``move`` without ``to``, ``delete`` without ``trash``.
    """
    steps, _, _ = _plan(groups, action, user_path(to) if to else None, user_path(trash) if trash else None)
    return steps


# ---------------------------------------------------------------------------- checks
def _precheck(step: Step, dup_hash: str | None, kept_hash: str | None) -> str | None:
    """Why ``step`` must be skipped (read-only checks), or None. Raises OSError (a vanished file)."""
    st = os.lstat(step.path)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a link or a special file); only regular files are acted on"
    if step.action in ("move", "delete"):
        if os.path.lexists(step.target):  # type: ignore[arg-type]
            return f"the destination {step.target} exists; nothing is ever overwritten"
        return None
    # Same content hash is what the exact tier means; the kept member need not be the medoid,
    # so the hashes are compared here rather than the member's tier.
    if dup_hash is None or dup_hash != kept_hash:
        return NOT_IDENTICAL
    kst = os.stat(step.target)  # type: ignore[arg-type]
    if (kst.st_dev, kst.st_ino) == (st.st_dev, st.st_ino):
        return "already a hard link to the kept file"
    if step.action == "hardlink" and kst.st_dev != st.st_dev:
        return "on another file system than the kept file, where a hard link cannot reach — use symlink or move"
    return None


# ---------------------------------------------------------------------------- running
class _Run:
    """One applied or dry run of :func:`resolve`."""

    def __init__(self, coll: "Collection | None", report: ResolveReport, journal: JournalWriter | None,
                 emit: ProgressCallback) -> None:
        self.coll, self.report, self.journal, self.emit = coll, report, journal, emit
        self.total = 0  # the steps to try (refused ones aside), for the progress events

    def skip(self, step: Step, reason: str) -> None:
        self.report.skipped.append((step, reason))
        self.emit(ProgressEvent("skip", path=step.path, reason=reason))

    def fail(self, step: Step, reason: str, seq: int | None = None) -> None:
        self.report.failed.append((step, reason))
        self.emit(ProgressEvent("skip", path=step.path, reason=reason))
        if seq is not None and self.journal is not None:
            self.record({"type": "failed", "seq": seq, "reason": reason})

    def record(self, rec: dict[str, Any]) -> None:
        """Journal a record after the fact; a journal that cannot be written (its disk full)
        leaves the intent alone, which undo reads as "look at the files"."""
        try:
            self.journal.write(rec)  # type: ignore[union-attr]
        except OSError:
            pass

    def one(self, seq: int, step: Step, member: Any, group: Any) -> None:
        kept = group.kept.item
        self.emit(ProgressEvent("resolve", done=seq - 1, total=self.total, path=step.path))
        try:
            reason = _precheck(step, member.item.hash, kept.hash)
        except OSError as exc:
            self.fail(step, failure_reason(exc, step.path))
            return
        if reason:
            self.skip(step, reason)
            return
        if self.journal is None:  # dry run: what would happen
            self.report.bytes_freed += member.item.size
            return
        try:
            self.apply(seq, step)
        except Exists:
            self.skip(step, f"the destination {step.target} exists; nothing is ever overwritten")
            self.record({"type": "failed", "seq": seq, "reason": "destination exists"})
        except _Skip as why:
            self.skip(step, str(why))
        except OSError as exc:
            self.fail(step, failure_reason(exc, step.path), seq)

    def apply(self, seq: int, step: Step) -> None:
        target: str = step.target  # type: ignore[assignment]
        st = os.stat(step.path, follow_symlinks=False)
        digest = file_hash(step.path)
        if step.action in ("hardlink", "symlink") and digest != file_hash(target):
            raise _Skip(f"{NOT_IDENTICAL} (its bytes on disk differ from the kept file's now)")
        intent: dict[str, Any] = {
            "type": "intent", "seq": seq, **step.to_dict(), "src": step.path, "dst": target,
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": digest, "mode": st.st_mode,
            "uid": st.st_uid, "gid": st.st_gid}
        if step.action in ("hardlink", "symlink"):
            intent["tmp"] = temp_name(step.path)
        self.journal.write(intent)  # type: ignore[union-attr]  # durable BEFORE anything is touched
        done: dict[str, Any] = {"type": "done", "seq": seq, "made_dirs": [], "snapshots": []}
        if step.action in ("move", "delete"):
            made = make_dirs(Path(target).parent)
            try:
                done["method"] = move_file(step.path, target, digest)
            except BaseException:
                remove_empty(made)
                raise
            done["made_dirs"] = made
        else:
            replace_with_link(step.path, target, step.action, intent["tmp"])
            done["method"] = step.action
        self.report.done.append(step)
        self.report.bytes_freed += st.st_size
        try:
            if self.coll is not None and step.action in ("move", "delete"):
                done["snapshots"] = _forget(self.coll, step.item_id)
            elif self.coll is not None:
                self.coll.add([step.path])  # now a link: its content's vector is reused
        finally:
            # Even when the collection cannot be updated (another process writing it), the
            # file did move: the journal says so, and the error goes to the caller.
            self.record(done)


def _forget(coll: "Collection", item_id: int) -> list[dict[str, Any]]:
    """Drop the moved file's row; its snapshot (JSON-ready) lets undo put it back."""
    try:
        return [s.to_dict() for s in coll.forget([item_id])]
    except ItemNotFound:
        return []  # gone from the collection already (a re-index since the groups were found)


class _Skip(Exception):
    """A check at apply time refused the step; nothing was touched."""


def resolve(coll: "Collection | None", groups: Sequence["DuplicateGroup"], action: Action, *,
            to: str | os.PathLike[str] | None = None, apply: bool = False,
            journal_dir: str | os.PathLike[str] | None = None,
            progress: ProgressCallback | None = None) -> ResolveReport:
    """Act on the ``others`` of each group: ``move`` them under ``to``, ``delete`` them (into
    the collection's trash), or replace them by a ``hardlink`` / ``symlink`` to the kept file.

    A dry run unless ``apply``. The journal goes to ``journal_dir``, by default ``to`` for a
    move and ``<collection>/trash/`` otherwise. ``coll`` may be None for files outside any
    collection (not for ``delete``, whose trash is the collection's); then no rows are updated.

    Raises:
        InvalidArgument: an unknown action, ``move`` without ``to``, ``delete`` without a collection.
    """
    emit = progress or (lambda _e: None)
    to_path = user_path(to) if to else None
    folder, stem, trash = _locations(coll, action, to_path, journal_dir)
    steps, refused, root = _plan(groups, action, to_path, trash)
    report = ResolveReport(steps=[s for s, _ in refused] + steps, applied=apply)
    run = _Run(coll, report, None, emit)
    run.total = len(steps)
    for step, reason in refused:
        run.skip(step, reason)
    if apply and steps:
        header = {"action": action, "created": datetime.now().astimezone().isoformat(timespec="seconds"),
                  "collection": str(coll.path) if coll is not None else None, "root": root,
                  "target_root": to_path if action == "move" else trash, "lookalike": __version__}
        try:
            run.journal = JournalWriter.create(folder, stem, header)
        except OSError as exc:
            why = f"{folder}: the journal could not be created ({exc.strerror or exc}); nothing was touched — " \
                  f"make that folder writable (or free some space), or pass another journal folder"
            for step in steps:
                run.fail(step, why)
            steps = []
        else:
            report.journal = run.journal.path
    members = {(m.item.id, g.id): (m, g) for g in groups for m in g.others}
    try:
        for seq, step in enumerate(steps, 1):
            member, group = members[(step.item_id, step.group_id)]
            run.one(seq, step, member, group)
    finally:
        if run.journal is not None:
            run.journal.close()
    emit(ProgressEvent("done", done=len(report.done), total=run.total))
    return report


def _locations(coll: "Collection | None", action: str, to: str | None,
               journal_dir: str | os.PathLike[str] | None) -> tuple[Path, str, str | None]:
    """``(journal folder, journal stem, trash folder of a delete)``; looks, creates nothing."""
    if action not in ACTIONS:
        raise InvalidArgument(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}")
    if action == "move" and not to:
        raise InvalidArgument("move needs a destination folder: --to DIR (to=...)")
    if action != "move" and coll is None and journal_dir is None:
        raise InvalidArgument(f"{action} keeps its journal (and delete its trash) in the collection's trash "
                              f"folder: pass the collection, or a journal_dir")
    if journal_dir is not None:
        folder = Path(user_path(journal_dir))
    else:
        folder = Path(to) if action == "move" else coll.path / "trash"  # type: ignore[arg-type,union-attr]
    trash_base = coll.path / "trash" if coll is not None else folder
    stem = journal_stem(folder, also_free=trash_base)
    return folder, stem, str(trash_base / stem) if action == "delete" else None
