"""The ``lookalike`` command: argument parsing and rendering only; the work is in the library.

Everything meant for pipes (``--json``, ``-f``) goes to stdout; progress, skip messages and
errors go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..errors import LookalikeError, QueryError, UnknownModel
from .progress import IndexProgress

app = typer.Typer(
    name="lookalike",
    help="Embed image folders into a collection and search it by text, image or example.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Off a terminal (logs, `| less`) rich would assume 80 columns and fold every long path;
# a wide page keeps one result per line.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

ENV_COLLECTION = "LOOKALIKE_COLLECTION"


def default_collection() -> Path:
    """``$LOOKALIKE_COLLECTION``, else ``$XDG_DATA_HOME/lookalike/default.lkl`` (``~/.local/share/...``)."""
    if os.environ.get(ENV_COLLECTION):
        return Path(os.environ[ENV_COLLECTION]).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "lookalike" / "default.lkl"


CollectionOpt = typer.Option(
    None, "--collection", "-c", help=f"Collection directory [default: ${ENV_COLLECTION} or {default_collection()}]"
)
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps")


def _fail(exc: Exception) -> None:
    # One unwrapped line, taken literally: paths and messages may hold "[...]" or ":name:".
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(2 if isinstance(exc, (QueryError, UnknownModel)) else 1)


def _parse_bytes(text: str) -> int:
    """'500MB', '2GB', '1.5g', '1000000' -> bytes (binary units)."""
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
             "t": 1 << 40, "tb": 1 << 40}
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("kmgtb")
    try:
        return int(float(num) * units[t[len(num):]])
    except (ValueError, KeyError):
        raise ValueError(f"cannot read the size {text!r}; write it like 500MB or 2GB") from None


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@app.command()
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
    from ..store.ann import IndexSettings
    from ..store.collection import Collection

    target = collection or default_collection()
    try:
        if (target / "manifest.json").exists():
            coll = Collection.open(target, model=model, device=device)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            coll = Collection.create(target, model=model or "lite", device=device)
        settings = None
        if any(v is not None for v in (index_mode, recall, memory, latency_ms)):
            current = coll.index_settings
            settings = IndexSettings(
                mode=index_mode or current.mode,
                recall=recall if recall is not None else current.recall,
                memory_bytes=_parse_bytes(memory) if memory is not None else current.memory_bytes,
                latency_ms=(latency_ms or None) if latency_ms is not None else current.latency_ms,
            )
        with coll, IndexProgress(err, quiet=quiet) as progress:
            report = coll.add(paths, exclude=exclude, batch_size=batch_size, workers=workers,
                              retry_failed=retry_failed, progress=progress, index=settings)
    except ValueError as exc:  # bad --index / --recall / --memory values
        err.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(2)
    except LookalikeError as exc:
        _fail(exc)
        return
    if quiet:
        return
    parts = [
        ("added", report.added), ("updated", report.updated), ("renamed", report.renamed),
        ("copied", report.copied), ("unchanged", report.unchanged), ("removed", report.removed),
        ("failed", len(report.failed)), ("skipped", len(report.skipped)),
    ]
    summary = ", ".join(f"{n} {label}" for label, n in parts if n or label in ("added", "failed"))
    rate = f" ({report.embedded / report.seconds:.1f} images/s)" if report.embedded and report.seconds else ""
    err.print(f"[bold green]done[/] in {report.seconds:.1f}s{rate}: {summary} -> {escape(str(coll.path))}",
              highlight=False, soft_wrap=True, emoji=False)


def _print_hits(hits: list, as_json: bool, files_only: bool) -> None:
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
        raise ValueError(f"{option} takes a date like 2024-06-30 or 2024-06-30T18:00, not {text!r}") from None


@app.command()
def search(
    query: Optional[List[str]] = typer.Argument(
        None, help="Text, image path or URL, id:N, or a mix: \"2:dog\" + ./a.jpg - grass"),
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
    device: str = DeviceOpt,
) -> None:
    """Search a collection. Terms are joined with + and -, each optionally weighted as W:term."""
    from ..search import Query, parse_query
    from ..store.collection import Collection
    from ..store.filters import Filter

    lines: list[str] = []
    if batch is not None:
        try:
            lines = (sys.stdin.read() if str(batch) == "-" else batch.read_text(encoding="utf-8")).splitlines()
        except OSError as exc:
            _fail(QueryError(f"cannot read {batch}: {exc.strerror or exc}"))
    try:
        if batch is not None:
            if query:
                raise QueryError("give either a query or --batch FILE, not both")
            texts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            queries = [Query.parse(t) for t in texts]
        elif query:
            texts, queries = [" ".join(query)], [parse_query(query)]
        else:
            raise QueryError("give a query (text, image, id:N) or --batch FILE")
        flt = Filter(glob=glob, modified_after=_date(after, "--after"), modified_before=_date(before, "--before"),
                     min_width=min_width, min_height=min_height)
        with Collection.open(collection or default_collection(), device=device) as coll:
            results = coll.search_batch(queries, k=k, min_score=min_score, under=[str(u) for u in under],
                                        where=None if flt.is_empty() else flt)
    except ValueError as exc:
        _fail(exc if isinstance(exc, LookalikeError) else QueryError(str(exc)))
        return
    except LookalikeError as exc:
        _fail(exc)
        return
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


def _describe_index(index: Optional[dict]) -> str:
    from ..store.ann import IndexSettings

    settings = (index or {}).get("settings") or IndexSettings().to_dict()  # never configured: the defaults
    state = (index or {}).get("state")
    asked = f"{settings['mode']}, recall target {settings['recall']}"
    if settings.get("latency_ms"):
        asked += f", latency budget {settings['latency_ms']:g} ms"
    if settings.get("memory_bytes"):
        asked += f", memory budget {_human_bytes(settings['memory_bytes'])}"
    if not state:
        return f"exact search ({asked})"
    m = state["measured"]
    verdict = ""
    if not state.get("met_target", True):
        missed = state.get("missed") or ["target"]
        verdict = f" (missed: {', '.join(missed)}; best reached)"
    se = f" ± {m['recall_se']:.3f}" if m.get("recall_se") else ""
    held = f" on {m['n_queries']} held-out images" if m.get("n_queries") else ""
    return (f"{state['label']} ({asked}): measured recall@10 {m['recall']:.3f}{se}{held}, p50 {m['p50_ms']:.2f} ms, "
            f"p99 {m['p99_ms']:.2f} ms, {_human_bytes(m['memory_bytes'])} in RAM{verdict}")


@app.command()
def info(
    collection: Optional[Path] = CollectionOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    errors: int = typer.Option(20, "--errors", help="How many failed files to list."),
) -> None:
    """Show a collection's model, counts, size on disk and failed files."""
    from ..store.collection import Collection

    try:
        with Collection.open(collection or default_collection()) as coll:
            summary = coll.info(max_errors=errors)
    except LookalikeError as exc:
        _fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps(summary.__dict__, indent=2) + "\n")
        return
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
        ("size on disk", _human_bytes(summary.bytes_on_disk)),
        ("index", _describe_index(summary.index)),
    ]:
        table.add_row(label, Text(value))
    out.print(table)
    if summary.errors:
        out.print(f"\n[bold]failed files[/] (first {len(summary.errors)} of {summary.failed}):")
        for path, reason in summary.errors:
            out.print(Text.assemble("  ", path, ": ", (reason, "red")), highlight=False)


@app.command()
def serve(
    collection: Optional[Path] = CollectionOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback is an opt-in."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535),
    token: Optional[str] = typer.Option(None, "--token", envvar="LOOKALIKE_TOKEN",
                                        help="Require this token on every request [env: LOOKALIKE_TOKEN]."),
    allow_url_host: List[str] = typer.Option([], "--allow-url-host", help="Host whose image URLs queries may "
                                             "name (e.g. example.com, *.example.com); repeatable. Default: none."),
    cors_origin: List[str] = typer.Option([], "--cors-origin", help="Origin allowed to call the API from a "
                                          "browser; repeatable. Default: none (CORS off)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.1, help="Largest uploaded image."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds before a request gets 503."),
) -> None:
    """Serve the web UI and HTTP API over a collection (http://127.0.0.1:8000 by default)."""
    from ..server import ServerConfig, create_app, is_loopback

    try:
        import uvicorn
    except ImportError:
        _fail(LookalikeError("serving needs uvicorn, which is not installed. "
                             "Install it with: pip install 'lookalike[server]'"))
        return
    try:
        config = ServerConfig(collection=collection or default_collection(), token=token,
                              allow_url_hosts=tuple(allow_url_host), cors_origins=tuple(cors_origin),
                              max_upload_bytes=int(max_upload_mb * 1024 * 1024), request_timeout_s=timeout)
        web = create_app(config)
    except ValueError as exc:
        err.print(Text(f"error: {exc}", style="red"))
        raise typer.Exit(2)
    except LookalikeError as exc:
        _fail(exc)
        return
    if not is_loopback(host) and not token:
        err.print(Text(f"warning: serving {host} without a token: anyone who can reach this machine can search "
                       "the collection and open its images. Pass --token (or LOOKALIKE_TOKEN).", style="yellow"))
    shown = f"[{host}]" if ":" in host else host
    hint = "?token=YOUR_TOKEN (once; a cookie keeps it)" if token else ""
    err.print(f"serving {escape(str(config.collection))} on http://{shown}:{port}/{hint}  (Ctrl+C stops)",
              highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="warning", timeout_keep_alive=5, server_header=False)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List tested models: name, modalities, dimension, and whether they work offline now."""
    from ..models.registry import list_models

    infos = list_models()
    if as_json:
        sys.stdout.write(json.dumps([i.__dict__ for i in infos], indent=2) + "\n")
        return
    table = Table(header_style="bold", box=None)
    table.add_column("name", no_wrap=True)
    for col in ("modalities", "dim", "offline", "description"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, "+".join(i.modalities), str(i.dim), "yes" if i.offline else "download",
                      i.description)
    out.print(table)
    out.print("\nAlso: openclip:hf-hub:ORG/REPO, timm:NAME, or a local model folder. "
              "Weights download on first use unless offline.", style="dim")


def _version(value: bool) -> None:
    if value:
        out.print(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """lookalike: image embeddings, search and more."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
