"""Labelled sets: folders (label = sub-folder at --depth) and CSVs, and their clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.apps.labelled import load_labelled
from lookalike.errors import InvalidArgument
from lookalike.store.plan import file_hash
from support import make_image


def _folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    for li, (label, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            make_image(root / label / f"{i}.png", seed=seed + 100 * li + i, size=(16, 16))
    return root


def test_folder_labels_are_subfolders(tmp_path: Path) -> None:
    root = _folder(tmp_path / "lab", {"cat": 3, "dog": 2})
    make_image(root / "loose.png", seed=99, size=(16, 16))  # above the label level: ignored
    make_image(root / "dog" / "deeper" / "x.png", seed=98, size=(16, 16))  # below: still "dog"
    data = load_labelled(root)
    assert data.labels == ("cat", "dog")
    assert data.label_of_each.count("dog") == 3
    assert len(data) == 6 and data.source == str(root)
    im = data.images[0]
    assert im.hash == file_hash(str(im.path))


def test_depth_chooses_the_level(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    for group in ("animals", "things"):
        _folder(root / group, {f"{group}-a": 2, f"{group}-b": 2}, seed=len(group))
    assert load_labelled(root).labels == ("animals", "things")
    assert load_labelled(root, depth=2).labels == ("animals-a", "animals-b", "things-a", "things-b")
    with pytest.raises(InvalidArgument, match="depth"):
        load_labelled(root, depth=0)


def test_one_label_is_a_clear_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "lab", {"cat": 3})
    with pytest.raises(InvalidArgument, match="one label only.*'cat'"):
        load_labelled(root)


def test_label_of_one_image_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "lab", {"cat": 3, "lonely": 1})
    with pytest.raises(InvalidArgument, match=r"'lonely'.*1 image.*0\.png.*at least 2"):
        load_labelled(root)
    assert load_labelled(root, min_per_label=1).labels == ("cat", "lonely")


def test_no_images(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="no images"):
        load_labelled(tmp_path / "empty")
    with pytest.raises(InvalidArgument, match="neither a folder nor a .csv"):
        load_labelled(tmp_path / "nothing-here")


def test_csv_relative_and_absolute_paths(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", {"a": 2, "b": 2})
    csv = tmp_path / "labels.csv"
    csv.write_text("label,path\nred,imgs/a/0.png\nred,imgs/a/1.png\n"
                   f"blue,{root / 'b' / '0.png'}\nblue,{root / 'b' / '1.png'}\n")
    data = load_labelled(csv)
    assert data.labels == ("blue", "red")
    assert all(p.is_file() for p in data.paths)
    headerless = tmp_path / "plain.csv"
    headerless.write_text("imgs/a/0.png,x\nimgs/a/1.png,x\nimgs/b/0.png,y\nimgs/b/1.png,y\n")
    assert load_labelled(headerless).labels == ("x", "y")


def test_csv_missing_paths_are_counted_and_shown(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"a": 2})
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nimgs/a/0.png,a\nimgs/a/1.png,a\ngone/1.png,b\ngone/2.png,b\n")
    with pytest.raises(InvalidArgument, match=r"2 of the 4 images.*do not exist.*gone"):
        load_labelled(csv)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nimgs/a/0.png\n")
    with pytest.raises(InvalidArgument, match="row 2"):
        load_labelled(bad)
