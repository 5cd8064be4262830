"""Synthetic embeddings with known structure, for the explore tests and measure_layout.py.

Real image embeddings are unit vectors whose subjects form clusters inside broader themes,
with some continuous variation (pose, light, style). These generators plant exactly that,
so a test can say what a correct answer is.
"""

from __future__ import annotations

import numpy as np


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def planted(n: int, k: int, *, d: int = 512, spread: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around ``k`` random unit centres; ``(vectors, true cluster)``.

    ``spread`` is the noise norm relative to the centre's (0.6: a member's cosine to its
    centre ~0.86, to another centre ~0), i.e. well separated.
    """
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((k, d)))
    truth = np.arange(n) % k  # every cluster gets its share, even for small n
    rng.shuffle(truth)
    noise = spread * _unit(rng.standard_normal((n, d)))
    return _unit(centres[truth] + noise), truth


def themed(n: int, *, d: int = 512, themes: int = 20, subjects: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``themes`` x ``subjects`` nested clusters: same subject cosine ~0.4, same theme ~0.2,
    else ~0; ``(vectors, subject id)`` (theme = subject // subjects)."""
    rng = np.random.default_rng(seed)
    theme = _unit(rng.standard_normal((themes, d)))
    subject = _unit(np.repeat(theme, subjects, axis=0) + _unit(rng.standard_normal((themes * subjects, d))))
    truth = rng.integers(0, themes * subjects, n)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        t = truth[start : start + 100_000]
        x[start : start + len(t)] = _unit(subject[t] + 1.2 * _unit(rng.standard_normal((len(t), d))))
    return x, truth


def mixed(n: int, *, d: int = 512, curves: int = 40, seed: int = 0) -> np.ndarray:
    """Half :func:`themed` clusters, half points along ``curves`` smooth random curves, shuffled.

    The curves give a map something to get right *inside* a group (local order), which
    clusters alone do not: well-separated clusters score near-perfect trustworthiness anyway.
    """
    rng = np.random.default_rng(seed + 1)
    clusters, _ = themed(n - n // 2, d=d, seed=seed)
    m = n // 2
    freqs = rng.uniform(0.5, 3.0, (curves, 8))
    basis = rng.standard_normal((curves, 8, d)).astype(np.float32) / np.sqrt(d)
    offsets = _unit(rng.standard_normal((curves, d)))
    curve = rng.integers(0, curves, m)
    t = rng.uniform(0, 2 * np.pi, m).astype(np.float32)
    along = np.empty((m, d), dtype=np.float32)
    for start in range(0, m, 50_000):
        c, tt = curve[start : start + 50_000], t[start : start + 50_000]
        w = np.sin(freqs[c] * tt[:, None])
        p = offsets[c] + 2.0 * np.einsum("kj,kjd->kd", w, basis[c])
        p += 0.15 * rng.standard_normal((len(c), d)).astype(np.float32) / np.sqrt(d)
        along[start : start + len(c)] = _unit(p)
    x = np.concatenate([clusters, along])
    return x[rng.permutation(n)]


def face_like(
    sizes: list[int] | np.ndarray, *, d: int = 128, seed: int = 0, within: float = 0.4, between: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Face-descriptor-like vectors: one person per entry of ``sizes`` with that many faces;
    ``(vectors, person)`` in a seeded random order.

    Like dlib's descriptors they are not unit length and are compared by Euclidean distance:
    two people's centres are ~``between`` apart, one person's faces ~``within`` from each other
    (the defaults, 1.0 and 0.4, put them on both sides of dlib's 0.6 threshold with a wide margin).
    """
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes, dtype=np.int64)
    centres = rng.standard_normal((len(sizes), d)).astype(np.float32) * (between / np.sqrt(2 * d))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(truth)
    x = np.empty((len(truth), d), dtype=np.float32)
    for start in range(0, len(truth), 100_000):
        t = truth[start : start + 100_000]
        noise = rng.standard_normal((len(t), d)).astype(np.float32) * (within / np.sqrt(2 * d))
        x[start : start + len(t)] = centres[t] + noise
    return x, truth
