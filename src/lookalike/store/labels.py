"""Zero-shot labels for a collection: compute, store, read (``Collection.label``).

Each label becomes a prototype: the mean of the text embeddings of the label in a few
prompt templates ("a photo of a {}.", ...), renormalised (:mod:`lookalike.explore.zeroshot`).
An item's labels are the prototypes its vector is most similar to: its top label and score
in its row, and, multi-label, every label above the minimum score in ``item_labels``. The
prototypes are stored, so new items are labelled at index time (:mod:`.assign`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..explore import DEFAULT_TEMPLATES, label_prototypes
from .assign import assign_pending
from .explore_db import LABELLING, ExploreTables
from .explore_types import LabelCount, Labelling

if TYPE_CHECKING:
    from .storage import Storage

__all__ = ["LabelSettings", "compute_labels", "read_labelling"]


@dataclass(frozen=True)
class LabelSettings:
    """What to label with: the labels, the prompt templates, and whether to keep several."""

    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    multi: bool = False
    min_score: float | None = None

    def __post_init__(self) -> None:
        labels = [str(lb).strip() for lb in self.labels]
        if not labels or not all(labels):
            raise InvalidArgument("give at least one label, and no empty ones (e.g. labels='cat, dog, beach')")
        repeated = sorted({lb for lb in labels if [x.lower() for x in labels].count(lb.lower()) > 1})
        if repeated:
            raise InvalidArgument(f"labels must be distinct; given more than once: {', '.join(repeated)}")
        if self.multi and self.min_score is None:
            raise InvalidArgument("multi-label needs a minimum score to decide which labels an item carries; "
                                  "pass min_score (for example 0.25)")
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise InvalidArgument(f"min_score is a cosine similarity, between -1 and 1, not {self.min_score}")
        object.__setattr__(self, "labels", tuple(labels))
        object.__setattr__(self, "templates", tuple(self.templates))


def compute_labels(storage: "Storage", settings: LabelSettings, encode_text: Callable[[list[str]], np.ndarray]) -> None:
    """Make ``settings`` the collection's labelling and label every item (the caller holds
    the write lock).

    Raises:
        InvalidArgument: a template without ``{}``.
    """
    prototypes = label_prototypes(list(settings.labels), encode_text, settings.templates)
    tables = ExploreTables(storage.db, storage.manifest.dim)
    with storage.db.transaction():
        tables.replace_label_set(settings.labels, prototypes)
        tables.set_settings(LABELLING, {"labels": list(settings.labels), "templates": list(settings.templates),
                                        "multi": settings.multi, "min_score": settings.min_score})
    assign_pending(storage)


def read_labelling(storage: "Storage") -> Labelling | None:
    """The stored labelling with its counts now, or None."""
    tables = ExploreTables(storage.db, storage.manifest.dim)
    with storage.db.snapshot():
        meta = tables.settings(LABELLING)
        if meta is None:
            return None
        counts = tables.label_counts()
    labels: Sequence[str] = meta["labels"]
    return Labelling(labels=list(labels), templates=list(meta["templates"]), multi=bool(meta["multi"]),
                     min_score=meta["min_score"], counts=[LabelCount(lb, counts.get(lb, 0)) for lb in labels],
                     labelled=sum(counts.values()))
