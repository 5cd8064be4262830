#!/usr/bin/env python3
"""Fetch and cache real sample images for lookalike's tests, demo and benchmarks.

The sandboxes this project is developed and tested in have no general internet
access, only the Debian package mirrors. So the samples come from three Debian
packages that ship freely licensed images:

* ``openclipart-png``: about 6,900 public-domain clip-art PNGs, filed in
  category folders (``animals/birds``, ``food/fruit``, ...). The folders serve
  as class labels for evaluation (:func:`clipart_labelled`) and as a realistic
  folder of small mixed images (:func:`make_clipart_folder`).
* ``mate-backgrounds`` and ``gnome-backgrounds``: large desktop wallpapers
  (photographs as JPEG, and artwork as PNG/WEBP). They are the seeds for a
  folder of camera-sized, all-distinct JPEG "photos" (:func:`make_photo_folder`).

A package is fetched with ``apt-get download`` and unpacked with ``dpkg -x``
(neither needs the package to be installed), once, into :func:`cache_dir`.

Only the standard library and Pillow are used, so the module runs in
any of the project's environments. It is both importable (tests do
``sys.path.insert(0, repo_root); from tools import samples``) and a script::

    python tools/samples.py fetch
    python tools/samples.py photos DEST --n 2000
    python tools/samples.py clipart DEST --n 2000
    python tools/samples.py labelled
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = [
    "CLIPART_EXCLUDED_DIRS",
    "CLIPART_EXCLUDED_TREES",
    "CLIPART_MERGED_TREES",
    "SamplesUnavailable",
    "cache_dir",
    "clipart_labelled",
    "clipart_root",
    "fetch_package",
    "make_clipart_folder",
    "make_photo_folder",
    "photo_sources",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

#: Environment variable that overrides the cache location.
ENV_CACHE_DIR = "LOOKALIKE_SAMPLES_DIR"

CLIPART_PACKAGE = "openclipart-png"
PHOTO_PACKAGES: tuple[str, ...] = ("mate-backgrounds", "gnome-backgrounds")
ALL_PACKAGES: tuple[str, ...] = (CLIPART_PACKAGE, *PHOTO_PACKAGES)

#: Clip-art sub-trees (relative to :func:`clipart_root`) left out of
#: :func:`clipart_labelled`, with everything below them. Each one is a set whose
#: members differ only trivially (colour, hand position, one glyph), or a
#: grab-bag with no visual meaning. Keeping them would let a classifier score
#: on near-duplicate look-alikes rather than on semantic categories.
CLIPART_EXCLUDED_TREES: tuple[str, ...] = (
    "computer/icons",  # ~1,500 desktop-theme icons: one style per theme, many 60-px glyphs
    "computer/buttons",  # the same glossy arrow/ball/pill in six colours
    "shapes",  # stars (1,378), arrows, callouts, flowchart, jigsaw: bare geometry
    "special",  # background patterns, gradients, layout examples
    "signs_and_symbols/led",  # LED lamps in every colour
    "signs_and_symbols/clocks",  # one clock face with the hands moved
    "signs_and_symbols/map_symbols",  # AIGA pictograms, each twice (boxed/plain)
    "signs_and_symbols/flags/semaphore",  # 30 copies of one hand-flag template
    "recreation/games/cards",  # playing-card decks: 4 x 54 near-identical cards
    "recreation/party",  # mostly the same balloons in a dozen colours
    "people/smilies",  # one smiley face with different expressions
    "people/stickmen",  # one stick figure in different poses
    "unsorted",  # no label by definition
)

#: Directories whose *own* images are left out of :func:`clipart_labelled`
#: (their sub-directories may still be classes): catch-alls that mix unrelated
#: things.
CLIPART_EXCLUDED_DIRS: tuple[str, ...] = (
    "computer",  # leftover icon-theme pieces (arrows, folders) mixed with hardware
    "signs_and_symbols",  # hazard triangles, stray flags, card suits, bar codes
)

#: Sub-trees that form one class together with everything below them, instead
#: of one class per directory. Flags are filed by continent and country, which
#: no image model can (or should) tell apart; mammals and birds are split into
#: species folders too small to be classes on their own.
CLIPART_MERGED_TREES: tuple[str, ...] = (
    "signs_and_symbols/flags",
    "animals/mammals",
    "animals/birds",
)

#: Clip art larger than this many pixels is skipped everywhere. A handful of
#: files are rasterised at up to 21k x 30k px (623 MP): Pillow refuses to open
#: them by default, and decoding one takes seconds and gigabytes.
CLIPART_MAX_PIXELS = 4096 * 4096
#: Clip art whose shorter side is below this is skipped (a few 3 x 2 px files).
CLIPART_MIN_SIDE = 8

#: Wallpapers with a longer side below this are not used as photo sources (the
#: gnome ``vnc-*.webp`` are 256 px single-colour tiles).
PHOTO_SOURCE_MIN_SIDE = 1024
#: JPEG wallpapers are the real photographs, so they are drawn this many times
#: as often as the PNG/WEBP artwork in :func:`make_photo_folder`.
PHOTO_JPEG_WEIGHT = 3.0

#: Minimum fraction of a source's area that a photo's crop keeps.
PHOTO_MIN_AREA = 0.4
#: Largest rotation, in degrees, applied to a photo (half of them are rotated).
PHOTO_MAX_ROTATION = 3.0
#: Aspect ratios (width / height) that photos are cropped to, as cameras and
#: phones produce them; portrait ones only fit taller sources.
PHOTO_ASPECTS: tuple[float, ...] = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)
#: JPEG quality range for the re-encode, inclusive.
PHOTO_QUALITY = (70, 95)
#: How many photos of one source a worker makes per task; the source is
#: decoded once per task, which is the expensive part for 4k WEBPs.
PHOTO_CHUNK = 24

#: Name of the marker file that says a generated folder is complete.
COMPLETE_MARKER = ".complete"
#: Marker written while a folder is being generated (it holds the parameters);
#: lets an interrupted run with the same parameters resume.
PARTIAL_MARKER = ".partial"
#: Bump when the generation recipe changes, so old folders get regenerated.
RECIPE_VERSION = 1

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class SamplesUnavailable(RuntimeError):
    """The sample images cannot be fetched here (no apt-get, no mirror, ...).

    Tests should turn this into a skip, not a failure.
    """


# --------------------------------------------------------------------------
# Cache and package fetching
# --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Return the sample cache directory, creating it if needed.

    It is ``$LOOKALIKE_SAMPLES_DIR`` when set, else
    ``~/.cache/lookalike/samples``.
    """
    override = os.environ.get(ENV_CACHE_DIR)
    path = Path(override).expanduser() if override else Path.home() / ".cache" / "lookalike" / "samples"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[int]:
    """Hold an exclusive ``flock`` on *lock_file* for the ``with`` body.

    Yields the lock's file descriptor. ``flock`` locks go away with the last
    process holding the descriptor, so a killed run never leaves a stale
    lock behind (unlike lock files created with O_EXCL); and a child given
    the descriptor keeps the lock held until it exits (see :func:`_run`).
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _package_marker(root: Path) -> Path:
    """Return the file that records which .deb *root* was unpacked from."""
    return root / ".package.json"


def _run(cmd: Sequence[str], cwd: Path, lock_fd: int) -> subprocess.CompletedProcess[str]:
    """Run *cmd* in *cwd*, capturing its output (apt is chatty on stderr).

    The child inherits the lock descriptor *lock_fd*: if we are killed, an
    orphaned ``apt-get`` or ``dpkg`` keeps writing into our temporary
    directory, and holding the lock until it exits stops the next run from
    starting alongside it.
    """
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        pass_fds=(lock_fd,),
        # apt-get must not stop to ask anything, and its messages should be
        # in English so that the errors we pass on are readable.
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
    )


def _required_tools(name: str) -> tuple[str, str]:
    """Return the paths of apt-get and dpkg, or explain what is missing."""
    apt_get, dpkg = shutil.which("apt-get"), shutil.which("dpkg")
    if apt_get is None or dpkg is None:
        missing = " and ".join(tool for tool, path in (("apt-get", apt_get), ("dpkg", dpkg)) if path is None)
        raise SamplesUnavailable(
            f"cannot fetch sample package {name!r}: {missing} not found on PATH. "
            f"The sample images come from Debian packages, so this needs a Debian/Ubuntu "
            f"machine (apt-get and dpkg) that can reach a package mirror, or "
            f"${ENV_CACHE_DIR} pointing at a cache that already holds debs/{name}/."
        )
    return apt_get, dpkg


def _apt_download(name: str, dest: Path, apt_get: str, lock_fd: int) -> Path:
    """Download the .deb of package *name* into *dest* and return its path.

    On a fresh machine the apt lists may be empty, so a failed download is
    retried once after ``apt-get update``.
    """
    result = _run([apt_get, "download", name], dest, lock_fd)
    if result.returncode != 0:
        update = _run([apt_get, "update", "-qq"], dest, lock_fd)
        result = _run([apt_get, "download", name], dest, lock_fd)
        if result.returncode != 0:
            hint = "" if update.returncode == 0 else f" (apt-get update failed too: {update.stderr.strip()[-500:]})"
            raise SamplesUnavailable(
                f"apt-get download {name} failed: {result.stderr.strip()[-1000:]}{hint}. "
                f"A Debian package mirror must be reachable (and apt-get update may need root)."
            )
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != 1:
        raise SamplesUnavailable(f"apt-get download {name} produced {len(debs)} .deb files in {dest}")
    return debs[0]


def fetch_package(name: str) -> Path:
    """Return the unpacked root of Debian package *name*, fetching it once.

    The root is ``cache_dir()/debs/<name>/``; it mirrors the package's file
    system tree (``usr/share/...``). The call is idempotent and safe to make
    from several processes at once: a per-package ``flock`` lets one of them
    download while the others wait, and the package is unpacked into a
    temporary directory that is renamed into place only when complete, so an
    interrupted run never leaves a half-unpacked tree.

    Raises:
        SamplesUnavailable: apt-get or dpkg is missing, or the download fails.
    """
    debs_dir = cache_dir() / "debs"
    root = debs_dir / name
    # Fast path without the lock: the root only ever appears by an atomic
    # rename of a finished tree.
    if _package_marker(root).is_file():
        return root
    apt_get, dpkg = _required_tools(name)
    with _locked(debs_dir / f".{name}.lock") as lock_fd:
        if _package_marker(root).is_file():  # another process finished it
            return root
        # Left-overs of killed runs (their children have exited: we hold the lock).
        for stale in debs_dir.glob(f".tmp-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if root.exists():  # a tree without marker is not ours to trust
            shutil.rmtree(root)
        # The temporary directory lives inside the cache so that the final
        # rename stays on one file system (and therefore is atomic).
        with tempfile.TemporaryDirectory(prefix=f".tmp-{name}-", dir=debs_dir) as tmp:
            download_dir = Path(tmp) / "download"
            unpack_dir = Path(tmp) / "root"
            download_dir.mkdir()
            deb = _apt_download(name, download_dir, apt_get, lock_fd)
            result = _run([dpkg, "-x", str(deb), str(unpack_dir)], Path(tmp), lock_fd)
            if result.returncode != 0:
                raise SamplesUnavailable(f"dpkg -x {deb.name} failed: {result.stderr.strip()[-1000:]}")
            _package_marker(unpack_dir).write_text(
                json.dumps({"package": name, "deb": deb.name, "size": deb.stat().st_size}, indent=2) + "\n"
            )
            os.rename(unpack_dir, root)
    return root


def clipart_root() -> Path:
    """Return the root of the clip-art PNG tree (fetching it if needed).

    Images sit in category folders below it, e.g. ``food/fruit/apple_01.png``.
    """
    return fetch_package(CLIPART_PACKAGE) / "usr" / "share" / "openclipart" / "png"


# --------------------------------------------------------------------------
# Clip art
# --------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int] | None:
    """Return (width, height) read from a PNG's header, or None if not a PNG.

    Reading 24 bytes is ~100x faster than ``Image.open`` and this runs on
    every file in the tree.
    """
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _usable_clipart(path: Path) -> bool:
    """Tell whether *path* is a clip-art file worth using.

    Symlinks are skipped because the package uses ~1,200 of them to file one
    image under several categories; following them would put the same image
    in two classes, or twice into one folder.
    """
    if path.is_symlink() or not path.is_file() or path.suffix.lower() != ".png":
        return False
    size = _png_size(path)
    if size is None:
        return False
    width, height = size
    return min(width, height) >= CLIPART_MIN_SIDE and width * height <= CLIPART_MAX_PIXELS


@functools.cache
def _clipart_files(root: Path) -> tuple[Path, ...]:
    """Return every usable clip-art PNG below *root*, sorted."""
    return tuple(sorted(p for p in root.rglob("*.png") if _usable_clipart(p)))


def _is_under(rel_dir: str, tree: str) -> bool:
    """Tell whether directory *rel_dir* is *tree* or lies below it."""
    return rel_dir == tree or rel_dir.startswith(tree + "/")


def _clipart_label(rel_dir: str) -> str | None:
    """Map a directory (relative to the clip-art root) to its class label.

    Returns None for directories left out of the labelled set.
    """
    if rel_dir in ("", ".") or rel_dir in CLIPART_EXCLUDED_DIRS:
        return None
    if any(_is_under(rel_dir, tree) for tree in CLIPART_EXCLUDED_TREES):
        return None
    for tree in CLIPART_MERGED_TREES:
        if _is_under(rel_dir, tree):
            return tree
    return rel_dir


def _clipart_classes() -> dict[str, list[Path]]:
    """Return every clip-art class (any size) with all its files, sorted."""
    root = clipart_root()
    classes: dict[str, list[Path]] = {}
    for path in _clipart_files(root):
        label = _clipart_label(path.parent.relative_to(root).as_posix())
        if label is not None:
            classes.setdefault(label, []).append(path)
    return dict(sorted(classes.items()))



def category_query(label: str) -> str:
    """The words a person would type for a clip-art category: 'food/meats_and_eggs' -> 'meats and eggs'."""
    return label.rsplit("/", 1)[-1].replace("_", " ")


def clipart_labelled(
    per_class: int = 20,
    min_class_size: int = 20,
    seed: int = 0,
    max_classes: int | None = None,
) -> dict[str, list[Path]]:
    """Return a class-balanced, labelled sample of clip art.

    A label is a category directory relative to :func:`clipart_root`, such as
    ``"food/fruit"``, and its class holds the images directly in that
    directory. Exceptions, all listed in constants: the sub-trees in
    :data:`CLIPART_EXCLUDED_TREES` and directories in
    :data:`CLIPART_EXCLUDED_DIRS` are left out (near-identical icon sets,
    bare shapes, grab-bags), and each sub-tree in :data:`CLIPART_MERGED_TREES`
    is one class (e.g. all flags are ``"signs_and_symbols/flags"``).

    Args:
        per_class: images drawn from each class.
        min_class_size: classes with fewer images are dropped. Classes smaller
            than *per_class* are dropped too, so every class returned has
            exactly *per_class* images.
        seed: the sample is a function of the seed only. Each class draws
            from its own ``random.Random`` seeded with the seed and the
            label, so a class's sample does not change with the other
            arguments.
        max_classes: if given, keep only the this many largest classes
            (ties broken by label).

    Returns:
        Labels in sorted order, each mapped to a sorted list of paths.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    needed = max(min_class_size, per_class)
    classes = {label: paths for label, paths in _clipart_classes().items() if len(paths) >= needed}
    if max_classes is not None:
        largest = sorted(classes, key=lambda label: (-len(classes[label]), label))[:max_classes]
        classes = {label: classes[label] for label in largest}
    sample: dict[str, list[Path]] = {}
    for label in sorted(classes):
        rng = random.Random(f"{seed}/{label}")  # str seeds are stable across runs
        sample[label] = sorted(rng.sample(classes[label], per_class))
    return sample


# --------------------------------------------------------------------------
# Generated folders: shared bookkeeping
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Clip-art folder
# --------------------------------------------------------------------------


def make_clipart_folder(dest: Path, n: int = 2000, seed: int = 0) -> list[Path]:
    """Fill *dest* with *n* distinct clip-art PNGs and return their paths.

    The files are a deterministic (by *seed*) sample of all usable clip art
    (every category, unlike :func:`clipart_labelled`), copied rather than
    linked so that tools under test can modify or delete them, and keep their
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
    root = clipart_root()
    pool = _clipart_files(root)
    if not 0 < n <= len(pool):
        raise ValueError(f"n must be between 1 and {len(pool)} (usable clip-art files), got {n}")
    dest.mkdir(parents=True, exist_ok=True)
    with _locked(dest / ".lock"):
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


# --------------------------------------------------------------------------
# Photo folder
# --------------------------------------------------------------------------


def photo_sources() -> list[Path]:
    """Return the wallpaper images that seed :func:`make_photo_folder`, sorted.

    These are all raster files (JPEG, PNG, WEBP; SVGs are skipped) shipped by
    ``mate-backgrounds`` and ``gnome-backgrounds``, except tiny tiles (longer
    side below :data:`PHOTO_SOURCE_MIN_SIDE`). The JPEGs are real
    photographs; the rest is artwork, which :func:`make_photo_folder` draws
    less often.
    """
    sources: set[Path] = set()
    for package in PHOTO_PACKAGES:
        backgrounds = fetch_package(package) / "usr" / "share" / "backgrounds"
        for path in backgrounds.rglob("*"):
            if path.suffix.lower() not in {".jpg", ".jpeg", ".png", ".webp"} or not path.is_file():
                continue
            with Image.open(path) as image:
                if max(image.size) < PHOTO_SOURCE_MIN_SIDE:
                    continue
            sources.add(path.resolve())  # resolve: a symlinked copy counts once
    return sorted(sources)


def _is_jpeg(path: Path) -> bool:
    return path.suffix.lower() in {".jpg", ".jpeg"}


@dataclass(frozen=True)
class _PhotoPlan:
    """Everything needed to render one photo; drawn up front in the parent.

    Coordinates are in source pixels. The crop is the rectangle of size
    ``crop_w`` x ``crop_h`` centred on (``cx``, ``cy``) and turned by
    ``angle`` degrees; it becomes an ``out_w`` x ``out_h`` image.
    """

    index: int
    attempt: int
    source: str
    cx: float
    cy: float
    crop_w: float
    crop_h: float
    angle: float
    flip: bool
    out_w: int
    out_h: int
    quality: int


def _photo_name(index: int) -> str:
    return f"photo_{index:05d}.jpg"


def _plan_photo(
    index: int,
    attempt: int,
    seed: int,
    sources: Sequence[Path],
    sizes: Sequence[tuple[int, int]],
    min_side: int,
    max_side: int,
) -> _PhotoPlan:
    """Draw the random recipe for photo *index*.

    Each photo has its own ``random.Random`` seeded with (seed, index,
    attempt), so a photo does not depend on how many others are made, and a
    retry (*attempt* > 0) gives a different photo.
    """
    rng = random.Random(f"photo/{seed}/{index}/{attempt}")
    weights = [PHOTO_JPEG_WEIGHT if _is_jpeg(p) else 1.0 for p in sources]
    choice = rng.choices(range(len(sources)), weights=weights)[0]
    width, height = sizes[choice]

    angle = rng.uniform(-PHOTO_MAX_ROTATION, PHOTO_MAX_ROTATION) if rng.random() < 0.5 else 0.0
    cos_a, sin_a = math.cos(math.radians(abs(angle))), math.sin(math.radians(abs(angle)))

    def largest_crop_height(aspect: float) -> float:
        # The turned crop's bounding box must fit in the source:
        #   w*cos + h*sin <= W  and  w*sin + h*cos <= H,  with w = aspect * h.
        return min(width / (aspect * cos_a + sin_a), height / (aspect * sin_a + cos_a))

    # Try camera aspect ratios in random order; take the first one that still
    # leaves room for a varied crop size above the minimum area.
    aspects = list(PHOTO_ASPECTS)
    rng.shuffle(aspects)
    aspects.append(width / height)  # the source's own ratio always fits best
    for aspect in aspects:
        max_h = largest_crop_height(aspect)
        max_area = aspect * max_h * max_h / (width * height)
        if max_area >= PHOTO_MIN_AREA + 0.1:
            break
    area = rng.uniform(PHOTO_MIN_AREA, max_area) if max_area > PHOTO_MIN_AREA else max_area
    crop_h = math.sqrt(area * width * height / aspect)
    crop_w = aspect * crop_h
    # The centre may go anywhere that keeps the turned crop inside the source.
    half_w = (crop_w * cos_a + crop_h * sin_a) / 2
    half_h = (crop_w * sin_a + crop_h * cos_a) / 2
    cx = rng.uniform(half_w, max(half_w, width - half_w))
    cy = rng.uniform(half_h, max(half_h, height - half_h))

    long_side = rng.randint(min_side, max_side)
    if aspect >= 1:
        out_w, out_h = long_side, max(1, round(long_side / aspect))
    else:
        out_w, out_h = max(1, round(long_side * aspect)), long_side
    return _PhotoPlan(
        index=index,
        attempt=attempt,
        source=str(sources[choice]),
        cx=cx,
        cy=cy,
        crop_w=crop_w,
        crop_h=crop_h,
        angle=angle,
        flip=rng.random() < 0.5,
        out_w=out_w,
        out_h=out_h,
        quality=rng.randint(*PHOTO_QUALITY),
    )


def _load_rgb(path: str) -> Image.Image:
    """Decode a source as RGB, flattening any transparency onto black."""
    with Image.open(path) as image:
        image.load()
        if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")


def _render_photo(source: Image.Image, plan: _PhotoPlan) -> Image.Image:
    """Cut, turn, scale and flip one photo out of *source* as *plan* says.

    The crop's axis-aligned bounding box is resized (with Pillow's
    antialiasing) straight to the output scale, then turned and trimmed to the
    output size. Turning after scaling keeps the costly steps proportional to
    the output, not to the (up to 18 MP) source.
    """
    scale = plan.out_w / plan.crop_w  # output pixels per source pixel
    cos_a = math.cos(math.radians(abs(plan.angle)))
    sin_a = math.sin(math.radians(abs(plan.angle)))
    box_w = plan.crop_w * cos_a + plan.crop_h * sin_a
    box_h = plan.crop_w * sin_a + plan.crop_h * cos_a
    # Pad by a few output pixels so that the turn has real data at
    # the edges rather than the fill colour.
    pad = 2 / scale
    left = max(0.0, plan.cx - box_w / 2 - pad)
    top = max(0.0, plan.cy - box_h / 2 - pad)
    right = min(float(source.width), plan.cx + box_w / 2 + pad)
    bottom = min(float(source.height), plan.cy + box_h / 2 + pad)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    image = source.resize(size, Image.Resampling.BICUBIC, box=(left, top, right, bottom), reducing_gap=3.0)
    # Where the crop centre lands in the scaled box (not quite the box centre
    # where the padding was clipped at the source's edge).
    centre_x = (plan.cx - left) * image.width / (right - left)
    centre_y = (plan.cy - top) * image.height / (bottom - top)
    if plan.angle:
        # Bilinear, not bicubic: at 1:1 scale the difference is a faint blur,
        # while bicubic turns take ~3x as long and dominated the run time.
        image = image.rotate(plan.angle, resample=Image.Resampling.BILINEAR, center=(centre_x, centre_y))
    x0 = min(max(0, round(centre_x - plan.out_w / 2)), max(0, image.width - plan.out_w))
    y0 = min(max(0, round(centre_y - plan.out_h / 2)), max(0, image.height - plan.out_h))
    image = image.crop((x0, y0, x0 + plan.out_w, y0 + plan.out_h))
    if image.size != (plan.out_w, plan.out_h):  # rounding left us a pixel short
        image = image.resize((plan.out_w, plan.out_h), Image.Resampling.BICUBIC)
    if plan.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_photos(job: tuple[str, list[_PhotoPlan], bool]) -> list[tuple[int, str]]:
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
                source = _load_rgb(plan.source)
            photo = _render_photo(source, plan)
            tmp = target.with_name(target.name + ".tmp")
            # subsampling 4:2:0 and no optimisation, as camera firmware does.
            photo.save(tmp, "JPEG", quality=plan.quality, subsampling=2, optimize=False)
            os.replace(tmp, target)
        results.append((plan.index, _sha256(target)))
    return results


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
    :func:`photo_sources` (JPEG photographs drawn more often than artwork):
    a random camera aspect ratio, a crop keeping at least 40% of the source
    area at a random place, a small rotation (half of them, up to
    :data:`PHOTO_MAX_ROTATION` degrees), a random mirror, a resize to a long
    side between *min_side* and *max_side*, and a re-encode at JPEG quality
    70..95. Everything is a function of *seed*. No two files are
    byte-identical: if two photos ever collide, the later one is redrawn.

    The work is spread over *workers* processes (1 or less: in this process).
    A second call with the same arguments finds the ``.complete`` marker and
    returns at once; an interrupted call resumes where it stopped.
    """
    dest = Path(dest)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 16 <= min_side <= max_side:
        raise ValueError(f"need 16 <= min_side <= max_side, got {min_side}, {max_side}")
    params: dict[str, object] = {
        "kind": "photos",
        "n": n,
        "seed": seed,
        "min_side": min_side,
        "max_side": max_side,
        "recipe": RECIPE_VERSION,
    }
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
    dest.mkdir(parents=True, exist_ok=True)
    with _locked(dest / ".lock"):
        done = _complete_files(dest, params)
        if done is not None:
            return done
        resumable = _begin(dest, params)
        # Photos from an earlier, larger run would otherwise linger.
        keep = {_photo_name(i) for i in range(1, n + 1)}
        for stale in dest.glob("photo_*.jpg"):
            if stale.name not in keep:
                stale.unlink()

        attempts = dict.fromkeys(range(1, n + 1), 0)
        digests: dict[int, str] = {}
        pending = list(attempts)
        skip_existing = resumable
        context = multiprocessing.get_context("fork")  # no re-import: works however we were loaded
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(context.Pool(workers)) if workers > 1 else None
            while pending:
                plans = [_plan_photo(i, attempts[i], seed, sources, sizes, min_side, max_side) for i in pending]
                jobs = _photo_jobs(dest, plans, skip_existing)
                results = pool.imap_unordered(_make_photos, jobs) if pool else map(_make_photos, jobs)
                for chunk in results:
                    digests.update(chunk)
                # Byte-identical files are vanishingly unlikely, but promised:
                # redraw every photo whose digest an earlier index already has.
                first_of: dict[str, int] = {}
                pending = []
                for index in sorted(digests):
                    if digests[index] in first_of:
                        pending.append(index)
                        attempts[index] += 1
                    else:
                        first_of[digests[index]] = index
                skip_existing = False  # redrawn photos must be overwritten
        files = [dest / _photo_name(i) for i in range(1, n + 1)]
        _finish(dest, params, files)
    return files


def _photo_jobs(
    dest: Path, plans: Sequence[_PhotoPlan], skip_existing: bool
) -> list[tuple[str, list[_PhotoPlan], bool]]:
    """Group *plans* by source into jobs of at most :data:`PHOTO_CHUNK`.

    Grouping lets a worker decode a source once for several photos; capping
    the group size keeps the workers evenly loaded. Big groups go first so
    that the last jobs to finish are short ones.
    """
    by_source: dict[str, list[_PhotoPlan]] = {}
    for plan in plans:
        by_source.setdefault(plan.source, []).append(plan)
    jobs = [
        (str(dest), group[start : start + PHOTO_CHUNK], skip_existing)
        for group in by_source.values()
        for start in range(0, len(group), PHOTO_CHUNK)
    ]
    jobs.sort(key=lambda job: -len(job[1]))
    return jobs


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _cmd_fetch(args: argparse.Namespace) -> None:
    for name in ALL_PACKAGES:
        print(f"{name}: {fetch_package(name)}")
    print(f"clipart root: {clipart_root()}")
    for path in photo_sources():
        print(f"photo source: {path}")


def _cmd_photos(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    files = make_photo_folder(
        Path(args.dest),
        n=args.n,
        seed=args.seed,
        min_side=args.min_side,
        max_side=args.max_side,
        workers=args.workers,
    )
    print(f"{len(files)} photos in {args.dest} ({time.perf_counter() - start:.1f} s)")


def _cmd_clipart(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    files = make_clipart_folder(Path(args.dest), n=args.n, seed=args.seed)
    print(f"{len(files)} clip-art files in {args.dest} ({time.perf_counter() - start:.1f} s)")


def _cmd_labelled(args: argparse.Namespace) -> None:
    sizes = {label: len(paths) for label, paths in _clipart_classes().items()}
    sample = clipart_labelled(
        per_class=args.per_class,
        min_class_size=args.min_class_size,
        seed=args.seed,
        max_classes=args.max_classes,
    )
    print(f"{'class':<32} {'images':>6} {'sampled':>7}")
    for label, paths in sample.items():
        print(f"{label:<32} {sizes[label]:>6} {len(paths):>7}")
    print(f"{len(sample)} classes, {sum(map(len, sample.values()))} images")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="download and unpack all sample packages, print their paths")
    fetch.set_defaults(func=_cmd_fetch)

    photos = commands.add_parser("photos", help="make a folder of distinct camera-sized JPEGs")
    photos.add_argument("dest", help="folder to fill")
    photos.add_argument("--n", type=int, default=2000, help="number of photos (default: %(default)s)")
    photos.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    photos.add_argument("--min-side", type=int, default=1600, help="shortest long side, px (default: %(default)s)")
    photos.add_argument("--max-side", type=int, default=4000, help="longest long side, px (default: %(default)s)")
    photos.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes (default: %(default)s)")
    photos.set_defaults(func=_cmd_photos)

    clipart = commands.add_parser("clipart", help="make a folder of distinct clip-art PNGs")
    clipart.add_argument("dest", help="folder to fill")
    clipart.add_argument("--n", type=int, default=2000, help="number of files (default: %(default)s)")
    clipart.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    clipart.set_defaults(func=_cmd_clipart)

    labelled = commands.add_parser("labelled", help="print the labelled clip-art classes and their sizes")
    labelled.add_argument("--per-class", type=int, default=20, help="images per class (default: %(default)s)")
    labelled.add_argument("--min-class-size", type=int, default=20, help="smallest class kept (default: %(default)s)")
    labelled.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    labelled.add_argument("--max-classes", type=int, default=None, help="keep only the largest classes")
    labelled.set_defaults(func=_cmd_labelled)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except SamplesUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
