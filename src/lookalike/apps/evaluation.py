"""``lookalike evaluate``: compare embedding models on the user's own labelled images.

For each model: kNN@1, recall@5/10 and mAP (leave-one-out, :mod:`.evaluate`), text->image
mAP with the label names as queries when the model has a text tower, and the speed and peak
memory measured when it embedded the images. Vectors come through :class:`EmbeddingCache`,
so a re-run (or one with one more model) embeds only what it has not seen. ``histogram`` is
the colour-histogram baseline every learned model should beat.

By default only the held-out part of the seeded split (:mod:`.splits`) is scored: the images
a head trained with the same seed never saw, so base models and heads compare fairly.

Speed is images per second over decoding and the forward pass, measured when the model last
embedded a batch of these images. Peak memory is the process's resident memory above its
level just before the model was loaded: weights, activations and decode buffers (the first
model of a backend also counts importing that backend's library). A fully cached model shows
the figures of the run that embedded its images.
"""

from __future__ import annotations

import gc
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgument
from ..models.names import HEAD_MARK, parse_model_name
from ..progress import ProgressCallback, ProgressEvent
from .embed_cache import Embedded, EmbeddingCache, rss_mb
from .evaluate import colour_histogram, image_retrieval, text_retrieval_map
from .labelled import LabelledSet, load_labelled
from .splits import SplitSettings, split_labelled

__all__ = ["ModelResult", "Confusion", "EvaluationReport", "evaluate", "HISTOGRAM", "parse_models"]

#: The name of the colour-histogram baseline in ``--models``.
HISTOGRAM = "histogram"
#: Keys the baseline's cache: bump when :func:`colour_histogram` changes what it computes.
_HISTOGRAM_KEY = "histogram-rgb8-v1"
ON_CHOICES = ("held-out", "all")


@dataclass(frozen=True)
class ModelResult:
    """One model's scores on the evaluated images, and what embedding them cost."""

    name: str
    model_id: str
    dim: int
    knn1: float
    recall5: float
    recall10: float
    map: float
    text_map: float | None
    images_per_second: float | None
    peak_memory_mb: float | None
    embedded: int
    cached: int
    n: int
    #: Head models: how many evaluated images the head was fitted on (0 for other models).
    fitted_on: int = 0
    #: The model's fingerprint (the cache key of its vectors); the baseline's cache key.
    fingerprint: str = ""

    def __str__(self) -> str:
        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        return (f"{self.name}: kNN@1 {self.knn1:.3f}  R@5 {self.recall5:.3f}  R@10 {self.recall10:.3f}  "
                f"mAP {self.map:.3f}  text mAP {num(self.text_map, '.3f')}  "
                f"{num(self.images_per_second, '.1f')} img/s  peak {num(self.peak_memory_mb, '.0f')} MB  "
                f"(cached {self.cached}, embedded {self.embedded})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Confusion:
    """kNN@1 predictions of one model: ``counts[i, j]`` = images of ``labels[i]`` whose nearest
    neighbour has ``labels[j]``."""

    model: str
    labels: tuple[str, ...]
    counts: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "labels": list(self.labels), "counts": self.counts.tolist()}


@dataclass(frozen=True)
class EvaluationReport:
    """Every model's :class:`ModelResult` on one labelled set, and how it was split."""

    source: str
    on: str
    seed: int
    depth: int
    images: int
    labels: tuple[str, ...]
    split: dict[str, int]
    held_out_labels: tuple[str, ...]
    results: tuple[ModelResult, ...]
    confusion: Confusion | None
    warnings: tuple[str, ...] = field(default=())

    @property
    def best(self) -> ModelResult | None:
        """The model with the highest mAP (the first one listed on a tie)."""
        return max(self.results, key=lambda r: r.map, default=None)

    def __str__(self) -> str:
        head = (f"{self.images:,} {self.on} images of {len(self.labels)} labels (seed {self.seed}), "
                f"{len(self.results)} model(s):")
        lines = [head] + [f"  {r}" for r in self.results] + [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what ``--json`` writes)."""
        best = self.best
        return {
            "source": self.source, "on": self.on, "seed": self.seed, "depth": self.depth,
            "images": self.images, "labels": list(self.labels), "split": dict(self.split),
            "held_out_labels": list(self.held_out_labels), "best": best.name if best else None,
            "results": [r.to_dict() for r in self.results],
            "confusion": self.confusion.to_dict() if self.confusion is not None else None,
            "warnings": list(self.warnings),
        }


def parse_models(models: str | Sequence[str]) -> list[str]:
    """Model names from ``"a,b"`` or a list, checked before anything loads (a typo costs nothing).

    Raises:
        InvalidArgument: no model, or one named twice.
        UnknownModel: a name that does not parse.
    """
    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    if not names:
        raise InvalidArgument("no model to evaluate: give --models as a comma-separated list, e.g. lite,histogram")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"--models names a model twice ({', '.join(names)}); list each once.")
    for name in names:
        if name != HISTOGRAM:
            parse_model_name(name)
    return names


def evaluate(source: str | os.PathLike[str] | LabelledSet, models: str | Sequence[str], *, depth: int = 1,
             seed: int = 0, on: str = "held-out", cache: EmbeddingCache | None = None, batch_size: int = 32,
             device: str | None = None, progress: ProgressCallback | None = None) -> EvaluationReport:
    """Score ``models`` on the labelled images at ``source``.

    Args:
        source: a labelled folder (label = sub-folder at ``depth``), a CSV of path,label, or a
            :class:`LabelledSet` already loaded.
        models: model names (``lite``, ``timm:...``, ``BASE+head:DIR``, ``histogram``), a list or
            a comma-separated string. Each is loaded, used, and freed before the next.
        seed: the split's seed (:class:`SplitSettings`); use the one a head was trained with.
        on: ``held-out`` scores the split's test and unseen-label images only (never fitted on
            by a head trained with this seed); ``all`` scores every image.
        cache: where vectors are kept (default: :class:`EmbeddingCache` in the cache folder).
        progress: receives ``scan`` events while files are hashed, then ``embed`` events with
            ``reason`` set to the model's name.

    Raises:
        InvalidArgument: a bad ``on``, a bad labelled set, or too few images to score.
        UnknownModel, ModelLoadError, MissingExtra: a model that cannot load.
        UnreadableImage: an image that cannot be decoded.
    """
    if on not in ON_CHOICES:
        raise InvalidArgument(f"--on {on!r} is not one of {', '.join(ON_CHOICES)}.")
    names = parse_models(models)
    data = source if isinstance(source, LabelledSet) else load_labelled(source, depth=depth, progress=progress)
    split = split_labelled(data, SplitSettings(seed=seed))
    chosen = list(split.held_out) if on == "held-out" else list(range(len(data)))
    subset, warnings = _scorable(data, chosen, on)
    cache = cache if cache is not None else EmbeddingCache()
    results: list[ModelResult] = []
    best: Confusion | None = None
    for i, name in enumerate(names):
        last = i == len(names) - 1  # no next model's peak to measure: no need to hand memory back
        result, confusion, warning = _evaluate_one(name, subset, cache, batch_size, device, progress, not last)
        if best is None or result.map > max(r.map for r in results):
            best = confusion  # the best model's, as :attr:`EvaluationReport.best` (first on a tie)
        results.append(result)
        warnings += [warning] if warning else []
    return EvaluationReport(data.source, on, seed, depth, len(subset), subset.labels, split.counts(),
                            split.held_out_labels, tuple(results), best, tuple(warnings))


def _scorable(data: LabelledSet, chosen: list[int], on: str) -> tuple[LabelledSet, list[str]]:
    """The images to score: leave-one-out needs two of a label, so lone images are left out."""
    counts: dict[str, int] = {}
    for i in chosen:
        counts[data.images[i].label] = counts.get(data.images[i].label, 0) + 1
    keep = [data.images[i] for i in chosen if counts[data.images[i].label] >= 2]
    warnings = []
    alone = sorted(label for label, n in counts.items() if n < 2)
    if alone:
        warnings.append(f"{len(alone)} label(s) have a single {on} image and were left out of the scores "
                        f"(first: {alone[0]!r}); add images, or use --on all.")
    subset = LabelledSet(tuple(keep), data.source)
    if len(subset.labels) < 2:
        raise InvalidArgument(f"only {len(keep)} {on} image(s) in '{data.source}' can be scored (each label needs "
                              "two, and two labels are needed); add images per label, or use --on all.")
    return subset, warnings


def _evaluate_one(name: str, data: LabelledSet, cache: EmbeddingCache, batch_size: int, device: str | None,
                  progress: ProgressCallback | None, free: bool) -> tuple[ModelResult, Confusion, str | None]:
    def tagged(event: ProgressEvent) -> None:
        if progress is not None:
            progress(ProgressEvent(event.kind, event.done, event.total, event.path, name))

    labels = data.label_of_each
    if name == HISTOGRAM:
        got = cache.embed_with(_HISTOGRAM_KEY, lambda paths: colour_histogram(paths), data,
                               progress=tagged, name=HISTOGRAM)
        model_id, text_map, fingerprint = HISTOGRAM, None, _HISTOGRAM_KEY
    else:
        got, model_id, text_map, fingerprint = _embed_model(name, data, cache, batch_size, device, tagged, free)
    vectors, labels = _readable(got, labels)
    scores = image_retrieval(vectors, labels, ks=(1, 5, 10))
    fitted = _fitted_on(name, data)
    result = ModelResult(name, model_id, int(vectors.shape[1]), scores.knn1, scores.recall_at[5],
                         scores.recall_at[10], scores.map, text_map, got.images_per_second, got.peak_memory_mb,
                         got.embedded, got.cached, scores.n, fitted, fingerprint)
    notes = []
    if got.failed:
        path, reason = got.failed[0]
        notes.append(f"{name}: {len(got.failed)} image(s) could not be read and were left out of its scores "
                     f"(first: {path}: {reason}); fix or remove them.")
    if fitted:
        notes.append(f"{name}: {fitted} of the {len(data)} scored images were used to fit its head, so its scores "
                     "are optimistic; score with --on held-out and the --seed the head was trained with.")
    return result, _confusion(name, vectors, labels, data.labels), " ".join(notes) or None


def _readable(got: Embedded, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """The vectors and labels of the images that could be read (a bad file is left out, not fatal)."""
    ok = got.ok
    if ok.all():
        return got.vectors, labels
    return got.vectors[ok], [label for label, keep in zip(labels, ok) if keep]


def _embed_model(name: str, data: LabelledSet, cache: EmbeddingCache, batch_size: int, device: str | None,
                 progress: ProgressCallback, free: bool) -> tuple[Embedded, str, float | None, str]:
    from ..models.registry import load_model  # torch loads only when a model is evaluated

    baseline = rss_mb()  # before loading: the peak then includes the weights
    model = load_model(name, device=device)
    try:
        got = cache.embed(model, data, batch_size=batch_size, progress=progress, baseline_mb=baseline)
        text_map = None
        if model.supports_text:
            queries = [label.replace("_", " ").replace("-", " ") for label in data.labels]
            text = model.encode_text(queries)
            vectors, labels = _readable(got, data.label_of_each)
            text_map = text_retrieval_map(text, list(data.labels), vectors, labels)
        return got, model.model_id, text_map, model.fingerprint()
    finally:
        del model
        if free:
            _free_memory()


def _free_memory() -> None:
    """Give a freed model's memory back, so the next model's peak is measured from a clean level."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed arenas otherwise
    except (OSError, AttributeError):
        pass  # not glibc: the next baseline is simply higher


def _fitted_on(name: str, data: LabelledSet) -> int:
    """How many of ``data``'s images the head of a ``BASE+head:DIR`` model was fitted on."""
    if HEAD_MARK not in name:
        return 0
    from ..models.head import load_head

    spec = parse_model_name(name)
    if spec.head is None:
        return 0
    trained = load_head(spec.head).train_hashes()
    return sum(im.hash in trained for im in data.images)


def _confusion(name: str, vectors: np.ndarray, labels: list[str], names: tuple[str, ...]) -> Confusion:
    v = np.asarray(vectors, dtype=np.float32)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argmax(sims, axis=1)
    index = {label: i for i, label in enumerate(names)}
    truth = np.array([index[x] for x in labels])
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (truth, truth[nearest]), 1)
    return Confusion(name, names, counts)
