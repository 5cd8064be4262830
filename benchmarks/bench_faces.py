"""Faces: benchmarks of the people pipeline (issue 14). Sub-commands ``regroup``, ``detect``, ``pairs``
and ``all`` (the three in turn, each with its defaults).

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

    Then (unless ``--no-collection``) the same descriptors through a real collection, built
    untimed in a temporary folder for the run: items (photos of 4000x3000, files not on disk:
    nothing reads them) written as the indexer writes them, ``Storage.commit_vectors`` with
    ``MetadataDB.upsert`` + ``set_traits`` (the tiny random CLIP of ``tests/support.py``
    ``save_tiny_clip``, random 32-d image vectors and perceptual hashes), and their faces, 1 to 3
    per photo, as ``faces index`` commits them, ``FaceVectors.commit`` + ``FaceTables.record_scan``
    (plausible boxes of 80-600 px and dlib's 5 landmarks; one 160 px gradient crop JPEG, the same
    bytes for every face). Each step in a fresh ``Collection.open``, in this order:
    (1) the first grouping as ``faces index`` does it after scanning (``people_ops.group_new``, all
    faces new); (2) ``coll.people.regroup()`` (default settings: read from SQLite and the face
    file, group, write); (3) 20 people named, 10 pairs merged, 20 faces rejected (one each from 20
    people), median ms per edit of each kind, then ``regroup()`` again and a check that every edit
    held (names kept with all their faces, merged people still one, rejected faces not back in
    their person); (4) 1,000 new faces of planted people (face_like's centres, people weighted by
    their faces) in new items through the same commit path, then ``people_ops.group_new`` for
    them, timed, and where they went against the planted people. Printed: the wall times, the
    quality figures as above after (1), (2) and (3), and each time over ``group_faces`` in memory
    in the same run.

    python benchmarks/bench_faces.py regroup [--n 100000] [--seed 0] [--threshold 0.6] [--min-faces 3]
        [--within 0.4] [--between 1.0] [--no-collection]

``detect`` (real photos)
    The photos: the Debian wallpapers (``tools.samples.photo_sources``: 44 photographs and
    artworks up to 18 MP, landscapes and patterns), the first ``--photos`` (40; 0 for none)
    camera-sized JPEGs cut from them (``tools.bench_data.make_photo_folder``, cached as
    ``bench/photos-N``), and the 7 ``face_recognition`` test photos
    (``tools.face_samples.face_images``: one face each). Printed: how many, and their
    megapixels (median, max).

    (a) model alone, in a fresh process: each photo decoded (``decode_image``, EXIF upright,
    shrunk on load while its short side stays >= ``--decode-min-side`` 1600 as the index does;
    0: whole; timed apart and not part of the model's time), then ``FaceModel.detect`` (dlib's
    detector on a copy of at most 4 MP, ``--min-size`` 80) and ``FaceModel.describe`` of its
    faces (``--jitter`` 0). Model load is timed apart too.
    (b) end to end, in another fresh process: ``coll.faces.index(detector, min_size, jitter,
    workers)`` on a new collection of those photos (hard links or copies in a temporary
    folder). The collection's images are indexed first with the cheapest image model
    (``--image-model lite:32``), in a process of its own, untimed, so only the faces index is
    measured: decoding, detection, descriptors, crops, storage and grouping; the scan and the
    grouping are split by the progress events.

    For each: photos, faces found, photos/s, faces/s, and peak resident memory (VmHWM of the
    process; index workers, if any, as ``ru_maxrss`` of its children, which Linux starts from
    the parent's); (a) also per-photo median and p95 ms of the model, and of decode. Ratios:
    end to end against the model alone with decode (the same work done the shortest way; (b)
    includes loading the face model, so also against (a) with its load and warm-up), and the
    share of the model's time spent in describing. (b)'s ``faces`` progress events come one per
    photo after it is done: the first one's time is the model's load plus the first photo. CNN
    (``--detector cnn``) is ~50x slower than HOG on a CPU: only when asked.

    python benchmarks/bench_faces.py detect [--detector hog|cnn] [--photos 40] [--min-size 80]
        [--jitter 0] [--workers N] [--image-model lite:32] [--skip-index] [--decode-min-side 1600]

``pairs`` (real faces)
    Every face that ``FaceModel.detect`` (``--detector`` hog, default min_size) finds in the 7
    test photos is described (``--jitter`` 0, repeatable: ``--jitter 0 --jitter 10`` runs both)
    and every unordered pair of faces is labelled same or different person (all Obama but
    ``biden.jpg``; see ``tools.face_samples``) and predicted same when closer than
    ``--threshold`` (``models.faces.SAME_PERSON_THRESHOLD``, 0.6). Printed: every pair's
    distance, the confusion (TP, FN, FP, TN; positive = same person), accuracy, the distance
    range of same and of different pairs and their margins to the threshold. ``32bit.png`` is
    ``obama2.jpg`` saved as PNG: pairs of faces from identical pictures are listed apart and
    the figures are given again without them (they are not a test of recognition), and once
    more over distinct pictures only (without ``32bit.png``, whose pairs repeat ``obama2.jpg``'s).

    python benchmarks/bench_faces.py pairs [--jitter 0 [--jitter 10]] [--threshold 0.6] [--detector hog]

``all``
    python benchmarks/bench_faces.py all     # regroup, detect, pairs with their defaults
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "explore"))
sys.path.insert(0, str(REPO / "tests"))  # support.save_tiny_clip
sys.path.insert(0, str(REPO))

from explore_data import face_like  # noqa: E402

from lookalike.explore.people import group_faces  # noqa: E402
from lookalike.models.faces import DEFAULT_MIN_SIZE, SAME_PERSON_THRESHOLD  # noqa: E402


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
    if not args.no_collection:
        regroup_collection(args, x, truth, sizes, elapsed)


# --------------------------------------------------------------------------- regroup through a collection
#: Photo size of the synthetic items (display pixels), and faces per photo (1 to 3).
COLL_PHOTO = (4000, 3000)
COLL_FACES_PER_PHOTO = (1, 3)
#: Items committed per FaceVectors.commit while building (untimed; the indexer commits 64 photos).
COLL_BATCH = 4096
#: Step (3): people named, pairs merged, faces rejected; step (4): new faces added.
COLL_NAMES, COLL_MERGES, COLL_REJECTS, COLL_NEW = 20, 10, 20, 1000


def crop_jpeg() -> bytes:
    """One plausible 160 px face crop (a smooth gradient, JPEG quality 85), stored for every face."""
    import io

    from PIL import Image

    g = np.linspace(40, 215, 160, dtype=np.float32)
    rgb = np.stack([np.add.outer(g, g) / 2, np.add.outer(g, g[::-1]) / 2, np.full((160, 160), 128.0)], axis=-1)
    out = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def face_rows(count: int, rng: np.random.Generator, jpeg: bytes) -> list[tuple]:
    """``count`` faces of one photo without vec_row: ``(box, landmarks, score, size, jpeg)``, boxes
    80-600 px inside the photo, dlib's 5 landmarks (eye corners, nose base) inside each box."""
    w, h = COLL_PHOTO
    rows = []
    for _ in range(count):
        side = int(rng.integers(80, 600))
        left, top = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        pts = [(0.70, 0.38), (0.58, 0.38), (0.30, 0.38), (0.42, 0.38), (0.50, 0.66)]
        marks = tuple((left + fx * side + float(rng.normal(0, 2)), top + fy * side + float(rng.normal(0, 2)))
                      for fx, fy in pts)
        rows.append(((left, top, left + side, top + side), marks, float(rng.uniform(0.2, 2.5)), side, jpeg))
    return rows


def add_photos(coll: object, vectors: np.ndarray, first_item: int, folder: Path, rng: np.random.Generator,
               jpeg: bytes) -> tuple[list[int], int]:
    """Items ``first_item...`` holding ``vectors`` as their faces (1 to 3 each, in order), written the
    way the indexers do: items through ``Storage.commit_vectors`` (random 32-d image vectors, random
    perceptual hashes; ``MetadataDB.upsert`` + ``set_traits``), then faces, crops and scans through
    ``FaceVectors.commit`` + ``FaceTables.record_scan``. Returns ``(face ids in vectors' order, items)``."""
    from lookalike.images.traits import ImageTraits
    from lookalike.store.face_db import FaceTables
    from lookalike.store.face_vectors import FaceVectors

    storage = coll._storage  # type: ignore[attr-defined]
    counts: list[int] = []
    while sum(counts) < len(vectors):
        counts.append(int(rng.integers(COLL_FACES_PER_PHOTO[0], COLL_FACES_PER_PHOTO[1] + 1)))
    counts[-1] -= sum(counts) - len(vectors)
    tables, fv = FaceTables(storage.db), FaceVectors(storage.path, storage.db)
    w, h = COLL_PHOTO
    ids: list[int] = []
    done = 0
    with storage.write_lock():
        for start in range(0, len(counts), COLL_BATCH):
            batch = counts[start : start + COLL_BATCH]
            nums = range(first_item + start, first_item + start + len(batch))
            paths = [str(folder / f"{k // 1000:04d}" / f"photo{k:07d}.jpg") for k in nums]
            image_vecs = rng.standard_normal((len(batch), 32)).astype(np.float32)
            image_vecs /= np.linalg.norm(image_vecs, axis=1, keepdims=True)
            row0 = storage.vector_rows
            items = [(p, 2_500_000 + k, 1_700_000_000_000_000_000 + k, f"{k:032x}", w, h, "ok", None, row0 + j)
                     for j, (k, p) in enumerate(zip(nums, paths))]
            hashes = rng.integers(-2**62, 2**62, size=(len(batch), 3))
            traits = [(ImageTraits(*(int(x) for x in hs), 100.0, None, 0), p) for hs, p in zip(hashes, paths)]
            storage.commit_vectors(image_vecs, lambda: (storage.db.upsert(items), storage.db.set_traits(traits)))
            item_ids = [storage.db.conn.execute("SELECT id FROM items WHERE path = ?", (p,)).fetchone()[0]
                        for p in paths]
            n = sum(batch)
            scans = [(int(i), f"{k:032x}", face_rows(c, rng, jpeg)) for i, k, c in zip(item_ids, nums, batch)]

            def write(first_row: int) -> None:
                row = first_row
                for item_id, content_hash, rows in scans:
                    faces = []
                    for box, marks, score, size, crop in rows:
                        faces.append((box, marks, score, size, row, crop))
                        row += 1
                    ids.extend(tables.record_scan(item_id, content_hash, faces, None))
            fv.commit(vectors[done : done + n], write)
            done += n
    return ids, len(counts)


def person_labels(tables: object, face_ids: np.ndarray) -> np.ndarray:
    """The person of each of ``face_ids`` (-1: none), read from the faces table."""
    ids, _rows, persons, _manual = tables.grouping_arrays()  # type: ignore[attr-defined]
    where = np.searchsorted(ids, face_ids)
    return persons[where]


def score(labels: np.ndarray, truth: np.ndarray, sizes: np.ndarray, min_faces: int) -> tuple[float, float, float, int]:
    """``(ARI over people with >= min_faces faces, their share unassigned, smaller people's share
    assigned, people found)``, counted as the in-memory part counts them."""
    from sklearn.metrics import adjusted_rand_score

    big = sizes[truth] >= min_faces
    counted = np.where(labels[big] >= 0, labels[big], -1 - np.arange(int(big.sum())))
    return (float(adjusted_rand_score(truth[big], counted)), float((labels[big] < 0).mean()),
            float((labels[~big] >= 0).mean()) if (~big).any() else 0.0, len(np.unique(labels[labels >= 0])))


def ms_median(seconds: Sequence[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"median {np.median(ms):.1f} ms (min {ms.min():.1f}, max {ms.max():.1f}) over {len(ms)}"


def regroup_collection(args: argparse.Namespace, x: np.ndarray, truth: np.ndarray, sizes: np.ndarray,
                       memory_s: float) -> None:
    """The same faces through a real collection; see the module docstring."""
    import lookalike
    from lookalike.store import people_ops
    from lookalike.store.face_db import FACES, FaceTables
    from lookalike.store.face_vectors import FaceVectors
    from support import save_tiny_clip

    rng = np.random.default_rng(args.seed + 1)
    jpeg = crop_jpeg()
    mf = args.min_faces
    with tempfile.TemporaryDirectory(prefix="bench-faces-coll-") as tmp:
        root = Path(tmp) / "coll"
        model = save_tiny_clip(Path(tmp) / "tiny-clip")
        t0 = time.perf_counter()
        with lookalike.Collection.create(root, model=f"openclip:{model}", device="cpu") as coll:
            with coll._storage.db.transaction():  # what faces index records first
                FaceTables(coll._storage.db).set_settings(FACES, {"detector": "hog", "min_size": DEFAULT_MIN_SIZE,
                                                                  "jitter": 0, "model": "synthetic"})
            face_ids, n_items = add_photos(coll, x, 0, Path(tmp) / "photos", rng, jpeg)
        face_ids_arr = np.asarray(face_ids, dtype=np.int64)
        db_mb = sum(p.stat().st_size for p in root.iterdir() if p.is_file()) / 2**20
        print(f"\ncollection: {n_items:,} items (tiny random CLIP, 32-d; item files not on disk, nothing reads them), "
              f"{len(face_ids):,} faces (the descriptors above, {COLL_FACES_PER_PHOTO[0]}-{COLL_FACES_PER_PHOTO[1]} "
              f"per photo), one {len(jpeg):,}-byte 160 px crop JPEG stored for every face; written in "
              f"{time.perf_counter() - t0:.1f} s through commit_vectors + upsert and FaceVectors.commit + "
              f"record_scan, {COLL_BATCH:,} items per commit (not counted); {db_mb:.0f} MiB on disk")

        def opened() -> tuple[object, FaceVectors, FaceTables, float]:
            t = time.perf_counter()
            c = lookalike.Collection.open(root)
            return c, FaceVectors(c._storage.path, c._storage.db), FaceTables(c._storage.db), time.perf_counter() - t

        def quality(tables: FaceTables) -> None:
            ari, left, small, found = score(person_labels(tables, face_ids_arr), truth, sizes, mf)
            print(f"    people found {found:,}; ARI {ari:.4f}; their faces left unassigned {left:.4f}; "
                  f"faces of smaller people assigned {small:.4f}")

        # (1) the first grouping, as faces index does it after scanning: every face new.
        coll, fv, tables, open_s = opened()
        t0 = time.perf_counter()
        with coll._storage.write_lock():
            assigned, new_people, left = people_ops.group_new(fv, tables, face_ids, people_ops.people_settings(tables))
        first_s = time.perf_counter() - t0
        print(f"(1) first grouping (people_ops.group_new, all {len(face_ids):,} faces new): {first_s:.2f} s "
              f"({first_s / memory_s:.2f}x group_faces in memory); {new_people:,} people, {assigned:,} joined, "
              f"{left:,} unassigned (open {open_s:.2f} s, not counted)")
        quality(tables)
        coll.close()

        # (2) a full regroup with the default settings.
        coll, fv, tables, open_s = opened()
        t0 = time.perf_counter()
        report = coll.people.regroup()
        full_s = time.perf_counter() - t0
        print(f"(2) coll.people.regroup(): {full_s:.2f} s ({len(face_ids) / full_s:,.0f} faces/s; "
              f"{full_s / memory_s:.2f}x group_faces in memory, {full_s - memory_s:+.2f} s); report: "
              f"{report.people:,} people, {report.assigned:,} assigned, {report.unassigned:,} unassigned, "
              f"elapsed_s {report.elapsed_s:.2f}")
        quality(tables)
        coll.close()

        # (3) edits, each timed, then a regroup; every edit must hold.
        coll, fv, tables, open_s = opened()
        people = [p for p in coll.people(min_faces=mf)]
        pick = np.random.default_rng(args.seed + 2).permutation(len(people))
        chosen = [people[i].id for i in pick[: COLL_NAMES + 2 * COLL_MERGES + COLL_REJECTS]]
        named = chosen[:COLL_NAMES]
        pairs_ = list(zip(chosen[COLL_NAMES : COLL_NAMES + COLL_MERGES],
                          chosen[COLL_NAMES + COLL_MERGES : COLL_NAMES + 2 * COLL_MERGES]))
        rejecting = chosen[COLL_NAMES + 2 * COLL_MERGES :]
        before = {pid: {f.id for f in coll.people.faces(pid, limit=None)} for pid in chosen}
        times: dict[str, list[float]] = {"name": [], "merge": [], "reject": []}
        for k, pid in enumerate(named):
            t0 = time.perf_counter()
            coll.people.name(pid, f"Bench Name {k:02d}")
            times["name"].append(time.perf_counter() - t0)
        for into, other in pairs_:
            t0 = time.perf_counter()
            coll.people.merge(into, other)
            times["merge"].append(time.perf_counter() - t0)
        rejected: dict[int, int] = {}
        for pid in rejecting:
            face = min(before[pid])
            t0 = time.perf_counter()
            coll.people.reject(pid, [face])
            times["reject"].append(time.perf_counter() - t0)
            rejected[face] = pid
        print(f"(3) edits on people with >= {mf} faces (open {open_s:.2f} s): name {ms_median(times['name'])}; "
              f"merge {ms_median(times['merge'])}; reject (one face) {ms_median(times['reject'])}")
        coll.close()
        coll, fv, tables, open_s = opened()
        t0 = time.perf_counter()
        report = coll.people.regroup()
        again_s = time.perf_counter() - t0
        print(f"    coll.people.regroup() after the edits: {again_s:.2f} s ({again_s / memory_s:.2f}x in memory); "
              f"{report.people:,} people, {report.unassigned:,} unassigned")
        quality(tables)  # merges join two planted people, rejects take faces out: below (2) by design
        ids_now, _rows, persons_now, _manual = tables.grouping_arrays()
        owner = dict(zip(ids_now.tolist(), persons_now.tolist()))
        bad_names = [pid for k, pid in enumerate(named)
                     if tables.person_name(pid) != f"Bench Name {k:02d}" or any(owner[f] != pid for f in before[pid])]
        gained = sum(sum(1 for f, p in owner.items() if p == pid) - len(before[pid]) for pid in named)
        bad_merges = [(a, b) for a, b in pairs_ if b in tables.person_ids()
                      or any(owner[f] != a for f in before[a] | before[b])]
        back = [f for f, pid in rejected.items() if owner[f] == pid]
        kept_rest = sum(all(owner[f] == pid for f in before[pid] - {min(before[pid])}) for pid in rejecting)
        where = {"in no person": sum(owner[f] < 0 for f in rejected),
                 "in another person": sum(owner[f] >= 0 and owner[f] != rejected[f] for f in rejected)}
        ok = not bad_names and not bad_merges and not back
        print(f"    check {'PASSED' if ok else 'FAILED'}: named {COLL_NAMES - len(bad_names)}/{COLL_NAMES} kept name "
              f"and every face (they gained {gained} faces); merged {COLL_MERGES - len(bad_merges)}/{COLL_MERGES} "
              f"still one person (the other gone); rejected faces back in their person: {len(back)}/{COLL_REJECTS} "
              f"(" + ", ".join(f"{v} {k}" for k, v in where.items()) + f"); their people kept all other faces: "
              f"{kept_rest}/{COLL_REJECTS}")
        coll.close()

        # (4) incremental: new photos of planted people, then group_new as faces index does after scanning.
        coll, fv, tables, open_s = opened()
        centres = (np.random.default_rng(args.seed).standard_normal((len(sizes), x.shape[1])).astype(np.float32)
                   * (args.between / np.sqrt(2 * x.shape[1])))  # face_like's centres: its first draw
        new_truth = truth[rng.integers(0, len(truth), COLL_NEW)]  # people weighted by their faces
        new_x = centres[new_truth] + (rng.standard_normal((COLL_NEW, x.shape[1])).astype(np.float32)
                                      * (args.within / np.sqrt(2 * x.shape[1])))
        t0 = time.perf_counter()
        new_ids, new_items = add_photos(coll, new_x, n_items, Path(tmp) / "photos", rng, jpeg)
        add_s = time.perf_counter() - t0
        known_before = tables.person_ids()
        t0 = time.perf_counter()
        with coll._storage.write_lock():
            assigned, new_people, left = people_ops.group_new(fv, tables, new_ids, people_ops.people_settings(tables))
        inc_s = time.perf_counter() - t0
        # The planted people whose (old) faces each known person holds.
        ids_now, _rows, persons_now, _ = tables.grouping_arrays()
        all_truth = dict(zip(face_ids, truth.tolist()))
        votes: dict[int, Counter] = {}
        for f, p in zip(ids_now.tolist(), persons_now.tolist()):
            if p in known_before and f in all_truth:
                votes.setdefault(p, Counter())[all_truth[f]] += 1
        owner = dict(zip(ids_now.tolist(), persons_now.tolist()))
        known = set().union(*votes.values()) if votes else set()
        # Right: the person joined holds old faces of the new face's planted person (a merged person holds two).
        joined_right = sum(1 for f, t in zip(new_ids, new_truth) if t in votes.get(owner[f], ()))
        joined_wrong = sum(1 for f, t in zip(new_ids, new_truth) if owner[f] in votes and t not in votes[owner[f]])
        in_new = sum(1 for f in new_ids if owner[f] >= 0 and owner[f] not in votes)
        could = int(sum(t in known for t in new_truth))
        print(f"(4) incremental: {COLL_NEW:,} new faces of planted people in {new_items:,} new items (added in "
              f"{add_s:.2f} s, not counted); people_ops.group_new: {inc_s:.2f} s ({inc_s / first_s:.3f}x the first "
              f"grouping); its counts: {assigned:,} joined known people, {new_people:,} new people (among all faces in "
              f"no person, old ones too), {left:,} faces left in none")
        print(f"    vs planted: {could:,} of the {COLL_NEW:,} are of a planted person whose faces some known "
              f"person holds; of the new faces, joined a known person holding faces of their planted person "
              f"{joined_right:,}, another known person {joined_wrong:,}; in new people {in_new:,}; "
              f"unassigned {sum(owner[f] < 0 for f in new_ids):,}")
        coll.close()
        print(f"ratios to group_faces in memory ({memory_s:.2f} s): first grouping {first_s / memory_s:.2f}x, "
              f"full regroup {full_s / memory_s:.2f}x, regroup after edits {again_s / memory_s:.2f}x")


# --------------------------------------------------------------------------- shared
def machine_line() -> str:
    """The CPU, its cores and the current load, so a figure can be judged by how busy the machine was."""
    load = os.getloadavg()[0]
    return f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {load:.2f}"


def vmhwm() -> int:
    """This process's peak resident memory in bytes (VmHWM). Not ``ru_maxrss``: Linux carries that
    over from the parent across fork and exec, so a child would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def ms_summary(seconds: Sequence[float]) -> str:
    """Median and p95 of per-photo times, in milliseconds."""
    if not len(seconds):
        return "no photos"
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return f"median {np.median(ms):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms"


def rate(count: float, seconds: float) -> float:
    """``count`` per second; 0 for no time (nothing was timed)."""
    return count / seconds if seconds > 0 else 0.0


def run_child(part: str, options: Sequence[str]) -> dict:
    """Run this script's hidden sub-command ``part`` in a fresh process (its memory is its own) and
    return the JSON object it prints last. Its other output (progress, warnings) goes to stderr."""
    cmd = [sys.executable, str(Path(__file__).resolve()), part, *options]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{part} failed with exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- detect
#: coll.faces.index decodes a photo shrunk while its short side stays >= this
#: (``lookalike.store.face_index.DECODE_MIN_SIDE``); the model alone does the same by default.
DECODE_MIN_SIDE = 1600


def photo_set(photos: int) -> list[Path]:
    """The Debian wallpapers, the first ``photos`` camera-sized photos cut from them, and the 7
    face test photos (see the module docstring)."""
    from tools import bench_data, face_samples, samples

    paths = list(samples.photo_sources())
    if photos > 0:
        folder = samples.cache_dir() / "bench" / f"photos-{photos}"
        paths += sorted(bench_data.make_photo_folder(folder, n=photos))
    return paths + list(face_samples.face_images().values())


def megapixels(paths: Sequence[Path]) -> np.ndarray:
    """Each photo's size in megapixels, from its header."""
    from PIL import Image

    sizes = []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.width * image.height / 1e6)
    return np.asarray(sizes)


def model_worker(args: argparse.Namespace) -> None:
    """(a) in this fresh process: decode, detect and describe each photo; print the times as JSON."""
    t0 = time.perf_counter()
    from PIL import Image

    from lookalike.images.decode import decode_image
    from lookalike.models.faces import FaceModel

    model = FaceModel()
    # A first scan on a blank image: loads the CNN (it loads on first use) and warms dlib up.
    model.detect(Image.new("RGB", (96, 96)), detector=args.detector)
    load_s = time.perf_counter() - t0
    rows, failed = [], []
    for path in json.loads(Path(args.list).read_text()):
        t0 = time.perf_counter()
        try:
            decoded = decode_image(path, min_side=args.decode_min_side)
        except Exception as exc:  # noqa: BLE001 - an unreadable photo is reported, not the end of the run
            failed.append([path, str(exc)])
            continue
        t1 = time.perf_counter()
        image = decoded.image
        # As coll.faces.index does: min_size is in the original's pixels, the decoder may have shrunk it.
        shrunk = max(decoded.width / image.width, decoded.height / image.height)
        faces = model.detect(image, detector=args.detector, min_size=max(1, round(args.min_size / shrunk)))
        t2 = time.perf_counter()
        model.describe(image, faces, jitter=args.jitter)
        rows.append([t1 - t0, t2 - t1, time.perf_counter() - t2, len(faces)])
    print(json.dumps({"load_s": load_s, "rows": rows, "failed": failed, "vmhwm": vmhwm()}))


def prepare_worker(args: argparse.Namespace) -> None:
    """Make the collection of ``--folder`` with the image model (untimed for the faces figures)."""
    import lookalike

    t0 = time.perf_counter()
    with lookalike.Collection.create(args.collection, model=args.image_model, device="cpu") as coll:
        report = coll.add([args.folder])
    print(json.dumps({"seconds": time.perf_counter() - t0, "added": report.added, "failed": len(report.failed)}))


def index_worker(args: argparse.Namespace) -> None:
    """(b) in this fresh process: ``coll.faces.index`` on the prepared collection; print JSON."""
    import lookalike

    t0 = time.perf_counter()
    coll = lookalike.Collection.open(args.collection)
    open_s = time.perf_counter() - t0
    before = vmhwm()
    marks: dict[str, list[float]] = {}

    def progress(event: object) -> None:  # first and last event of each kind: the scan vs the grouping
        now = time.perf_counter()
        marks.setdefault(event.kind, [now, now])[1] = now  # type: ignore[attr-defined]

    t0 = time.perf_counter()
    report = coll.faces.index(detector=args.detector, min_size=args.min_size, jitter=args.jitter,
                              workers=args.workers, progress=progress)
    elapsed = time.perf_counter() - t0
    coll.close()
    print(json.dumps({"open_s": open_s, "seconds": elapsed, "report": dataclasses.asdict(report),
                      "marks": {kind: [a - t0, b - t0] for kind, (a, b) in marks.items()}, "vmhwm": vmhwm(),
                      "vmhwm_open": before,
                      "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))


def link_photos(paths: Sequence[Path], folder: Path) -> None:
    """Hard links (copies across file systems) of ``paths`` in ``folder``, numbered so names stay distinct."""
    folder.mkdir(parents=True)
    for i, path in enumerate(paths):
        dest = folder / f"{i:04d}-{path.name}"
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def report_model(alone: dict) -> float:
    """Print (a); return its seconds per run with decode (the end-to-end baseline)."""
    rows = np.asarray(alone["rows"], dtype=np.float64).reshape(-1, 4)
    decode, det, desc, faces = rows[:, 0], rows[:, 1], rows[:, 2], int(rows[:, 3].sum())
    model_s = float(det.sum() + desc.sum())
    n = len(rows)
    print(f"(a) model alone: {n} photos, {faces} faces (load + warm-up {alone['load_s']:.2f} s, not counted)")
    print(f"    model (detect + describe): {model_s:.2f} s, {rate(n, model_s):.2f} photos/s, "
          f"{rate(faces, model_s):.2f} faces/s; per photo {ms_summary(det + desc)}")
    print(f"    detect {ms_summary(det)}; describe {float(desc.sum()) / max(model_s, 1e-9):.1%} of the model's time "
          f"({rate(faces, float(desc.sum())):.1f} faces/s)")
    print(f"    decode (not in the model's time): {decode.sum():.2f} s, per photo {ms_summary(decode)}; "
          f"with decode {rate(n, model_s + float(decode.sum())):.2f} photos/s")
    print(f"    peak RSS {alone['vmhwm'] / 2**20:.0f} MiB")
    for path, reason in alone["failed"]:
        print(f"    unreadable: {path}: {reason}")
    return model_s + float(decode.sum())


def report_index(idx: dict, baseline_s: float, load_s: float, photos: int) -> None:
    """Print (b) and its ratio to (a) with decode."""
    r = idx["report"]
    s = idx["seconds"]
    print(f"(b) end to end, coll.faces.index: {r['scanned']} scanned, {r['faces']} faces, {r['no_faces']} without, "
          f"{r['failed']} failed; people: {r['new_people']} new, {r['assigned']} assigned, "
          f"{r['unassigned']} unassigned")
    print(f"    {s:.2f} s (the face model's load included; opening the collection, {idx['open_s']:.2f} s, not), "
          f"{rate(r['scanned'], s):.2f} photos/s, {rate(r['faces'], s):.2f} faces/s")
    for kind, (a, b) in sorted(idx["marks"].items(), key=lambda kv: kv[1][0]):
        print(f"    progress events '{kind}': first at {a:.2f} s, last at {b:.2f} s")
    workers = idx["children_maxrss"]  # decode threads add nothing here; worker processes would
    print(f"    peak RSS {idx['vmhwm'] / 2**20:.0f} MiB "
          f"({idx['vmhwm_open'] / 2**20:.0f} MiB once the collection was open)"
          + (f"; worker processes' peak (ru_maxrss) {workers / 2**20:.0f} MiB" if workers else ""))
    print(f"    end to end / model alone with decode: {s / baseline_s:.2f}x the time "
          f"({rate(photos, baseline_s):.2f} vs {rate(r['scanned'], s):.2f} photos/s); "
          f"with (a)'s load + warm-up added to it: {s / (baseline_s + load_s):.2f}x")
    for path, reason in r["errors"]:
        print(f"    unreadable: {path}: {reason}")


def detect(args: argparse.Namespace) -> None:
    """Faces per second with the model alone and through coll.faces.index; see the module docstring."""
    paths = photo_set(args.photos)
    mp = megapixels(paths)
    print(machine_line())
    print(f"photos: {len(paths)} ({args.photos} camera-sized cuts, 7 face photos, the rest Debian wallpapers); "
          f"megapixels median {np.median(mp):.1f}, max {mp.max():.1f}, total {mp.sum():.0f}")
    print(f"detector {args.detector}, min_size {args.min_size}, jitter {args.jitter}; (a) decodes with "
          f"min_side {args.decode_min_side}")
    same = ["--detector", args.detector, "--min-size", str(args.min_size), "--jitter", str(args.jitter)]
    with tempfile.TemporaryDirectory(prefix="bench-faces-") as tmp:
        listing = Path(tmp) / "photos.json"
        listing.write_text(json.dumps([str(p) for p in paths]))
        alone = run_child("_model", [*same, "--list", str(listing), "--decode-min-side", str(args.decode_min_side)])
        baseline_s = report_model(alone)
        if args.skip_index:
            return
        from lookalike.store.collection import Collection

        if not hasattr(Collection, "faces"):
            print("(b) end to end: not run, this lookalike has no Collection.faces yet")
            return
        link_photos(paths, Path(tmp) / "photos")
        coll = str(Path(tmp) / "coll")
        prep = run_child("_prepare", ["--collection", coll, "--folder", str(Path(tmp) / "photos"),
                                      "--image-model", args.image_model])
        print(f"(b) collection of {prep['added']} photos ({prep['failed']} failed) made with {args.image_model} "
              f"in {prep['seconds']:.1f} s (not counted)")
        workers = [] if args.workers is None else ["--workers", str(args.workers)]
        report_index(run_child("_index", [*same, *workers, "--collection", coll]), baseline_s, alone["load_s"],
                     len(alone["rows"]))


# --------------------------------------------------------------------------- pairs
@dataclasses.dataclass(frozen=True)
class FaceSample:
    """One face found in a test photo: the photo's name, the face's rank in it, and who it shows."""

    photo: str
    index: int
    person: str


def person_of(photo: str) -> str:
    """Who a test photo shows: every photo but ``face_samples.OTHER_PERSON`` shows one person
    (the face_recognition tests' Obama photos; ``32bit.png`` is ``obama2.jpg``)."""
    from tools import face_samples

    return "biden" if photo in face_samples.OTHER_PERSON else "obama"


#: Pictures that are one and the same (``32bit.png`` is ``obama2.jpg`` saved as PNG).
IDENTICAL_PICTURES: tuple[frozenset[str], ...] = (frozenset({"32bit.png", "obama2.jpg"}),)
#: The copies among them (left out for figures over distinct pictures).
COPIES: frozenset[str] = frozenset({"32bit.png"})


def label_pairs(faces: Sequence[FaceSample],
                identical: Sequence[frozenset[str]] = IDENTICAL_PICTURES) -> list[tuple[int, int, bool, bool]]:
    """Every unordered pair ``(i, j, same_person, identical_picture)`` of ``faces``: identical when
    the two are the same face (same rank) in two copies of one picture."""
    pairs = []
    for i, j in itertools.combinations(range(len(faces)), 2):
        a, b = faces[i], faces[j]
        twin = a.index == b.index and frozenset({a.photo, b.photo}) in identical
        pairs.append((i, j, a.person == b.person, twin))
    return pairs


def confusion(distances: Sequence[float], same: Sequence[bool], threshold: float) -> dict[str, int]:
    """TP/FN/FP/TN with "same person" as positive, predicted when closer than ``threshold``
    (strictly, as the library groups)."""
    d, s = np.asarray(distances, dtype=np.float64), np.asarray(same, dtype=bool)
    closer = d < threshold
    return {"TP": int((closer & s).sum()), "FN": int((~closer & s).sum()),
            "FP": int((closer & ~s).sum()), "TN": int((~closer & ~s).sum())}


def pair_summary(distances: Sequence[float], same: Sequence[bool], threshold: float) -> list[str]:
    """Lines: confusion and accuracy; distance ranges of same and different pairs; margins."""
    d, s = np.asarray(distances, dtype=np.float64), np.asarray(same, dtype=bool)
    c = confusion(d, s, threshold)
    lines = [f"{len(d)} pairs ({int(s.sum())} same, {int((~s).sum())} different): "
             + ", ".join(f"{k} {v}" for k, v in c.items())
             + f"; accuracy {(c['TP'] + c['TN']) / max(len(d), 1):.4f}"]
    if s.any():
        lines.append(f"same person: {d[s].min():.3f} .. {d[s].max():.3f}; farthest is "
                     f"{threshold - d[s].max():+.3f} inside the threshold {threshold}")
    if (~s).any():
        lines.append(f"different people: {d[~s].min():.3f} .. {d[~s].max():.3f}; nearest is "
                     f"{d[~s].min() - threshold:+.3f} beyond the threshold")
    return lines


def pairs(args: argparse.Namespace) -> None:
    """Same/different accuracy over every pair of the real test faces; see the module docstring."""
    from lookalike.images.decode import decode_image
    from lookalike.models.faces import FaceModel
    from tools import face_samples

    model = FaceModel()
    photos = {name: decode_image(path).image for name, path in face_samples.face_images().items()}
    found = {name: model.detect(image, detector=args.detector) for name, image in photos.items()}
    faces = [FaceSample(name, k, person_of(name)) for name, fs in found.items() for k in range(len(fs))]
    print(f"faces ({args.detector}): " + ", ".join(f"{name} {len(fs)}" for name, fs in found.items()))
    labelled = label_pairs(faces)
    for jitter in args.jitter or [0]:
        vectors = np.concatenate([model.describe(photos[name], fs, jitter=jitter) for name, fs in found.items()])
        dist = [float(np.linalg.norm(vectors[i] - vectors[j])) for i, j, _, _ in labelled]
        print(f"\njitter {jitter}, threshold {args.threshold}:")
        for (i, j, same, twin), d in sorted(zip(labelled, dist), key=lambda x: x[1]):
            a, b = faces[i], faces[j]
            mark = "identical picture" if twin else ("same" if same else "different")
            wrong = "" if (d < args.threshold) == same else "  WRONG"
            print(f"  {d:.3f}  {a.photo}#{a.index} - {b.photo}#{b.index}  {mark}{wrong}")
        keep = [not twin for _, _, _, twin in labelled]
        same = [s for _, _, s, _ in labelled]
        for line in pair_summary(dist, same, args.threshold):
            print(f"  all: {line}")
        twins = [d for d, k in zip(dist, keep) if not k]
        print(f"  identical pictures: {len(twins)} pairs, distances " + ", ".join(f"{d:.3f}" for d in twins))
        for line in pair_summary([d for d, k in zip(dist, keep) if k], [s for s, k in zip(same, keep) if k],
                                 args.threshold):
            print(f"  without them: {line}")
        # The copy's pairs with every other face repeat the original's: a figure over distinct pictures only.
        single = [faces[i].photo not in COPIES and faces[j].photo not in COPIES for i, j, _, _ in labelled]
        for line in pair_summary([d for d, k in zip(dist, single) if k], [s for s, k in zip(same, single) if k],
                                 args.threshold):
            print(f"  one copy of each picture (no {', '.join(sorted(COPIES))}): {line}")


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
    p.add_argument("--no-collection", action="store_true", help="group_faces in memory only, no collection")
    p.set_defaults(run=regroup)

    def detector_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--detector", choices=("hog", "cnn"), default="hog")
        p.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE)
        p.add_argument("--jitter", type=int, default=0)

    p = sub.add_parser("detect", help="faces/s and photos/s: the model alone and coll.faces.index")
    detector_options(p)
    p.add_argument("--photos", type=int, default=40, help="camera-sized photos cut from the wallpapers (0: none)")
    p.add_argument("--workers", type=int, default=None, help="coll.faces.index workers (default: its own)")
    p.add_argument("--image-model", default="lite:32", help="the collection's image model (its indexing is untimed)")
    p.add_argument("--skip-index", action="store_true", help="the model alone only")
    p.add_argument("--decode-min-side", type=int, default=DECODE_MIN_SIDE,
                   help="(a) decodes shrunk while the short side stays >= this, as the index does (0: whole)")
    p.set_defaults(run=detect)
    p = sub.add_parser("pairs", help="same/different accuracy over every pair of the real test faces")
    p.add_argument("--detector", choices=("hog", "cnn"), default="hog")
    p.add_argument("--jitter", type=int, action="append", help="repeatable: --jitter 0 --jitter 10")
    p.add_argument("--threshold", type=float, default=SAME_PERSON_THRESHOLD)
    p.set_defaults(run=pairs)
    sub.add_parser("all", help="regroup, detect and pairs with their defaults").set_defaults(run=None)
    # Hidden: the fresh processes of `detect`.
    for name, run in (("_model", model_worker), ("_prepare", prepare_worker), ("_index", index_worker)):
        p = sub.add_parser(name)
        detector_options(p)
        for option in ("--list", "--collection", "--folder", "--image-model"):
            p.add_argument(option)
        p.add_argument("--workers", type=int, default=None)
        p.add_argument("--decode-min-side", type=int, default=0)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    if args.run is None:
        for part in ("regroup", "detect", "pairs"):
            print(f"\n=== {part}")
            main([part])
        return
    args.run(args)


if __name__ == "__main__":
    main()
