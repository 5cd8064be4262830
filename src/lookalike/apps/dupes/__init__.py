"""Duplicates: acting on the groups :meth:`Collection.duplicates` finds, and undoing it.

``resolve(coll, groups, action, ...)`` moves, deletes (into the collection's trash), hard-
or symlinks the members not kept; a dry run unless ``apply=True``. An applied run writes a
journal that ``undo(journal)`` reverses. See :mod:`.resolve`, :mod:`.journal`, :mod:`.undo`.
"""

from __future__ import annotations

from .journal import read_journal
from .resolve import ACTIONS, NOT_IDENTICAL, Action, ResolveReport, Step, plan, resolve, with_choice
from .undo import UndoReport, undo

__all__ = ["ACTIONS", "NOT_IDENTICAL", "Action", "ResolveReport", "Step", "UndoReport", "plan", "read_journal",
           "resolve", "undo", "with_choice"]
