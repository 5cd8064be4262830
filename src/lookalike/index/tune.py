"""Choosing and tuning an index by measured recall on the collection's own vectors.

The procedure, faiss-contrib style (approximate results are always checked against an
exact reference):

1. hold out two disjoint random samples of rows, the *selection* queries (``n_queries``)
   and the *confirmation* queries (``n_confirm``); candidates are built on the other rows,
   so a query is a new vector, as a user's query is, and recall@k is measured with exactly
   the k-result searches users make. A query's exact top-k among the built rows is its
   ground truth. ``text_queries`` (for a model with a text tower, the embeddings of the
   shipped :mod:`~lookalike.index.prompts`) are split into two halves the same way;
2. walk the candidate configurations from the smallest memory footprint to the largest;
   for each, build it once, then raise its search effort (nprobe, efSearch, re-rank depth)
   along each line of :func:`effort_lines` on the selection queries until the setting meets
   the target, or gains less than half a point a step, or gets slower than a setting that
   met it (within the latency budget, or confirmed over it: the fallback below);
3. *confirm* the fastest setting that met it within the latency budget on the confirmation
   queries; if it misses there, step up its effort along its line (the next settings,
   measured on both sets) until one passes both or the line ends, then try the build's
   next fastest setting, then the next configuration;
4. the held-out rows are added to the chosen index, which then covers every row.

Why confirm: some fifty settings are measured on the same selection queries and the fastest
that passes is kept, so the winner is, on average, one whose measurement came out lucky
(selection bias). The confirmation queries play no part in that choice: theirs is an
unbiased estimate of the recall on new queries. Both are reported.

The criterion: a setting *meets the target* on a query set when ``recall - z * SE`` is at or
above it, SE being the standard error of the per-query recalls and ``z = RECALL_Z =
1.645 * sqrt(2) ~ 2.33``, on every set (selection and confirmation, image-like and text).
The promise is about new queries: another independent sample of the same size should
measure at least the target in 95 % of cases (what "9 runs in 10" asks of a fresh check: at
95 % a run, 9 or more of 10 pass 91 % of the time). Two independent samples of one size
differ with standard error sqrt(2) SE, hence the margin. A one-SE margin (84 % one-sided)
only bounds the true recall; a setting passing right at it measures below the target on a
fresh sample of the same size about one time in four. Selection uses the same bar so that
it hands the confirmation a setting likely to pass there, the fastest of all lines, rather
than leave the confirmation to push one line further. The step-up looks at a few settings
on the confirmation set, along one line of rising effort (nearly monotone recall, strongly
correlated measurements), so the extra chance of a lucky pass is small.

Flat (exact) search is always a valid last resort, so the procedure cannot fail. When
nothing meets every budget, the answer is, in order: the fastest confirmed setting (latency
budget missed), else the best recall within the memory budget, else the smallest index;
``met_target`` is False and ``missed`` names what is missed: ``"recall"`` (image-like
queries), ``"text-recall"``, ``"latency"``, ``"memory"``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import IndexBuildError, InvalidArgument
from .candidates import candidate_specs, effort_lines, estimated_memory, spec_for
from .faiss_index import AnnIndex, IndexSpec
from .measure import (QUERY_SETS, RECALL_Z, HeldOut, Measurement, ground_truth, measure, query_truth,
                      split_held_out, split_queries, split_text_queries)
from .prompts import tuning_prompts

__all__ = ["Measurement", "TuneResult", "HeldOut", "DEFAULT_LATENCY_MS", "RECALL_Z", "QUERY_SETS", "split_queries",
           "split_held_out", "split_text_queries", "ground_truth", "query_truth", "measure", "candidate_specs",
           "auto_index", "spec_for", "effort_lines", "tuning_prompts"]

# The names these had when they lived here (tests and benchmarks use them).
_effort_lines = effort_lines
_estimated_memory = estimated_memory

#: The default median single-query latency budget: what a server answering several users
#: at once on one core per query needs to feel instant. ``None`` lifts it (memory alone
#: then decides, and at a million vectors the smallest index is several times slower).
DEFAULT_LATENCY_MS = 2.0


@dataclass
class TuneResult:
    """The chosen index, how it measured, and every measurement taken on the way.

    ``chosen`` is the chosen setting measured on the selection queries, ``confirmed`` on the
    independent confirmation queries (the unbiased figure); ``text`` and ``text_confirmed``
    the same on the text queries (None without them). ``tried`` lists every measurement in
    the order taken, each tagged with its ``query_set``. ``missed`` names what the choice
    does not meet (``"recall"``, ``"text-recall"``, ``"latency"``, ``"memory"``); empty when
    ``met_target``.
    """

    index: AnnIndex
    chosen: Measurement
    tried: list[Measurement] = field(default_factory=list)
    met_target: bool = True
    missed: tuple[str, ...] = ()
    confirmed: Measurement | None = None
    text: Measurement | None = None
    text_confirmed: Measurement | None = None

    def record(self) -> dict[str, Any]:
        """The measurements as a JSON-ready dict, as a collection's manifest stores them."""
        other = {"confirmed": self.confirmed, "text": self.text, "text_confirmed": self.text_confirmed}
        return {"measured": self.chosen.to_dict(), **{k: m and m.to_dict() for k, m in other.items()},
                "met_target": self.met_target, "missed": list(self.missed)}


@dataclass(frozen=True)
class _QuerySet:
    """Queries of one set (one of QUERY_SETS) with their exact top-k rows (-1 pads)."""

    name: str
    queries: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class _Build:
    """One built configuration; ``memory`` is its size with the held-out rows added too."""

    index: AnnIndex
    build_s: float
    memory: int


@dataclass
class _Setting:
    """One search setting (``line[step]``) of a build, and its measurements so far."""

    build: _Build
    line: list[IndexSpec]
    step: int
    index: AnnIndex
    select: Measurement
    text: Measurement | None = None
    confirm: Measurement | None = None
    text_confirm: Measurement | None = None

    @property
    def p50_ms(self) -> float:  # latency is judged on the selection queries
        return self.select.p50_ms

    @property
    def score(self) -> float:
        """The selection recall that limits it: the lower of image-like and text."""
        return min(self.select.recall, 1.0 if self.text is None else self.text.recall)


class _Tuner:
    """The state of one :func:`auto_index` run; the module docstring gives the procedure."""

    def __init__(self, vectors: np.ndarray, held: HeldOut, text: tuple[np.ndarray, np.ndarray] | None, *,
                 recall: float, k: int, memory_bytes: int | None, latency_ms: float | None, seed: int,
                 train_size: int, on_measure: Callable[[Measurement], None] | None,
                 builder: Callable[[IndexSpec, np.ndarray], AnnIndex] | None = None) -> None:
        self.vectors, self.held, self.recall = vectors, held, recall
        self.builder = builder
        self.k = max(1, min(k, len(held.build)))
        self.memory_bytes, self.latency_ms = memory_bytes, latency_ms
        self.seed, self.train_size, self.on_measure = seed, train_size, on_measure
        self.select = self._held_set("select", held.select)
        self.confirm = self._held_set("confirm", held.confirm)
        self.text_select: _QuerySet | None = None
        self.text_confirm: _QuerySet | None = None
        if text is not None:
            self.text_select = _QuerySet("text-select", text[0], query_truth(vectors, held.build, text[0], self.k))
            self.text_confirm = _QuerySet("text-confirm", text[1], query_truth(vectors, held.build, text[1], self.k))
        self.tried: list[Measurement] = []
        self.reached: _Setting | None = None  # fastest confirmed within memory, over the latency budget
        self.best_effort: _Setting | None = None  # best selection recall within memory
        self.smallest: _Build | None = None  # smallest build over the memory budget

    def _held_set(self, name: str, rows: np.ndarray) -> _QuerySet:
        queries = np.ascontiguousarray(self.vectors[rows], dtype=np.float32)
        return _QuerySet(name, queries, ground_truth(self.vectors, self.held.build, rows, self.k))

    # ------------------------------------------------------------------ measuring
    def _measure(self, index: AnnIndex, queries: _QuerySet, build: _Build) -> Measurement:
        m = measure(index, self.vectors, queries.queries, queries.truth, self.k, build.build_s,
                    memory_bytes=build.memory, query_set=queries.name)
        self.tried.append(m)
        if self.on_measure is not None:
            self.on_measure(m)
        return m

    def _setting(self, build: _Build, line: list[IndexSpec], step: int) -> _Setting:
        """``line[step]`` of ``build``, measured on the selection queries (and text ones)."""
        effort = line[step]
        index = build.index.with_search_params(nprobe=effort.nprobe, ef_search=effort.ef_search,
                                               rerank=effort.rerank)
        s = _Setting(build, line, step, index, self._measure(index, self.select, build))
        if self.text_select is not None:
            s.text = self._measure(index, self.text_select, build)
        if self.best_effort is None or s.score > self.best_effort.score:
            self.best_effort = s
        return s

    def _confirm_measure(self, s: _Setting) -> None:
        s.confirm = self._measure(s.index, self.confirm, s.build)
        if self.text_confirm is not None:
            s.text_confirm = self._measure(s.index, self.text_confirm, s.build)

    def _meets(self, m: Measurement | None) -> bool:
        return m is not None and m.meets(self.recall)

    def _selected(self, s: _Setting) -> bool:
        return self._meets(s.select) and (self.text_select is None or self._meets(s.text))

    def _confirmed(self, s: _Setting) -> bool:
        return self._meets(s.confirm) and (self.text_confirm is None or self._meets(s.text_confirm))

    def _in_budget(self, s: _Setting) -> bool:
        return self.latency_ms is None or s.p50_ms <= self.latency_ms

    def _beaten(self, s: _Setting) -> bool:
        """Whether ``s`` is no faster than the confirmed fallback held (so over the budget)."""
        return self.reached is not None and s.p50_ms >= self.reached.p50_ms

    # ------------------------------------------------------------------ walking
    def _sweep(self, build: _Build) -> list[_Setting]:
        """Every line of efforts, walked as far as it can still win: the settings selected."""
        met: list[_Setting] = []
        for line in effort_lines(build.index.spec):
            previous: _Setting | None = None
            for step in range(len(line)):
                s = self._setting(build, line, step)
                if self._selected(s):
                    met.append(s)
                    break  # more effort on this line is only slower
                fastest = min((m.p50_ms for m in met if self._in_budget(m)), default=None)
                if fastest is not None and s.p50_ms >= fastest:
                    break  # already slower than a setting that met the target
                if self._beaten(s):
                    break  # slower than a confirmed fallback, and more effort only gets slower
                if previous is not None and s.score < previous.score + 0.005:
                    break  # saturated: doubling this knob gains less than half a point
                previous = s
        return met

    def _step_up(self, s: _Setting) -> _Setting | None:
        """The next setting after ``s`` on its effort line that meets the target on the
        selection queries; None when the line ends (or gets slower than the fallback held)."""
        for step in range(s.step + 1, len(s.line)):
            current = self._setting(s.build, s.line, step)
            if self._selected(current):
                return current
            if self._beaten(current):
                return None
        return None

    def _choose(self, met: list[_Setting]) -> _Setting | None:
        """The fastest confirmed setting within the latency budget, or None.

        Selected settings are confirmed fastest first; one that misses is replaced by its
        line's next selected setting, which takes its place by speed. One confirmed over
        the budget is kept as the fallback ``reached``.
        """
        queue = sorted(met, key=lambda m: m.p50_ms)
        while queue:
            s = queue.pop(0)
            if self._beaten(s):
                break  # the rest are slower than a confirmed fallback already held
            self._confirm_measure(s)
            if self._confirmed(s):
                if self._in_budget(s):
                    return s
                self.reached = s
                continue
            stepped = self._step_up(s)
            if stepped is not None:
                queue.append(stepped)
                queue.sort(key=lambda m: m.p50_ms)
        return None

    def _build(self, spec: IndexSpec) -> _Build | None:
        t0 = time.perf_counter()
        try:
            if self.builder is not None:
                built = self.builder(spec, self.held.build)
            else:
                built = AnnIndex.build(spec, self.vectors, self.held.build, seed=self.seed, train_size=self.train_size)
        except (ValueError, RuntimeError):
            return None  # e.g. too few vectors to train this many cells
        build_s = time.perf_counter() - t0
        # Serialising measures the index (once per build, not per effort); the held-out rows it
        # will also hold are added at their estimated cost, so that they do not overrun the budget.
        n_all = len(self.held.build) + len(np.union1d(self.held.select, self.held.confirm))
        d = self.vectors.shape[1]
        extra = estimated_memory(spec, n_all, d) - estimated_memory(spec, len(self.held.build), d)
        return _Build(built, build_s, built.memory_bytes() + extra)

    def run(self, specs: list[IndexSpec]) -> _Setting:
        """The choice: confirmed within every budget if any is, else the fallbacks in order."""
        for spec in specs:
            build = self._build(spec)
            if build is None:
                continue
            if self.memory_bytes is not None and build.memory > self.memory_bytes:
                if self.smallest is None or build.memory < self.smallest.memory:
                    self.smallest = build
                continue
            choice = self._choose(self._sweep(build))
            if choice is not None:
                return choice
        if self.reached is None and self.best_effort is None and self.smallest is not None:
            # Nothing fits the memory budget: rather than fail (the procedure promises an
            # answer), report the smallest index, searched as well as it can be.
            choice = self._choose(self._sweep(self.smallest))
            if choice is not None:
                return choice
        fallback = self.reached or self.best_effort
        if fallback is None:
            tried = ", ".join(s.label() for s in specs) or "nothing"
            raise IndexBuildError(f"no index configuration could be built for these {len(self.held.build)} "
                                  f"{self.vectors.shape[1]}-d vectors (tried {tried}); search exactly, or add vectors")
        return fallback

    def finish(self, s: _Setting, restore_held_out: bool) -> TuneResult:
        """The result for choice ``s``: confirmed (if not yet), held-out rows added back."""
        if s.confirm is None:
            self._confirm_measure(s)
        missed = []
        if not (self._meets(s.select) and self._meets(s.confirm)):
            missed.append("recall")
        if self.text_select is not None and not (self._meets(s.text) and self._meets(s.text_confirm)):
            missed.append("text-recall")
        if not self._in_budget(s):
            missed.append("latency")
        if self.memory_bytes is not None and s.build.memory > self.memory_bytes:
            missed.append("memory")
        index = s.index
        measured = [s.select, s.confirm, s.text, s.text_confirm]
        held = np.union1d(self.held.select, self.held.confirm)
        missing = np.setdiff1d(held, index.rows) if restore_held_out else np.empty(0, np.int64)
        if len(missing):
            added = index.added_since_training
            index.add(self.vectors, missing)
            index.added_since_training = added  # part of the collection it was built for
            memory = index.memory_bytes()
            measured = [None if m is None else replace(m, memory_bytes=memory) for m in measured]
        chosen, confirmed, text, text_confirmed = measured
        assert chosen is not None
        return TuneResult(index, chosen, self.tried, not missed, tuple(missed), confirmed, text, text_confirmed)


def auto_index(
    vectors: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    recall: float = 0.95,
    k: int = 10,
    memory_bytes: int | None = None,
    latency_ms: float | None = DEFAULT_LATENCY_MS,
    n_queries: int = 500,
    n_confirm: int | None = None,
    text_queries: np.ndarray | None = None,
    candidates: Iterable[IndexSpec] | None = None,
    seed: int = 0,
    train_size: int = 100_000,
    restore_held_out: bool = True,
    on_measure: Callable[[Measurement], None] | None = None,
    builder: Callable[[IndexSpec, np.ndarray], AnnIndex] | None = None,
) -> TuneResult:
    """Build the cheapest index whose ``recall``@``k`` is confirmed within the budgets; see
    the module docstring.

    ``n_queries`` / ``n_confirm`` (default: the same): rows held out as selection and as
    confirmation queries (:func:`split_held_out` with the same ``seed`` gives them).
    ``text_queries``: ``(T, d)`` float32 L2-normalised embeddings of
    :func:`~lookalike.index.prompts.tuning_prompts` by the collection's model, for models
    with a text tower (computed by the caller); a setting must then meet the target on them
    too. ``memory_bytes`` bounds the index's RAM (re-ranking reads float32 vectors from the
    memory-mapped vector file, which the OS pages in and out); ``latency_ms`` the median
    single-query latency on one thread (``None``: no bound). ``restore_held_out=False``
    leaves the held-out rows out of the returned index, for benchmarks that measure on it
    further. ``on_measure`` is called with every measurement as it is taken. ``builder(spec,
    rows)`` builds a candidate over those rows instead of :meth:`AnnIndex.build` (the on-disk
    build of :mod:`~lookalike.index.ondisk` passes its own).

    Raises:
        InvalidArgument: a target, budget, count or ``text_queries`` array out of range.
        IndexBuildError: no candidate configuration could be built on these vectors.
    """
    rows = np.arange(vectors.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    _check_args(vectors, recall, k, memory_bytes, latency_ms, n_queries, n_confirm)
    text = None if text_queries is None else split_text_queries(text_queries, vectors.shape[1], seed)
    held = split_held_out(rows, n_queries, n_confirm, seed)
    tuner = _Tuner(vectors, held, text, recall=recall, k=k, memory_bytes=memory_bytes, latency_ms=latency_ms,
                   seed=seed, train_size=train_size, on_measure=on_measure, builder=builder)
    specs = list(candidates) if candidates is not None else candidate_specs(
        len(rows), vectors.shape[1], train_size=train_size)
    return tuner.finish(tuner.run(specs), restore_held_out)


def _check_args(vectors: np.ndarray, recall: float, k: int, memory_bytes: int | None, latency_ms: float | None,
                n_queries: int, n_confirm: int | None) -> None:
    if vectors.ndim != 2 or vectors.shape[0] < 1:
        raise InvalidArgument(f"vectors must be a non-empty (N, d) array, got shape {vectors.shape}")
    if not 0.0 < recall <= 1.0:
        raise InvalidArgument(f"recall target must be in (0, 1], e.g. 0.95, not {recall}")
    if k < 1:
        raise InvalidArgument(f"k (results per query) must be at least 1, not {k}")
    if memory_bytes is not None and memory_bytes <= 0:
        raise InvalidArgument(f"memory budget must be positive bytes (or None for none), not {memory_bytes}")
    if latency_ms is not None and latency_ms <= 0:
        raise InvalidArgument(f"latency budget must be positive milliseconds (or None for none), not {latency_ms}")
    for name, n in (("n_queries", n_queries), ("n_confirm", n_confirm)):
        if n is not None and n < 1:
            raise InvalidArgument(f"{name} must be at least 1 held-out query, not {n}")
