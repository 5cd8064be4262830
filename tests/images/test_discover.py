"""discover(): which files a scan yields, in what order, and what it reports as skipped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import lookalike.images.discover as discover_mod
from lookalike.images.discover import (
    DEFAULT_EXCLUDES,
    HEIF_EXTENSIONS,
    IMAGE_EXTENSIONS,
    FoundFile,
    discover,
    is_image_name,
)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def scan(*roots: Path | str, **kwargs: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """Run discover; return (found paths, skipped (path, reason))."""
    skipped: list[tuple[str, str]] = []
    found = [f.path for f in discover(list(roots), on_skip=lambda p, r: skipped.append((p, r)), **kwargs)]
    return found, skipped


def rel(paths: list[str], root: Path) -> list[str]:
    return [os.path.relpath(p, root) for p in paths]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small library: nested folders, mixed-case extensions, non-images."""
    root = tmp_path / "lib"
    for name in ["b.png", "a.JPG", "c.txt", "z/deep/1.gif", "z/deep/0.webp", "m/x.jpeg", "m/readme.md", "m/y.png.bak"]:
        touch(root / name)
    return root


# ----------------------------------------------------------------- walking


def test_recurses_in_sorted_order(tree: Path) -> None:
    """Each folder's files come sorted by name, then its sub-folders, depth first, sorted."""
    found, skipped = scan(tree)
    assert rel(found, tree) == ["a.JPG", "b.png", "m/x.jpeg", "z/deep/0.webp", "z/deep/1.gif"]
    assert skipped == []


def test_order_is_stable_across_runs(tree: Path) -> None:
    """Two scans of an unchanged tree agree exactly (incremental indexing relies on it)."""
    assert scan(tree) == scan(tree)


def test_found_file_carries_stat_fields(tree: Path) -> None:
    """size and mtime_ns are those of the file on disk."""
    touch(tree / "big.png", b"x" * 1234)
    (f,) = [f for f in discover([tree]) if f.path.endswith("big.png")]
    st = os.stat(tree / "big.png")
    assert f == FoundFile(str(tree / "big.png"), 1234, st.st_mtime_ns)


def test_extension_filter_is_case_insensitive_and_exact(tree: Path) -> None:
    """.JPG counts; .txt, .md and .png.bak do not."""
    found, _ = scan(tree)
    assert not any(p.endswith((".txt", ".md", ".bak")) for p in found)
    assert str(tree / "a.JPG") in found


def test_custom_extensions(tree: Path) -> None:
    """``extensions`` replaces the default set."""
    found, _ = scan(tree, extensions=frozenset({".gif", ".txt"}))
    assert rel(found, tree) == ["c.txt", "z/deep/1.gif"]


def test_is_image_name() -> None:
    """The same rule as discovery, for single names."""
    assert is_image_name("IMG_0001.JPEG") and is_image_name("x.tiff")
    assert not is_image_name("x.png.part") and not is_image_name("png")
    assert is_image_name("x.raw", frozenset({".raw"}))


# ----------------------------------------------------------------- hidden and excluded


def test_hidden_files_and_folders_are_skipped_unless_asked(tree: Path) -> None:
    """Dot-files and dot-folders (.thumbnails, .git) are passed over silently by default."""
    touch(tree / ".hidden.png")
    touch(tree / ".thumbnails" / "t.png")
    touch(tree / "m" / ".cache" / "c.png")
    found, skipped = scan(tree)
    assert not any("/." in p for p in found)
    assert skipped == []
    found_all, _ = scan(tree, include_hidden=True)
    assert set(rel(found_all, tree)) - set(rel(found, tree)) == {".hidden.png", ".thumbnails/t.png", "m/.cache/c.png"}


def test_hidden_root_is_still_walked(tmp_path: Path) -> None:
    """Hiding applies below the root: a root that is itself a dot-folder is scanned."""
    touch(tmp_path / ".photos" / "a.png")
    assert rel(scan(tmp_path / ".photos")[0], tmp_path) == [".photos/a.png"]


def test_default_excludes(tree: Path) -> None:
    """Synology @eaDir, __MACOSX, $RECYCLE.BIN, node_modules and lookalike collections (*.lkl)."""
    for folder in ["@eaDir", "__MACOSX", "$RECYCLE.BIN", "node_modules", "pics.lkl", "m/inner.lkl"]:
        touch(tree / folder / "p.png")
    found, _ = scan(tree)
    assert rel(found, tree) == ["a.JPG", "b.png", "m/x.jpeg", "z/deep/0.webp", "z/deep/1.gif"]
    assert "*.lkl" in DEFAULT_EXCLUDES


def test_exclude_by_name_glob(tree: Path) -> None:
    """A pattern matching a folder or file name excludes it wherever it is."""
    touch(tree / "z" / "raw" / "r.png")
    touch(tree / "m" / "draft_1.png")
    found, _ = scan(tree, exclude=["raw", "draft_*"])
    assert rel(found, tree) == ["a.JPG", "b.png", "m/x.jpeg", "z/deep/0.webp", "z/deep/1.gif"]


def test_exclude_by_relative_path_glob(tree: Path) -> None:
    """A pattern with a slash matches the path relative to the root."""
    touch(tree / "m" / "deep" / "keep.png")
    found, _ = scan(tree, exclude=["z/*", "m/deep"])
    assert rel(found, tree) == ["a.JPG", "b.png", "m/x.jpeg"]


def test_excludes_add_to_the_defaults(tree: Path) -> None:
    """Passing exclude= keeps the default excludes."""
    touch(tree / "c.lkl" / "v.png")
    found, _ = scan(tree, exclude=["m"])
    assert rel(found, tree) == ["a.JPG", "b.png", "z/deep/0.webp", "z/deep/1.gif"]


# ----------------------------------------------------------------- symbolic links


def test_symlinked_file_is_followed_under_its_own_path(tree: Path, tmp_path: Path) -> None:
    """A link to an image is yielded at the link's path, with the target's size."""
    target = touch(tmp_path / "elsewhere" / "t.png", b"12345")
    (tree / "link.png").symlink_to(target)
    (f,) = [f for f in discover([tree]) if f.path.endswith("link.png")]
    assert f.path == str(tree / "link.png") and f.size == 5


def test_symlinked_folder_is_followed(tree: Path, tmp_path: Path) -> None:
    """A link to a folder outside the root is walked, its files under the link's path."""
    touch(tmp_path / "outside" / "o.png")
    (tree / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    found, skipped = scan(tree)
    assert str(tree / "linked" / "o.png") in found
    assert skipped == []


def test_follow_symlinks_false_ignores_links(tree: Path, tmp_path: Path) -> None:
    """With follow_symlinks=False, neither file nor folder links are entered."""
    touch(tmp_path / "outside" / "o.png")
    (tree / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tree / "link.png").symlink_to(tree / "b.png")
    found, _ = scan(tree, follow_symlinks=False)
    assert rel(found, tree) == ["a.JPG", "b.png", "m/x.jpeg", "z/deep/0.webp", "z/deep/1.gif"]


def test_symlink_loop_terminates_and_is_reported(tree: Path) -> None:
    """A folder linking to its parent (or the root) is entered once; the loop is reported."""
    (tree / "m" / "up").symlink_to("..", target_is_directory=True)
    (tree / "z" / "deep" / "root").symlink_to(tree, target_is_directory=True)
    found, skipped = scan(tree)
    assert rel(found, tree) == ["a.JPG", "b.png", "m/x.jpeg", "z/deep/0.webp", "z/deep/1.gif"]
    reported = {path: reason for path, reason in skipped}
    assert set(reported) == {str(tree / "m" / "up"), str(tree / "z" / "deep" / "root")}
    assert all("already visited" in reason for reason in reported.values())


def test_mutual_symlink_loop_terminates(tmp_path: Path) -> None:
    """Two folders linking to each other: every real file once, and the scan ends."""
    touch(tmp_path / "a" / "1.png")
    touch(tmp_path / "b" / "2.png")
    (tmp_path / "a" / "to_b").symlink_to(tmp_path / "b", target_is_directory=True)
    (tmp_path / "b" / "to_a").symlink_to(tmp_path / "a", target_is_directory=True)
    found, skipped = scan(tmp_path / "a")
    assert rel(found, tmp_path) == ["a/1.png", "a/to_b/2.png"]
    assert [p for p, _ in skipped] == [str(tmp_path / "a" / "to_b" / "to_a")]


def test_real_folder_keeps_its_path_when_a_link_to_it_sorts_first(tmp_path: Path) -> None:
    """Regression: a link sorting before its target claimed the target's files (indexed under
    the link's path) and the real folder was reported as a 'symlink loop or duplicate'."""
    root = tmp_path / "lib"
    touch(root / "zoo" / "lion.png")
    (root / "aaa_favourites").symlink_to(root / "zoo", target_is_directory=True)
    found, skipped = scan(root)
    assert found == [str(root / "zoo" / "lion.png")]
    assert [p for p, _ in skipped] == [str(root / "aaa_favourites")]


def test_broken_symlink_is_reported(tree: Path) -> None:
    """A dangling link is reported as broken, not raised and not yielded."""
    (tree / "gone.png").symlink_to(tree / "does-not-exist.png")
    found, skipped = scan(tree)
    assert str(tree / "gone.png") not in found
    assert skipped == [(str(tree / "gone.png"), "broken symbolic link")]


def test_self_referencing_link_does_not_hang(tree: Path) -> None:
    """A link pointing at itself cannot be resolved; it is reported, not followed."""
    (tree / "self.png").symlink_to(tree / "self.png")
    found, skipped = scan(tree)
    assert str(tree / "self.png") not in found
    assert [p for p, _ in skipped] == [str(tree / "self.png")]


# ----------------------------------------------------------------- roots


def test_single_file_root_is_yielded_whatever_its_extension(tree: Path) -> None:
    """A file given as a root is always yielded (the user asked for it by name), once."""
    found, skipped = scan(tree / "c.txt", tree / "b.png", tree / "b.png")
    assert found == [str(tree / "c.txt"), str(tree / "b.png")]
    assert skipped == []


def test_file_root_and_folder_root_do_not_duplicate(tree: Path) -> None:
    """A file named as a root and also found in a folder root is yielded once."""
    found, _ = scan(tree / "b.png", tree)
    assert found.count(str(tree / "b.png")) == 1


def test_missing_root_is_reported_and_others_still_scanned(tree: Path, tmp_path: Path) -> None:
    """A root that does not exist (unmounted drive, typo) is reported; the rest proceeds."""
    missing = tmp_path / "no-such-folder"
    found, skipped = scan(missing, tree)
    assert len(found) == 5
    assert len(skipped) == 1 and skipped[0][0] == str(missing)
    assert "cannot access" in skipped[0][1]


def test_relative_and_home_roots_become_absolute(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative roots and ~ are expanded, so stored paths are absolute."""
    monkeypatch.chdir(tree.parent)
    found, _ = scan(Path(tree.name))
    assert found[0] == str(tree / "a.JPG")
    monkeypatch.setenv("HOME", str(tree.parent))
    assert scan("~/" + tree.name)[0] == found


def test_nested_roots_yield_each_file_once(tree: Path) -> None:
    """A root inside another root adds nothing twice."""
    found, _ = scan(tree, tree / "z")
    assert len(found) == len(set(found)) == 5


def test_unreadable_folder_is_reported(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be listed is reported and the scan continues.

    The refusal is simulated (root, as in CI containers, reads any folder whatever its mode)."""
    locked = tree / "m"
    real = os.scandir

    def scandir(path: Any) -> Any:
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real(path)

    monkeypatch.setattr(discover_mod.os, "scandir", scandir)
    found, skipped = scan(tree)
    assert rel(found, tree) == ["a.JPG", "b.png", "z/deep/0.webp", "z/deep/1.gif"]
    assert skipped[0][0] == str(locked) and "cannot list folder" in skipped[0][1]


# ----------------------------------------------------------------- HEIC


@pytest.mark.parametrize("available", [True, False])
@pytest.mark.parametrize("libvips_avif", [True, False])
def test_heic_extensions_only_with_pillow_heif(
    tree: Path, monkeypatch: pytest.MonkeyPatch, available: bool, libvips_avif: bool
) -> None:
    """.heic/.heif/.avif are scanned only when pillow-heif can read them, except .avif when
    libvips (the default decoder) reads it."""
    monkeypatch.setattr(discover_mod, "heif_available", lambda: available)
    monkeypatch.setattr(discover_mod, "avif_via_libvips", lambda: libvips_avif)
    touch(tree / "IMG_1.HEIC")
    touch(tree / "IMG_2.avif")
    found, _ = scan(tree)
    heif_found = [p for p in found if p.lower().endswith((".heic", ".avif"))]
    expected = [str(tree / "IMG_1.HEIC")] if available else []
    expected += [str(tree / "IMG_2.avif")] if available or libvips_avif else []
    assert heif_found == expected
    assert is_image_name("x.heic") is available
    assert is_image_name("x.avif") is (available or libvips_avif)


def test_extension_sets() -> None:
    """The documented extension sets stay lower-case and disjoint."""
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS | HEIF_EXTENSIONS)
    assert not IMAGE_EXTENSIONS & HEIF_EXTENSIONS
