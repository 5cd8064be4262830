"""Which images calibrate an int8 model: a deterministic sample of the collection's own.

Static int8 quantization measures each layer's activation range on real inputs; the ranges
should come from the images the model will embed, not generic ones. The sample is spread
evenly over the sources' items in their (sorted) order, so the same folder always gives the
same sample, and with it the same calibration digest and the same int8 model.

Only items readable here take part: local files and archive members. URLs are not fetched
for calibration (a source of URLs only needs ``calibration=`` images given explicitly).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..errors import InvalidArgument
from ..images.decode import ImageSource
from ..sources.base import Source, SourceItem, is_url
from ..sources.folder import FolderSource

__all__ = ["calibration_sample", "default_int8_sample", "CALIBRATION_IMAGES", "INT8_DEFAULT_FROM", "SCAN_LIMIT"]

#: A few hundred images: past this the activation ranges hardly move (see docs/benchmarks.md),
#: and every one of them is decoded before the first embedding.
CALIBRATION_IMAGES = 300
#: New collections of at least this many images default to int8 (:func:`default_int8_sample`).
INT8_DEFAULT_FROM = 1_000
#: The models whose int8 speed and quality were measured here (docs/benchmarks.md). Others
#: (transformer towers especially: the bias correction covers convolutions only) stay fp32
#: unless --precision int8 is asked for.
INT8_DEFAULT_MODELS = ("lite",)
#: Items looked at in sources that are not folders (tables, shards, file lists), which are
#: read in order rather than listed up front: the sample spreads over the first this many.
SCAN_LIMIT = 20_000


def calibration_sample(sources: Sequence[Source], n: int = CALIBRATION_IMAGES) -> list[ImageSource]:
    """Up to ``n`` images of ``sources`` (paths, or bytes for archive members), evenly spread.

    Raises:
        InvalidArgument: the sources hold no image readable here (only URLs, or nothing); the
            message says how to give calibration images instead.
    """
    if n < 1:
        raise InvalidArgument(f"the calibration sample needs at least one image, not {n}")
    chosen, _ = _spread((item for source in sources for item in _local_items(source)), n)
    if not chosen:
        labels = ", ".join(s.label for s in sources) or "nothing"
        raise InvalidArgument(
            f"int8 needs calibration images, and {labels} has none readable here (URLs are not fetched to "
            "calibrate). Give a folder of a few hundred typical images: --calibration FOLDER "
            "(library: calibration=[paths])."
        )
    return [item.data if item.data is not None else item.path for item in chosen]


def default_int8_sample(sources: Sequence[Source], model_id: str) -> list[ImageSource] | None:
    """The calibration sample when a new collection of ``model_id`` over ``sources`` should be
    int8 by default, else None (it stays fp32).

    int8 is the default where it was measured to pay without costing quality (lite: about
    2.5-3x the fp32 speed, kNN@1 on labelled clip art no lower; docs/benchmarks.md) and where the
    collection is large enough for the one-off calibration (about 20 s) to pay back.
    """
    if model_id not in INT8_DEFAULT_MODELS:
        return None
    chosen, seen = _spread((item for source in sources for item in _local_items(source)), CALIBRATION_IMAGES)
    if seen < INT8_DEFAULT_FROM:
        return None
    return [item.data if item.data is not None else item.path for item in chosen]


def _local_items(source: Source) -> Iterator[SourceItem]:
    """The source's items that can be decoded without the network, in source order."""
    if isinstance(source, FolderSource):
        if not source.found:
            source.scan(lambda path, reason: None)
        for f in source.found:
            yield SourceItem(f.path, f.size, f.mtime_ns)
        return
    seen = 0
    for part in source.parts(lambda path, reason: None):
        for item in part.read(lambda path, reason: None):
            if item.data is not None or not is_url(item.path):
                yield item
            seen += 1
            if seen >= SCAN_LIMIT:
                return


def _spread(items: Iterable[SourceItem], n: int) -> tuple[list[SourceItem], int]:
    """About ``n`` items spread evenly over a stream of unknown length, holding at most ``2n``,
    and how many items the stream had.

    Every ``stride``-th item is kept; when ``2n`` are kept, every other one is dropped and the
    stride doubles, so the kept items stay evenly spaced over everything seen so far (and an
    archive member's bytes are only held while it may still be chosen).
    """
    kept: list[SourceItem] = []
    stride = 1
    seen = 0
    for position, item in enumerate(items):
        seen = position + 1
        if position % stride:
            continue
        kept.append(item)
        if len(kept) == 2 * n:
            kept = kept[::2]
            stride *= 2
    if len(kept) <= n:
        return kept, seen
    step = len(kept) / n
    return [kept[int(i * step)] for i in range(n)], seen
