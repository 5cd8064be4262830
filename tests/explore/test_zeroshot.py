"""Zero-shot labelling: vocabulary, label parsing, prompt-ensembled prototypes, scoring."""

from __future__ import annotations

import numpy as np
import pytest

from explore_data import planted
from lookalike.errors import InvalidArgument
from lookalike.explore import DEFAULT_TEMPLATES, builtin_vocabulary, label_prototypes, parse_labels, score, top_labels


class FakeEncoder:
    """A text encoder with a fixed random vector per text, at varying lengths; records its calls."""

    def __init__(self, d: int = 16) -> None:
        self.d = d
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        return (rng.standard_normal(self.d) * rng.uniform(0.5, 4.0)).astype(np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.vector(t) for t in texts])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_builtin_vocabulary() -> None:
    words = builtin_vocabulary()
    assert 250 <= len(words) <= 400
    assert len({w.casefold() for w in words}) == len(words)
    assert all(w and w == w.strip() and not w.startswith("#") and "," not in w for w in words)
    assert {"dog", "beach", "screenshot", "pizza", "car"} <= set(words)


def test_parse_labels() -> None:
    text = "cat, dog\nDog,  sea   lion ,\n# a comment, not labels\n\n, ,beach"
    assert parse_labels(text) == ["cat", "dog", "sea lion", "beach"]
    for empty in ["", "  ,\n , ", "# only a comment"]:
        with pytest.raises(InvalidArgument, match="no labels"):
            parse_labels(empty)


def test_prototypes_are_normalised_template_means() -> None:
    enc = FakeEncoder()
    labels, templates = ["cat", "sea lion"], ["a photo of a {}.", "{} drawn {with} braces"]
    protos = label_prototypes(labels, enc, templates)
    assert len(enc.calls) == 1  # one batched call
    assert enc.calls[0] == ["a photo of a cat.", "cat drawn {with} braces", "a photo of a sea lion.", "sea lion drawn {with} braces"]
    assert protos.shape == (2, 16) and protos.dtype == np.float32
    for i, label in enumerate(labels):
        parts = [_unit(enc.vector(t.replace("{}", label))) for t in templates]
        np.testing.assert_allclose(protos[i], _unit(np.mean(parts, axis=0)), atol=1e-5)


def test_default_templates_used() -> None:
    enc = FakeEncoder()
    protos = label_prototypes(["boat"], enc)
    assert enc.calls[0] == [t.replace("{}", "boat") for t in DEFAULT_TEMPLATES]
    assert 3 <= len(DEFAULT_TEMPLATES) <= 10 and all("{}" in t for t in DEFAULT_TEMPLATES)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-6)


def test_prototype_arguments_checked() -> None:
    enc = FakeEncoder()
    with pytest.raises(InvalidArgument, match="labels"):
        label_prototypes([], enc)
    with pytest.raises(InvalidArgument, match="templates"):
        label_prototypes(["cat"], enc, [])
    with pytest.raises(InvalidArgument, match="a photo of a cat"):
        label_prototypes(["dog"], enc, ["a photo of a cat"])
    with pytest.raises(InvalidArgument, match="blank"):
        label_prototypes(["dog", " "], enc)
    with pytest.raises(InvalidArgument, match="shape"):
        label_prototypes(["dog"], lambda texts: np.zeros((1, 4)), ["{}", "a {}"])
    assert enc.calls == []  # arguments are checked before anything is embedded


def test_scores_pick_the_planted_label() -> None:
    x, truth = planted(600, 5, d=32, seed=3)
    centres = np.stack([_unit(x[truth == c].mean(axis=0)) for c in range(5)])
    rng = np.random.default_rng(0)
    prototypes = _unit(centres + 0.3 * _unit(rng.standard_normal(centres.shape)))  # "text" near each centre
    s = score(x * 3.0, prototypes)  # rows not unit length: still cosine
    assert s.shape == (600, 5) and s.dtype == np.float32
    np.testing.assert_allclose(s, x @ _unit(prototypes).T, atol=1e-5)
    idx, best = top_labels(s)
    assert idx.dtype == np.int32 and best.dtype == np.float32
    assert (idx == truth).mean() > 0.95
    np.testing.assert_allclose(best, s.max(axis=1))


def test_top_labels_edges() -> None:
    idx, best = top_labels(np.array([[0.2, 0.2, 0.1]], dtype=np.float32))
    assert idx.tolist() == [0] and best.tolist() == [pytest.approx(0.2)]  # ties go to the earlier label
    idx, best = top_labels(np.zeros((0, 3), dtype=np.float32))
    assert idx.shape == best.shape == (0,)
    with pytest.raises(InvalidArgument):
        top_labels(np.zeros((4, 0), dtype=np.float32))
    assert score(np.zeros((0, 8), dtype=np.float32), np.ones((2, 8), dtype=np.float32)).shape == (0, 2)
