"""WebDataset tar shards, read in place: members are streamed, never extracted to disk.

WebDataset groups the files of one sample by a shared key (the member name up to the first
dot of its base name): ``000123.jpg`` is the image, ``000123.txt`` its caption,
``000123.json`` its metadata, ``000123.cls`` its class. Each image member becomes an item
named ``<shard>#<member>``, with the sample's caption and metadata. Members that are not
regular files (links, devices) and names that would escape a folder (``../x.jpg``, ``/etc/x``)
are reported and passed over: nothing in a shard is ever written anywhere.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..errors import InvalidArgument, MissingExtra
from ..fsutil import user_path
from ..images.discover import is_image_name
from .base import MEMBER_SEPARATOR, PartKey, SkipCallback, SourceItem, read_local
from .table import CAPTION

__all__ = ["WebDatasetSource", "ShardPart", "expand_shards", "is_shard_pattern", "read_member", "split_identity"]

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
CAPTION_SUFFIXES = ("txt", "caption", "text")
#: Members larger than this are passed over: a 256 MiB "image" in a shard is damage or abuse.
MAX_MEMBER_BYTES = 256 * 1024 * 1024


def is_shard_pattern(arg: str) -> bool:
    """True when a command-line argument names tar shards (possibly with ``{a..b}`` or globs)."""
    return arg.lower().endswith(SHARD_SUFFIXES)


def expand_shards(patterns: Sequence[str]) -> list[str]:
    """Absolute shard paths from patterns with brace ranges (``{00000..00127}``) and globs,
    in the order given (a glob's matches sorted).

    Raises:
        InvalidArgument: a pattern matches no file.
    """
    try:
        from braceexpand import braceexpand
    except ImportError as exc:
        raise MissingExtra("braceexpand", "scale", "Shard patterns like 'shards/{00000..00127}.tar'") from exc

    shards: list[str] = []
    for pattern in patterns:
        for expanded in braceexpand(pattern):
            path = user_path(expanded)
            matches = sorted(glob.glob(path)) if glob.has_magic(path) else ([path] if os.path.exists(path) else [])
            if not matches:
                raise InvalidArgument(f"{path}: no such shard (from {pattern!r}); check the pattern")
            shards.extend(matches)
    return list(dict.fromkeys(shards))


def _safe_name(name: str) -> bool:
    norm = posixpath.normpath(name)
    return not (name.startswith("/") or norm == ".." or norm.startswith("../") or "\\" in name or ":" in name)


def _sample_key(name: str) -> tuple[str, str]:
    """``(key, suffix)`` by the WebDataset convention: the base name splits at its first dot."""
    folder, base = posixpath.split(name)
    stem, _, suffix = base.partition(".")
    return posixpath.join(folder, stem), suffix.lower()


def _sample_meta(files: dict[str, bytes]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for suffix, data in files.items():
        text = data.decode("utf-8", "replace").strip()
        if suffix == "json":
            try:
                decoded = json.loads(text)
            except ValueError:
                continue
            if isinstance(decoded, dict):
                meta.update({k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v)
                             for k, v in decoded.items() if v is not None})
        elif suffix in CAPTION_SUFFIXES:
            meta[CAPTION] = text
        elif suffix == "cls":
            meta["cls"] = _class(text)
    return meta


def _class(text: str) -> int | str:
    # Not str.isdigit(): "²" is a digit to it and int() refuses it (ending the shard's read).
    try:
        return int(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class ShardPart:
    """One tar shard; skipped wholesale while its size and mtime match the recorded ones."""

    index: int
    path: str
    key: PartKey | None

    def read(self, on_skip: SkipCallback) -> Iterator[SourceItem]:
        images: list[tuple[tarfile.TarInfo, bytes]] = []
        extras: dict[str, bytes] = {}
        current: str | None = None
        try:
            with tarfile.open(self.path, mode="r|*") as tar:  # a stream: one pass, no seeking
                for member in tar:
                    key, suffix = _sample_key(member.name)
                    if key != current:
                        yield from self._sample(images, extras)
                        images, extras, current = [], {}, key
                    data = self._member_bytes(tar, member, on_skip)
                    if data is None:
                        continue
                    if is_image_name(member.name):
                        images.append((member, data))
                    elif suffix in ("json", "cls", *CAPTION_SUFFIXES):
                        extras[suffix] = data
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            on_skip(self.path, f"cannot read the rest of the shard (truncated or damaged: {exc})")
        yield from self._sample(images, extras)

    def _member_bytes(self, tar: tarfile.TarFile, member: tarfile.TarInfo, on_skip: SkipCallback) -> bytes | None:
        where = f"{self.path}{MEMBER_SEPARATOR}{member.name}"
        if member.isdir():
            return None
        try:
            member.name.encode("utf-8")
        except UnicodeEncodeError:  # tarfile keeps undecodable bytes as surrogates, which SQLite refuses
            where = where.encode("utf-8", "backslashreplace").decode("utf-8")
            on_skip(where, "member name is not UTF-8; not read")
            return None
        if not _safe_name(member.name):
            on_skip(where, "member name leaves the shard's folder (path traversal); not read")
            return None
        if not member.isfile():
            on_skip(where, "not a regular file (a link or device member); not read")
            return None
        if member.size > MAX_MEMBER_BYTES:
            on_skip(where, f"member of {member.size} bytes is over the {MAX_MEMBER_BYTES >> 20} MiB limit")
            return None
        try:
            fh = tar.extractfile(member)
            data = fh.read() if fh is not None else b""
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise EOFError(f"{member.name} is cut short: {exc}") from exc  # the message names the member
        if len(data) != member.size:
            raise EOFError(f"{member.name} ends after {len(data)} of {member.size} bytes")
        return data

    def _sample(self, images: list[tuple[tarfile.TarInfo, bytes]], extras: dict[str, bytes]) -> Iterator[SourceItem]:
        meta = _sample_meta(extras) if extras else None
        for member, data in images:
            yield SourceItem(f"{self.path}{MEMBER_SEPARATOR}{member.name}", member.size,
                             int(member.mtime * 1_000_000_000), data=data, meta=meta)


class WebDatasetSource:
    """Tar shards (``.tar``, ``.tar.gz``) named by paths, brace ranges or globs."""

    sweep_folders: tuple[str, ...] = ()

    def __init__(self, patterns: Sequence[str]) -> None:
        self.shards = expand_shards(patterns)
        self.label = ", ".join(patterns)

    def parts(self, on_skip: SkipCallback) -> Iterator[ShardPart]:
        for index, shard in enumerate(self.shards):
            stat = read_local(shard)
            if isinstance(stat, str):
                on_skip(shard, stat)
                continue
            yield ShardPart(index, shard, PartKey(shard, *stat))


def split_identity(identity: str) -> tuple[str, str]:
    """``(shard path, member name)`` of ``<shard>#<member>``: split after the shard's suffix,
    since a member's name may hold a ``#`` too (``a#1.jpg``)."""
    lower = identity.lower()
    cuts = [i + len(suffix) for suffix in SHARD_SUFFIXES
            if (i := lower.find(suffix + MEMBER_SEPARATOR)) >= 0]
    if not cuts:
        shard, _, name = identity.rpartition(MEMBER_SEPARATOR)
        return shard, name
    cut = min(cuts)
    return identity[:cut], identity[cut + len(MEMBER_SEPARATOR):]


def read_member(identity: str) -> bytes:
    """The bytes of ``<shard>#<member>`` (for thumbnails and query-by-id): one pass over the
    shard up to the member.

    Raises:
        FileNotFoundError: the shard or the member is gone.
    """
    shard, name = split_identity(identity)
    with tarfile.open(shard, mode="r:*") as tar:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise FileNotFoundError(f"{identity}: no such member in the shard") from None
        if not member.isfile() or not _safe_name(name):
            raise FileNotFoundError(f"{identity}: not a regular, safe member")
        fh = tar.extractfile(member)
        assert fh is not None
        return fh.read()
