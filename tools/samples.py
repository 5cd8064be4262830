"""Fetch and cache the real sample images used by lookalike's tests, demo and benchmarks.

The sandboxes this project is developed and tested in have no general internet
access, only the Debian package mirrors. So the samples come from three Debian
packages that ship freely licensed images:

* ``openclipart-png``: about 6,900 public-domain clip-art PNGs, filed in
  category folders (``animals/birds``, ``food/fruit``, ...). The folders serve
  as class labels for evaluation (:func:`clipart_labelled`).
* ``mate-backgrounds`` and ``gnome-backgrounds``: large desktop wallpapers
  (photographs as JPEG, and artwork as PNG/WEBP), listed by :func:`photo_sources`.

A package is fetched with ``apt-get download`` and unpacked with ``dpkg -x``
(neither needs the package to be installed), once, into :func:`cache_dir`.

Benchmark-sized folders made from these images are in :mod:`tools.bench_data`. Only
the standard library and Pillow are used. Import it as ``from tools import samples``
with the repository root on ``sys.path`` (pytest's ``pythonpath`` setting puts it there
for the tests; the demo and the benchmarks insert it themselves).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image

__all__ = [
    "ALL_PACKAGES", "CLIPART_EXCLUDED_DIRS", "CLIPART_EXCLUDED_TREES", "CLIPART_MERGED_TREES",
    "SamplesUnavailable", "cache_dir", "category_query", "clipart_files", "clipart_label",
    "clipart_labelled", "clipart_root", "fetch_package", "file_lock", "photo_sources",
]

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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class SamplesUnavailable(RuntimeError):
    """The sample images cannot be fetched here (no apt-get, no mirror, ...).

    Tests should turn this into a skip, not a failure.
    """


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
def file_lock(lock_file: Path) -> Iterator[int]:
    """Hold an exclusive ``flock`` on *lock_file* for the ``with`` body.

    Yields the lock's file descriptor. ``flock`` locks go away with the last
    process holding the descriptor, so a killed run never leaves a stale
    lock behind (unlike lock files created with O_EXCL); and a child given
    the descriptor keeps the lock held until it exits (see :func:`_run`).
    Also used by :mod:`tools.bench_data` for its generated folders.
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
    with file_lock(debs_dir / f".{name}.lock") as lock_fd:
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
def _clipart_files_below(root: Path) -> tuple[Path, ...]:
    """Return every usable clip-art PNG below *root*, sorted."""
    return tuple(sorted(p for p in root.rglob("*.png") if _usable_clipart(p)))


def clipart_files() -> tuple[Path, ...]:
    """Return every usable clip-art PNG (all categories, labelled or not), sorted."""
    return _clipart_files_below(clipart_root())


def _is_under(rel_dir: str, tree: str) -> bool:
    """Tell whether directory *rel_dir* is *tree* or lies below it."""
    return rel_dir == tree or rel_dir.startswith(tree + "/")


def clipart_label(rel_dir: str) -> str | None:
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
    for path in _clipart_files_below(root):
        label = clipart_label(path.parent.relative_to(root).as_posix())
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


def photo_sources() -> list[Path]:
    """Return the wallpaper images (the seeds of :func:`tools.bench_data.make_photo_folder`), sorted.

    These are all raster files (JPEG, PNG, WEBP; SVGs are skipped) shipped by
    ``mate-backgrounds`` and ``gnome-backgrounds``, except tiny tiles (longer
    side below :data:`PHOTO_SOURCE_MIN_SIDE`). The JPEGs are real
    photographs; the rest is artwork, which the photo folders draw less often.
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
