"""``--where`` conditions over item metadata and the item's own fields.

``license=cc-by``, ``width>=512``, ``source!=flickr``, ``lang in en,de``: a key, an operator
(``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``) and a value. The keys ``width``,
``height``, ``size`` and ``path`` are the item's own columns; any other key is table metadata
(a column or a caption stored with the item). Values that read as numbers compare as numbers,
and ``=`` also matches the text as written (so ``id=00123`` finds a text ``00123``); ``true``
and ``false`` also match the booleans a table stores (as 1 and 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidArgument

__all__ = ["Condition", "parse_condition", "ITEM_COLUMNS"]

#: Keys that name the item's own columns rather than table metadata.
ITEM_COLUMNS = {"width": "width", "height": "height", "size": "size", "path": "path"}
#: The item columns that hold numbers (a condition on them needs a number).
_NUMERIC_COLUMNS = ("width", "height", "size")

_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.:-]*)\s*(!=|<=|>=|=|<|>|\s+in\s+)\s*(.*?)\s*$", re.IGNORECASE)
_EXAMPLES = "license=cc-by, width>=512, source!=flickr or 'lang in en,de'"


def _typed(text: str) -> list[object]:
    """The forms a value may be stored in: a number (when it reads as one) and the text."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return [text[1:-1]]  # quoted: text only
    for cast in (int, float):
        try:
            return [cast(text), text]
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return [int(text.lower() == "true"), text]  # SQLite stores a table's booleans as 1 and 0
    return [text]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Condition:
    """One parsed condition: ``key op value`` (``values`` for ``in``)."""

    key: str
    op: str
    values: tuple[str, ...]

    def sql(self) -> tuple[str, list[object]]:
        """``(clause, params)`` over the ``items`` table."""
        forms = [form for v in self.values for form in _typed(v)]
        column = ITEM_COLUMNS.get(self.key)
        if self.op in ("=", "!=", "in"):
            marks = ",".join("?" * len(forms))
            if column is not None:
                return f"{column} {'NOT ' if self.op == '!=' else ''}IN ({marks})", forms
            # != keeps items without the key: they are not equal to it.
            return (f"id {'NOT ' if self.op == '!=' else ''}IN (SELECT item_id FROM item_meta WHERE key = ? "
                    f"AND value IN ({marks}))"), [self.key, *forms]
        value = forms[0]  # the number when the value reads as one
        if column is not None:
            return f"{column} {self.op} ?", [value]
        kind = "typeof(value) IN ('integer', 'real')" if isinstance(value, (int, float)) else "typeof(value) = 'text'"
        return f"id IN (SELECT item_id FROM item_meta WHERE key = ? AND {kind} AND value {self.op} ?)", [self.key, value]


def parse_condition(text: str) -> Condition:
    """Parse one ``--where`` condition.

    Raises:
        InvalidArgument: it does not read as ``key op value``.
    """
    m = _PATTERN.match(text)
    if m is None or not m.group(3):
        raise InvalidArgument(f"--where {text!r}: not a condition; write key, operator and value, like {_EXAMPLES}")
    key, op, value = m.group(1), m.group(2).strip().lower(), m.group(3)
    if op == "in":
        values = tuple(v.strip() for v in value.strip("()[]").split(",") if v.strip())
        if not values:
            raise InvalidArgument(f"--where {text!r}: 'in' needs values separated by commas, like 'lang in en,de'")
    else:
        values = (value,)
    if key in ("path",) and op not in ("=", "!=", "in"):
        raise InvalidArgument(f"--where {text!r}: paths compare with =, != or in only (or use --glob)")
    if key in _NUMERIC_COLUMNS:
        # A text value would compare as SQLite orders numbers before text: quietly all or nothing.
        for v in values:
            if not _is_number(v):
                raise InvalidArgument(f"--where {text!r}: {key} is a number of {'bytes' if key == 'size' else 'pixels'}"
                                      f"; compare it with a number, like {key}>=512")
    return Condition(key, op, values)
