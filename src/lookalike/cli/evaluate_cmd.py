"""``lookalike evaluate``: compare models on the user's labelled images.

Parsing and rendering only: the work is :func:`lookalike.apps.evaluation.evaluate`, the files
:mod:`lookalike.apps.eval_report`. The table goes to stdout (``--json -`` too); progress,
warnings and errors to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import InvalidArgument, LookalikeError
from .common import DeviceOpt, err, fail, out
from .progress import TaskProgress

if TYPE_CHECKING:
    from ..apps.evaluation import EvaluationReport

__all__ = ["evaluate"]


def evaluate(
    labelled: Path = typer.Argument(..., help="A folder whose sub-folders name the labels, or a CSV of path,label."),
    models: str = typer.Option("lite,histogram", "--models", "-m", help="Comma-separated model names "
                               "(lite, timm:..., openclip:..., BASE+head:DIR; 'histogram' is a colour baseline)."),
    depth: int = typer.Option(1, "--depth", min=1, help="Which folder level below LABELLED names the label."),
    seed: int = typer.Option(0, "--seed",
                             help="The split's seed: the one a head was trained with (train --split-seed)."),
    on: str = typer.Option("held-out", "--on", help="held-out (the seeded split's test images and held-out "
                           "labels: never trained on) or all."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write an HTML report with charts here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here ('-': stdout)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    device: str = DeviceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Score models on LABELLED images: kNN@1, recall@5/10, mAP, text->image mAP, speed, memory.

    Vectors are cached per model and file content: a re-run with one more model embeds only for it.
    """
    from ..apps import eval_report
    from ..apps.evaluation import ON_CHOICES, evaluate as run_evaluation

    to_stdout = json_path is not None and str(json_path) == "-"
    try:
        if on not in ON_CHOICES:
            raise InvalidArgument(f"--on {on!r} is not one of {', '.join(ON_CHOICES)}.")
        eval_report.check_destinations(html, None if to_stdout else json_path)  # '-' is standard output
        with TaskProgress(err, quiet, scan="hashing files", embed="embedding") as progress:
            report = run_evaluation(labelled, models, depth=depth, seed=seed, on=on, batch_size=batch_size,
                                    device=device, progress=progress)
        if html is not None:
            err.print(Text(f"wrote {eval_report.write_html(report, html)}"), soft_wrap=True)
        if json_path is not None and not to_stdout:
            err.print(Text(f"wrote {eval_report.write_json(report, json_path)}"), soft_wrap=True)
    except LookalikeError as exc:
        fail(exc)
    for warning in report.warnings:
        err.print(Text.assemble(("warning: ", "yellow"), warning), soft_wrap=True)
    if to_stdout:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _table(report)


def _num(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(report: "EvaluationReport") -> None:
    split = ", ".join(f"{k} {v:,}" for k, v in report.split.items())
    err.print(Text(f"{report.images:,} {report.on} images of {len(report.labels)} labels scored "
                   f"(split, seed {report.seed}: {split})"), soft_wrap=True)
    table = Table(header_style="bold")
    table.add_column("model", overflow="fold")
    for title in ("kNN@1", "R@5", "R@10", "mAP", "text mAP", "img/s", "peak MB", "cached", "embedded"):
        table.add_column(title, justify="right")
    best = report.best
    for r in report.results:
        table.add_row(Text(r.name, style="bold" if r is best else ""), _num(r.knn1), _num(r.recall5),
                      _num(r.recall10), _num(r.map), _num(r.text_map), _num(r.images_per_second, 1),
                      _num(r.peak_memory_mb, 0), f"{r.cached:,}", f"{r.embedded:,}")
    out.print(table)
