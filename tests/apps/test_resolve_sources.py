"""Resolving duplicates among items that are not files (tar members, URLs): they are refused
with a reason, and the files beside them are acted on as usual."""

from __future__ import annotations

import dataclasses

import pytest

from lookalike.apps.dupes import plan, resolve
from lookalike.store.dupes import DuplicateGroup


def _as_path(group: DuplicateGroup, index: int, path: str) -> DuplicateGroup:
    """``group`` with member ``index`` standing for ``path`` (a URL, a tar member)."""
    members = list(group.members)
    members[index] = dataclasses.replace(members[index], item=dataclasses.replace(members[index].item, path=path))
    return dataclasses.replace(group, members=tuple(members))


@pytest.mark.parametrize("action", ["move", "hardlink", "symlink"])
def test_members_and_urls_are_refused_with_a_reason(tmp_path, library, make_group, tree, action):
    group = make_group(1, library["a"], library["a_copy"], library["a_again"], library["b"], ids=[1, 2, 3, 4])
    member, url = f"{tmp_path}/shards/000.tar#s/000.jpg", "https://example.com/a.jpg"
    group = _as_path(_as_path(group, 2, member), 3, url)
    before = tree(tmp_path / "lib")
    report = resolve(None, [group], action, to=tmp_path / "q", journal_dir=tmp_path / "j")
    reasons = {s.path: r for s, r in report.skipped}
    assert "member of a tar shard" in reasons[member] and "only files on disk" in reasons[member]
    assert "is a URL" in reasons[url] and "only files on disk" in reasons[url]
    assert str(library["a_copy"]) not in reasons  # the real duplicate is still planned
    for planned in (action, "delete"):  # delete (a move into the trash) plans the same
        assert [s.path for s in plan([group], planned, to=tmp_path / "q", trash=tmp_path / "t")] == [
            str(library["a_copy"])]
    assert tree(tmp_path / "lib") == before  # a dry run


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_a_file_is_not_linked_to_a_kept_url(tmp_path, library, make_group, tree, kind):
    group = _as_path(make_group(1, library["a"], library["a_copy"]), 0, "https://example.com/a.jpg")
    before = tree(tmp_path / "lib")
    report = resolve(None, [group], kind, apply=True, journal_dir=tmp_path / "j")
    assert report.done == [] and len(report.skipped) == 1
    assert "the kept item is a URL" in report.skipped[0][1]
    assert tree(tmp_path / "lib") == before


def test_a_move_of_files_beside_a_member_still_applies(tmp_path, library, make_group):
    group = make_group(1, library["a"], library["a_copy"], library["a_again"])
    group = _as_path(group, 2, f"{tmp_path}/x.tgz#a.jpg")
    report = resolve(None, [group], "move", to=tmp_path / "q", apply=True)
    assert [s.path for s in report.done] == [str(library["a_copy"])]
    assert not library["a_copy"].exists() and library["a_again"].exists()

