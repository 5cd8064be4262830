"""``lookalike reproject``: the command's summary, JSON, and errors, on a synthetic collection
of the tiny timm model (random unit vectors written through Storage: no image, no embedding)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import lookalike
from lookalike.cli.app import app
from lookalike.models.head import HeadConfig, ProjectionHead, load_head, save_head
from lookalike.store.manifest import Manifest
from lookalike.store.storage import Storage


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def info(tiny_timm_dir: Path) -> dict[str, Any]:
    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="torch").info()


@pytest.fixture
def coll_path(tmp_path: Path, info: dict[str, Any]) -> Path:
    """40 items with random unit vectors, recorded as made by the tiny timm model."""
    path = tmp_path / "c.lkl"
    storage = Storage.initialise(path, Manifest(model=info))
    v = np.random.default_rng(0).standard_normal((40, info["dim"])).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = [(f"/pics/{i:04d}.png", 10 + i, 1000 + i, f"h{i}", 32, 32, "ok", None, i) for i in range(40)]
    with storage.write_lock():
        storage.commit_vectors(v, lambda: storage.db.upsert(rows))
    storage.close()
    return path


def head_for(out: Path, base: str, fingerprint: str, in_dim: int) -> Path:
    config = HeadConfig(kind="projection", arch="linear", in_dim=in_dim, out_dim=8, base=base,
                        base_fingerprint=fingerprint, name="logos")
    return save_head(out, ProjectionHead(config), config)


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_reproject_prints_what_it_made(coll_path: Path, info: dict[str, Any], tmp_path: Path) -> None:
    head = head_for(tmp_path / "heads" / "logos", info["model_id"], info["fingerprint"], info["dim"])
    result = run("reproject", "--collection", coll_path, "--head", head, "--out", tmp_path / "logos.lkl")
    assert result.exit_code == 0, result.output
    model_id = f"{info['model_id']}+head:{load_head(head).id}"
    assert "40 items reprojected" in result.output and model_id in result.output
    assert "index: exact" in result.output
    result = run("reproject", "-c", coll_path, "--head", head, "--out", tmp_path / "again.lkl", "--json", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["items"], summary["model_id"], summary["dim"], summary["index"]) == (40, model_id, 8, "exact")
    with lookalike.Collection.open(tmp_path / "again.lkl") as coll:
        assert len(coll) == 40 and coll.get_vectors([1]).shape == (1, 8)


def test_reproject_explains_a_head_that_does_not_fit(coll_path: Path, info: dict[str, Any], tmp_path: Path) -> None:
    head = head_for(tmp_path / "other", "lite", "0123456789abcdef", info["dim"])
    result = run("reproject", "-c", coll_path, "--head", head, "--out", tmp_path / "new.lkl")
    assert result.exit_code == 1
    assert "0123456789abcdef" in result.output and "lookalike train LABELLED --base" in result.output
    result = run("reproject", "-c", coll_path, "--head", tmp_path / "nothing", "--out", tmp_path / "new.lkl")
    assert result.exit_code == 2 and "does not exist" in result.output
    fits = head_for(tmp_path / "fits", info["model_id"], info["fingerprint"], info["dim"])
    result = run("reproject", "-c", coll_path, "--head", fits, "--out", coll_path)
    assert result.exit_code == 1 and "already exists" in result.output
    assert not (tmp_path / "new.lkl").exists()
