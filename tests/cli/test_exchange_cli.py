"""``lookalike export`` and ``lookalike import``: the user story of issue 11, on a synthetic
collection (a made-up 32-d model, rows written through Storage: no model loads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from lookalike.cli.app import app  # noqa: E402
from lookalike.store.collection import Collection  # noqa: E402
from lookalike.store.manifest import Manifest  # noqa: E402
from lookalike.store.storage import Storage  # noqa: E402

DIM = 32
MODEL = {"model_id": "test:synthetic", "dim": DIM, "modalities": ["image"], "fingerprint": "f00d",
         "preprocess": {"size": 32, "resize_mode": "letterbox", "crop_pct": 1.0, "interpolation": "bicubic",
                        "mean": [0.5] * 3, "std": [0.5] * 3, "fill": None}}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def coll_path(tmp_path: Path) -> Path:
    """600 items with captions on every third, random unit vectors."""
    path = tmp_path / "c.lkl"
    storage = Storage.initialise(path, Manifest(model=MODEL))
    rng = np.random.default_rng(0)
    v = rng.standard_normal((600, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = [(f"/pics/{i:04d}.png", 10 + i, 1000 + i, f"h{i}", 32, 32, "ok", None, i) for i in range(600)]
    meta = [(r[0], {"caption": f"picture {i}"}) for i, r in enumerate(rows) if i % 3 == 0]

    def write() -> None:
        storage.db.upsert(rows)
        storage.db.meta.set(meta)

    with storage.write_lock():
        storage.commit_vectors(v, write)
    storage.close()
    return path


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _hits(path: Path) -> list[list[tuple[str, float]]]:
    with Collection.open(path) as c:
        queries = [f"id:{i}" for i in (1, 50, 333, 600)] + list(np.eye(DIM, dtype=np.float32)[:4])
        return [[(h.path, h.score) for h in hits] for hits in c.search_batch(queries, 5)]


@pytest.mark.parametrize("fmt", ["parquet", "clip-retrieval"])
def test_export_then_import_into_a_new_collection(coll_path: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    r = run("export", "--collection", coll_path, "--format", fmt, "--dtype", "float32", "--rows-per-file", "250", out)
    assert r.exit_code == 0, r.stderr
    assert "600 items" in r.stderr
    r = run("import", out, "--collection", tmp_path / "c2.lkl", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["rows"], report["added"], report["shards"], report["format"]) == (600, 600, 3, fmt)
    assert report["model_checked"] is True
    assert _hits(tmp_path / "c2.lkl") == _hits(coll_path)
    with Collection.open(tmp_path / "c2.lkl") as c2:
        assert c2.manifest.model == MODEL  # the new collection takes the model the export records
    again = run("import", out, "--collection", tmp_path / "c2.lkl", "--json")
    assert json.loads(again.stdout)["updated"] == 600


def test_misaligned_clip_retrieval_import_is_refused_and_creates_nothing(coll_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run("export", "-c", coll_path, "--format", "clip-retrieval", "--rows-per-file", "200", "-q", out)
    assert r.exit_code == 0, r.stderr
    table = pq.read_table(out / "metadata" / "metadata_1.parquet")
    pq.write_table(table.slice(0, 199), out / "metadata" / "metadata_1.parquet")
    r = run("import", out, "--collection", tmp_path / "c2.lkl")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "error:" in r.stderr and "metadata/metadata_1.parquet has 199 rows" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "c2.lkl").exists()


def test_foreign_input_needs_a_model_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "emb.parquet"
    v = np.random.default_rng(1).standard_normal((5, DIM)).astype(np.float32)
    pq.write_table(pa.table({"path": [f"/x/{i}.jpg" for i in range(5)], "vector": list(v)}), path)
    r = run("import", path, "--collection", tmp_path / "new.lkl")
    assert r.exit_code == 2 and "--model" in r.stderr
    # into an existing collection of the same dimension: imported, with a warning about the model
    Storage.initialise(tmp_path / "c.lkl", Manifest(model=MODEL)).close()
    r = run("import", path, "--collection", tmp_path / "c.lkl")
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "does not record the model" in r.stderr


def test_export_refuses_a_busy_folder(coll_path: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    r = run("export", "-c", coll_path, tmp_path / "busy")
    assert r.exit_code == 2 and "not empty" in r.stderr
    r = run("export", "-c", coll_path, "--format", "csv", tmp_path / "o")
    assert r.exit_code == 2 and "parquet, clip-retrieval" in r.stderr
