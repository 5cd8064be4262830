"""Faces: benchmarks of the people pipeline (issue 14). One sub-command so far:

``regroup`` (synthetic)
    ``--n`` (100,000) face-descriptor-like 128-d float32 vectors (``tests/explore/explore_data.py``
    ``face_like``: not unit length; a person's faces ~``--within`` (0.4) apart, two people's
    centres ~``--between`` (1.0), on either side of dlib's 0.6; ``--within 0.6 --between 0.5``
    is a hard case, half of a person's pairs beyond the threshold) of people with log-normal
    sizes (median ~12 faces, 1 to 2,000; ~4,100 people at 100,000 faces, ~3,700 of them with
    >= 3 faces), in a seeded random order.
    ``lookalike.explore.people.group_faces`` regroups them all (threshold 0.6, min_faces 3;
    above 20,000 faces the neighbours come from a FAISS IVF index, see that module), timed
    from the array in memory to the labels, FAISS on every core.

    Quality against the planted people: the adjusted Rand index (scikit-learn) over the faces
    of people with >= min_faces faces, each unassigned face counted as a person of its own (so
    an unassigned face costs); the share of those faces left unassigned; the share of faces of
    smaller people that were assigned (they should not be); people found vs people planted.

    python benchmarks/bench_faces.py regroup [--n 100000] [--seed 0] [--threshold 0.6] [--min-faces 3]
        [--within 0.4] [--between 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "explore"))

from explore_data import face_like  # noqa: E402

from lookalike.explore.people import group_faces  # noqa: E402


def planted_sizes(n: int, seed: int) -> np.ndarray:
    """People's face counts, log-normal (median e^2.5 ~ 12, sigma 1.2), clipped to 1..2,000, summing to ~n."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(np.round(rng.lognormal(2.5, 1.2, max(16, n // 4))), 1, 2000).astype(np.int64)
    cut = int(np.searchsorted(np.cumsum(sizes), n))
    return sizes[: max(cut, 1)]


def regroup(args: argparse.Namespace) -> None:
    """Time group_faces on planted people and score the result against them."""
    from sklearn.metrics import adjusted_rand_score

    sizes = planted_sizes(args.n, args.seed)
    x, truth = face_like(sizes, seed=args.seed, within=args.within, between=args.between)
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {load:.2f}")
    print(f"faces: {len(x):,} x {x.shape[1]} float32; planted people: {len(sizes):,} "
          f"({int((sizes >= args.min_faces).sum()):,} with >= {args.min_faces} faces); "
          f"within {args.within}, between {args.between}")
    t0 = time.perf_counter()
    labels = group_faces(x, threshold=args.threshold, min_faces=args.min_faces, seed=args.seed)
    elapsed = time.perf_counter() - t0
    big = sizes[truth] >= args.min_faces
    counted = np.where(labels[big] >= 0, labels[big], -1 - np.arange(int(big.sum())))
    ari = adjusted_rand_score(truth[big], counted)
    print(f"regroup time: {elapsed:.2f} s ({len(x) / elapsed:,.0f} faces/s)")
    print(f"people found: {len(np.unique(labels[labels >= 0])):,}")
    print(f"adjusted Rand index (people with >= {args.min_faces} faces): {ari:.4f}")
    print(f"their faces left unassigned: {float((labels[big] < 0).mean()):.4f}")
    print(f"faces of smaller people assigned: {float((labels[~big] >= 0).mean()) if (~big).any() else 0.0:.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("regroup", help="time regrouping synthetic clustered 128-d descriptors")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--min-faces", type=int, default=3)
    p.add_argument("--within", type=float, default=0.4, help="typical distance of two faces of one person")
    p.add_argument("--between", type=float, default=1.0, help="typical distance of two people's centres")
    p.set_defaults(run=regroup)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
