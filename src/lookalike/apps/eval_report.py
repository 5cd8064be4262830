"""``lookalike evaluate --json / --html``: an :class:`EvaluationReport` as a JSON file, or as a
self-contained HTML page with the table, a bar chart per metric and the best model's
confusion heat map.

The charts are PNGs drawn with matplotlib (the ``explore`` extra), object API on the Agg
canvas as in :mod:`.explore.plots`, and inlined as ``data:`` URIs: the page opens offline and
can be mailed. Both files are written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from ..errors import MissingExtra
from .evaluation import EvaluationReport, ModelResult
from .html import html_destination, save_page

__all__ = ["METRICS", "write_json", "write_html", "require_matplotlib", "check_destinations"]

#: The columns of the table and the charts: (ModelResult field, title, higher is better).
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("knn1", "kNN@1", True), ("recall5", "recall@5", True), ("recall10", "recall@10", True),
    ("map", "mAP", True), ("text_map", "text\u2192image mAP", True),
    ("images_per_second", "images / s", True), ("peak_memory_mb", "peak memory (MB)", False),
)
#: Above this many labels the heat map drops its tick labels (they would overlap).
_TICK_LABELS_UP_TO = 60


def check_destinations(html_path: "str | os.PathLike[str] | None", json_path: "str | os.PathLike[str] | None") -> None:
    """Refuse report paths that cannot be written (and ``--html`` without matplotlib) before
    minutes of embedding, not after.

    Raises:
        InvalidArgument: a missing folder, or a folder named as the file.
        MissingExtra: an HTML report without matplotlib.
    """
    if html_path is not None:
        html_destination(html_path, "evaluation.html")
        require_matplotlib()
    if json_path is not None:
        html_destination(json_path, "evaluation.json", "JSON report")


def require_matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; checked before evaluating when ``--html`` is asked for.

    Raises:
        MissingExtra: matplotlib is not installed (``pip install 'lookalike[explore]'``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtra("matplotlib", "explore", "The charts of the evaluation's HTML report") from None
    return Figure, FigureCanvasAgg


def write_json(report: EvaluationReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report.to_dict()`` as indented JSON at ``path``, atomically; returns the path.

    Raises:
        InvalidArgument: the file cannot be written there.
    """
    html_destination(path, "evaluation.json", "JSON report")
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    return save_page(path, lambda out: out.write(text), example="evaluation.json")


def write_html(report: EvaluationReport, path: str | os.PathLike[str]) -> Path:
    """Write the report as one self-contained HTML page at ``path``; returns the path.

    Raises:
        InvalidArgument: the file cannot be written there.
        MissingExtra: matplotlib is not installed.
    """
    html_destination(path, "evaluation.html")  # checked before any chart is drawn
    figure, canvas = require_matplotlib()
    charts = [(title, _bar_chart(figure, canvas, report.results, field, title, higher))
              for field, title, higher in METRICS
              if any(getattr(r, field) is not None for r in report.results)]
    heat = _confusion_png(figure, canvas, report) if report.confusion is not None else None
    return save_page(path, _page_writer(report, charts, heat), example="evaluation.html")


def _fmt(value: float | None, field: str) -> str:
    if value is None:
        return "-"
    if field == "images_per_second":
        return f"{value:,.1f}"
    if field == "peak_memory_mb":
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _png(fig: Any, canvas: Any) -> str:
    canvas(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bar_chart(figure: Any, canvas: Any, results: tuple[ModelResult, ...], field: str, title: str,
               higher: bool) -> str:
    names = [r.name if len(r.name) <= 30 else "\u2026" + r.name[-29:] for r in results]
    values = [getattr(r, field) for r in results]
    fig = figure(figsize=(4.2, 0.6 + 0.32 * len(results)), layout="constrained")
    ax = fig.add_subplot()
    shown = [v if v is not None else 0.0 for v in values]
    present = [v for v in values if v is not None]
    best = (max(present) if higher else min(present)) if present else None
    colours = ["#2f7ed8" if v is not None and v == best else "#9ab8db" for v in values]
    ax.barh(range(len(results)), shown, color=colours)
    ax.set_yticks(range(len(results)), names, fontsize=8)
    ax.invert_yaxis()  # the first model on top, as in the table
    for i, v in enumerate(values):
        ax.text(shown[i], i, " " + _fmt(v, field), va="center", fontsize=7)
    if field not in ("images_per_second", "peak_memory_mb"):
        ax.set_xlim(0, 1.12)
    else:
        ax.set_xlim(0, max(shown + [1e-9]) * 1.25)
    ax.set_title(title + ("" if higher else " (lower is better)"), fontsize=10)
    ax.tick_params(axis="x", labelsize=7)
    return _png(fig, canvas)


def _confusion_png(figure: Any, canvas: Any, report: EvaluationReport) -> str:
    conf = report.confusion
    assert conf is not None
    n = len(conf.labels)
    counts = conf.counts.astype(np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(2.5 + 0.28 * n, 4.0, 14.0))
    fig = figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="share of the row's images")
    if n <= _TICK_LABELS_UP_TO:
        labels = [x if len(x) <= 24 else x[:23] + "\u2026" for x in conf.labels]
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                            color="black" if rates[i, j] > 0.6 else "white")
    ax.set_xlabel("label of the nearest neighbour (kNN@1)")
    ax.set_ylabel("true label")
    ax.set_title(f"confusion of {conf.model}", fontsize=10)
    return _png(fig, canvas)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}
tr.best td{font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:12px}.warn{color:#a05a00}
.meta{color:#555}img{max-width:100%}"""


def _table(report: EvaluationReport) -> str:
    best = report.best
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in METRICS)
    rows = []
    for r in report.results:
        cells = "".join(f"<td>{_fmt(getattr(r, field), field)}</td>" for field, _, _ in METRICS)
        cls = ' class="best"' if best is not None and r is best else ""
        rows.append(f"<tr{cls}><td>{html.escape(r.name)}</td>{cells}<td>{r.dim}</td>"
                    f"<td>{r.cached:,} / {r.embedded:,}</td></tr>")
    return (f"<table><tr><th>model</th>{head}<th>dim</th><th>cached / embedded</th></tr>"
            + "".join(rows) + "</table>")


def _page_writer(report: EvaluationReport, charts: list[tuple[str, str]],
                 heat: str | None) -> Callable[[IO[str]], None]:
    def write(out: IO[str]) -> None:
        split = ", ".join(f"{k} {v:,}" for k, v in report.split.items())
        held = ", ".join(report.held_out_labels) or "none"
        out.write(f"<!doctype html><html><head><meta charset='utf-8'><title>lookalike evaluate: "
                  f"{html.escape(report.source)}</title><style>{_STYLE}</style></head><body>")
        out.write(f"<h1>Evaluation of {len(report.results)} model(s)</h1><p class='meta'>"
                  f"{html.escape(report.source)}: {report.images:,} images scored ({html.escape(report.on)}), "
                  f"{len(report.labels)} labels, seed {report.seed}, depth {report.depth}. Split: {split}; "
                  f"labels held out entirely: {html.escape(held)}. Metrics are leave-one-out; text mAP ranks "
                  "the images for each label name.</p>")
        for warning in report.warnings:
            out.write(f"<p class='warn'>{html.escape(warning)}</p>")
        out.write(_table(report))
        out.write("<h2>Metrics</h2><div class='charts'>")
        for title, uri in charts:
            out.write(f"<figure><img alt='{html.escape(title)}' src='{uri}'></figure>")
        out.write("</div>")
        if heat is not None and report.confusion is not None:
            out.write(f"<h2>Confusion of the best model ({html.escape(report.confusion.model)})</h2>"
                      f"<img alt='confusion heat map' src='{heat}'>")
        out.write("</body></html>\n")

    return write
