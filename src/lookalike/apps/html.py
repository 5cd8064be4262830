"""What the self-contained HTML pages share: inlined thumbnails, checked destinations and
atomic writes.

The pages (the duplicates report, the clusters contact sheets, the ``report`` site) open
offline and can be mailed or archived: images travel as base64 ``data:`` URIs, so nothing
here ever names a URL. Nothing here changes a file but the page written.
"""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from PIL import Image

from ..errors import InvalidArgument, UnreadableImage
from ..fsutil import atomic_writer
from ..images.decode import decode_image
from ..progress import ProgressCallback, ProgressEvent

__all__ = ["THUMBNAIL_SIDE", "human_bytes", "html_destination", "item_thumbnail_maker", "save_page",
           "thumbnail_bytes", "thumbnail_data_uri", "thumbnails"]

#: Longest side of a page's thumbnails, in pixels.
THUMBNAIL_SIDE = 160
_JPEG_QUALITY = 75


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (binary units)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def thumbnail_bytes(path: str | os.PathLike[str] | bytes, side: int = THUMBNAIL_SIDE, *,
                    name: str | None = None) -> bytes:
    """The image (a file, or encoded bytes: a tar member, a downloaded copy) as JPEG bytes,
    its longer side at most ``side`` px (decoded as for embedding: EXIF rotation, alpha
    flattened on white). ``name`` names it in errors (default: the path).

    Raises:
        UnreadableImage: the file cannot be decoded (gone, damaged, too large).
    """
    decoded = decode_image(path, min_side=side, name=name)
    img = decoded.image
    try:
        img.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
    finally:
        img.close()
    return buf.getvalue()


def thumbnail_data_uri(path: str | os.PathLike[str] | bytes, side: int = THUMBNAIL_SIDE, *,
                       name: str | None = None) -> str:
    """The image as a ``data:image/jpeg;base64,...`` URI, its longer side at most ``side`` px
    (``path`` and ``name`` as for :func:`thumbnail_bytes`).

    Raises:
        UnreadableImage: the file cannot be decoded (gone, damaged, too large).
    """
    return "data:image/jpeg;base64," + base64.b64encode(thumbnail_bytes(path, side, name=name)).decode("ascii")


def item_thumbnail_maker(reader: Any) -> Callable[[str, int], str]:
    """A ``make`` for :func:`thumbnails` over item identities (files, tar members, URLs):
    ``reader`` is the collection's :class:`~lookalike.store.item_bytes.ItemReader` (or anything
    with its ``source(path)``), which raises ``ImageUnavailable`` for an image that is gone."""

    def make(path: str, side: int) -> str:
        return thumbnail_data_uri(reader.source(path), side, name=path)

    return make


def thumbnails(paths: Sequence[Any], side: int = THUMBNAIL_SIDE, *, workers: int | None = None,
               progress: ProgressCallback | None = None,
               make: Callable[[Any, int], Any] = thumbnail_data_uri) -> Iterator[Any]:
    """``make(path, side)`` of each path (a data URI by default; None where the image is
    unreadable), in order, on ``workers`` threads (Pillow releases the GIL while decoding).
    ``make`` may take anything ``paths`` holds (an item, say) and return anything.

    ``progress`` gets an ``"embed"`` event per image (``done`` of ``total``) and a ``"skip"``
    event for each that cannot be read.
    """
    workers = workers or min(4, os.cpu_count() or 1)

    def one(path: Any) -> Any:
        try:
            return make(path, side)
        except UnreadableImage as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, result in enumerate(pool.map(one, paths), 1):
            if isinstance(result, UnreadableImage):
                if progress:
                    progress(ProgressEvent("skip", path=result.path, reason=result.reason))
                result = None
            if progress:
                progress(ProgressEvent("embed", done=done, total=len(paths)))
            yield result


def html_destination(path: str | os.PathLike[str], example: str = "report.html", what: str = "report") -> Path:
    """``path`` as a place a page (or another output file: ``what`` names it in messages) can
    be written to, checked before any work is done; ``example`` is the file name suggested
    when ``path`` is a folder.

    Raises:
        InvalidArgument: its folder is missing, or it is a folder itself.
    """
    dest = Path(path).expanduser()
    if not dest.parent.is_dir():
        raise InvalidArgument(f"cannot write the {what} {dest}: no such folder {dest.parent}")
    if dest.is_dir():
        raise InvalidArgument(f"cannot write the {what} {dest}: it is a folder; name a file, e.g. {dest}/{example}")
    return dest


def _umask() -> int:
    mask = os.umask(0o22)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def save_page(path: str | os.PathLike[str], write: Callable[[IO[str]], None], *, example: str = "report.html") -> Path:
    """Call ``write(stream)`` into the file at ``path``, atomically (a half-written page never
    replaces a good one) and readable by others (a page to share, not a private temp file).
    Returns the path written.

    Raises:
        InvalidArgument: the file cannot be written there (its folder is missing or read-only).
    """
    dest = html_destination(path, example)
    try:
        with atomic_writer(dest, durable=False) as raw:
            os.fchmod(raw.fileno(), 0o666 & ~_umask())
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
            write(text)
            text.flush()
            text.detach()  # the atomic writer closes the file itself
    except OSError as exc:
        raise InvalidArgument(f"cannot write the report {dest}: {exc.strerror or exc}") from None
    return dest
