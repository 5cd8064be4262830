"""The scale-out user story on the command line, end to end: `index --files-from`, `--table`,
WebDataset shard patterns, URLs with `--download-dir`, `search --where`, `--ray`, and
`export` -> `import` with identical results."""

from __future__ import annotations

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from lookalike.cli.app import app
from lookalike.store.collection import Collection
from ray_support import ray_cluster  # noqa: F401

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.usefixtures("cli_env")


def run(*args: str | Path, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    assert result.exit_code == 0, result.output
    return result


def paths(coll: Path) -> list[str]:
    with Collection.open(coll) as c:
        return sorted(item.path for item in c.items())


@pytest.fixture
def model(tiny_timm_dir: Path) -> str:
    return f"timm:{tiny_timm_dir}"


@pytest.fixture
def pics(image_folder: Any) -> list[Path]:
    return sorted(image_folder(6).rglob("img_*"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, pics: list[Path]) -> Iterator[str]:
    """The pictures served over HTTP on 127.0.0.1; the base URL."""
    www = tmp_path / "www"
    www.mkdir()
    for p in pics:
        shutil.copy(p, www / p.name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_files_from_a_list_and_from_stdin(tmp_path: Path, model: str, pics: list[Path]) -> None:
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(map(str, pics[:3])) + "\n\n" + str(pics[0]) + "\n/no/such.png\n")
    coll = tmp_path / "c.lkl"
    out = run("index", "--files-from", listing, "--collection", coll, "--model", model)
    assert "3 added" in out.output and "2 skipped" in out.output
    run("index", "--files-from", "-", "--collection", coll, stdin="\n".join(map(str, pics[3:])) + "\n")
    assert paths(coll) == sorted(map(str, pics))


def test_a_table_with_captions_then_search_where(tmp_path: Path, model: str, pics: list[Path]) -> None:
    table = tmp_path / "images.parquet"
    pq.write_table(pa.table({"file": [str(p) for p in pics], "text": [f"picture {i}" for i in range(6)],
                             "license": ["cc-by", "cc0"] * 3, "width_px": [256, 1024] * 3}), table)
    coll = tmp_path / "c.lkl"
    run("index", "--table", table, "--url-col", "file", "--caption-col", "text", "--collection", coll,
        "--model", model)
    with Collection.open(coll) as c:
        first = c.item_at(pics[0])
        assert c.metadata(first.id) == {"caption": "picture 0", "license": "cc-by", "width_px": 256}
    out = run("search", f"id:{first.id}", "--collection", coll, "--where", "license=cc-by", "--where",
              "width_px<512", "--json", "-k", "10")
    found = [json.loads(line)["path"] for line in out.stdout.splitlines()]
    assert sorted(found) == sorted(str(p) for p in pics[0::2])


def test_webdataset_shards_by_brace_pattern(tmp_path: Path, model: str, pics: list[Path]) -> None:
    for s in range(2):
        with tarfile.open(tmp_path / f"shard-{s:05d}.tar", "w") as tar:
            for i, p in enumerate(pics[s * 3:(s + 1) * 3]):
                tar.add(p, arcname=f"{i:03d}{p.suffix}")
                caption = f"sample {s}-{i}".encode()
                info = tarfile.TarInfo(f"{i:03d}.txt")
                info.size = len(caption)
                tar.addfile(info, io.BytesIO(caption))
    coll = tmp_path / "c.lkl"
    out = run("index", str(tmp_path / "shard-{00000..00001}.tar"), "--collection", coll, "--model", model)
    assert "6 added" in out.output
    assert all("#" in p for p in paths(coll))
    again = run("index", str(tmp_path / "shard-{00000..00001}.tar"), "--collection", coll)
    assert "6 unchanged" in again.output


def test_urls_with_a_download_dir(tmp_path: Path, model: str, served: str) -> None:
    table = tmp_path / "urls.csv"
    table.write_text("url,license\n" + "".join(f"{served}/img_{i:04d}.{'png' if i % 2 else 'jpg'},cc0\n"
                                               for i in range(6)) + f"{served}/missing.png,cc0\n")
    coll, cache = tmp_path / "c.lkl", tmp_path / "imgcache"
    out = run("index", "--table", table, "--collection", coll, "--model", model, "--download-dir", cache)
    assert "6 added" in out.output and "1 failed" in out.output
    assert len(list(cache.rglob("*.json"))) == 6  # one cached image (and its sidecar) per URL
    info = json.loads(run("info", "--collection", coll, "--json").stdout)
    assert any("HTTP 404" in reason for _, reason in info["errors"])


def test_index_on_ray_gives_the_local_result(tmp_path: Path, model: str, pics: list[Path],
                                             ray_cluster: Any) -> None:  # noqa: F811
    folder = pics[0].parent.parent
    run("index", folder, "--collection", tmp_path / "local.lkl", "--model", model)
    out = run("index", folder, "--collection", tmp_path / "ray.lkl", "--model", model, "--ray", "auto")
    assert "6 added" in out.output
    with Collection.open(tmp_path / "local.lkl") as a, Collection.open(tmp_path / "ray.lkl") as b:
        assert [(i.id, i.path) for i in a.items()] == [(i.id, i.path) for i in b.items()]
        ids = [i.id for i in a.items()]
        assert abs(a.get_vectors(ids) - b.get_vectors(ids)).max() < 1e-5


@pytest.mark.parametrize("fmt", ["parquet", "clip-retrieval"])
def test_export_then_import_gives_the_same_search(tmp_path: Path, model: str, pics: list[Path], fmt: str) -> None:
    src, dst, out_dir = tmp_path / "a.lkl", tmp_path / "b.lkl", tmp_path / "out"
    run("index", pics[0].parent.parent, "--collection", src, "--model", model)
    run("export", "--collection", src, "--format", fmt, "--dtype", "float32", out_dir)
    run("import", out_dir, "--collection", dst, "--model", model)
    query = ["search", str(pics[1]), "--json", "-k", "6"]
    assert run(*query, "--collection", src).stdout == run(*query, "--collection", dst).stdout
