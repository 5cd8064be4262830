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

    python benchmarks/bench_faces.py regroup [--n 100000] [--seed 0] [--threshold 0.6] [--min-faces 3]
        [--within 0.4] [--between 1.0]

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
    photo after it is done: the first one's time is the model's load plus the first photo. CNN (``--detector cnn``) is ~50x slower
    than HOG on a CPU: only when asked.

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "explore"))
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
                      "vmhwm_open": before, "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))


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
          f"{r['failed']} failed; people: {r['new_people']} new, {r['assigned']} assigned, {r['unassigned']} unassigned")
    print(f"    {s:.2f} s (the face model's load included; opening the collection, {idx['open_s']:.2f} s, not), {rate(r['scanned'], s):.2f} photos/s, "
          f"{rate(r['faces'], s):.2f} faces/s")
    for kind, (a, b) in sorted(idx["marks"].items(), key=lambda kv: kv[1][0]):
        print(f"    progress events '{kind}': first at {a:.2f} s, last at {b:.2f} s")
    workers = idx["children_maxrss"]  # decode threads add nothing here; worker processes would
    print(f"    peak RSS {idx['vmhwm'] / 2**20:.0f} MiB ({idx['vmhwm_open'] / 2**20:.0f} MiB once the collection was open)"
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
