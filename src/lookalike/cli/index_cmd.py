"""``lookalike index``: add images to a collection from any source, here or on a Ray cluster."""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.markup import escape

from ..errors import InvalidArgument, LookalikeError
from ..sources import FileListSource, FolderSource, Source, TableSource, WebDatasetSource, is_shard_pattern
from ..sources.download import DownloadSettings
from ..store.ann import IndexSettings
from ..store.collection import Collection
from ..store.indexer import AddReport, require_roots
from .common import CollectionOpt, DeviceOpt, default_collection, describe_runtime, err, fail, parse_bytes
from .progress import IndexProgress

__all__ = ["index"]


def index(
    paths: Optional[List[str]] = typer.Argument(
        None, help="Folders (recursive), image files, or WebDataset shards ('shards/{00000..00127}.tar')."),
    collection: Optional[Path] = CollectionOpt,
    files_from: Optional[str] = typer.Option(
        None, "--files-from", help="File with one path or URL per line; '-' reads standard input."),
    table: Optional[Path] = typer.Option(
        None, "--table", help="CSV or Parquet table, one image per row; its other columns become metadata."),
    url_col: Optional[str] = typer.Option(
        None, "--url-col", help="The table's column of URLs or paths (default: url, path, image_path, ...)."),
    caption_col: Optional[str] = typer.Option(None, "--caption-col", help="The table's caption column."),
    download_dir: Optional[Path] = typer.Option(
        None, "--download-dir", help="Cache for downloaded images (default: the collection's downloads/)."),
    max_side: int = typer.Option(1024, "--max-side", help="Downloaded images are resized to this longest side."),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Run on Ray: 'auto' (this machine's cluster, else a local one) or ray://host:10001."),
    actors: Optional[int] = typer.Option(None, "--actors", help="Embedding actors on Ray [default: one per GPU, "
                                         "else half the CPUs]."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model for a new collection (default: lite)."),
    exclude: List[str] = typer.Option([], "--exclude", "-x", help="Glob of names or relative paths to skip; repeatable."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Decoding (and download) threads."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try items that failed before, even if unchanged."),
    device: str = DeviceOpt,
    runtime: Optional[str] = typer.Option(
        None, "--runtime", help="torch, onnx, openvino or auto (default, or $LOOKALIKE_RUNTIME): auto runs the "
        "fastest this machine measured for the model. fp32 vectors are the same on every runtime."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="fp32 or int8 for a new collection. int8 is faster on CPUs, calibrated on a few "
        "hundred of the images being indexed (or --calibration); it is the default for lite from 1,000 images on "
        "a CPU, fp32 otherwise."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Folder of typical images to calibrate int8 on (default: a sample of the "
        "images being indexed)."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (torch runtime; pays on "
                                       "GPUs for long runs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or skip messages."),
    index_mode: Optional[str] = typer.Option(
        None, "--index", help="auto (default: exact below 50,000 images, else tuned ANN), exact, flat, hnsw, ivf, "
        "ivfpq, sq8, fp16, binary, or ivfpq-disk (on-disk lists, for collections larger than RAM; auto picks it "
        "from 5,000,000 images or when --memory is below any in-RAM index)."),
    recall: Optional[float] = typer.Option(None, "--recall", help="Recall@10 the index must reach (default: 0.95)."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Index memory budget, e.g. 500MB or 2GB."),
    latency_ms: Optional[float] = typer.Option(
        None, "--latency-ms", help="Median single-query latency budget in ms (default: 2); 0 for none."),
) -> None:
    """Add images to a collection, creating it if needed. Re-runs only process what changed."""
    target = collection or default_collection()
    exists = (target / "manifest.json").exists()
    try:
        # Every source is opened first: a mistyped folder, table or column creates nothing.
        sources = _sources(paths or [], files_from, table, url_col, caption_col, exclude)
        settings = _index_settings(target, exists, index_mode, recall, memory, latency_ms)
        if exists:
            if calibration is not None:
                raise InvalidArgument(f"--calibration applies when an int8 collection is created; {target} exists "
                                      "already (its model stays as it was built)")
            coll = Collection.open(target, model=model, device=device, runtime=runtime, precision=precision,
                                   compile=compile_model)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            precision, images = _new_precision(sources, model or "lite", device, runtime, precision, calibration,
                                               compile_model, quiet)
            coll = Collection.create(target, model=model or "lite", device=device, runtime=runtime,
                                     precision=precision, calibration=images, compile=compile_model)
        download = DownloadSettings(cache_dir=download_dir or coll.path / "downloads", max_side=max_side)
        with coll, IndexProgress(err, quiet=quiet) as progress, _ray_session(ray):
            reports = []
            for source in sources:
                options = dict(batch_size=batch_size, retry_failed=retry_failed, progress=progress, index=settings,
                               download=download)
                if ray is not None:
                    from ..distributed.runner import index_with_ray

                    reports.append(index_with_ray(coll, source, address=ray, actors=actors, **options))
                else:
                    reports.append(coll.add(source, workers=workers, **options))
            # Faces are opt-in: never found by `index`, but a collection that has them says what is left.
            faces_pending = coll.faces.stats().pending_items if not quiet and coll.faces.indexed else 0
    except LookalikeError as exc:
        fail(exc)
    if not quiet:
        loaded = coll.loaded_model
        if loaded is not None:
            err.print(f"[dim]model {escape(loaded.model_id)}: {escape(describe_runtime(loaded))}[/]", highlight=False)
        for source, report in zip(sources, reports):
            where = f" from {escape(source.label)}" if len(sources) > 1 else ""
            err.print(f"[bold green]done[/]{where} in {report.seconds:.1f}s{_rate(report)}: {_summary(report)} -> "
                      f"{escape(str(coll.path))}", highlight=False, soft_wrap=True, emoji=False)
        if faces_pending:
            noun = "photo" if faces_pending == 1 else "photos"
            err.print(f"[dim]{faces_pending:,} {noun} not scanned for faces yet: lookalike faces index --collection "
                      f"{escape(shlex.quote(str(coll.path)))}[/]", highlight=False, soft_wrap=True)


@contextmanager
def _ray_session(address: Optional[str]) -> Iterator[None]:
    """One Ray connection for all the sources of a run (a local cluster starts once)."""
    if address is None:
        yield
        return
    from ..distributed.runner import connect, disconnect

    connected = connect(address)
    try:
        yield
    finally:
        if connected:
            disconnect()


def _new_precision(sources: list[Source], model: str, device: str, runtime: Optional[str],
                   precision: Optional[str], folder: Optional[Path], compile_model: bool,
                   quiet: bool) -> tuple[Optional[str], Optional[list]]:
    """A new collection's precision and int8 calibration images: as asked, else int8 where the
    library says it pays (lite, 1,000+ images, a CPU runtime), else fp32."""
    from ..models.runtime import check_precision, check_runtime
    from ..store.calibration import calibration_sample, default_int8_sample

    if precision is not None:
        precision = check_precision(precision)
        if precision != "int8":
            return precision, None
        chosen = [FolderSource(require_roots([str(folder)]))] if folder is not None else sources
        return precision, calibration_sample(chosen)
    if folder is not None:
        raise InvalidArgument("--calibration goes with --precision int8")
    if check_runtime(runtime) == "torch" or compile_model or not _on_cpu(device):  # $LOOKALIKE_RUNTIME too
        return None, None
    from ..models.names import parse_model_name

    images = default_int8_sample(sources, parse_model_name(model).canonical)
    if images is None:
        return None, None
    if not quiet:
        err.print(f"[dim]precision int8 (the default for {escape(model)} from 1,000 images on a CPU; calibrated on "
                  f"{len(images)} of them; --precision fp32 keeps fp32)[/]", highlight=False)
    return "int8", images


def _on_cpu(device: str) -> bool:
    from ..models.device import resolve_device

    return resolve_device(device).type == "cpu"


def _sources(paths: List[str], files_from: Optional[str], table: Optional[Path], url_col: Optional[str],
             caption_col: Optional[str], exclude: List[str]) -> list[Source]:
    """The sources the arguments name, in the order: folders, shards, file list, table."""
    shards = [p for p in paths if is_shard_pattern(p)]
    folders = [p for p in paths if not is_shard_pattern(p)]
    sources: list[Source] = []
    if folders:
        sources.append(FolderSource(require_roots(folders), exclude=exclude))
    if shards:
        sources.append(WebDatasetSource(shards))
    if files_from is not None:
        sources.append(FileListSource(files_from))
    if table is not None:
        sources.append(TableSource(str(table), image_column=url_col, caption_column=caption_col))
    elif url_col or caption_col:
        raise InvalidArgument("--url-col and --caption-col name columns of a --table; give the table too")
    if not sources:
        raise InvalidArgument("nothing to index: give folders, image files or shards, --files-from or --table")
    return sources


def _index_settings(target: Path, exists: bool, mode: Optional[str], recall: Optional[float],
                    memory: Optional[str], latency_ms: Optional[float]) -> IndexSettings | None:
    """New index settings when any option is given (the others keep their stored values)."""
    if all(v is None for v in (mode, recall, memory, latency_ms)):
        return None
    current = Collection.open(target).index_settings if exists else IndexSettings()
    return IndexSettings(
        mode=mode or current.mode,
        recall=recall if recall is not None else current.recall,
        memory_bytes=parse_bytes(memory) if memory is not None else current.memory_bytes,
        latency_ms=(latency_ms or None) if latency_ms is not None else current.latency_ms,
    )


def _summary(report: AddReport) -> str:
    parts = [
        ("added", report.added), ("updated", report.updated), ("renamed", report.renamed),
        ("copied", report.copied), ("unchanged", report.unchanged), ("removed", report.removed),
        ("failed", len(report.failed)), ("skipped", len(report.skipped)),
    ]
    return ", ".join(f"{n} {label}" for label, n in parts if n or label in ("added", "failed"))


def _rate(report: AddReport) -> str:
    return f" ({report.embedded / report.seconds:.1f} images/s)" if report.embedded and report.seconds else ""
