"""`lookalike evaluate`: the table, --json/--html files, --depth, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.cli.app import app
from support import make_image


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _labelled(root: Path, labels: int = 4, per_label: int = 10) -> Path:
    for label in range(labels):
        for i in range(per_label):
            make_image(root / "set" / f"colour-{label}" / f"{i}.png", seed=label * 50 + i, size=(24, 24))
    return root


def test_table_json_and_html(private_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    root = _labelled(tmp_path / "lab")
    result = run("evaluate", root, "--models", "histogram", "--depth", "2", "--on", "all", "--json",
                 tmp_path / "r.json", "--html", tmp_path / "r.html", "-q")
    assert result.exit_code == 0, result.output
    assert "histogram" in result.stdout and "kNN@1" in result.stdout and "text mAP" in result.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["images"] == 40 and data["depth"] == 2 and data["results"][0]["embedded"] == 40
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") >= 5 and "confusion" in page  # charts + heat map, inlined
    again = run("evaluate", root, "-m", "histogram", "--depth", "2", "--on", "all", "--json", "-")
    assert again.exit_code == 0 and json.loads(again.stdout)["results"][0]["cached"] == 40


def test_clear_errors(private_cache: Path, tmp_path: Path) -> None:
    root = _labelled(tmp_path / "lab", labels=1, per_label=3)
    one = run("evaluate", root / "set", "-m", "histogram")
    assert one.exit_code == 2 and "one label only" in one.output
    deep = run("evaluate", root, "-m", "histogram")  # labels one level lower: everything is 'set'
    assert deep.exit_code == 2 and "--depth" in deep.output
    bad = run("evaluate", root / "set", "-m", "histogram", "--on", "train")
    assert bad.exit_code == 2 and "held-out" in bad.output
    unknown = run("evaluate", root / "set", "-m", "histogram,nosuch:x")
    assert unknown.exit_code == 2
    csv = tmp_path / "l.csv"
    csv.write_text("path,label\nmissing/a.png,x\nmissing/b.png,y\n")
    missing = run("evaluate", csv, "-m", "histogram")
    assert missing.exit_code == 2 and "2 of the 2 images" in missing.output
