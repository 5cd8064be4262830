"""Fetch and cache the real face photos used by the face tests and benchmarks.

The photos are the ``tests/test_images`` folder of the ``face_recognition`` 1.3.0 source
distribution on PyPI: three photos of one person (``obama.jpg``, ``obama2.jpg``,
``obama3.jpg``), one of another (``biden.jpg``), two partial faces and a 32-bit PNG. They are
fetched with ``pip download --no-deps --no-binary :all: face_recognition==1.3.0`` (PyPI is
reachable where the Debian mirrors are, and pip is always in the venv), and only that folder
is unpacked, once, into ``cache_dir()/pypi/face_recognition-1.3.0/`` beside the Debian
samples of :mod:`tools.samples`, whose conventions this follows: a per-source ``flock``, a
temporary folder renamed into place when complete, a marker file, and
:class:`~tools.samples.SamplesUnavailable` when the download is impossible. The photos are
never committed to the repository.

Import it as ``from tools import face_samples`` with the repository root on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from .samples import SamplesUnavailable, cache_dir, file_lock

__all__ = ["FACE_PACKAGE", "FACE_VERSION", "FACE_PHOTOS", "SAME_PERSON", "OTHER_PERSON", "PARTIAL_FACES",
           "PEOPLE_OBAMA", "PEOPLE_BIDEN", "NO_FACE", "face_images_dir", "face_images", "people_folder"]

FACE_PACKAGE = "face_recognition"
FACE_VERSION = "1.3.0"
#: The photos in the sdist's tests/test_images, by file name.
FACE_PHOTOS: tuple[str, ...] = (
    "32bit.png", "biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg",
    "obama_partial_face.jpg", "obama_partial_face2.jpg",
)
#: Photos of one person (each holds one face).
SAME_PERSON: tuple[str, ...] = ("obama.jpg", "obama2.jpg", "obama3.jpg")
#: A photo of someone else.
OTHER_PERSON: tuple[str, ...] = ("biden.jpg",)
#: Photos in which part of the face is cut off or covered.
PARTIAL_FACES: tuple[str, ...] = ("obama_partial_face.jpg", "obama_partial_face2.jpg")

#: What :func:`people_folder` writes: Obama's faces (3 photos, a PNG copy of one, 2 partial
#: faces), Biden's (his photo and 2 copies derived from it), and 2 generated photos of no one.
PEOPLE_OBAMA: tuple[str, ...] = ("obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png", "obama_partial_face.jpg",
                                 "obama_partial_face2.jpg")
PEOPLE_BIDEN: tuple[str, ...] = ("biden.jpg", "biden_mirrored.jpg", "biden_cropped.jpg")
NO_FACE: tuple[str, ...] = ("landscape.jpg", "pattern.png")

_MEMBER_DIR = PurePosixPath("tests", "test_images")
#: pip builds the sdist's metadata before it saves it; that, not the 3 MB, takes the time.
_PIP_TIMEOUT_S = 300


def _root() -> Path:
    return cache_dir() / "pypi" / f"{FACE_PACKAGE}-{FACE_VERSION}"


def _marker(root: Path) -> Path:
    return root / ".package.json"


def _pip_download(dest: Path, lock_fd: int) -> Path:
    """Download the sdist into *dest* with pip and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-d", str(dest), f"{FACE_PACKAGE}=={FACE_VERSION}"]
    try:
        # The child inherits the lock (as in samples._run): a killed run's orphaned pip keeps
        # the next run from starting alongside it.
        result = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False,
                                pass_fds=(lock_fd,), timeout=_PIP_TIMEOUT_S,
                                env={**os.environ, "PIP_NO_INPUT": "1", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SamplesUnavailable(f"pip download {FACE_PACKAGE}=={FACE_VERSION} could not run: {exc}") from exc
    if result.returncode != 0:
        raise SamplesUnavailable(
            f"pip download {FACE_PACKAGE}=={FACE_VERSION} failed: {result.stderr.strip()[-1000:]}. "
            f"PyPI must be reachable, or $LOOKALIKE_SAMPLES_DIR must point at a cache that holds "
            f"pypi/{FACE_PACKAGE}-{FACE_VERSION}/."
        )
    found = sorted(dest.glob(f"{FACE_PACKAGE}-{FACE_VERSION}.tar.gz"))
    if len(found) != 1:
        raise SamplesUnavailable(f"pip download saved no {FACE_PACKAGE}-{FACE_VERSION}.tar.gz in {dest}")
    return found[0]


def _unpack_photos(sdist: Path, out_dir: Path) -> None:
    """Copy the test photos, and nothing else, out of *sdist* into *out_dir*.

    Members are picked by name from :data:`FACE_PHOTOS`, never extracted by the path the
    archive gives, so an odd archive cannot write outside *out_dir*.
    """
    out_dir.mkdir(parents=True)
    wanted = set(FACE_PHOTOS)
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if not member.isfile() or path.name not in wanted or path.parent.parts[-2:] != _MEMBER_DIR.parts:
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            with handle, open(out_dir / path.name, "wb") as out:
                shutil.copyfileobj(handle, out)
            wanted.discard(path.name)
    if wanted:
        raise SamplesUnavailable(f"{sdist.name} lacks {sorted(wanted)} in tests/test_images")


def face_images_dir() -> Path:
    """The folder holding the face photos (fetching them once); the names are :data:`FACE_PHOTOS`.

    Safe to call from several processes at once: one downloads while the others wait on the
    lock, and the folder appears only by an atomic rename of a finished tree.

    Raises:
        SamplesUnavailable: pip cannot download the sdist (no network, no PyPI), or the
            archive lacks a photo.
    """
    root = _root()
    images = root / "test_images"
    if _marker(root).is_file():  # fast path without the lock
        return images
    parent = root.parent
    parent.mkdir(parents=True, exist_ok=True)
    with file_lock(parent / f".{root.name}.lock") as lock_fd:
        if _marker(root).is_file():  # another process finished it
            return images
        for stale in parent.glob(f".tmp-{root.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if root.exists():  # a tree without its marker is not ours to trust
            shutil.rmtree(root)
        with tempfile.TemporaryDirectory(prefix=f".tmp-{root.name}-", dir=parent) as tmp:
            download_dir = Path(tmp) / "download"
            unpack_dir = Path(tmp) / "root"
            download_dir.mkdir()
            sdist = _pip_download(download_dir, lock_fd)
            _unpack_photos(sdist, unpack_dir / "test_images")
            _marker(unpack_dir).write_text(json.dumps(
                {"package": FACE_PACKAGE, "version": FACE_VERSION, "sdist": sdist.name,
                 "size": sdist.stat().st_size}, indent=2) + "\n")
            os.rename(unpack_dir, root)
    return images


def face_images() -> dict[str, Path]:
    """Every face photo by file name (see :data:`FACE_PHOTOS`), fetching them once.

    Raises:
        SamplesUnavailable: as :func:`face_images_dir`.
    """
    folder = face_images_dir()
    return {name: folder / name for name in FACE_PHOTOS}


def people_folder(dest: Path) -> Path:
    """Fill ``dest`` with 11 photos for the people tests and the demo (idempotent): the 7
    :data:`FACE_PHOTOS`; Biden mirrored, and Biden cropped and re-encoded at JPEG quality 80, so
    that he has the 3 faces a person needs (:data:`PEOPLE_BIDEN`); and two generated photos
    with no face (:data:`NO_FACE`). Returns ``dest``.

    Raises:
        SamplesUnavailable: as :func:`face_images_dir`.
    """
    from PIL import Image, ImageOps

    dest.mkdir(parents=True, exist_ok=True)
    for name, path in face_images().items():
        if not (dest / name).exists():
            shutil.copy2(path, dest / name)
    with Image.open(dest / "biden.jpg") as biden:
        biden = ImageOps.exif_transpose(biden).convert("RGB")
        ImageOps.mirror(biden).save(dest / "biden_mirrored.jpg", quality=90)
        w, h = biden.size
        biden.crop((w // 10, 0, w - w // 10, int(h * 0.6))).save(dest / "biden_cropped.jpg", quality=80)
    _no_face_photos(dest)
    return dest


def _no_face_photos(folder: Path) -> None:
    """Two generated pictures without faces: a sky over hills, and a coloured pattern."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    h, w = 480, 720
    y = np.linspace(0, 1, h)[:, None, None]
    sky = np.concatenate([120 + 80 * (1 - y), 170 + 50 * (1 - y), 235 + 0 * y], axis=2) * np.ones((1, w, 1))
    hills = (np.sin(np.linspace(0, 6, w)) * 40 + 300).astype(int)
    ground = np.arange(h)[:, None] >= hills[None, :]
    sky[ground] = np.array([70, 120, 50]) + rng.normal(0, 12, (int(ground.sum()), 3))
    Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8)).save(folder / "landscape.jpg", quality=90)
    xx, yy = np.meshgrid(np.linspace(0, 8 * np.pi, 400), np.linspace(0, 8 * np.pi, 300))
    pattern = np.stack([np.sin(xx) * 127 + 128, np.cos(yy) * 127 + 128, np.sin(xx + yy) * 127 + 128], axis=2)
    Image.fromarray(pattern.astype(np.uint8)).save(folder / "pattern.png")
