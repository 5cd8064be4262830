"""The ``lookalike`` command: argument parsing and rendering only; the work is in the library.

Everything meant for pipes (``--json``, ``-f``) goes to stdout; progress, skip messages and
errors go to stderr. Each command lives in its own module; this one assembles them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ..errors import LookalikeError
from ..models.names import list_models
from ..version import __version__
from .collection_cmds import index, info
from .common import CollectionOpt, default_collection, err, fail, out, spell_negative_weights
from .distill_cmd import distill
from .dupes_cmd import dupes
from .evaluate_cmd import evaluate
from .exchange_cmds import export, import_
from .explore_cmds import cluster, label, map_, report
from .faces_cmds import faces_app, people_app
from .matrix_cmd import matrix
from .reproject_cmd import reproject
from .search_cmd import search
from .train_cmds import align, train

__all__ = ["app", "main"]


class _Lookalike(TyperGroup):
    """The command group, reading ``search -2:dog`` as a negative weight rather than an option."""

    def parse_args(self, ctx: typer.Context, args: List[str]) -> List[str]:
        return super().parse_args(ctx, spell_negative_weights(args))


app = typer.Typer(
    name="lookalike",
    cls=_Lookalike,
    help="Embed image folders into a collection and search it by text, image or example.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(index)
app.command()(search)
app.command()(info)
app.command()(dupes)
app.command()(cluster)
app.command()(label)
app.command(name="map")(map_)
app.command()(matrix)
app.command()(report)
app.command()(export)
app.command(name="import")(import_)
app.command()(reproject)
app.command()(evaluate)
app.command()(distill)
app.command()(train)
app.command()(align)
app.add_typer(faces_app)
app.add_typer(people_app)


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
    allow_actions: bool = typer.Option(False, "--allow-actions", help="Let the Duplicates page move files to the "
                                       "quarantine folder (journalled, undoable). Default: read-only."),
    quarantine: Optional[Path] = typer.Option(None, "--quarantine", help="Where --allow-actions moves duplicates "
                                              "(default: COLLECTION/quarantine)."),
) -> None:
    """Serve the web UI and HTTP API over a collection (http://127.0.0.1:8000 by default)."""
    from ..server import ServerConfig, create_app, is_loopback, require_extra, run

    try:
        require_extra(runner=True)
        config = ServerConfig(collection=collection or default_collection(), token=token,
                              allow_url_hosts=tuple(allow_url_host), cors_origins=tuple(cors_origin),
                              max_upload_bytes=int(max_upload_mb * 1024 * 1024), request_timeout_s=timeout,
                              allow_actions=allow_actions, host=host,
                              quarantine=quarantine.expanduser().resolve() if quarantine else None)
        web = create_app(config)
    except LookalikeError as exc:
        fail(exc)
    if not is_loopback(host) and not token:
        err.print(Text(f"warning: serving {host} without a token: anyone who can reach this machine can search "
                       "the collection and open its images (face crops stay hidden). Pass --token (or "
                       "LOOKALIKE_TOKEN).", style="yellow"))
    shown = f"[{host}]" if ":" in host else host
    hint = "?token=YOUR_TOKEN (once; a cookie keeps it)" if token else ""
    err.print(f"serving {escape(str(config.collection))} on http://{shown}:{port}/{hint}  (Ctrl+C stops)",
              highlight=False)
    if config.allow_actions:
        err.print(f"actions allowed: the Duplicates page moves files to {escape(str(config.quarantine_dir))} "
                  "(journalled; undo with `lookalike dupes --undo JOURNAL`)", highlight=False)
    run(web, host=host, port=port)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List tested models: name, modalities, dimension, whether they work offline now, and the
    runtime `auto` picked for them on this machine (measured on first use)."""
    from ..models.autotune import measurements_for

    infos = list_models()
    measured = {i.name: measurements_for(i.name) for i in infos}
    if as_json:
        rows = [{**i.__dict__, "measured": [m.to_dict() for m in measured[i.name]]} for i in infos]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(header_style="bold", box=None)
    table.add_column("name", no_wrap=True)
    for col in ("modalities", "dim", "offline", "auto here", "description"):
        table.add_column(col, overflow="fold")
    for i in infos:
        auto = "; ".join(f"{m.precision}: {m.summary()}" for m in measured[i.name]) or "not measured yet"
        table.add_row(i.name, "+".join(i.modalities), str(i.dim), "yes" if i.offline else "download", auto,
                      i.description)
    out.print(table)
    out.print("\nAlso: openclip:hf-hub:ORG/REPO, timm:NAME, or a local model folder. "
              "Weights download on first use unless offline. `auto` (the default runtime) times torch, "
              "ONNX Runtime and OpenVINO once per model on this machine and keeps the fastest.", style="dim")


def _version(value: bool) -> None:
    if value:
        out.print(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """lookalike: image embeddings, search and more."""


def main(*args: Any) -> None:
    """Console-script entry point."""
    app(*args)


if __name__ == "__main__":
    main()
