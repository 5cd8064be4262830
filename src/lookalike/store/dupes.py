"""Near-duplicate groups of a collection: the records, the settings and the keep rules.

:meth:`Collection.duplicates <lookalike.store.collection.Collection.duplicates>` returns a
list of :class:`DuplicateGroup`. Three tiers find them, strongest first:

* ``exact``: the same bytes (the content hash the collection already stores);
* ``perceptual``: pHash and dHash both within ``hash_bits`` bits (a resize, a re-encode),
  and the embeddings at least ``perceptual_floor`` similar (hashes of flat drawings collide);
* ``semantic``: the model's embeddings at or above the cosine ``threshold``.

How the groups are formed (from cached nearest-neighbour lists, never an N x N matrix, and
without chaining) is :mod:`lookalike.store.dupe_finder`; which member of a group is kept is
decided here, by :func:`choose_kept`. Acting on the groups (move, link, delete, undo) is
:mod:`lookalike.apps.dupes`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

from ..errors import InvalidArgument
from ..fsutil import user_path
from ..images.traits import ImageTraits
from .items import Item

__all__ = ["Tier", "TIERS", "GroupKind", "KEEP_RULES", "Member", "DuplicateGroup", "DuplicateSettings",
           "SimilarityHistogram", "choose_kept"]

Tier = Literal["exact", "perceptual", "semantic"]
#: Strongest first.
TIERS: tuple[Tier, ...] = ("exact", "perceptual", "semantic")
GroupKind = Literal["duplicate", "burst"]
#: ``largest`` (pixels, then bytes), ``oldest`` / ``newest`` (EXIF capture time, else the
#: file's modification time), ``most-metadata`` (EXIF tags), ``shortest-path``, ``sharpest``
#: (variance of the Laplacian; the default for burst groups).
KEEP_RULES = ("largest", "oldest", "newest", "most-metadata", "shortest-path", "sharpest")


@dataclass(frozen=True)
class Member:
    """One image of a :class:`DuplicateGroup`."""

    item: Item
    traits: ImageTraits | None
    similarity: float   # cosine similarity to the group's medoid (1.0 for the medoid itself)
    tier: Tier          # the strongest tier linking it to the medoid
    keep: bool          # the member the keep rule keeps (exactly one per group)
    reference: bool     # under a reference folder: never moved or deleted


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are near duplicates of one another: every pair of members matches.

    ``id`` is the medoid's item id (stable while the group holds); ``tier`` is the weakest
    member tier; ``similarity`` the lowest member-to-medoid similarity; ``kind`` is
    ``"burst"`` for shots taken within ``burst_seconds`` of each other (by EXIF time).
    ``members`` holds the kept member first, then the others by similarity to the medoid.
    """

    id: int
    kind: GroupKind
    tier: Tier
    similarity: float
    members: tuple[Member, ...]

    @property
    def kept(self) -> Member:
        return self.members[0]

    @property
    def others(self) -> tuple[Member, ...]:
        """The members not kept: what an action acts on (reference members excepted)."""
        return tuple(m for m in self.members if not m.keep)


@dataclass(frozen=True)
class DuplicateSettings:
    """How duplicates are found and which member is kept; see :meth:`Collection.duplicates`.

    Raises:
        InvalidArgument: a value out of range, an unknown tier or keep rule.
    """

    threshold: float | None = None
    fraction: float | None = None
    tiers: tuple[Tier, ...] = TIERS
    hash_bits: int | None = None
    perceptual_floor: float | None = None
    flips: bool = True
    keep: str = "largest"
    prefer: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    burst_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and self.fraction is not None:
            raise InvalidArgument("give a threshold or a fraction, not both")
        if self.threshold is not None and not (-1.0 <= self.threshold <= 1.0):
            raise InvalidArgument(f"threshold {self.threshold} is a cosine similarity: use a value in [-1, 1], "
                                  "e.g. 0.9")
        if self.fraction is not None and not (0.0 < self.fraction <= 1.0):
            raise InvalidArgument(f"fraction {self.fraction} is a share of pairs: use a value in (0, 1], e.g. 0.01")
        tiers = tuple(self.tiers)
        bad = [t for t in tiers if t not in TIERS]
        if bad or not tiers:
            raise InvalidArgument(f"unknown tier(s) {bad or tiers!r}: use some of {', '.join(TIERS)}")
        object.__setattr__(self, "tiers", tuple(t for t in TIERS if t in tiers))
        if self.hash_bits is not None and not 0 <= self.hash_bits <= 32:
            raise InvalidArgument(f"hash_bits {self.hash_bits}: use 0..32 (bits of a 64-bit hash), e.g. 6")
        if self.perceptual_floor is not None and not (-1.0 <= self.perceptual_floor <= 1.0):
            raise InvalidArgument(f"perceptual_floor {self.perceptual_floor} is a cosine similarity: use a value "
                                  "in [-1, 1], e.g. 0.8")
        if self.keep not in KEEP_RULES:
            raise InvalidArgument(f"unknown keep rule {self.keep!r}: use one of {', '.join(KEEP_RULES)}")
        if self.burst_seconds is not None and not (0 <= self.burst_seconds < math.inf):
            raise InvalidArgument(f"burst_seconds {self.burst_seconds}: use a number of seconds >= 0")
        object.__setattr__(self, "prefer", tuple(user_path(p) for p in self.prefer))
        object.__setattr__(self, "reference", tuple(user_path(p) for p in self.reference))


@dataclass(frozen=True)
class SimilarityHistogram:
    """How similar each item's nearest neighbour is: what a threshold is chosen from.

    ``counts[i]`` items have their nearest neighbour's similarity in ``[edges[i], edges[i+1])``
    (the last bin includes 1.0; exact copies count as 1.0); ``pairs_above[i]`` is how many
    items have it at or above ``edges[i]``.
    """

    edges: list[float]
    counts: list[int]
    default_threshold: float
    pairs_above: list[int] = field(default_factory=list)


def _under(path: str, folders: Sequence[str]) -> int | None:
    """Index of the first folder ``path`` lies in (or is), else None."""
    for i, folder in enumerate(folders):
        if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
            return i
    return None


def _when(m: Member) -> float:
    return m.traits.taken if m.traits is not None and m.traits.taken is not None else m.item.mtime_ns / 1e9


def _rule_key(rule: str, m: Member) -> tuple[Any, ...]:
    """Sort key of a member under a keep rule: the smallest key is kept."""
    item, traits = m.item, m.traits
    pixels = (item.width or 0) * (item.height or 0)
    if rule == "largest":
        return (-pixels, -item.size)
    if rule == "oldest":
        return (_when(m),)
    if rule == "newest":
        return (-_when(m),)
    if rule == "most-metadata":
        return (-(traits.exif_tags if traits else 0), -item.size)
    if rule == "shortest-path":
        return (len(item.path), item.path)
    return (-(traits.sharpness if traits else 0.0), -pixels)  # sharpest


def choose_kept(members: Sequence[Member], settings: DuplicateSettings, *, burst: bool = False) -> tuple[Member, ...]:
    """``members`` with ``keep`` and ``reference`` set, the kept one first.

    Order of precedence: a member under a reference folder (the first such folder), then one
    under a preferred folder (the first such folder), then the keep rule (``sharpest`` for a
    burst group unless another rule was asked for), then the lowest item id.
    """
    rule = "sharpest" if burst and settings.keep == "largest" else settings.keep
    refs = [_under(m.item.path, settings.reference) if settings.reference else None for m in members]

    def key(i: int) -> tuple[Any, ...]:
        m, ref = members[i], refs[i]
        pref = _under(m.item.path, settings.prefer) if settings.prefer else None
        return (ref is None, ref or 0, pref is None, pref or 0, *_rule_key(rule, m), m.item.id)

    kept = min(range(len(members)), key=key)
    out = []
    for i, m in enumerate(members):
        keep, reference = i == kept or refs[i] is not None, refs[i] is not None
        out.append(m if (m.keep, m.reference) == (keep, reference) else replace(m, keep=keep, reference=reference))
    # The kept one first, then other reference members; otherwise in the order given.
    order = sorted(range(len(out)), key=lambda i: (i != kept, not out[i].keep))
    return tuple(out[i] for i in order)
