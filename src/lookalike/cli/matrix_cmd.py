"""``lookalike matrix``: the cosine similarity of every pair among a few images, items and texts.

Parsing and rendering only: the matrix is :func:`lookalike.apps.matrix.similarity_matrix`
and the heat map :func:`lookalike.apps.explore.plots.matrix_png`. The table, ``--json`` and
``--csv -`` go to stdout; messages and errors to stderr.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..apps.matrix import MATRIX_LIMIT, similarity_matrix
from ..errors import InvalidArgument, LookalikeError, UnreadableImage
from ..store.collection import Collection
from ..store.item_access import item_reader
from .common import CollectionOpt, DeviceOpt, default_collection, err, fail, out

if TYPE_CHECKING:
    from PIL import Image

    from ..apps.matrix import SimilarityMatrix

__all__ = ["matrix"]


def matrix(
    items: List[str] = typer.Argument(..., help="Image paths, id:N (stored items) or texts, up to 64."),
    collection: Optional[Path] = CollectionOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embed with this model instead of a "
                                        "collection's (paths and texts only)."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw a heat map with thumbnails into this PNG."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Write the matrix as CSV ('-': stdout)."),
    as_json: bool = typer.Option(False, "--json", help="The matrix as one JSON object."),
    limit: int = typer.Option(MATRIX_LIMIT, "--limit", min=1, help="The most items allowed."),
    device: str = DeviceOpt,
) -> None:
    """Cosine similarity of every pair of ITEMS (image paths, id:N, texts): a table, or --png,
    --csv, --json."""
    from ..apps.html import html_destination

    try:
        if as_json and csv is not None and str(csv) == "-":
            raise InvalidArgument("--json and --csv - both write to stdout; choose one")
        if png is not None:
            png = html_destination(png, "matrix.png", "picture")
        if model is not None and collection is not None:
            raise InvalidArgument("give --collection or --model, not both (a collection embeds with its own model)")
        if model is not None:
            from ..models.registry import load_model

            result = similarity_matrix(load_model(model, device=device), items, limit=limit)
            _outputs(result, png, csv, None)
        else:
            with Collection.open(collection or default_collection(), device=device) as coll:
                result = similarity_matrix(coll, items, limit=limit)
                # Items may be tar members or downloaded URLs: the collection reads their bytes.
                _outputs(result, png, csv, item_reader(coll).source)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
    elif csv is None or str(csv) != "-":
        if png is None and csv is None:
            _table(result)


def _outputs(result: "SimilarityMatrix", png: Optional[Path], csv: Optional[Path],
             read: "Callable[[str], str | bytes] | None") -> None:
    if csv is not None:
        if str(csv) == "-":
            result.to_csv(sys.stdout)
        else:
            dest = csv.expanduser()
            if not dest.parent.is_dir():
                raise InvalidArgument(f"cannot write the CSV {dest}: no such folder {dest.parent}")
            try:
                result.to_csv(dest)
            except OSError as exc:
                raise InvalidArgument(f"cannot write the CSV {dest}: {exc.strerror or exc}") from None
            err.print(Text(f"wrote {dest}"), soft_wrap=True)
    if png is not None:
        from ..apps.explore.plots import matrix_png

        written = matrix_png(result, png, thumbnails=_thumbnails(result, read))
        err.print(Text(f"wrote {written}"), soft_wrap=True)


def _thumbnails(result: "SimilarityMatrix", read: "Callable[[str], str | bytes] | None") -> "dict[int, Image.Image]":
    """The picture of each image or item (texts have none; unreadable files are left out)."""
    from PIL import Image

    from ..apps.html import thumbnail_bytes

    thumbs: dict[int, Image.Image] = {}
    for index, path in enumerate(result.paths):
        if path is None:
            continue
        try:
            thumbs[index] = Image.open(io.BytesIO(thumbnail_bytes(read(path) if read else path, 96, name=path)))
        except UnreadableImage:
            continue
    return thumbs


def _table(result: "SimilarityMatrix") -> None:
    """The matrix with a row and a column per item (numbered; the names are listed above)."""
    for n, (name, kind) in enumerate(zip(result.names, result.kinds), 1):
        out.print(Text.assemble((f"{n:>3} ", "bold"), (f"{kind:<5} ", "dim"), name), highlight=False)
    table = Table(box=None, header_style="bold")
    table.add_column("", justify="right", style="bold")
    for n in range(1, len(result.names) + 1):
        table.add_column(str(n), justify="right")
    for n, row in enumerate(result.matrix.tolist(), 1):
        table.add_row(str(n), *(Text(f"{v:.3f}", style=_shade(v, i == n - 1)) for i, v in enumerate(row)))
    out.print(table)


def _shade(value: float, diagonal: bool) -> str:
    if diagonal:
        return "dim"
    return "bold green" if value >= 0.8 else "green" if value >= 0.6 else "" if value >= 0.3 else "dim"
