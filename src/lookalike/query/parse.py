"""The query language: terms, weights and the two parsers (a string, or shell tokens).

A query is a weighted sum of terms. Each term is text, an image (path or http(s) URL),
or a stored item (``id:N``)::

    a red apple                     one text term (adjacent words join)
    ./query.jpg                     an image
    "2:dog" + ./a.jpg - grass       2*dog + a.jpg - grass
    id:42 + 0.5:sunset              item 42 nudged towards "sunset"
    beach person:Ada                "beach" among the photos that show the person Ada
    person:3 person:"Ada Lovelace"  photos showing both people (ids or names), no terms

``person:NAME`` and ``person:ID`` are filters, not terms: they carry no weight, cannot be
negated, and may stand anywhere (a query may be persons alone). Parsing never embeds anything
and never opens a collection; :mod:`.compose` turns a parsed :class:`Query` into one vector.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from ..errors import QueryError
from ..images.discover import HEIF_EXTENSIONS, IMAGE_EXTENSIONS

__all__ = ["Term", "Query", "TermKind", "parse_query", "parse_query_tokens"]

TermKind = Literal["text", "image", "url", "id", "vector"]
_WEIGHT = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)):(.+)$", re.DOTALL)
_ID = re.compile(r"^id:(.*)$")
_PERSON = "person:"


@dataclass(frozen=True)
class Term:
    """One weighted part of a query.

    ``value`` is the text (``text``), a path, bytes or PIL image (``image``), the URL
    (``url``), the item id (``id``) or a vector in the collection's space (``vector``).
    """

    weight: float
    kind: TermKind
    value: Any


@dataclass(frozen=True)
class Query:
    """A weighted sum of terms; build it with :func:`parse_query` or directly.

    ``persons`` are ``person:`` filters (a name or an id, as written): results must show every
    one of them. A query of persons alone has no terms; the collection then ranks the
    people's photos by how typical their face is.
    """

    terms: tuple[Term, ...]
    persons: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, *, allow_files: bool = True) -> "Query":
        """Same as :func:`parse_query`."""
        return parse_query(text, allow_files=allow_files)

    def ids(self) -> list[int]:
        """The item ids the query refers to (``id:N`` terms), in order."""
        return [int(t.value) for t in self.terms if t.kind == "id"]

    def describe(self) -> str:
        """A short readable form: ``red apple - 0.5*id:4 + [image] person:Ada``."""
        parts: list[str] = []
        for t in self.terms:
            if t.kind == "id":
                body = f"id:{t.value}"
            elif t.kind in ("text", "url") or (t.kind == "image" and isinstance(t.value, str)):
                body = str(t.value)
            else:
                body = f"[{t.kind}]"
            term = body if abs(t.weight) == 1 else f"{abs(t.weight):g}*{body}"
            sign = "- " if t.weight < 0 else ("+ " if parts else "")
            parts.append(sign + term)
        parts += [_PERSON + (f'"{p}"' if any(c.isspace() for c in p) else p) for p in self.persons]
        return " ".join(parts)


def parse_query(text: str, *, allow_files: bool = True) -> Query:
    """Parse a query written as one string, as typed in a search box or quoted on a shell.

    Shell-style quoting is honoured (``'"2:red car" - id:3'``); an apostrophe in plain text
    (``a child's toy``) is just a character. A string that names an existing file is that
    image, spaces and all. ``allow_files=False`` never touches the file system: for queries
    that come from someone else (a web client), where a path must not reach a local file.

    Raises:
        QueryError: the text does not form a query, with what to change.
    """
    if not isinstance(text, str):
        raise QueryError(f"parse_query takes one string, not a {type(text).__name__}; for a list of "
                         "command-line tokens use parse_query_tokens")
    if allow_files and os.path.isfile(os.path.expanduser(text)):
        return Query((Term(1.0, "image", os.path.expanduser(text)),))
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unbalanced quote: "a child's toy"
        tokens = text.split()
    return parse_query_tokens(tokens, allow_files=allow_files)


def parse_query_tokens(tokens: Sequence[str], *, allow_files: bool = True) -> Query:
    """Parse command-line tokens (``sys.argv``-style, already split by the shell): terms
    separated by ``+`` / ``-``, each optionally ``W:``-weighted; adjacent words join.

    Raises:
        QueryError: the tokens do not form a query, with what to change.
    """
    if isinstance(tokens, str):
        raise QueryError("parse_query_tokens takes a list of tokens; for one query string use parse_query")
    terms: list[Term] = []
    persons: list[str] = []
    sign = 1.0
    expect_term = True
    after_operator = False
    for token in tokens:
        if token in ("+", "-"):
            # Also at the start: "- - dog" is as much a typo as "cat - - dog".
            if after_operator:
                raise QueryError(f"two operators in a row near '{token}'; put a term between them")
            sign = 1.0 if token == "+" else -1.0
            expect_term = after_operator = True
            continue
        if not token.strip():
            continue
        weight, body, weighted = _split_weight(token)
        if body.startswith(_PERSON):
            # A filter is no term: the terms around it read as if it were not there, and a "+"
            # before it is harmless ("dog + person:Ada" and "dog + person:Ada + cat" are fine).
            persons.append(_person(token, body, weighted, negated=after_operator and sign < 0))
            after_operator = False
            continue
        kind, value = _classify(body, allow_files)
        if not expect_term:
            last = terms[-1]
            # Unquoted words are one text term: `lookalike search red apple` means "red apple".
            if kind == "text" and last.kind == "text" and not weighted:
                terms[-1] = Term(last.weight, "text", f"{last.value} {value}")
                continue
            raise QueryError(f"put + or - between the terms '{last.value}' and '{token}'")
        terms.append(Term(sign * weight, kind, value))
        sign, expect_term, after_operator = 1.0, False, False
    if not terms and not persons:
        raise QueryError("empty query: give text, an image path or URL, id:N, or person:NAME")
    if after_operator:
        raise QueryError("the query ends with an operator; add a term after it")
    return Query(tuple(terms), tuple(dict.fromkeys(persons)))


def _person(token: str, body: str, weighted: bool, negated: bool) -> str:
    """The name or id of a ``person:`` token, or a QueryError saying why it is not one."""
    if weighted or negated:
        raise QueryError(f"'{'- ' if negated else ''}{token}': person: is a filter (photos that show the person), "
                         "not a term; it takes no weight and cannot be negated. Write person:NAME on its own")
    name = body[len(_PERSON):].strip()
    if not name:
        raise QueryError(f"'{token}': give a name or id after person:, as in person:Ada, person:3 or "
                         "'person:\"Ada Lovelace\"' (see `lookalike people`)")
    return name


def _split_weight(token: str) -> tuple[float, str, bool]:
    """``"2:dog"`` -> ``(2.0, "dog", True)``; an unweighted token -> ``(1.0, token, False)``."""
    m = _WEIGHT.match(token)
    if not m:
        return 1.0, token, False
    return float(m.group(1)), m.group(2), True


def _classify(token: str, allow_files: bool = True) -> tuple[TermKind, Any]:
    m = _ID.match(token)
    if m:
        try:
            return "id", int(m.group(1))
        except ValueError:
            raise QueryError(f"'{token}': an item id must be a whole number, as in id:42") from None
    if token.startswith(("http://", "https://")):
        return "url", token
    ext = os.path.splitext(token)[1].lower()
    looks_like_file = token.startswith(("/", "./", "../", "~")) or ext in IMAGE_EXTENSIONS | HEIF_EXTENSIONS
    if not allow_files:
        if looks_like_file:
            raise QueryError(f"'{token}': file paths are not accepted here; upload the image instead, or quote "
                             "the words with a space to search for them as text")
        return "text", token
    path = os.path.expanduser(token)
    if os.path.isfile(path):
        return "image", path
    if looks_like_file:
        raise QueryError(f"no such image file: {token} (to search for the words, quote them with a space or "
                         "drop the extension)")
    return "text", token
