"""fsutil: atomic_folder swaps a whole folder in, or leaves the old one as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.fsutil import atomic_folder, atomic_writer


def _write(folder: Path, name: str, text: str) -> None:
    with atomic_writer(folder / name) as f:
        f.write(text.encode())


def test_a_new_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "head"
    with atomic_folder(target) as work:
        _write(work, "a", "1")
        _write(work, "b", "2")
        assert not target.exists()  # nothing at the target until the block ends
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a": "1", "b": "2"}
    assert [p.name for p in tmp_path.iterdir()] == ["head"]  # no work or old folder left


def test_a_failure_leaves_the_old_folder_untouched(tmp_path: Path) -> None:
    target = tmp_path / "head"
    with atomic_folder(target) as work:
        _write(work, "a", "old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as work:
            _write(work, "a", "new")
            raise RuntimeError("crash after the first file")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["head"]


def test_an_existing_folder_is_replaced_not_merged(tmp_path: Path) -> None:
    target = tmp_path / "head"
    with atomic_folder(target) as work:
        _write(work, "stale", "x")
    with atomic_folder(target) as work:
        _write(work, "a", "new")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
