"""Progress reporting: the library calls a callback, the caller decides how to show it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

__all__ = ["ProgressEvent", "ProgressCallback", "EventKind"]

EventKind = Literal["scan", "embed", "skip", "done", "traits", "neighbours", "group", "resolve", "cluster", "label", "map",
                    "export", "verify", "import", "train", "derive", "faces", "people"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    ``kind`` is ``"scan"`` while files are being listed (``done`` = files seen so far),
    ``"embed"`` as images are processed (``done`` of ``total``), ``"skip"`` once per file
    that was passed over or failed (``path`` and ``reason`` set), and ``"done"`` at the end.
    Duplicate finding reports ``"traits"`` (hashes backfilled for older items),
    ``"neighbours"`` (rows whose nearest neighbours were searched) and ``"group"``;
    resolving duplicates reports ``"resolve"`` per file acted on. Exploring reports
    ``"cluster"``, ``"label"`` and ``"map"`` (``reason`` names the step, e.g. "choosing k").
    Exports report ``"export"``; imports ``"verify"`` (shards checked) then ``"import"``;
    a collection derived from another's vectors (reproject) ``"derive"`` (vectors written).
    Training a head reports ``"train"`` once per epoch (``done`` of ``total``; ``reason``
    gives the loss and the validation score). Finding faces reports ``"faces"`` (items
    scanned, ``done`` of ``total``; a ``path`` and ``reason`` for an unreadable one), grouping
    them ``"people"``.
    """

    kind: EventKind
    done: int = 0
    total: Optional[int] = None
    path: Optional[str] = None
    reason: Optional[str] = None


ProgressCallback = Callable[[ProgressEvent], None]
