"""The journal of a duplicates action: JSON lines, each fsynced before the next file operation.

One file per applied run, named ``journal-2026-11-25T10-00-00.jsonl`` (local time; ``-2``,
``-3``... when that name, or a trash folder of that name, is taken), never overwritten. The
first line is a header; then, for each step, in order::

    {"type": "intent", "seq": 3, "action": "move", "src": ..., "dst": ..., "size": ...,
     "mtime_ns": ..., "hash": ..., "mode": ..., "item_id": ..., "keep_id": ..., "group_id": ...}
        written and fsynced BEFORE the file system is touched
    {"type": "done", "seq": 3, "method": "link" | "copy" | "hardlink" | "symlink",
     "made_dirs": [...], "snapshots": [StoredItem.to_dict(), ...]}
        after the operation and the collection update
    {"type": "failed", "seq": 3, "reason": ...}
        the operation failed and was rolled back: nothing changed for this step

and, appended by undo into the same file::

    {"type": "undone", "seq": 3, "note": ...}       the step is reversed (or never happened)
    {"type": "undo-refused", "seq": 3, "reason": ...}   informational; the step stays applied

A step with an intent and nothing else was cut short (a crash, a power cut): undo looks at
the file system to tell what happened. A line cut short by a crash is ignored on reading.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from ...errors import InvalidArgument
from .fileops import fsync_dir, make_dirs

__all__ = ["JOURNAL_FORMAT", "JOURNAL_VERSION", "JournalWriter", "JournalEntry", "JournalFile", "read_journal",
           "journal_stem"]

JOURNAL_FORMAT = "lookalike-dupes-journal"
JOURNAL_VERSION = 1


def journal_stem(folder: Path, now: datetime | None = None, *, also_free: Path | None = None) -> str:
    """A journal name (without ``.jsonl``) free in ``folder`` (and, given ``also_free``, free
    as a folder name there too: the trash folder of a delete is named after its journal).
    Only looks; creates nothing."""
    base = f"journal-{(now or datetime.now()):%Y-%m-%dT%H-%M-%S}"
    for n in range(1, 10_000):
        stem = base if n == 1 else f"{base}-{n}"
        if not os.path.lexists(folder / f"{stem}.jsonl") and (
                also_free is None or not os.path.lexists(also_free / stem)):
            return stem
    raise InvalidArgument(f"{folder}: 10,000 journals named {base}-N already; clean up the folder")


class JournalWriter:
    """Appends records to a journal; each one is flushed and fsynced before ``write`` returns."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, folder: Path, stem: str, header: dict[str, Any]) -> "JournalWriter":
        """Create ``folder/stem.jsonl`` (``O_EXCL``: an existing journal is never overwritten)
        and write its header; the folder entry is fsynced so the journal survives a power cut."""
        make_dirs(folder)
        path = folder / f"{stem}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        writer = cls(path, fd)
        try:
            writer.write({"type": "header", "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, **header})
            fsync_dir(folder)
        except BaseException:
            writer.close()
            raise
        return writer

    @classmethod
    def append_to(cls, path: Path) -> "JournalWriter":
        """Open an existing journal to append (undo records go into the journal they undo)."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        writer = cls(path, fd)
        if path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    writer._write_bytes(b"\n")  # end a line a crash cut short, so ours parses
        return writer

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a line, durably (flush + fsync)."""
        self._write_bytes((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode())

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class JournalEntry:
    """Everything the journal says about one step."""

    intent: dict[str, Any]
    done: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None
    undone: dict[str, Any] | None = None

    @property
    def seq(self) -> int:
        return int(self.intent["seq"])

    @property
    def state(self) -> str:
        """``"undone"``, ``"failed"``, ``"done"``, or ``"cut"`` (an intent alone: the step was
        interrupted and only the file system can tell how far it got)."""
        if self.undone is not None:
            return "undone"
        if self.failed is not None:
            return "failed"
        if self.done is not None:
            return "done"
        return "cut"


@dataclass
class JournalFile:
    """A parsed journal: its header, one entry per step (in order), and how many lines were
    unreadable (a line cut short by a crash)."""

    path: Path
    header: dict[str, Any]
    entries: list[JournalEntry] = field(default_factory=list)
    damaged_lines: int = 0

    def newest_first(self) -> Iterator[JournalEntry]:
        return iter(sorted(self.entries, key=lambda e: e.seq, reverse=True))


def read_journal(path: str | os.PathLike[str]) -> JournalFile:
    """Parse a journal.

    Raises:
        InvalidArgument: no such file, or not a lookalike duplicates journal (or a newer format).
    """
    p = Path(path)
    try:
        lines = p.read_bytes().splitlines()
    except FileNotFoundError:
        raise InvalidArgument(f"{p}: no such journal; give the journal-*.jsonl file a dupes --apply run "
                              f"wrote") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{p}: is a folder; give the journal-*.jsonl file inside it") from None
    records, damaged = [], 0
    for line in lines:
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            damaged += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            damaged += 1
    if not records or records[0].get("type") != "header" or records[0].get("format") != JOURNAL_FORMAT:
        raise InvalidArgument(f"{p}: not a lookalike duplicates journal (no header line); give the "
                              f"journal-*.jsonl file a dupes --apply run wrote")
    if int(records[0].get("version", 0)) > JOURNAL_VERSION:
        raise InvalidArgument(f"{p}: journal format {records[0]['version']} is newer than this lookalike "
                              f"understands ({JOURNAL_VERSION}); upgrade lookalike to undo it")
    journal = JournalFile(p, records[0], damaged_lines=damaged)
    by_seq: dict[int, JournalEntry] = {}
    for rec in records[1:]:
        kind, seq = rec.get("type"), rec.get("seq")
        if not isinstance(seq, int):
            continue
        if kind == "intent":
            by_seq[seq] = JournalEntry(rec)
            journal.entries.append(by_seq[seq])
        elif kind in ("done", "failed", "undone") and seq in by_seq:
            setattr(by_seq[seq], kind, rec)
    return journal
