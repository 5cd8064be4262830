"""``lookalike info``: describe a collection (``index`` lives in :mod:`.index_cmd`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import LookalikeError
from ..store.ann import IndexSettings, IndexState
from ..store.collection import Collection, CollectionInfo
from .common import CollectionOpt, default_collection, fail, human_bytes, out
from .index_cmd import index

__all__ = ["index", "info"]


def info(
    collection: Optional[Path] = CollectionOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    errors: int = typer.Option(20, "--errors", help="How many failed files to list."),
) -> None:
    """Show a collection's model, counts, size on disk, index and failed files."""
    try:
        with Collection.open(collection or default_collection()) as coll:
            summary = coll.info(max_errors=errors)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2) + "\n")
        return
    _print_info(summary)


def _describe_faces(summary: CollectionInfo) -> str:
    faces = summary.faces
    if faces is None:
        return "not looked for (opt-in: lookalike faces index)"
    pending = f"; {faces.pending_items:,} photos not scanned yet" if faces.pending_items else ""
    return (f"{faces.faces:,} in {faces.scanned_items:,} photos scanned, {faces.people:,} people "
            f"({faces.named_people:,} named), {faces.unassigned_faces:,} faces in no person{pending}")


def _print_info(summary: CollectionInfo) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in [
        ("collection", summary.path),
        ("model", summary.model_id),
        ("fingerprint", summary.fingerprint),
        ("dimensions", str(summary.dim)),
        ("runtime", describe_collection_runtime(summary)),
        ("images", f"{summary.items:,}"),
        ("failed", f"{summary.failed:,}"),
        ("vector rows", f"{summary.vector_rows:,}"),
        ("size on disk", human_bytes(summary.bytes_on_disk)),
        ("index", describe_index(summary.index_settings, summary.index)),
        ("faces", _describe_faces(summary)),
    ]:
        table.add_row(label, Text(value))
    out.print(table)
    if summary.errors:
        out.print(f"\n[bold]failed files[/] (first {len(summary.errors)} of {summary.failed}):")
        for path, reason in summary.errors:
            out.print(Text.assemble("  ", path, ": ", (reason, "red")), highlight=False)


def describe_collection_runtime(summary: CollectionInfo) -> str:
    """What built the collection, and what ``auto`` measured for its model on this machine."""
    line = f"built with {summary.runtime}, {summary.precision}"
    if summary.precision == "fp32":
        line += " (fp32 runs on any runtime)"
    from ..models.autotune import cached_measurement

    measured = cached_measurement(summary.fp32_fingerprint, summary.precision, summary.calibration)
    return line + (f"; auto on this machine: {measured.summary()}" if measured else "; auto not measured here yet")


def describe_index(settings: IndexSettings, state: IndexState | None) -> str:
    """One line: what was asked for, what is built, and how it measured (each query set)."""
    asked = f"{settings.mode}, recall target {settings.recall}"
    if settings.latency_ms:
        asked += f", latency budget {settings.latency_ms:g} ms"
    if settings.memory_bytes:
        asked += f", memory budget {human_bytes(settings.memory_bytes)}"
    if state is None:
        return f"exact search ({asked})"
    m = state.measured
    verdict = f" (missed: {', '.join(state.missed or ('target',))}; best reached)" if not state.met_target else ""
    se = f" ± {m.recall_se:.3f}" if m.recall_se else ""
    held = f" on {m.n_queries} held-out images" if m.n_queries else ""
    line = f"{state.label} ({asked}): measured recall@10 {m.recall:.3f}{se}{held}"
    for name, extra in (("confirmed", state.confirmed), ("text queries", state.text),
                        ("text confirmed", state.text_confirmed)):
        if extra is not None:
            line += f", {name} {extra.recall:.3f}" + (f" on {extra.n_queries}" if extra.n_queries else "")
    return (f"{line}, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms, {human_bytes(m.memory_bytes)} in RAM{verdict}")
