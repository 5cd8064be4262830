"""``lookalike export`` and ``lookalike import``: a collection's embeddings to parquet or the
clip-retrieval layout, and back (see :mod:`lookalike.store.exchange`). Parsing and rendering
only; ``--json`` reports go to stdout, progress, warnings and errors to stderr."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..errors import LookalikeError
from ..store.collection import Collection
from ..store.exchange import ROWS_PER_FILE, create_for_import, export_collection, import_embeddings
from .common import CollectionOpt, DeviceOpt, default_collection, err, fail
from .progress import TaskProgress

__all__ = ["export", "import_"]


def _json(report: Any) -> None:
    data = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(report).items()}
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _progress(quiet: bool) -> TaskProgress:
    return TaskProgress(err, quiet, export="exporting", verify="verifying", **{"import": "importing"})


def export(
    out_dir: Path = typer.Argument(..., help="Folder to write into (missing or empty)."),
    collection: Optional[Path] = CollectionOpt,
    fmt: str = typer.Option("parquet", "--format", help="parquet (id, path, vector, fields, metadata) or "
                            "clip-retrieval (img_emb/*.npy + metadata/*.parquet)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 or float16 (default: float32 for parquet, "
                                        "float16 for clip-retrieval)."),
    rows_per_file: int = typer.Option(ROWS_PER_FILE, "--rows-per-file", min=1, help="Rows per file (shard)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a lookalike export already in the folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Export every embedded item (identity, vector, fields, metadata) for other tools."""
    try:
        with Collection.open(collection or default_collection()) as coll, _progress(quiet) as progress:
            report = export_collection(coll, out_dir, format=fmt, dtype=dtype, rows_per_file=rows_per_file,
                                       overwrite=overwrite, progress=progress)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        _json(report)
    elif not quiet:
        err.print(f"[bold green]done[/] in {report.seconds:.1f}s: {report.rows:,} items, {len(report.files)} files "
                  f"({report.format}, {report.dtype}) -> {escape(str(report.out_dir))}",
                  highlight=False, soft_wrap=True, emoji=False)


def import_(
    source: Path = typer.Argument(..., help="An export folder (either format), clip-retrieval output, or one "
                                  ".parquet file."),
    collection: Optional[Path] = CollectionOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model of a new collection, when the input "
                                        "does not record it (clip-retrieval output from elsewhere)."),
    identity: Optional[str] = typer.Option(None, "--identity-column", help="Column naming each item, in data "
                                           "from elsewhere (default: image_path, path or url)."),
    device: str = DeviceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import embeddings into a collection (created if needed), verified row for row first."""
    target = collection or default_collection()
    new = not target.exists()
    try:
        if (target / "manifest.json").exists():
            coll = Collection.open(target, model=model, device=device)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            coll = create_for_import(target, source, model=model, device=device)
        with coll, _progress(quiet) as progress:
            report = import_embeddings(coll, source, identity=identity, progress=progress)
    except LookalikeError as exc:
        if new and target.is_dir():
            shutil.rmtree(target)  # a refused import leaves no empty collection behind it made
        fail(exc)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True, emoji=False)
    if as_json:
        _json(report)
    elif not quiet:
        err.print(f"[bold green]done[/] in {report.seconds:.1f}s: {report.rows:,} rows from {report.shards} shards "
                  f"({report.added:,} added, {report.updated:,} updated, {report.reused:,} sharing a stored vector) "
                  f"-> {escape(str(coll.path))}", highlight=False, soft_wrap=True, emoji=False)
