"""Fixtures for the duplicates tests: hand-built groups over plain files, and tree listings."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import pytest

from lookalike.store.items import Item
from lookalike.store.plan import file_hash


def tree_listing(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: relative path -> (kind, sha256 or link target, mode, mtime_ns, inode)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p), st.st_mode)
            elif p.is_dir():
                out[rel] = ("dir", None, st.st_mode)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture
def tree() -> Callable[[Path], dict[str, tuple]]:
    """``tree(root)``: a full listing of ``root`` with the sha256 of every file (see :func:`tree_listing`)."""
    return tree_listing


def make_item(item_id: int, path: Path) -> Item:
    st = path.stat()
    return Item(item_id, str(path), st.st_size, st.st_mtime_ns, file_hash(str(path)), 80, 60, "ok")


@pytest.fixture
def make_group() -> Callable[..., object]:
    """``make_group(group_id, kept_path, *other_paths, ids=..., reference=set(), tier="exact")``: a
    :class:`DuplicateGroup` built by hand; members keep their order, the first is kept."""
    from lookalike.store.dupes import DuplicateGroup, Member

    def build(group_id: int, kept: Path, *others: Path, ids: list[int] | None = None,
              reference: frozenset[Path] | set[Path] = frozenset(), tier: str = "exact") -> DuplicateGroup:
        paths = [kept, *others]
        ids = ids or list(range(group_id, group_id + len(paths)))
        members = tuple(Member(item=make_item(i, p), traits=None, similarity=1.0 if n == 0 else 0.99,
                               tier="exact" if make_item(i, p).hash == make_item(ids[0], kept).hash else tier,
                               keep=n == 0, reference=p in reference)
                        for n, (i, p) in enumerate(zip(ids, paths)))
        return DuplicateGroup(id=ids[0], kind="duplicate", tier=min((m.tier for m in members), key=_TIERS.index),
                              similarity=min(m.similarity for m in members), members=members)

    return build


_TIERS = ["semantic", "perceptual", "exact"]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def library(tmp_path: Path) -> dict[str, Path]:
    """A small photo folder: ``a`` and its byte copies ``a_copy`` (in a subfolder) and
    ``a_again``; ``b`` and a near (different-bytes) copy ``b_near``; a ``ref/`` folder holding
    another copy of ``a``. Everything lives under ``tmp_path/lib``."""
    lib = tmp_path / "lib"
    a = os.urandom(5000)
    b = os.urandom(7000)
    return {
        "a": write(lib / "photos" / "a.jpg", a),
        "a_copy": write(lib / "photos" / "2020" / "a_copy.jpg", a),
        "a_again": write(lib / "other" / "a_again.jpg", a),
        "b": write(lib / "photos" / "b.jpg", b),
        "b_near": write(lib / "other" / "b_near.jpg", b[:-10] + os.urandom(10)),
        "ref_a": write(lib / "ref" / "a.jpg", a),
    }
