"""Zero-shot labels: score image vectors against text prompts built from label names.

Each label becomes one *prototype*: the label is written into every template ("a photo of
a {}."), the texts are embedded with the model's text encoder, and their unit vectors are
averaged and renormalised (prompt ensembling, as in the CLIP paper: it is steadier than any
one phrasing). An image's score for a label is the cosine between its vector and the prototype.
"""

from __future__ import annotations

from importlib import resources
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidArgument
from ._arrays import as_matrix, chunks, unit_rows

__all__ = ["DEFAULT_TEMPLATES", "builtin_vocabulary", "parse_labels", "label_prototypes", "score", "top_labels"]

#: General-purpose prompt templates; ``{}`` is replaced by the label. Kept few, since every
#: label is embedded once per template. They cover photos and drawn images alike.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a close-up photo of a {}.",
    "a drawing of a {}.",
    "an illustration of a {}.",
    "a blurry photo of a {}.",
)


def builtin_vocabulary() -> list[str]:
    """lookalike's own list of ~300 everyday subjects and scenes (package file ``vocabulary.txt``),
    for labelling or naming clusters when the user gives no labels."""
    text = resources.files(__package__).joinpath("vocabulary.txt").read_text(encoding="utf-8")
    return parse_labels(text)


def parse_labels(text: str) -> list[str]:
    """Labels from comma- or newline-separated ``text``: stripped, blanks and ``#`` comment lines
    dropped, duplicates (ignoring case) removed, first spelling and order kept.

    No label at all raises :class:`InvalidArgument`.
    """
    labels: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for part in line.split(","):
            label = " ".join(part.split())  # also folds runs of inner whitespace
            if label and label.casefold() not in seen:
                seen.add(label.casefold())
                labels.append(label)
    if not labels:
        raise InvalidArgument("no labels given: write them separated by commas or newlines, e.g. 'cat, dog, beach'")
    return labels


def label_prototypes(
    labels: Sequence[str],
    encode_text: Callable[[list[str]], np.ndarray],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> np.ndarray:
    """One unit vector per label, (L, d) float32: the renormalised mean of the label's
    template embeddings (each embedding made unit length first, so no phrasing outweighs another).

    ``encode_text`` is called once, with all L x T texts (label-major), and must return
    (L*T, d) vectors. Empty ``labels`` or ``templates``, a blank label, or a template without
    ``{}`` raise :class:`InvalidArgument`.
    """
    labels = list(labels)
    templates = list(templates)
    if not labels:
        raise InvalidArgument("no labels given; pass at least one label")
    if not templates:
        raise InvalidArgument("no templates given; pass at least one, e.g. 'a photo of a {}.'")
    for template in templates:
        if "{}" not in template:
            raise InvalidArgument(f"template {template!r} has no '{{}}' to put the label in; write e.g. 'a photo of a {{}}.'")
    for label in labels:
        if not str(label).strip():
            raise InvalidArgument("a label is blank; remove it or give it a name")
    # str.replace, not str.format: a template may contain other braces as plain text.
    texts = [template.replace("{}", str(label)) for label in labels for template in templates]
    emb = np.asarray(encode_text(texts), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise InvalidArgument(f"the text encoder returned shape {emb.shape} for {len(texts)} texts")
    emb = unit_rows(emb).reshape(len(labels), len(templates), -1)
    return unit_rows(emb.mean(axis=1))


def score(vectors: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Cosine of every vector with every label prototype: (n, L) float32, computed in chunks."""
    x = as_matrix(vectors)
    p = unit_rows(as_matrix(prototypes, "prototypes"))
    if len(x) and len(p) and x.shape[1] != p.shape[1]:
        raise InvalidArgument(f"vectors have {x.shape[1]} dimensions but the label prototypes have {p.shape[1]}")
    out = np.empty((len(x), len(p)), dtype=np.float32)
    for start, block in chunks(x):
        norms = np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        out[start : start + len(block)] = (block @ p.T) / norms
    return out


def top_labels(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best label of each row of ``scores`` (n, L): ``(label index int32 (n,), score float32 (n,))``.

    Ties go to the earlier label. No labels (L = 0) raises :class:`InvalidArgument`.
    """
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2:
        raise InvalidArgument(f"scores must be 2-D (items x labels), got shape {s.shape}")
    if s.shape[1] == 0:
        raise InvalidArgument("there are no labels to choose from")
    idx = np.argmax(s, axis=1).astype(np.int32)
    return idx, s[np.arange(len(s)), idx].astype(np.float32)
