"""`lookalike cluster`, `label`, `map`, `matrix`, `report`, and `search --label/--cluster`,
end to end on real clip art indexed with `lite`.

One collection is built and explored per module (four categories of six images, each in its
own folder); the tests that only read it share it. To stay quick, clusters are named from a
small --vocabulary (naming from the built-in one embeds ~2,000 prompts) and maps use PCA
(UMAP's first fit compiles for ~20 s); the store's and the algorithms' tests cover both.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli.app import app
from lookalike.store.collection import Collection
from lookalike.store.filters import Filter
from support import make_image

CATEGORIES = ("food/fruit", "transportation/boating", "recreation/music", "animals/birds")
PER_CATEGORY = 6
N = len(CATEGORIES) * PER_CATEGORY
VOCABULARY = ("--vocabulary", "fruit, boat, guitar, bird, flower, car")

pytest.importorskip("sklearn")
pytest.importorskip("faiss")
pytest.importorskip("matplotlib")


pytestmark = pytest.mark.usefixtures("cli_env")  # conftest: the session's model, a clean environment


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, clipart_labelled: dict[str, list[Path]],
          lite_model: Any) -> dict[str, Any]:
    """The clip art in one folder per category, indexed with lite: {"coll", "images", "files"}."""
    base = tmp_path_factory.mktemp("explore-cli")
    files: dict[str, list[Path]] = {}
    for label in CATEGORIES:
        folder = base / "images" / label.split("/")[-1]
        folder.mkdir(parents=True)
        files[label] = [Path(shutil.copy2(p, folder / p.name)) for p in clipart_labelled[label][:PER_CATEGORY]]
    with Collection.create(base / "c.lkl", model=lite_model) as coll:
        assert coll.add([base / "images"]).added == N
    return {"coll": base / "c.lkl", "images": base / "images", "files": files, "base": base}


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def clean_error(result: Any, code: int, *fragments: str) -> str:
    """A failed command: that exit code and one 'error:' line on stderr, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- cluster
def test_cluster_chooses_k_and_shows_the_table(built: dict[str, Any]) -> None:
    result = ok(run("cluster", "--collection", built["coll"], *VOCABULARY, "-q"))
    assert "chosen by the best silhouette" in result.stderr
    data = json.loads(ok(run("cluster", "--collection", built["coll"], *VOCABULARY, "--json")).stdout)
    assert data["k_chosen_by"] == "silhouette" and data["k"] == len(data["clusters"]) >= 2
    assert sum(c["size"] for c in data["clusters"]) == N
    for c in data["clusters"]:
        assert c["name"] in result.stdout and c["central"][0]["path"] in result.stdout


def test_cluster_with_k_writes_contact_sheets(built: dict[str, Any], tmp_path: Path) -> None:
    dest = tmp_path / "clusters.html"
    result = ok(run("cluster", "--collection", built["coll"], *VOCABULARY, "--k", "4", "--html", dest, "--json",
                    "-q"))
    data = json.loads(result.stdout)
    assert data["k"] == 4 and data["k_chosen_by"] == "given" and f"wrote {dest}" in result.stderr
    text = dest.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    import html

    assert all(html.escape(c["name"]) in text for c in data["clusters"])
    expected = sum(min(12, c["size"]) for c in data["clusters"])  # the 12 most central of each
    assert text.count("data:image/jpeg;base64,") == expected
    # Named from the vocabulary; two clusters given one name are told apart ("boat 2").
    assert {re.sub(r" \d+$", "", c["name"]) for c in data["clusters"]} <= {"fruit", "boat", "guitar", "bird",
                                                                            "flower", "car"}


def test_cluster_errors_are_one_line(built: dict[str, Any], tmp_path: Path) -> None:
    clean_error(run("cluster", "--collection", built["coll"], *VOCABULARY, "--k", str(N + 1)), 2, str(N))
    clean_error(run("cluster", "--collection", built["coll"], "--method", "spectral"), 2, "kmeans")
    clean_error(run("cluster", "--collection", built["coll"], "--html", tmp_path / "no" / "c.html"), 2,
                "no such folder")
    clean_error(run("cluster", "--collection", built["coll"], "--vocabulary", "a", "--vocabulary-file",
                    tmp_path / "v.txt"), 2, "not both")


def test_cluster_hdbscan_and_vocabulary_file(built: dict[str, Any], tmp_path: Path) -> None:
    vocab = tmp_path / "names.txt"
    vocab.write_text("# my names\nfruit\nboat\nguitar\nbird\n", encoding="utf-8")
    data = json.loads(ok(run("cluster", "--collection", built["coll"], "--method", "hdbscan",
                             "--vocabulary-file", vocab, "--json", "-q")).stdout)
    assert data["method"] == "hdbscan" and data["k_chosen_by"] == "density"
    assert sum(c["size"] for c in data["clusters"]) + data["noise"] == N
    assert {c["name"] for c in data["clusters"]} <= {"fruit", "boat", "guitar", "bird"}


# --------------------------------------------------------------------------- label, and search filters
def test_label_counts_and_search_filters(built: dict[str, Any]) -> None:
    result = ok(run("label", "--collection", built["coll"], "--labels", "fruit, boat, guitar, bird", "-q"))
    assert f"labelled {N} of {N} items" in result.stderr
    data = json.loads(ok(run("label", "--collection", built["coll"], "--labels", "fruit, boat, guitar, bird",
                             "--json", "-q")).stdout)
    assert sum(data["counts"].values()) == data["labelled"] == N
    for name, count in data["counts"].items():
        assert name in result.stdout
    best = max(data["counts"], key=data["counts"].get)
    hits = [json.loads(line) for line in ok(run("search", "a picture", "--collection", built["coll"], "--label",
                                                best, "-k", "50", "--json")).stdout.splitlines()]
    assert len(hits) == data["counts"][best]
    with Collection.open(built["coll"]) as coll:
        labels = coll.item_labels([h["id"] for h in hits])
        assert all(labels[h["id"]][0][0] == best for h in hits)
        cluster = coll.cluster(k=4, vocabulary=["fruit", "boat"]).clusters[0]
    hits = [json.loads(line) for line in ok(run("search", "a picture", "--collection", built["coll"], "--cluster",
                                                cluster.id, "-k", "50", "--json")).stdout.splitlines()]
    assert len(hits) == cluster.size


def test_label_multi_needs_min_score_and_labels(built: dict[str, Any], tmp_path: Path) -> None:
    clean_error(run("label", "--collection", built["coll"], "--labels", "a, b", "--multi"), 2, "min")
    clean_error(run("label", "--collection", built["coll"]), 2, "--labels")
    labels = tmp_path / "labels.txt"
    labels.write_text("fruit\nboat\n", encoding="utf-8")
    data = json.loads(ok(run("label", "--collection", built["coll"], "--labels-file", labels, "--multi",
                             "--min-score", "0.99", "--template", "a photo of a {}.", "--json", "-q")).stdout)
    assert data["multi"] and data["min_score"] == 0.99 and data["templates"] == ["a photo of a {}."]
    assert data["labelled"] < N


def test_label_on_an_image_only_model_refuses(tmp_path: Path, tiny_timm_dir: Path) -> None:
    make_image(tmp_path / "pics" / "a.png", seed=1)
    with Collection.create(tmp_path / "t.lkl", model=f"timm:{tiny_timm_dir}") as coll:
        coll.add([tmp_path / "pics"])
    line = clean_error(run("label", "--collection", tmp_path / "t.lkl", "--labels", "cat, dog"), 1, "images only")
    assert "cluster" in line  # the hint: cluster instead
    clean_error(run("matrix", "a red apple", str(tmp_path / "pics" / "a.png"), "--collection", tmp_path / "t.lkl"),
                1, "images only")


def test_search_passes_label_and_cluster_to_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.store import collection as coll_mod

    seen: list[Filter] = []

    class FakeCollection:
        def __enter__(self) -> "FakeCollection":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def search_batch(self, queries: Any, k: Any, min_score: Any = None, where: Any = None) -> Any:
            seen.append(where)
            return [[] for _ in queries]

    monkeypatch.setattr(coll_mod.Collection, "open", classmethod(lambda cls, *a, **kw: FakeCollection()))
    ok(run("search", "id:1", "--label", "beach", "--label", "cat", "--cluster", "7", "--cluster", "2"))
    assert tuple(seen[0].label) == ("beach", "cat") and tuple(seen[0].cluster) == (7, 2)


# --------------------------------------------------------------------------- map
def test_map_png_and_json(built: dict[str, Any], tmp_path: Path) -> None:
    dest = tmp_path / "map.png"
    result = ok(run("map", "--collection", built["coll"], "--method", "pca", "--png", dest, "--color", "folder",
                    "--thumbnails", "4", "-q"))
    assert f"pca map of {N} items" in result.stderr
    with Image.open(dest) as img:
        assert img.format == "PNG" and img.size == (1200, 900)
    data = json.loads(ok(run("map", "--collection", built["coll"], "--method", "pca", "--json", "-q")).stdout)
    assert data["method"] == "pca" and data["count"] == N == len(data["points"])
    assert {p["id"] for p in data["points"]} == {int(i) for i in _ids(built["coll"])}
    assert set(data["points"][0]) == {"id", "x", "y", "cluster", "label", "folder"}
    clean_error(run("map", "--collection", built["coll"], "--color", "size"), 2, "--color")
    clean_error(run("map", "--collection", built["coll"], "--method", "mds"), 2, "mds")


def _ids(coll_path: Path) -> np.ndarray:
    with Collection.open(coll_path) as coll:
        return coll.embeddings()[0]


# --------------------------------------------------------------------------- matrix
def test_matrix_table_json_csv_png(built: dict[str, Any], tmp_path: Path) -> None:
    fruit, boats = built["files"]["food/fruit"], built["files"]["transportation/boating"]
    with Collection.open(built["coll"]) as coll:
        boat_id = coll.item_at(boats[1]).id
    items = [str(fruit[0]), str(fruit[1]), str(boats[0]), f"id:{boat_id}", "a sailing boat"]
    table = ok(run("matrix", *items, "--collection", built["coll"])).stdout
    assert "a sailing boat" in table and f"id:{boat_id} {boats[1].name}" in table and "1.000" in table
    data = json.loads(ok(run("matrix", *items, "--collection", built["coll"], "--json")).stdout)
    m = np.array(data["matrix"])
    assert m.shape == (5, 5) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert data["kinds"] == ["image", "image", "image", "item", "text"]
    rows = list(csv.reader(io.StringIO(ok(run("matrix", *items, "--collection", built["coll"], "--csv", "-")).stdout)))
    assert rows[0][1:] == data["names"] and len(rows) == 6
    png = tmp_path / "m.png"
    result = ok(run("matrix", *items, "--collection", built["coll"], "--png", png, "--csv", tmp_path / "m.csv"))
    assert result.stdout == "" and png.is_file() and (tmp_path / "m.csv").is_file()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 300


def test_matrix_limits_and_model(built: dict[str, Any]) -> None:
    one = json.loads(ok(run("matrix", "a cat", "--model", "lite", "--json")).stdout)
    assert one["matrix"] == [[1.0]]
    fruit = built["files"]["food/fruit"]
    both = json.loads(ok(run("matrix", fruit[0], "an apple", "--model", "lite", "--json")).stdout)
    assert both["kinds"] == ["image", "text"]
    clean_error(run("matrix", *[f"word {i}" for i in range(65)], "--model", "lite"), 2, "64")
    clean_error(run("matrix", "id:1", "--model", "lite"), 2, "collection")
    clean_error(run("matrix", "a", "--model", "lite", "--collection", built["coll"]), 2, "not both")
    clean_error(run("matrix", "./nope.png", "--collection", built["coll"]), 2, "no such image file")


# --------------------------------------------------------------------------- report, and small collections
def test_report_writes_an_offline_site(built: dict[str, Any], tmp_path: Path) -> None:
    from lookalike.apps.explore.site import read_data

    ok(run("map", "--collection", built["coll"], "--method", "pca", "-q"))  # a stored map: no UMAP fit here
    result = ok(run("report", "--collection", built["coll"], "--html", tmp_path / "site", "-q"))
    index = tmp_path / "site" / "index.html"
    assert result.stdout.strip() == str(index)
    text = index.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<canvas" in text
    data = read_data(tmp_path / "site" / "data.js")
    assert data["count"] == N and data["xy"].shape == (N, 2)
    assert len(list((tmp_path / "site" / "thumbs").glob("*.jpg"))) == N
    clean_error(run("report", "--collection", built["coll"], "--html", tmp_path / "a" / "b"), 2, "no such folder")


def test_empty_and_one_item_collections(tmp_path: Path, lite_model: Any) -> None:
    with Collection.create(tmp_path / "e.lkl", model=lite_model):
        pass
    assert "no clusters" in ok(run("cluster", "--collection", tmp_path / "e.lkl", *VOCABULARY)).stderr
    assert "of 0 items" in ok(run("map", "--collection", tmp_path / "e.lkl", "--method", "pca", "--png",
                                  tmp_path / "e.png")).stderr
    make_image(tmp_path / "one" / "a.png", seed=3)
    with Collection.create(tmp_path / "o.lkl", model=lite_model) as coll:
        coll.add([tmp_path / "one"])
    data = json.loads(ok(run("cluster", "--collection", tmp_path / "o.lkl", *VOCABULARY, "--json")).stdout)
    assert data["k"] == 1 and data["clusters"][0]["size"] == 1
    clean_error(run("cluster", "--collection", tmp_path / "o.lkl", *VOCABULARY, "--k", "2"), 2, "1")
    ok(run("map", "--collection", tmp_path / "o.lkl", "--method", "pca", "-q"))
    ok(run("report", "--collection", tmp_path / "o.lkl", "--html", tmp_path / "site1", "-q"))
    assert (tmp_path / "site1" / "data.js").is_file()
