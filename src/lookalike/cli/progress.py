"""Rendering :class:`~lookalike.progress.ProgressEvent` as a rich progress bar on stderr."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..progress import ProgressEvent

_B = TypeVar("_B", bound="_Bars")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} img/s" if speed else "      - img/s", style="cyan")


class _Bars:
    """A rich ``Progress`` (``self._progress``) shown while the ``with`` block runs."""

    _progress: Progress

    def __enter__(self: _B) -> _B:
        self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.__exit__(exc_type, exc, tb)


class IndexProgress(_Bars):
    """A callable progress sink: a scan spinner, then a bar with images/s and ETA.

    Each skipped or failed file is printed above the bar as ``skip PATH: REASON``.
    """

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=quiet,
        )
        self._scan: TaskID | None = None
        self._embed: TaskID | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if self.quiet:
            return
        if event.kind == "skip":
            self._progress.console.print(f"[yellow]skip[/] {escape(str(event.path))}: {escape(str(event.reason))}",
                                         highlight=False, markup=True, emoji=False, soft_wrap=True)
        elif event.kind == "scan":
            if self._scan is None:
                self._scan = self._progress.add_task("scanning", total=None)
            self._progress.update(self._scan, completed=event.done, description=f"scanning ({event.done:,} files)")
            if event.total is not None:
                self._progress.remove_task(self._scan)
        elif event.kind == "embed":
            if self._embed is None:
                self._embed = self._progress.add_task("indexing", total=event.total)
            self._progress.update(self._embed, completed=event.done)


class TaskProgress(_Bars):
    """Progress of any library call on stderr: one transient bar per kind of event (hashing,
    neighbours, grouping, thumbnails, files acted on...), and a line per skipped file.
    ``labels`` rename kinds (``embed="thumbnails"``); ``skips=False`` leaves skips to the caller."""

    _LABELS = {"scan": "scanning", "traits": "hashing images", "neighbours": "finding neighbours",
               "group": "grouping", "resolve": "acting on files", "embed": "indexing"}

    def __init__(self, console: Console, quiet: bool, *, skips: bool = True, **labels: str) -> None:
        self.quiet = quiet
        self.skips = skips
        self.labels = {**self._LABELS, **labels}
        # Bars only on a terminal: in a log, a transient bar leaves blank lines and nothing else.
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True,
                                  disable=quiet or not console.is_terminal)
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if self.quiet or event.kind == "done":
            return
        if event.kind == "skip":
            if not self.skips:
                return
            self._progress.console.print(Text.assemble(("skip", "yellow"), f" {event.path}: {event.reason}"),
                                         soft_wrap=True)
            return
        task = self._tasks.get(event.kind)
        if task is None:
            task = self._tasks[event.kind] = self._progress.add_task(self.labels.get(event.kind, event.kind),
                                                                    total=event.total)
        self._progress.update(task, completed=event.done, total=event.total)
