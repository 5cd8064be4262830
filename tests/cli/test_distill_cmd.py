"""``lookalike distill``: the report on stdout (or --json), clean errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.cli.app import app
from support import make_image


@pytest.fixture
def env(private_cache: Path, tmp_path: Path) -> Path:
    for i in range(8):
        make_image(tmp_path / "imgs" / f"{i}.png", seed=40 + i)
    return tmp_path


def run(*args: str | Path):
    return CliRunner().invoke(app, ["distill", *(str(a) for a in args)])


def test_distill_writes_a_head_and_reports(env: Path, tiny_timm_dir: Path, tiny_clip_dir: Path) -> None:
    result = run("--teacher", f"openclip:{tiny_clip_dir}", "--student", f"timm:{tiny_timm_dir}", "--images",
                 env / "imgs", "--out", env / "head", "--views", "1", "--clean-targets", "--epochs", "3", "--arch", "linear",
                 "--device", "cpu", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 8 and report["views"] == 1 and report["arch"] == "linear"
    assert report["teacher_views"] is False and list(report["val_cos_by_arch"]) == ["linear"]
    assert (env / "head" / "head.json").is_file()


def test_distill_errors_are_one_line(env: Path) -> None:
    result = run("--teacher", "lite:448", "--images", env / "nowhere", "--out", env / "head")
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and "does not exist" in result.stderr and not result.stdout
    result = run("--teacher", "lite:448", "--images", env / "imgs", "--out", env / "head", "--arch", "deep")
    assert result.exit_code == 2 and "arch" in result.stderr
