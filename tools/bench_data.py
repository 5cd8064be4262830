"""Benchmark-sized folders of distinct real images, built once and cached.

* :func:`make_clipart_folder`: a deterministic sample of clip-art PNGs, copied with their
  category sub-folders;
* :func:`make_photo_folder`: camera-sized, all-distinct JPEG "photos" cut from the Debian
  wallpapers (the recipe is in :mod:`tools.photo_recipe`).

Both write a ``.complete`` marker holding their parameters, so a second call returns at
once, and a ``.partial`` marker while working, so an interrupted call resumes. The images
come from :mod:`tools.samples`. Import as ``from tools import bench_data`` with the
repository root on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from tools.photo_recipe import PhotoPlan, load_rgb, plan_photo, render_photo
from tools.samples import SamplesUnavailable, clipart_files, clipart_root, file_lock, photo_sources

__all__ = ["make_clipart_folder", "make_photo_folder"]

#: Name of the marker file that says a generated folder is complete.
COMPLETE_MARKER = ".complete"
#: Marker written while a folder is being generated (it holds the parameters);
#: lets an interrupted run with the same parameters resume.
PARTIAL_MARKER = ".partial"
#: Bump when the generation recipe changes, so old folders get regenerated.
RECIPE_VERSION = 1
#: How many photos of one source a worker makes per task; the source is
#: decoded once per task, which is the expensive part for 4k WEBPs.
PHOTO_CHUNK = 24


# --------------------------------------------------------------------------- bookkeeping
def _read_json(path: Path) -> dict[str, object] | None:
    """Return the JSON object in *path*, or None if missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, object]) -> None:
    """Write *data* to *path* atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _complete_files(dest: Path, params: dict[str, object]) -> list[Path] | None:
    """Return the files of a finished folder made with *params*, else None."""
    marker = _read_json(dest / COMPLETE_MARKER)
    if marker is None or marker.get("params") != params:
        return None
    names = marker.get("files")
    if not isinstance(names, list):
        return None
    files = [dest / str(name) for name in names]
    return files if all(f.is_file() for f in files) else None


def _begin(dest: Path, params: dict[str, object]) -> bool:
    """Start (re)generating *dest*; return True if a matching run may be resumed.

    The complete marker goes first, so a folder being rewritten is never taken
    as finished. Files written by an interrupted run with the same parameters
    are kept: every file is written atomically, so each one that exists is
    whole.
    """
    (dest / COMPLETE_MARKER).unlink(missing_ok=True)
    for tmp in dest.rglob("*.tmp"):  # half-written files of a killed run
        tmp.unlink()
    partial = _read_json(dest / PARTIAL_MARKER)
    resumable = partial is not None and partial.get("params") == params
    _write_json(dest / PARTIAL_MARKER, {"params": params})
    return resumable


def _finish(dest: Path, params: dict[str, object], files: Sequence[Path]) -> None:
    """Mark *dest* complete with *files* (relative names stored)."""
    _write_json(
        dest / COMPLETE_MARKER,
        {"params": params, "files": [f.relative_to(dest).as_posix() for f in files]},
    )
    (dest / PARTIAL_MARKER).unlink(missing_ok=True)


# --------------------------------------------------------------------------- clip art
def make_clipart_folder(dest: Path, n: int = 2000, seed: int = 0) -> list[Path]:
    """Fill *dest* with *n* distinct clip-art PNGs and return their paths.

    The files are a deterministic (by *seed*) sample of all usable clip art
    (every category, unlike :func:`tools.samples.clipart_labelled`), copied rather
    than linked so that tools under test can modify or delete them, and keep their
    category sub-folders (``dest/food/fruit/apple_01.png``). No two are
    byte-identical. A second call with the same arguments finds the
    ``.complete`` marker and returns at once.

    Raises:
        ValueError: *n* exceeds the number of usable clip-art files.
    """
    dest = Path(dest)
    params: dict[str, object] = {"kind": "clipart", "n": n, "seed": seed, "recipe": RECIPE_VERSION}
    done = _complete_files(dest, params)
    if done is not None:
        return done
    root, pool = clipart_root(), clipart_files()
    if not 0 < n <= len(pool):
        raise ValueError(f"n must be between 1 and {len(pool)} (usable clip-art files), got {n}")
    dest.mkdir(parents=True, exist_ok=True)
    with file_lock(dest / ".lock"):
        done = _complete_files(dest, params)  # made by a process we waited for
        if done is not None:
            return done
        ours = (dest / COMPLETE_MARKER).exists() or (dest / PARTIAL_MARKER).exists()
        resumable = _begin(dest, params)
        chosen = sorted(random.Random(seed).sample(pool, n))
        if ours:
            # Clip art from an earlier run with other arguments would
            # otherwise linger (only done in a folder we made ourselves).
            keep = {dest / src.relative_to(root) for src in chosen}
            for stale in dest.rglob("*.png"):
                if stale not in keep:
                    stale.unlink()
        files: list[Path] = []
        for src in chosen:
            target = dest / src.relative_to(root)
            files.append(target)
            if resumable and target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        _finish(dest, params, files)
    return files


# --------------------------------------------------------------------------- photos
def _photo_name(index: int) -> str:
    return f"photo_{index:05d}.jpg"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_photos(job: tuple[str, list[PhotoPlan], bool]) -> list[tuple[int, str]]:
    """Worker: render the plans of one source; return (index, sha256) pairs.

    The source is decoded once per job. With *skip_existing*, photos already
    on disk (from an interrupted run with the same parameters) are kept.
    """
    dest, plans, skip_existing = job
    results: list[tuple[int, str]] = []
    source: Image.Image | None = None
    for plan in plans:
        target = Path(dest) / _photo_name(plan.index)
        if not (skip_existing and target.is_file()):
            if source is None:
                source = load_rgb(plan.source)
            photo = render_photo(source, plan)
            tmp = target.with_name(target.name + ".tmp")
            # subsampling 4:2:0 and no optimisation, as camera firmware does.
            photo.save(tmp, "JPEG", quality=plan.quality, subsampling=2, optimize=False)
            os.replace(tmp, target)
        results.append((plan.index, _sha256(target)))
    return results


def _photo_jobs(
    dest: Path, plans: Sequence[PhotoPlan], skip_existing: bool
) -> list[tuple[str, list[PhotoPlan], bool]]:
    """Group *plans* by source into jobs of at most :data:`PHOTO_CHUNK`.

    Grouping lets a worker decode a source once for several photos; capping
    the group size keeps the workers evenly loaded. Big groups go first so
    that the last jobs to finish are short ones.
    """
    by_source: dict[str, list[PhotoPlan]] = {}
    for plan in plans:
        by_source.setdefault(plan.source, []).append(plan)
    jobs = [
        (str(dest), group[start : start + PHOTO_CHUNK], skip_existing)
        for group in by_source.values()
        for start in range(0, len(group), PHOTO_CHUNK)
    ]
    jobs.sort(key=lambda job: -len(job[1]))
    return jobs


def _duplicates(digests: dict[int, str]) -> list[int]:
    """Indexes whose file is byte-identical to one with a lower index (to be redrawn)."""
    first_of: dict[str, int] = {}
    again = []
    for index in sorted(digests):
        if digests[index] in first_of:
            again.append(index)
        else:
            first_of[digests[index]] = index
    return again


def _render_photos(dest: Path, n: int, plan: Callable[[int, int], PhotoPlan], workers: int,
                   skip_existing: bool) -> None:
    """Write photos 1..n into *dest*, redrawing any that collide with an earlier one.

    Byte-identical files are vanishingly unlikely, but promised; a redrawn photo
    gets the next *attempt* and is always overwritten.
    """
    attempts = dict.fromkeys(range(1, n + 1), 0)
    digests: dict[int, str] = {}
    pending = list(attempts)
    # spawn, not fork: the caller may hold threads (libvips, ONNX Runtime, OpenVINO pools), and a
    # child forked from a threaded process crashed at exit. Spawned children get this sys.path,
    # so they import tools.bench_data as the caller did.
    context = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(context.Pool(workers)) if workers > 1 else None
        while pending:
            jobs = _photo_jobs(dest, [plan(i, attempts[i]) for i in pending], skip_existing)
            results = pool.imap_unordered(_make_photos, jobs) if pool else map(_make_photos, jobs)
            for chunk in results:
                digests.update(chunk)
            pending = _duplicates(digests)
            for index in pending:
                attempts[index] += 1
            skip_existing = False


def make_photo_folder(
    dest: Path,
    n: int = 2000,
    seed: int = 0,
    min_side: int = 1600,
    max_side: int = 4000,
    workers: int = 2,
) -> list[Path]:
    """Fill *dest* with *n* distinct camera-sized JPEGs and return their paths.

    Each photo ``photo_00001.jpg`` ... is cut from one of
    :func:`tools.samples.photo_sources` by :func:`tools.photo_recipe.plan_photo`:
    a camera aspect ratio, a crop keeping at least 40% of the source, a small
    rotation (half of them), a random mirror, a long side between *min_side* and
    *max_side*, and a re-encode at JPEG quality 70..95. Everything is a function of
    *seed*, and no two files are byte-identical. The work is spread over *workers*
    processes (1 or less: in this process). A second call with the same arguments
    finds the ``.complete`` marker and returns at once; an interrupted call resumes.
    """
    dest = Path(dest)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 16 <= min_side <= max_side:
        raise ValueError(f"need 16 <= min_side <= max_side, got {min_side}, {max_side}")
    params: dict[str, object] = {"kind": "photos", "n": n, "seed": seed, "min_side": min_side,
                                 "max_side": max_side, "recipe": RECIPE_VERSION}
    done = _complete_files(dest, params)
    if done is not None:
        return done
    sources = photo_sources()
    if not sources:
        raise SamplesUnavailable("the background packages hold no usable wallpaper images")
    sizes = []
    for path in sources:
        with Image.open(path) as image:
            sizes.append(image.size)
    plan = functools.partial(plan_photo, seed=seed, sources=sources, sizes=sizes, min_side=min_side,
                             max_side=max_side)
    dest.mkdir(parents=True, exist_ok=True)
    with file_lock(dest / ".lock"):
        done = _complete_files(dest, params)
        if done is not None:
            return done
        resumable = _begin(dest, params)
        # Photos from an earlier, larger run would otherwise linger.
        keep = {_photo_name(i) for i in range(1, n + 1)}
        for stale in dest.glob("photo_*.jpg"):
            if stale.name not in keep:
                stale.unlink()
        _render_photos(dest, n, plan, workers, skip_existing=resumable)
        files = [dest / _photo_name(i) for i in range(1, n + 1)]
        _finish(dest, params, files)
    return files
