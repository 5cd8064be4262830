"""A collection's runtime and precision: an int8 collection keeps its model and refuses others;
an fp32 collection runs on any runtime with the same vectors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike import Collection
from lookalike.errors import CollectionCorrupt, CollectionMismatch


@pytest.fixture(scope="module")
def int8_collection(tmp_path_factory: pytest.TempPathFactory, tiny_timm_dir: Path) -> Path:
    """A small int8 (onnx) collection of the tiny timm model, calibrated on its own images."""
    from support import make_image

    root = tmp_path_factory.mktemp("int8")
    images = [make_image(root / "imgs" / f"{i:02d}.png", seed=i) for i in range(20)]
    with Collection.create(root / "c.lkl", f"timm:{tiny_timm_dir}", runtime="onnx", precision="int8",
                           calibration=images[:16]) as coll:
        report = coll.add([root / "imgs"])
        assert not report.failed and len(coll) == 20
    return root / "c.lkl"


def test_int8_collection_keeps_its_model_and_queries_with_it(int8_collection: Path) -> None:
    manifest = json.loads((int8_collection / "manifest.json").read_text())
    model = manifest["model"]
    assert (model["precision"], model["runtime"]) == ("int8", "onnx")
    assert (int8_collection / model["int8_file"]).is_file()
    with Collection.open(int8_collection) as coll:
        hit = coll.search(coll.path.parent / "imgs" / "03.png", k=1)[0]
        assert Path(hit.path).name == "03.png" and hit.score > 0.9999
        assert coll.model.precision == "int8" and coll.model.runtime == "onnx"


def test_int8_collection_refuses_another_precision_or_runtime(int8_collection: Path, tiny_timm_dir: Path) -> None:
    with pytest.raises(CollectionMismatch, match="precision int8.*--precision"):
        Collection.open(int8_collection, precision="fp32")
    with pytest.raises(CollectionMismatch, match="int8 vectors made by the onnx runtime"):
        Collection.open(int8_collection, runtime="torch")
    fp32 = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu", runtime="torch")
    with pytest.raises(CollectionMismatch, match="int8"):
        Collection.open(int8_collection, model=fp32)


def test_int8_collection_without_its_model_file_says_how_to_recover(int8_collection: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.lkl"
    shutil.copytree(int8_collection, copy)
    shutil.rmtree(copy / "models")
    with pytest.raises(CollectionCorrupt, match="quantized model .* is missing.*rebuild"):
        Collection.open(copy)


def test_fp32_collection_runs_on_any_runtime(tmp_path: Path, tiny_timm_dir: Path, image_folder) -> None:
    folder = image_folder(6)
    with Collection.create(tmp_path / "c.lkl", f"timm:{tiny_timm_dir}", runtime="torch") as coll:
        coll.add([folder])
        items = list(coll.items())
        stored = dict(zip((Path(i.path).name for i in items), coll.get_vectors([i.id for i in items])))
    with Collection.open(tmp_path / "c.lkl", runtime="onnx") as coll:
        assert coll.manifest.model["runtime"] == "torch"  # what built it; this process runs onnx
        some = sorted(folder.rglob("*.*"))[:3]
        vectors = coll.model.encode_images(some)
        assert coll.model.runtime == "onnx"
        for path, vec in zip(some, vectors):
            assert float(np.dot(vec, stored[path.name])) > 0.9999
