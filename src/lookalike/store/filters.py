"""Metadata filters for search: folder, glob, modification time, image size, zero-shot label,
cluster, the people a photo shows, ``--where`` conditions over table metadata (:mod:`.conditions`), and a predicate.

The structured parts become one SQL ``WHERE`` clause; the Python predicate (``where``) then
runs over the rows that pass it. The result is the set of rows a search may return, handed
to exact search as a row subset and to FAISS as an ID selector, so a filtered query still
returns k results whenever k items match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import InvalidArgument
from ..fsutil import user_path
from .conditions import parse_condition

if TYPE_CHECKING:
    from .items import Item

__all__ = ["Filter", "person_key"]


_INT64 = (-(2**63), 2**63 - 1)


def _sql_int(value: float) -> int:
    """``value`` as an SQLite INTEGER: bounds beyond its range are clamped to it, which
    selects exactly the same rows (no stored value lies outside it)."""
    return int(min(max(value, _INT64[0]), _INT64[1]))


def _timestamp(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return value.timestamp()


def person_key(person: int | str) -> int | str:
    """A person as asked for: an id (an int, or a string of digits, as ``person:3`` gives)
    or a name (stripped). A name made of digits alone is therefore read as an id.

    Raises:
        InvalidArgument: an empty name, or something that is neither a name nor an id.
    """
    if isinstance(person, bool) or not isinstance(person, (int, str)):
        raise InvalidArgument(f"a person is a name or an id, not {person!r}")
    if isinstance(person, int):
        return person
    text = person.strip()
    if not text:
        raise InvalidArgument("an empty person name; give a name or id (see `lookalike people`)")
    return int(text) if text.isascii() and text.isdigit() else text


def _option(cli: str | None, help: str) -> dict[str, object]:
    """Field metadata: the command-line flag that sets it (None: not on the command line)
    and its help text. ``tests/test_filter_declaration.py`` checks the CLI and the HTTP
    schema against these fields, so the three cannot drift apart."""
    return {"cli": cli, "help": help}


@dataclass(frozen=True)
class Filter:
    """Which items a search may return. Every given condition must hold.

    This is the one declaration of the search filters: the command line's options and the
    HTTP API's ``filters`` are these fields (a test keeps them in step).
    """

    under: Sequence[str | os.PathLike[str]] = field(
        default=(), metadata=_option("--under", "folders; items must lie below one of them (relative or ~ allowed)"))
    glob: str | None = field(
        default=None, metadata=_option("--glob", "shell pattern matched against the full path (* crosses folders)"))
    modified_after: float | datetime | None = field(
        default=None, metadata=_option("--after", "modified at or after this time (datetime or Unix seconds)"))
    modified_before: float | datetime | None = field(
        default=None, metadata=_option("--before", "modified before this time (datetime or Unix seconds)"))
    min_width: int | None = field(default=None, metadata=_option("--min-width", "at least this many pixels wide"))
    min_height: int | None = field(default=None, metadata=_option("--min-height", "at least this many pixels tall"))
    max_width: int | None = field(default=None, metadata=_option("--max-width", "at most this many pixels wide"))
    max_height: int | None = field(default=None, metadata=_option("--max-height", "at most this many pixels tall"))
    label: Sequence[str] = field(
        default=(), metadata=_option("--label", "zero-shot labels (see `label`); items must carry one of them"))
    cluster: Sequence[int] = field(
        default=(), metadata=_option("--cluster", "cluster ids (see `cluster`); items must be in one of them"))
    person: Sequence[int | str] = field(
        default=(), metadata=_option("--person", "people (name or id, see `people`); items must show every one "
                                                 "of them"))
    conditions: Sequence[str] = field(
        default=(), metadata=_option("--where", "metadata conditions (license=cc-by, width>=512, 'lang in en,de'; "
                                                "ops = != < <= > >= in); all must hold"))
    where: Callable[["Item"], bool] | None = field(
        default=None, metadata=_option(None, "any Python predicate over the Item (library only)"))

    def __post_init__(self) -> None:
        for text in self.conditions:
            parse_condition(text)  # a typo fails here, naming the condition, before any search
        for person in self.person:
            person_key(person)

    def is_empty(self) -> bool:
        return not self.under and self.where is None and not self.sql()[0]

    def folders(self) -> tuple[str, ...]:
        """``under`` in the stored form of paths (absolute, ``~`` expanded): the one place
        where a user's folder is normalised for searching."""
        return tuple(user_path(u) for u in self.under)

    def below(self, under: Sequence[str | os.PathLike[str]]) -> "Filter":
        """This filter with ``under`` folders added (items must also lie below one of them)."""
        return replace(self, under=tuple(self.under) + tuple(under)) if under else self

    def cache_key(self) -> tuple[str, ...] | None:
        """A hashable key when the filter is folders alone (its result can be cached), else None."""
        if self.where is not None or self.sql()[0]:
            return None
        return self.folders()

    def sql(self) -> tuple[list[str], list[object]]:
        """``(clauses, params)`` for everything but ``under`` and ``where``."""
        clauses: list[str] = []
        params: list[object] = []
        if self.glob:
            clauses.append("path GLOB ?")
            params.append(self.glob if os.path.isabs(self.glob) else "*" + self.glob.lstrip("*"))
        after, before = _timestamp(self.modified_after), _timestamp(self.modified_before)
        if after is not None:
            clauses.append("mtime_ns >= ?")
            params.append(_sql_int(after * 1e9))
        if before is not None:
            clauses.append("mtime_ns < ?")
            params.append(_sql_int(before * 1e9))
        for column, op, value in (("width", ">=", self.min_width), ("height", ">=", self.min_height),
                                  ("width", "<=", self.max_width), ("height", "<=", self.max_height)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(_sql_int(value))
        if self.cluster:
            clauses.append(f"cluster IN ({','.join('?' * len(self.cluster))})")
            params += [int(c) for c in self.cluster]
        if self.label:
            # item_labels holds every stored label of an item (its top one included), and loses
            # an item's rows when the item is deleted: a filter never finds a deleted item.
            clauses.append("id IN (SELECT item_id FROM item_labels WHERE label COLLATE NOCASE IN "
                           f"({','.join('?' * len(self.label))}))")
            params += [str(lb) for lb in self.label]
        for person in self.person:
            # One clause per person: a photo must show all of them. A name is looked up here
            # (people.name is NOCASE); the collection resolves names first, to report an unknown one.
            key = person_key(person)
            if isinstance(key, int):
                clauses.append("id IN (SELECT item_id FROM faces WHERE person_id = ?)")
            else:
                clauses.append("id IN (SELECT f.item_id FROM faces f JOIN people p ON p.id = f.person_id "
                               "WHERE p.name = ?)")
            params.append(key)
        for text in self.conditions:
            clause, extra = parse_condition(text).sql()
            clauses.append(clause)
            params += extra
        return clauses, params
