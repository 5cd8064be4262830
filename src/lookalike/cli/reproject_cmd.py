"""``lookalike reproject``: a head applied to a collection's stored vectors, as a new
collection (see :mod:`lookalike.apps.reproject`). Parsing and rendering only: the summary
and progress go to stderr, ``--json`` to stdout."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import LookalikeError
from .common import CollectionOpt, default_collection, err, fail
from .progress import TaskProgress

__all__ = ["reproject"]


def reproject(
    collection: Optional[Path] = CollectionOpt,
    head: Path = typer.Option(..., "--head", help="Head folder (from lookalike train, align or distill)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Where to write the new collection (a new or empty "
                                 "folder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Apply a head to a collection's stored vectors, into a new collection: no image is
    decoded, the index is rebuilt, the source is left as it was."""
    from ..apps.reproject import reproject as run

    source = collection or default_collection()
    t0 = time.perf_counter()
    try:
        with TaskProgress(err, quiet, derive="reprojecting vectors") as progress:
            coll = run(source, head, out_dir, progress=progress)
        with coll:
            state = coll.index_state
            summary = {"collection": str(coll.path), "source": str(source), "items": len(coll),
                       "model_id": coll.manifest.model_id, "dim": coll.manifest.dim,
                       "index": state.label if state else "exact", "seconds": round(time.perf_counter() - t0, 3)}
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    elif not quiet:
        err.print(f"[bold green]done[/] in {summary['seconds']:.1f}s: {summary['items']:,} items reprojected, no "
                  f"image decoded -> {escape(summary['collection'])}\n  model {escape(summary['model_id'])} "
                  f"({summary['dim']}-d), index: {summary['index']}", highlight=False, soft_wrap=True, emoji=False)
