"""``lookalike train`` and ``lookalike align``: fit a head, print how it does on held-out data.

Parsing and rendering only: the work is :func:`lookalike.apps.train_head.train_head` and
:func:`lookalike.apps.align.align_text`. The before/after tables go to stdout; progress,
notes and errors to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import InvalidArgument, LookalikeError
from .common import DeviceOpt, err, fail, out
from .progress import TaskProgress

if TYPE_CHECKING:
    from ..apps.align import AlignReport
    from ..apps.align_fit import CaptionScores
    from ..apps.evaluate import RetrievalScores
    from ..apps.train_head import TrainReport

__all__ = ["train", "align"]


def train(
    labelled: Path = typer.Argument(..., help="A folder whose sub-folders name the labels, or a CSV of path,label."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="The head's folder (new, or an older head's)."),
    base: str = typer.Option("lite", "--base", "-m", help="The model whose vectors the head is trained on."),
    arch: str = typer.Option("linear", "--arch", help="linear or mlp (2 layers)."),
    loss: str = typer.Option("supcon", "--loss", help="supcon (supervised contrastive) or triplet (batch-hard)."),
    dim: Optional[int] = typer.Option(None, "--dim", min=1, help="The head's output dim (default: the base's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="The most epochs (early stopping on the "
                                         "validation split usually ends sooner)."),
    seed: int = typer.Option(0, "--seed", help="The training seed (initial weights, batches)."),
    split_seed: int = typer.Option(0, "--split-seed", help="The train/val/test split's seed (evaluate's --seed)."),
    depth: int = typer.Option(1, "--depth", min=1, help="Which folder level below LABELLED names the label."),
    device: str = DeviceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a projection head on LABELLED images over a frozen base model, and report it on
    held-out images of seen labels and on labels held out entirely."""
    from ..apps.splits import SplitSettings
    from ..apps.train_head import DEFAULT_EPOCHS, train_head

    try:
        with TaskProgress(err, quiet, scan="hashing files", embed="embedding", train="training") as progress:
            report = train_head(labelled, base=base, out=out_dir, arch=arch, loss=loss, dim=dim,
                                epochs=epochs or DEFAULT_EPOCHS, seed=seed, split=SplitSettings(seed=split_seed),
                                depth=depth, device=device, progress=progress)
    except LookalikeError as exc:
        fail(exc)
    _train_table(report)


def _row(table: Table, name: str, before: "RetrievalScores", after: "RetrievalScores") -> None:
    def pair(b: float, a: float) -> Text:
        change = a - b
        style = "green" if change > 0.005 else "red" if change < -0.005 else ""
        return Text.assemble(f"{b:.3f} -> {a:.3f} ", (f"({change * 100:+.1f})", style))

    table.add_row(name, f"{before.n:,}", pair(before.knn1, after.knn1), pair(before.recall_at[5], after.recall_at[5]),
                  pair(before.map, after.map))


def _train_table(report: "TrainReport") -> None:
    counts = ", ".join(f"{k} {v:,}" for k, v in report.counts.items())
    err.print(Text(f"{report.arch} head, {report.in_dim} -> {report.out_dim}, {report.loss} loss on {report.base}; "
                   f"best validation epoch {report.best_epoch} of {report.epochs_run} "
                   f"({report.train_seconds:.1f} s; {report.embedded:,} images embedded); split {counts}"),
              soft_wrap=True)
    table = Table(header_style="bold", title="base -> head (points)")
    table.add_column("held-out part")
    for title in ("images", "kNN@1", "R@5", "mAP"):
        table.add_column(title, justify="right")
    if report.test is not None:
        _row(table, "seen labels, new images", report.test.before, report.test.after)
    if report.unseen is not None:
        _row(table, f"held-out labels ({len(report.held_out_labels)})", report.unseen.before, report.unseen.after)
    out.print(table)
    if report.unseen is None and report.counts.get("unseen"):
        err.print(Text(f"the held-out labels ({', '.join(report.held_out_labels)}) are one label: nothing to rank "
                       "them against; give more labels to measure how the head does on new ones"), soft_wrap=True)
    err.print(Text(f"saved {report.out}; use it as --model {report.base}+head:{report.out}, or "
                   f"lookalike reproject --head {report.out}"), soft_wrap=True)


def align(
    collection: Path = typer.Option(..., "--collection", "-c", help="The collection whose images the captions "
                                    "describe (its stored vectors are the targets)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="The text head's folder (new, or an older head's)."),
    captions: Optional[Path] = typer.Option(None, "--captions", help="A CSV of path,caption (relative paths from "
                                            "the CSV's folder)."),
    from_filenames: bool = typer.Option(False, "--captions-from-filenames", help="Use file names as weak captions "
                                        "(red_apple-01.png -> 'red apple')."),
    seed: int = typer.Option(0, "--seed", help="The seed of the held-out split and the training."),
    device: str = DeviceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Fit the collection model's text side to captions of its images (ridge, then contrastive),
    keep the better on held-out pairs, and compare both with the model's own text tower."""
    from ..apps import align as aligning

    try:
        if (captions is None) == (not from_filenames):
            raise InvalidArgument("give --captions CSV or --captions-from-filenames (one of the two)")
        with TaskProgress(err, quiet, embed="caption features", train="training") as progress:
            report = aligning.align_text(collection, captions=captions, from_filenames=from_filenames, out=out_dir,
                                         seed=seed, device=device, progress=progress)
    except LookalikeError as exc:
        fail(exc)
    _align_table(report)


def _align_table(report: "AlignReport") -> None:
    counts = ", ".join(f"{k} {v:,}" for k, v in report.counts.items())
    skipped = f"; {report.skipped:,} images without a usable name skipped" if report.skipped else ""
    err.print(Text(f"{report.pairs:,} captioned images of {report.base} from {report.captions} "
                   f"({counts}{skipped}); ridge strength {report.ridge_strength:g}, contrastive best epoch "
                   f"{report.contrastive_epoch} ({report.seconds:.1f} s)"), soft_wrap=True)
    table = Table(header_style="bold", title="caption -> image on held-out pairs")
    table.add_column("text side")
    for title in ("mAP", "R@1", "R@5", "R@10", "kept"):
        table.add_column(title, justify="right")

    def add(name: str, s: "CaptionScores | None", kept: bool) -> None:
        if s is None:
            table.add_row(name, "-", "-", "-", "-", "")
            return
        table.add_row(Text(name, style="bold" if kept else ""), f"{s.map:.3f}", f"{s.recall_at[1]:.3f}",
                      f"{s.recall_at[5]:.3f}", f"{s.recall_at[10]:.3f}", "yes" if kept else "")

    add("model's own text tower", report.model, False)
    add("ridge", report.ridge, report.kept == "ridge")
    add("contrastive", report.contrastive, report.kept == "contrastive")
    out.print(table)
    kept = report.contrastive if report.kept == "contrastive" else report.ridge
    if report.model is not None and report.model.map >= kept.map:
        err.print(Text.assemble(("warning: ", "yellow"), "the model's own text tower retrieves the held-out pairs "
                                "as well or better: this head would not improve text search; more (or better) "
                                "captions may"), soft_wrap=True)
    err.print(Text(f"saved {report.out} ({report.kept}); make a collection that searches with it: lookalike "
                   f"reproject --collection COLLECTION --head {report.out} --out NEW (an int8 collection: lookalike "
                   f"index FOLDER --collection NEW --model {report.base}+head:{report.out})"), soft_wrap=True)
