"""``lookalike index`` and ``lookalike info``: build a collection, and describe one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import LookalikeError
from ..store.ann import IndexSettings, IndexState
from ..store.collection import Collection, CollectionInfo
from ..store.indexer import AddReport, require_roots
from .common import CollectionOpt, DeviceOpt, default_collection, err, fail, human_bytes, out, parse_bytes
from .progress import IndexProgress

__all__ = ["index", "info"]


def index(
    paths: List[Path] = typer.Argument(..., help="Folders (recursive) or single image files."),
    collection: Optional[Path] = CollectionOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model for a new collection [default: lite]."),
    exclude: List[str] = typer.Option([], "--exclude", "-x", help="Glob of names or relative paths to skip; repeatable."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Decoding threads."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try files that failed before, even if unchanged."),
    device: str = DeviceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or skip messages."),
    index_mode: Optional[str] = typer.Option(
        None, "--index", help="auto (default: exact below 50,000 images, else tuned ANN), exact, flat, hnsw, ivf, "
        "ivfpq, sq8, fp16 or binary."),
    recall: Optional[float] = typer.Option(None, "--recall", help="Recall@10 the index must reach [default: 0.95]."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Index memory budget, e.g. 500MB or 2GB."),
    latency_ms: Optional[float] = typer.Option(
        None, "--latency-ms", help="Median single-query latency budget in ms [default: 2]; 0 for none."),
) -> None:
    """Add images to a collection, creating it if needed. Re-runs only process what changed."""
    target = collection or default_collection()
    exists = (target / "manifest.json").exists()
    try:
        require_roots(paths)  # a mistyped folder creates nothing
        settings = None
        if any(v is not None for v in (index_mode, recall, memory, latency_ms)):
            current = Collection.open(target).index_settings if exists else IndexSettings()
            settings = IndexSettings(
                mode=index_mode or current.mode,
                recall=recall if recall is not None else current.recall,
                memory_bytes=parse_bytes(memory) if memory is not None else current.memory_bytes,
                latency_ms=(latency_ms or None) if latency_ms is not None else current.latency_ms,
            )
        if exists:
            coll = Collection.open(target, model=model, device=device)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            coll = Collection.create(target, model=model or "lite", device=device)
        with coll, IndexProgress(err, quiet=quiet) as progress:
            report = coll.add(paths, exclude=exclude, batch_size=batch_size, workers=workers,
                              retry_failed=retry_failed, progress=progress, index=settings)
    except LookalikeError as exc:
        fail(exc)
    if not quiet:
        err.print(f"[bold green]done[/] in {report.seconds:.1f}s{_rate(report)}: {_summary(report)} -> "
                  f"{escape(str(coll.path))}", highlight=False, soft_wrap=True, emoji=False)


def _summary(report: AddReport) -> str:
    parts = [
        ("added", report.added), ("updated", report.updated), ("renamed", report.renamed),
        ("copied", report.copied), ("unchanged", report.unchanged), ("removed", report.removed),
        ("failed", len(report.failed)), ("skipped", len(report.skipped)),
    ]
    return ", ".join(f"{n} {label}" for label, n in parts if n or label in ("added", "failed"))


def _rate(report: AddReport) -> str:
    return f" ({report.embedded / report.seconds:.1f} images/s)" if report.embedded and report.seconds else ""


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


def _print_info(summary: CollectionInfo) -> None:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in [
        ("collection", summary.path),
        ("model", summary.model_id),
        ("fingerprint", summary.fingerprint),
        ("dimensions", str(summary.dim)),
        ("images", f"{summary.items:,}"),
        ("failed", f"{summary.failed:,}"),
        ("vector rows", f"{summary.vector_rows:,}"),
        ("size on disk", human_bytes(summary.bytes_on_disk)),
        ("index", describe_index(summary.index_settings, summary.index)),
    ]:
        table.add_row(label, Text(value))
    out.print(table)
    if summary.errors:
        out.print(f"\n[bold]failed files[/] (first {len(summary.errors)} of {summary.failed}):")
        for path, reason in summary.errors:
            out.print(Text.assemble("  ", path, ": ", (reason, "red")), highlight=False)


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
