"""``lookalike search``: one query from the arguments, or a batch from a file."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import InvalidArgument, LookalikeError, QueryError
from ..query import Query, parse_query, parse_query_tokens
from ..store.collection import Collection
from ..store.filters import Filter
from ..store.items import Hit
from .common import CollectionOpt, DeviceOpt, default_collection, err, fail, out

__all__ = ["search"]


def search(
    query: Optional[List[str]] = typer.Argument(
        None, help="Text, image path or URL, id:N, or a mix: \"2:dog\" + ./a.jpg - grass; person:NAME (or "
                   "person:ID) keeps that person's photos"),
    collection: Optional[Path] = CollectionOpt,
    k: int = typer.Option(10, "-k", "--top-k", min=1, help="Number of results."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines: {\"id\", \"path\", \"score\"}."),
    files_only: bool = typer.Option(False, "-f", "--files", help="Bare paths, one per line, for piping."),
    batch: Optional[Path] = typer.Option(
        None, "--batch", help="File with one query per line (same syntax); '-' reads stdin. With --json each "
        "line also carries \"query\"."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Drop results scoring below this."),
    under: List[Path] = typer.Option([], "--under", help="Only files below this folder; repeatable."),
    glob: Optional[str] = typer.Option(None, "--glob", help="Only paths matching this pattern, e.g. '*.jpg'."),
    after: Optional[str] = typer.Option(None, "--after", help="Only files modified on or after this date."),
    before: Optional[str] = typer.Option(None, "--before", help="Only files modified before this date."),
    min_width: Optional[int] = typer.Option(None, "--min-width", help="Only images at least this wide."),
    min_height: Optional[int] = typer.Option(None, "--min-height", help="Only images at least this tall."),
    max_width: Optional[int] = typer.Option(None, "--max-width", help="Only images at most this wide."),
    max_height: Optional[int] = typer.Option(None, "--max-height", help="Only images at most this tall."),
    label: List[str] = typer.Option([], "--label", help="Only items with this zero-shot label (see `lookalike "
                                    "label`); repeatable: any of them."),
    cluster: List[int] = typer.Option([], "--cluster", help="Only items in this cluster (see `lookalike "
                                      "cluster`); repeatable: any of them."),
    person: List[str] = typer.Option([], "--person", help="Only photos showing this person, by name or id (see "
                                     "`lookalike people`); repeatable: all of them. Without a query, the "
                                     "person's photos, most typical face first."),
    where: List[str] = typer.Option([], "--where", help="Metadata condition, e.g. license=cc-by, width>=512, "
                                    "'lang in en,de' (ops = != < <= > >= in); repeatable: all must hold."),
    device: str = DeviceOpt,
) -> None:
    """Search a collection. Terms are joined with + and -, each optionally weighted as W:term
    (a negative weight works too: search -2:dog + cat)."""
    try:
        texts, queries = _queries(query, batch, bool(person))
        flt = Filter(under=tuple(under), glob=glob, modified_after=_date(after, "--after"),
                     modified_before=_date(before, "--before"), min_width=min_width, min_height=min_height,
                     max_width=max_width, max_height=max_height, label=tuple(label), cluster=tuple(cluster),
                     person=tuple(person), conditions=tuple(where))
        with Collection.open(collection or default_collection(), device=device) as coll:
            results = coll.search_batch(queries, k=k, min_score=min_score, where=flt)
    except LookalikeError as exc:
        fail(exc)
    if batch is None:
        _print_hits(results[0], as_json, files_only)
        return
    for text, hits in zip(texts, results):
        if as_json:
            for rank_, h in enumerate(hits, 1):
                sys.stdout.write(json.dumps({"query": text, "rank": rank_, "id": h.id, "path": h.path,
                                             "score": round(h.score, 6)}) + "\n")
        else:
            if not files_only:
                out.print(Text(f"\n{text}", style="bold"))
            _print_hits(hits, False, files_only)


def _queries(tokens: Optional[List[str]], batch: Optional[Path],
             persons: bool = False) -> tuple[list[str], list[Query]]:
    """``(texts, queries)``: the arguments as one query, or one query per line of ``batch``;
    with ``--person`` and neither, the query of no terms (the person's photos)."""
    if batch is None:
        if not tokens and persons:
            return [""], [Query(())]
        if not tokens:
            raise QueryError("give a query (text, image, id:N, person:NAME), --person NAME or --batch FILE")
        return [" ".join(tokens)], [parse_query_tokens(tokens)]
    if tokens:
        raise QueryError("give either a query or --batch FILE, not both")
    try:
        lines = (sys.stdin.read() if str(batch) == "-" else batch.read_text(encoding="utf-8")).splitlines()
    except OSError as exc:
        raise QueryError(f"cannot read {batch}: {exc.strerror or exc}") from None
    texts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return texts, [parse_query(t) for t in texts]


def _print_hits(hits: list[Hit], as_json: bool, files_only: bool) -> None:
    if files_only:
        for h in hits:
            sys.stdout.write(h.path + "\n")  # verbatim: no markup, emoji codes or wrapping
    elif as_json:
        for h in hits:
            sys.stdout.write(json.dumps({"id": h.id, "path": h.path, "score": round(h.score, 6)}) + "\n")
    else:
        table = Table(box=None, header_style="bold")
        table.add_column("rank", justify="right")
        table.add_column("score", justify="right")
        table.add_column("id", justify="right", style="dim")
        table.add_column("path", overflow="fold")
        for rank, h in enumerate(hits, 1):
            table.add_row(str(rank), f"{h.score:.3f}", str(h.id), Text(h.path))
        out.print(table)
        if not hits:
            err.print("no results")


def _date(text: Optional[str], option: str) -> Optional[datetime]:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{option} takes a date like 2024-06-30 or 2024-06-30T18:00, not {text!r}") from None
