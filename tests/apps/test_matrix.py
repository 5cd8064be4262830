"""lookalike.similarity_matrix: items given as ids, paths and texts, with a collection or a
model; the limits; the CSV and JSON forms.

The collection uses the tiny random CLIP (it has a text tower, so text items work; what its
vectors mean does not matter here), and the image-only case the tiny timm model.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

import lookalike
from lookalike.apps.matrix import MATRIX_LIMIT, SimilarityMatrix, similarity_matrix
from lookalike.errors import InvalidArgument, ItemNotFound, UnsupportedModality
from lookalike.store.collection import Collection
from support import make_image


class FakeModel:
    """Deterministic 8-d vectors: a hash of the text, or of the image file's name; it counts calls."""

    dim = 8

    def __init__(self, text: bool = True) -> None:
        self.text = text
        self.calls: list[tuple[str, list[str]]] = []

    def _vec(self, key: str) -> np.ndarray:
        v = np.random.default_rng(abs(hash(key)) % 2**32).normal(size=self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if not self.text:
            raise UnsupportedModality("images only")
        self.calls.append(("text", list(texts)))
        return np.stack([self._vec("t:" + t) for t in texts])

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        self.calls.append(("image", [str(i) for i in images]))
        return np.stack([self._vec("i:" + Path(i).name) for i in images])


@pytest.fixture(scope="module")
def pics(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("matrix") / "pics"
    return [make_image(folder / f"m{i}.png", seed=900 + i) for i in range(4)]


@pytest.fixture(scope="module")
def clip_coll(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, pics: list[Path]) -> Collection:
    coll = Collection.create(tmp_path_factory.mktemp("matrix-coll") / "c.lkl", model=f"openclip:{tiny_clip_dir}")
    coll.add([pics[0].parent])
    yield coll
    coll.close()


def _check_shape(m: SimilarityMatrix, n: int) -> None:
    assert m.matrix.shape == (n, n) and m.matrix.dtype == np.float32
    assert np.allclose(m.matrix, m.matrix.T)
    assert np.all(np.diag(m.matrix) == 1.0)
    assert np.all(m.matrix <= 1.0) and np.all(m.matrix >= -1.0)
    assert len(m.names) == len(m.kinds) == len(m.ids) == len(m.paths) == n


def test_one_item_is_a_one_by_one_matrix() -> None:
    m = similarity_matrix(FakeModel(), ["a red apple"])
    _check_shape(m, 1)
    assert m.matrix.tolist() == [[1.0]] and m.kinds == ["text"] and m.names == ["a red apple"]


def test_no_items_and_over_the_limit_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="at least one"):
        similarity_matrix(FakeModel(), [])
    with pytest.raises(InvalidArgument, match=f"at most {MATRIX_LIMIT}"):
        similarity_matrix(FakeModel(), [f"word {i}" for i in range(MATRIX_LIMIT + 1)])
    with pytest.raises(InvalidArgument, match="at most 3"):
        similarity_matrix(FakeModel(), ["a", "b", "c", "d"], limit=3)
    assert len(similarity_matrix(FakeModel(), [f"word {i}" for i in range(MATRIX_LIMIT)])) == MATRIX_LIMIT


def test_text_on_an_image_only_model_is_unsupported(tiny_timm_dir: Path, pics: list[Path]) -> None:
    model = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")
    with pytest.raises(UnsupportedModality, match="images only"):
        similarity_matrix(model, [pics[0], "a red apple"])
    m = similarity_matrix(model, [pics[0], str(pics[1]), pics[0]])  # images alone are fine
    _check_shape(m, 3)
    assert m.kinds == ["image"] * 3 and m.names == ["m0.png", "m1.png", "m0.png"]
    assert m.matrix[0, 2] == pytest.approx(1.0, abs=1e-5)


def test_a_model_embeds_texts_and_images_in_one_call_each(pics: list[Path]) -> None:
    model = FakeModel()
    m = similarity_matrix(model, ["dog - grass", pics[0], "cat", str(pics[1])])
    _check_shape(m, 4)
    assert m.kinds == ["text", "image", "text", "image"]
    assert [kind for kind, _ in model.calls] == ["text", "image"]
    assert model.calls[0][1] == ["dog - grass", "cat"]  # the words, not a parsed query
    expected = np.stack([model._vec("t:dog - grass"), model._vec("i:m0.png")])
    assert m.matrix[0, 1] == pytest.approx(float(expected[0] @ expected[1]), abs=1e-5)


def test_ids_need_a_collection_and_paths_must_exist(pics: list[Path]) -> None:
    with pytest.raises(InvalidArgument, match="give a collection"):
        similarity_matrix(FakeModel(), ["id:3", "cat"])
    with pytest.raises(InvalidArgument, match="no such image file"):
        similarity_matrix(FakeModel(), ["./missing.jpg"])
    with pytest.raises(InvalidArgument, match="no such image file"):
        similarity_matrix(FakeModel(), [pics[0].parent / "gone.png"])
    with pytest.raises(InvalidArgument):
        similarity_matrix(FakeModel(), [True])


def test_ids_paths_and_text_mix_in_a_collection(clip_coll: Collection, pics: list[Path], tmp_path: Path) -> None:
    first = clip_coll.item_at(pics[0])
    outside = make_image(tmp_path / "outside.png", seed=77)
    m = similarity_matrix(clip_coll, [f"id:{first.id}", first.id, pics[1], outside, "a red apple"])
    _check_shape(m, 5)
    assert m.kinds == ["item", "item", "image", "image", "text"]
    assert m.names[0] == f"id:{first.id} m0.png" and m.names[2:] == ["m1.png", "outside.png", "a red apple"]
    assert m.ids[:3] == [first.id, first.id, clip_coll.item_at(pics[1]).id]  # an indexed file: its stored vector
    assert m.ids[3:] == [None, None] and m.paths[4] is None and m.paths[0] == first.path
    assert m.matrix[0, 1] == pytest.approx(1.0, abs=1e-6)
    # The stored vectors are the ones used: the same cosine as from get_vectors.
    v = clip_coll.get_vectors([first.id, m.ids[2]])
    assert m.matrix[0, 2] == pytest.approx(float(v[0] @ v[1]), abs=1e-5)
    # An item id the collection lacks.
    with pytest.raises(ItemNotFound):
        similarity_matrix(clip_coll, ["id:99999", "cat"])


def test_lookalike_exports_similarity_matrix(clip_coll: Collection, pics: list[Path]) -> None:
    m = lookalike.similarity_matrix(clip_coll, [pics[0], pics[2]])
    assert isinstance(m, lookalike.SimilarityMatrix) and len(m) == 2


def test_csv_and_json_forms(tmp_path: Path, pics: list[Path]) -> None:
    m = similarity_matrix(FakeModel(), ["cat", pics[0], 'a "quoted", text'])
    dest = tmp_path / "m.csv"
    m.to_csv(dest)
    rows = list(csv.reader(dest.open(encoding="utf-8")))
    assert rows[0] == ["", "cat", "m0.png", 'a "quoted", text']
    assert [r[0] for r in rows[1:]] == rows[0][1:]
    assert np.allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), m.matrix, atol=1e-6)
    stream = io.StringIO()
    m.to_csv(stream)
    assert stream.getvalue() == dest.read_text(encoding="utf-8")
    data = json.loads(m.to_json())
    assert data["names"] == m.names and data["kinds"] == ["text", "image", "text"]
    assert np.allclose(data["matrix"], m.matrix, atol=1e-6) and data["paths"][1] == str(pics[0].resolve())
