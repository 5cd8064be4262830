"""A collection of any size with its map, clusters and labels already set, for the Map page's
tests and benchmark: no layout is fitted and no text model is run.

The items are :func:`tools.synthetic_collection.write_synthetic_collection`'s (made-up
paths, no files). Their map positions are Gaussian blobs, one per cluster, written straight
into the ``map_x``/``map_y``/``cluster``/``label`` columns with the ``clusters`` and
``label_set`` tables and the ``map``/``clustering``/``labelling`` settings, as
``Collection.map``, ``cluster`` and ``label`` would leave them; each item's vector lies near
its cluster's centre, so "similar to the selection" finds its neighbours.

    python tools/synthetic_map.py /tmp/big.lkl --points 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `tools` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from tools.synthetic_collection import write_synthetic_collection  # noqa: E402

__all__ = ["write_synthetic_map", "LABELS"]

#: The labels the synthetic items carry (cluster c gets LABELS[c % len(LABELS)]).
LABELS = ("cat", "dog", "beach", "receipt", "screenshot")
_BATCH = 100_000


def write_synthetic_map(path: Path, points: int, *, model: str, clusters: int = 24, dim: int | None = None,
                        seed: int = 0):  # noqa: ANN201 - a lookalike.Collection, open
    """A collection at ``path`` of ``points`` items in ``clusters`` clusters, with a map
    (method "umap", as if fitted), the clustering (k-means, k given) and zero-shot labels
    stored. ``model`` names the manifest's model (a tiny local one is enough: nothing is
    embedded); ``dim`` is its dimension (read from the model when None). Returns it open."""
    import lookalike
    from lookalike.store.explore_db import CLUSTERING, LABELLING, MAP

    rng = np.random.default_rng(seed)
    if dim is None:
        dim = lookalike.load_model(model, device="cpu").dim
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    assignment = rng.integers(0, clusters, size=points).astype(np.int32)
    vectors = np.empty((points, dim), dtype=np.float32)
    for start in range(0, points, _BATCH):  # in batches: 1,000,000 x 512 is 2 GB already
        part = centres[assignment[start:start + _BATCH]] + rng.normal(scale=0.6, size=(len(vectors[start:start + _BATCH]), dim))
        vectors[start:start + _BATCH] = part / np.linalg.norm(part, axis=1, keepdims=True)
    coll = write_synthetic_collection(path, vectors, model=model)

    # The map: one blob per cluster, of varied spread, around centres on a wide disc.
    angle = rng.uniform(0, 2 * np.pi, clusters)
    radius = np.sqrt(rng.uniform(0, 1, clusters)) * 12
    blob = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    spread = rng.uniform(0.4, 1.6, clusters)
    xy = (blob[assignment] + rng.normal(size=(points, 2)) * spread[assignment, None]).astype(np.float32)

    unit = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    db = coll._storage.db  # the storage layer is what this tool exists to drive
    ids = np.array([r[0] for r in db.conn.execute("SELECT id FROM items ORDER BY vec_row")], dtype=np.int64)
    label_of = np.array([LABELS[c % len(LABELS)] for c in range(clusters)])
    with coll._storage.write_lock(), db.transaction():
        for start in range(0, points, _BATCH):
            stop = min(points, start + _BATCH)
            db.conn.executemany(
                "UPDATE items SET map_x = ?, map_y = ?, cluster = ?, label = ?, label_score = 0.3 WHERE id = ?",
                zip(xy[start:stop, 0].tolist(), xy[start:stop, 1].tolist(), assignment[start:stop].tolist(),
                    label_of[assignment[start:stop]].tolist(), ids[start:stop].tolist()))
            db.conn.executemany("INSERT INTO item_labels (item_id, label, score) VALUES (?, ?, 0.3)",
                                zip(ids[start:stop].tolist(), label_of[assignment[start:stop]].tolist()))
        db.conn.executemany("INSERT INTO clusters (id, name, centroid, central) VALUES (?, ?, ?, ?)",
                            ((c, f"{label_of[c]} {c}", unit[c].astype("<f4").tobytes(),
                              json.dumps(ids[assignment == c][:12].tolist())) for c in range(clusters)))
        db.conn.executemany("INSERT INTO label_set (position, label, prototype) VALUES (?, ?, ?)",
                            ((i, lb, unit[i % clusters].astype("<f4").tobytes()) for i, lb in enumerate(LABELS)))
        settings = {
            MAP: {"method": "umap", "requested": "umap", "reducer": "none.pkl", "seed": seed, "fitted_on": points,
                  "sampled": False, "items": points, "placed": 0, "seconds": 0.0},
            CLUSTERING: {"method": "kmeans", "k": clusters, "min_cluster_size": None, "vocabulary": None,
                         "seed": seed, "k_chosen_by": "given", "k_scores": {}},
            LABELLING: {"labels": list(LABELS), "templates": ["a photo of a {}."], "multi": False, "min_score": None},
        }
        for key, value in settings.items():
            db.set_state(key, json.dumps(value, sort_keys=True))
    return coll


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="where to write the collection (must not exist)")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=24)
    parser.add_argument("--model", default="lite", help="the manifest's model (default: lite, 512-d)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with write_synthetic_map(args.path, args.points, model=args.model, clusters=args.clusters) as coll:
        print(f"{args.path}: {len(coll):,} items with a map, {args.clusters} clusters and labels "
              f"({time.perf_counter() - t0:.1f} s); serve it with `lookalike serve {args.path}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
