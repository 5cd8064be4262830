"""Undoing a duplicates action from its journal.

Steps are reversed newest first. Each is checked before anything is touched: a moved file
must still be where it went, with the size and hash the journal recorded, and its original
path must be free; a link must still be the link that was made, and the kept file must still
hold the bytes the duplicate had. Otherwise the step is refused, with the reason, and left as
it is. Undo writes ``undone`` records into the same journal, so running it twice is a no-op.

A step whose intent has no outcome (cut short by a crash) is resolved from the file system:
the source still there and the destination absent means nothing happened; both there as one
inode (a hard link made, the unlink not yet) or a partial copy means the destination is
removed; only the destination there means the step completed, and it is reversed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import InvalidArgument
from ...progress import ProgressCallback, ProgressEvent
from ...store.items import StoredItem
from .fileops import (Exists, failure_reason, file_hash, make_dirs, move_file, remove_empty, restore_copy, same_file,
                      temp_name)
from .journal import JournalEntry, JournalWriter, read_journal
from .resolve import Step

if TYPE_CHECKING:
    from ...store.collection import Collection

__all__ = ["UndoReport", "undo"]


@dataclass
class UndoReport:
    """What :func:`undo` did (or, with ``apply=False``, would do).

    ``restored``: steps whose file is back at its original path (including steps a crash cut
    short before they changed anything). ``failed``: steps refused or gone wrong, with the
    reason; those files were left exactly as they were.
    """

    journal: Path
    restored: list[Step] = field(default_factory=list)
    failed: list[tuple[Step, str]] = field(default_factory=list)
    applied: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"journal": str(self.journal), "applied": self.applied,
                "restored": [s.to_dict() for s in self.restored],
                "failed": [{**s.to_dict(), "reason": r} for s, r in self.failed]}


class _Refused(Exception):
    """A check refused the step; nothing was touched."""


def _step(intent: dict[str, Any]) -> Step:
    return Step(intent["action"], int(intent["item_id"]), intent["src"], intent.get("dst"),
                int(intent["keep_id"]), int(intent["group_id"]))


def _matches(path: str, intent: dict[str, Any]) -> bool:
    """The file at ``path`` has the size and hash the journal recorded."""
    return os.path.getsize(path) == intent["size"] and file_hash(path) == intent["hash"]


# ---------------------------------------------------------------------------- move / delete
def _plan_move_back(entry: JournalEntry) -> str:
    """What undoing a move needs: ``"back"`` (move dst to src), ``"drop-dst"`` (the step never
    completed; remove the leftover at dst), ``"nothing"``; raises _Refused."""
    it = entry.intent
    src, dst = it["src"], it["dst"]
    src_there, dst_there = os.path.lexists(src), os.path.lexists(dst)
    if src_there and dst_there and same_file(src, dst):
        return "drop-dst"  # a hard link made, the unlink not done (or an undo cut short)
    if entry.state == "cut" and src_there:
        if not dst_there:
            return "nothing"
        if _matches(src, it) and (_matches(dst, it) or os.path.getsize(dst) < it["size"]):
            return "drop-dst"  # a copy, complete or partial, of a source still intact
        raise _Refused(f"{dst}: a different file stands where this step was moving {src}; nothing touched — "
                       f"look at both and remove the one you do not want")
    if src_there and not dst_there and _matches(src, it):
        return "nothing"  # already back (an undo whose record a full disk lost)
    if src_there:
        raise _Refused(f"{src}: the original path is taken by another file; nothing touched — move that file "
                       f"away and run undo again")
    if not dst_there:
        raise _Refused(f"{dst}: gone (moved or deleted since); nothing to put back at {src}")
    if not _matches(dst, it):
        raise _Refused(f"{dst}: changed since it was moved (size or hash differ from the journal); nothing "
                       f"touched — move it back by hand if you want it")
    return "back"


def _undo_move(entry: JournalEntry) -> None:
    it = entry.intent
    what = _plan_move_back(entry)
    if what == "drop-dst":
        os.unlink(it["dst"])
    elif what == "back":
        made = make_dirs(Path(it["src"]).parent)
        try:
            move_file(it["dst"], it["src"], it["hash"])
        except Exists:
            remove_empty(made)
            raise _Refused(f"{it['src']}: the original path was taken meanwhile; nothing touched") from None
        except BaseException:
            remove_empty(made)
            raise
    remove_empty((entry.done or {}).get("made_dirs", []))


# ---------------------------------------------------------------------------- hardlink / symlink
def _is_our_link(entry: JournalEntry) -> bool:
    it = entry.intent
    src, kept = it["src"], it["dst"]
    if it["action"] == "symlink":
        return os.path.islink(src) and os.readlink(src) == os.path.abspath(kept)
    return same_file(src, kept)


def _plan_unlink(entry: JournalEntry) -> str:
    """``"copy"`` (re-create the separate file), ``"nothing"`` (it is already the original);
    raises _Refused."""
    it = entry.intent
    src, kept = it["src"], it["dst"]
    if not os.path.lexists(src):
        raise _Refused(f"{src}: gone (the link was removed since); nothing to put back — restore it from {kept}")
    if _is_our_link(entry):
        if not os.path.isfile(kept) or not _matches(kept, it):
            raise _Refused(f"{kept}: the kept file changed or is gone, so its bytes are no longer the duplicate's; "
                           f"nothing touched — {src} stays a link")
        return "copy"
    if stat.S_ISREG(os.lstat(src).st_mode) and _matches(src, it):
        return "nothing"  # the link was never made (cut short), or undone already
    raise _Refused(f"{src}: no longer the link that was made (replaced since); nothing touched")


def _undo_link(entry: JournalEntry) -> None:
    it = entry.intent
    tmp = it.get("tmp")
    if tmp and entry.state == "cut" and os.path.lexists(tmp):
        os.unlink(tmp)  # a link made at the temp name, the rename not done: ours, and holds nothing
    if _plan_unlink(entry) == "copy":
        restore_copy(it["dst"], it["src"], it["hash"], int(it["mode"]), int(it["mtime_ns"]), temp_name(it["src"]))
        try:
            os.chown(it["src"], int(it["uid"]), int(it["gid"]))
        except (PermissionError, KeyError):
            pass  # not root, or an old journal: the file belongs to whoever runs undo


# ---------------------------------------------------------------------------- the whole journal
def _check_only(entry: JournalEntry) -> None:
    """The checks of an undo, touching nothing (a dry run)."""
    if entry.intent["action"] in ("move", "delete"):
        _plan_move_back(entry)
    else:
        _plan_unlink(entry)


def undo(journal_path: str | os.PathLike[str], *, coll: "Collection | None" = None, apply: bool = True,
         progress: ProgressCallback | None = None) -> UndoReport:
    """Reverse every applied step of a journal, newest first, and put the collection back.

    Moved and deleted files return to their paths (never over a file standing there); links
    become separate files again, with their mode and modification time. ``coll``: the
    collection the action was run on; its rows come back with their ids (``coll.restore``,
    or ``coll.add`` for those that cannot). Without it the collection is left as it is
    (index the restored folders again). ``apply=False`` checks and reports, touching nothing.

    Raises:
        InvalidArgument: not a journal, or ``coll`` is not the collection it was written for.
    """
    emit = progress or (lambda _e: None)
    journal = read_journal(journal_path)
    owner = journal.header.get("collection")
    if coll is not None and owner is not None and str(coll.path) != owner:
        raise InvalidArgument(f"{journal.path}: written for the collection {owner}, not {coll.path}; "
                              f"open that one to undo it")
    run = _Undo(UndoReport(journal.path, applied=apply), emit)
    pending = [e for e in journal.newest_first() if e.state in ("done", "cut")]
    run.writer = JournalWriter.append_to(journal.path) if apply and pending else None
    try:
        for n, entry in enumerate(pending):
            emit(ProgressEvent("resolve", done=n, total=len(pending), path=entry.intent["src"]))
            run.one(entry, apply)
    finally:
        if run.writer is not None:
            run.writer.close()
    if apply and coll is not None:
        run.put_back(coll)
    emit(ProgressEvent("done", done=len(run.report.restored), total=len(pending)))
    return run.report


class _Undo:
    """One run of :func:`undo`: the report, the journal appended to, and the collection rows to put back."""

    def __init__(self, report: UndoReport, emit: ProgressCallback) -> None:
        self.report, self.emit = report, emit
        self.writer: JournalWriter | None = None
        self.snapshots: list[dict[str, Any]] = []  # rows forget() removed, to restore with their ids
        self.re_add: list[str] = []                # moved back, but no snapshot: index again
        self.re_read: list[str] = []               # links turned back into files: add again

    def record(self, rec: dict[str, Any]) -> None:
        """Journal the outcome. Lost to a full disk, a reversed step reads as already back
        (its file at the original path with the journal's hash) on the next undo."""
        if self.writer is not None:
            try:
                self.writer.write(rec)
            except OSError:
                pass

    def one(self, entry: JournalEntry, apply: bool) -> None:
        step = _step(entry.intent)
        try:
            if not apply:
                _check_only(entry)
            elif step.action in ("move", "delete"):
                _undo_move(entry)
            else:
                _undo_link(entry)
        except (_Refused, OSError) as exc:
            reason = str(exc) if isinstance(exc, _Refused) else failure_reason(exc, step.path)
            self.report.failed.append((step, reason))
            self.emit(ProgressEvent("skip", path=step.path, reason=reason))
            self.record({"type": "undo-refused", "seq": entry.seq, "reason": reason})
            return
        self.report.restored.append(step)
        self.record({"type": "undone", "seq": entry.seq, "note": "reversed" if entry.done else "cut short"})
        if step.action not in ("move", "delete"):
            self.re_read.append(step.path)
        elif (entry.done or {}).get("snapshots"):
            self.snapshots.extend(entry.done["snapshots"])  # type: ignore[index]
        else:
            self.re_add.append(step.path)

    def put_back(self, coll: "Collection") -> None:
        """Rows back with their ids where possible; the rest indexed again."""
        re_add = list(self.re_add)
        if self.snapshots:
            left = coll.restore([StoredItem.from_dict(s) for s in self.snapshots])
            re_add.extend(s.item.path for s in left)
        if re_add:
            coll.add(sorted(set(re_add)))
        if self.re_read:
            coll.add(self.re_read)
