"""``lookalike.reproject``: a head applied to a collection's stored vectors, as a new collection.
No image is read, the source is left byte for byte, a head fitted on another model is refused,
and the new collection keeps its own copy of the head."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike import Collection
from lookalike.apps.reproject import _check_fits
from lookalike.errors import CollectionMismatch
from lookalike.models.head import HeadConfig, ProjectionHead, apply_head, load_head, save_head
from lookalike.store.manifest import Manifest
from support import make_image


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_head(out: Path, base: str, fingerprint: str, *, kind: str = "projection", in_dim: int = 32,
              out_dim: int = 16, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    config = HeadConfig(kind=kind, arch="linear", in_dim=in_dim, out_dim=out_dim, base=base,
                        base_fingerprint=fingerprint, name=out.name)
    return save_head(out, ProjectionHead(config), config)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    """A tiny-CLIP collection of 6 images, whose images are moved away once indexed."""
    root = tmp_path_factory.mktemp("reproject")
    for i in range(6):
        make_image(root / "imgs" / f"{i:02d}.png", seed=i)
    with Collection.create(root / "src.lkl", f"openclip:{tiny_clip_dir}", runtime="torch") as coll:
        coll.add([root / "imgs"])
    (root / "imgs").rename(root / "moved-away")
    return root / "src.lkl"


@pytest.fixture(scope="module")
def made(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One reproject of ``source`` with a projection head (32 -> 16), any image decoding
    failing the test: the head's folder, its LoadedHead, the new collection (open), the
    progress events, and digests of the source's files before and after."""
    manifest = Manifest.load(source / "manifest.json")
    root = tmp_path_factory.mktemp("reprojected")
    head = make_head(root / "heads" / "logos", manifest.model_id, manifest.fingerprint)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was decoded")

    import lookalike.images.decode as decode

    before, events = tree_digest(source), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "decode_image", refuse)
        mp.setattr(Image, "open", refuse)
        new = lookalike.reproject(source, head, root / "logos.lkl", progress=events.append)
    with new:
        yield SimpleNamespace(head=head, loaded=load_head(head), new=new, events=events, before=before,
                              after=tree_digest(source), base=manifest.model_id)


def test_reproject_applies_the_head_to_stored_vectors_without_reading_images(source: Path,
                                                                              made: SimpleNamespace) -> None:
    new = made.new
    assert made.after == made.before  # not one byte of the source changed
    assert new.manifest.model_id == f"{made.base}+head:{made.loaded.id}"
    ids, vectors = new.embeddings()
    with Collection.open(source) as src:
        src_ids, src_vectors = src.embeddings()
    assert np.array_equal(ids, src_ids) and vectors.shape == (6, 16)
    np.testing.assert_allclose(vectors, apply_head(made.loaded, src_vectors), atol=1e-6)
    hit = new.search(f"id:{ids[2]}", k=1)[0]
    assert hit.id == ids[2] and hit.score == pytest.approx(1.0, abs=1e-5)
    assert len(new.search("a red square", k=3)) == 3  # text goes through the base's text tower and the head
    assert made.events[-1].kind == "done" and any(e.kind == "derive" and e.done == 6 for e in made.events)


def test_the_new_collection_keeps_its_head_and_checks_model_names(made: SimpleNamespace, tiny_clip_dir: Path,
                                                                   tmp_path: Path) -> None:
    path = made.new.path
    entry = json.loads((path / "manifest.json").read_text())["model"]
    assert entry["head_dir"] == f"models/head-{made.loaded.id}"
    assert (path / entry["head_dir"] / "head.json").is_file()
    with Collection.open(path, model=f"openclip:{tiny_clip_dir}+head:{made.head}"):
        pass  # the head's folder or the collection's copy: one model
    with Collection.create(tmp_path / "made.lkl", made.new.model) as created:  # a new head collection keeps one too
        assert (created.path / created.manifest.model["head_dir"] / "head.safetensors").is_file()
    with pytest.raises(CollectionMismatch, match="cannot be mixed"):
        Collection.open(path, model=f"openclip:{tiny_clip_dir}")
    shutil.rmtree(made.head)
    with Collection.open(path) as new:
        image = make_image(tmp_path / "new.png", seed=3)
        vector = new.query_vector(image)  # embeds through the base and the collection's copy of the head
        assert vector.shape == (16,)
        assert new.search(vector, k=1)[0].score > 0.999  # the same pixels as the indexed 03.png
        assert len(new.search("a photo", k=2)) == 2


def test_a_head_fitted_on_another_model_is_refused(source: Path, tmp_path: Path) -> None:
    other = make_head(tmp_path / "other", "timm:/m/x", "0123456789abcdef")
    with pytest.raises(CollectionMismatch) as info:
        lookalike.reproject(source, other, tmp_path / "out.lkl")
    message = str(info.value)
    assert "0123456789abcdef" in message and Manifest.load(source / "manifest.json").fingerprint in message
    assert "lookalike train LABELLED --base openclip:" in message
    assert not (tmp_path / "out.lkl").exists()


def test_an_int8_collection_refuses_a_head_fitted_on_fp32_vectors(source: Path, made: SimpleNamespace) -> None:
    manifest = Manifest.load(source / "manifest.json")
    int8 = Manifest(model={**manifest.model, "precision": "int8", "fingerprint": "feedbeef"})
    fake = SimpleNamespace(manifest=int8, path=Path("/c/int8.lkl"))
    with pytest.raises(CollectionMismatch, match="int8 vectors.*--precision fp32"):
        _check_fits(fake, made.loaded)  # type: ignore[arg-type]


def test_a_text_head_leaves_the_vectors_as_they_are(source: Path, tmp_path: Path) -> None:
    manifest = Manifest.load(source / "manifest.json")
    text_head = make_head(tmp_path / "captions", manifest.model_id, manifest.fingerprint, kind="text", out_dim=32)
    with Collection.open(source) as src:
        src_ids, src_vectors = src.embeddings()
        with lookalike.reproject(src, load_head(text_head), tmp_path / "captions.lkl") as new:
            ids, vectors = new.embeddings()
            assert np.array_equal(ids, src_ids) and np.array_equal(vectors, src_vectors)
            assert new.manifest.model["head"]["kind"] == "text"
            assert len(new.search("a red square", k=2)) == 2
