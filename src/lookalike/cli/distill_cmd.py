"""``lookalike distill``: fit a head that puts a fast student's vectors into a teacher's space.

Parsing and rendering only: the work is :func:`lookalike.apps.distill.distill`. The report
goes to stdout (``--json`` for one JSON object); progress and errors to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.text import Text

from ..errors import LookalikeError
from .common import DeviceOpt, err, fail, out
from .progress import TaskProgress

__all__ = ["distill"]


def distill(
    teacher: str = typer.Option(..., "--teacher", "-t", help="The model whose space to learn (e.g. lite:448, "
                                "openclip:...)."),
    images: Path = typer.Option(..., "--images", "-i", help="A folder of images to learn on (walked as index does)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="A new folder for the head; use it as STUDENT+head:OUT."),
    student: str = typer.Option("lite", "--student", "-s", help="The fast base model the head sits on."),
    views: int = typer.Option(2, "--views", min=0, help="Augmented views per training image, besides the image."),
    teacher_views: bool = typer.Option(True, "--teacher-views/--clean-targets", help="The teacher embeds every view "
                                       "(the better head), or views target the clean image's teacher vector (the "
                                       "teacher embeds each image once: faster)."),
    epochs: int = typer.Option(100, "--epochs", min=1, help="The most passes over the vectors."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a better "
                                 "validation cosine."),
    arch: str = typer.Option("auto", "--arch", help="linear, mlp (2 layers), or auto: both, keep the one closer "
                             "to the teacher on validation images."),
    seed: int = typer.Option(0, "--seed", help="Seeds the validation split, the views and the head."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json", help="The report as one JSON object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Distil TEACHER into STUDENT + a head trained on your images: index at the student's speed,
    search in the teacher's space (text queries use the teacher's text tower)."""
    from ..apps.distill import distill as _distill

    try:
        with TaskProgress(err, quiet, scan="hashing images", embed="embedding", train="training") as progress:
            report = _distill(teacher, images, student=student, out=out_dir, views=views, teacher_views=teacher_views,
                              arch=arch, epochs=epochs, patience=patience, seed=seed, batch_size=batch_size,
                              device=device, progress=progress)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    out.print(Text(str(report)), soft_wrap=True)
    out.print(Text(f"use it as --model '{report.student}+head:{report.out}'"), soft_wrap=True)
