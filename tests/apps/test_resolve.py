"""Acting on duplicate groups (move, delete, hardlink, symlink), undoing it, and the collection after.

Failures mid-action (a permission error, a full disk) are simulated by monkeypatching the
``os`` / ``shutil`` functions the file operations call: the tests run as root, for whom a
read-only folder stops nothing.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lookalike.apps.dupes import NOT_IDENTICAL, plan, read_journal, resolve, undo, with_choice
from lookalike.apps.dupes import fileops
from lookalike.errors import InvalidArgument


def records(journal: Path) -> list[dict]:
    return [json.loads(line) for line in journal.read_text().splitlines()]


def groups_of(lib: dict[str, Path], make_group, *, reference: set[Path] = frozenset()) -> list:
    """Group 1: a kept, a_copy and a_again (byte copies) and ref_a (in a reference folder);
    group 10: b kept, b_near (similar, other bytes)."""
    return [make_group(1, lib["a"], lib["a_copy"], lib["a_again"], lib["ref_a"], reference={lib["ref_a"]}),
            make_group(10, lib["b"], lib["b_near"], tier="perceptual")]


# ---------------------------------------------------------------------------- planning
def test_plan_mirrors_paths_below_the_deepest_common_folder(tmp_path, library, make_group):
    groups = groups_of(library, make_group)
    steps = plan(groups, "move", to=tmp_path / "q")
    assert [s.path for s in steps] == [str(library[k]) for k in ("a_copy", "a_again", "b_near")]
    lib = tmp_path / "lib"
    assert [s.target for s in steps] == [str(tmp_path / "q" / Path(s.path).relative_to(lib)) for s in steps]
    assert {s.keep_id for s in steps} == {1, 10} and all(s.action == "move" for s in steps)
    links = plan(groups, "symlink")
    assert [s.target for s in links] == [str(library["a"])] * 2 + [str(library["b"])]


def test_bad_arguments_are_typed_errors(tmp_path, library, make_group):
    groups = groups_of(library, make_group)
    with pytest.raises(InvalidArgument, match="unknown action"):
        resolve(None, groups, "shred", to=tmp_path / "q")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="--to"):
        resolve(None, groups, "move")
    with pytest.raises(InvalidArgument, match="collection"):
        resolve(None, groups, "delete")


def test_with_choice_acts_only_on_trashed_members(library, make_group):
    group = make_group(1, library["a"], library["a_copy"], library["a_again"])
    chosen = with_choice(group, keep_ids={2}, trash_ids={1, 99})
    assert chosen.kept.item.id == 2 and [m.item.id for m in chosen.others] == [1]
    assert with_choice(group, keep_ids=set(), trash_ids={3}).kept.item.id == 1
    assert with_choice(group, keep_ids=set(), trash_ids={1}).kept.item.id == 2
    with pytest.raises(InvalidArgument, match="keep at least one"):
        with_choice(group, keep_ids=set(), trash_ids={1, 2, 3})


# ---------------------------------------------------------------------------- dry runs
@pytest.mark.parametrize("action", ["move", "delete", "hardlink", "symlink"])
def test_dry_run_touches_nothing(tmp_path, library, make_group, tree, action):
    before = tree(tmp_path)
    report = resolve(None, groups_of(library, make_group), action, to=tmp_path / "q",
                     journal_dir=tmp_path / "journals" if action != "move" else None)
    assert tree(tmp_path) == before  # no journal, no destination folder, every byte and mtime as it was
    assert not report.applied and report.journal is None and report.done == []
    would = [s for s in report.steps if s not in {x for x, _ in report.skipped + report.failed}]
    assert would and report.bytes_freed == sum(library[k].stat().st_size for k in ("a_copy", "a_again")) + (
        library["b_near"].stat().st_size if action in ("move", "delete") else 0)


# ---------------------------------------------------------------------------- each action, applied and undone
def test_move_apply_then_undo(tmp_path, library, make_group, tree):
    lib = tmp_path / "lib"
    before = tree(lib)
    q = tmp_path / "q"
    events = []
    report = resolve(None, groups_of(library, make_group), "move", to=q, apply=True, progress=events.append)
    assert [(e.kind, e.done, e.total) for e in events if e.kind != "skip"] == [
        ("resolve", 0, 3), ("resolve", 1, 3), ("resolve", 2, 3), ("done", 3, 3)]
    assert [(e.path, e.reason) for e in events if e.kind == "skip"] == [
        (str(library["ref_a"]), "in a reference folder: never moved, linked or deleted")]
    assert [s.path for s in report.done] == [str(library[k]) for k in ("a_copy", "a_again", "b_near")]
    assert [r for _, r in report.skipped] == ["in a reference folder: never moved, linked or deleted"]
    for key in ("a_copy", "a_again", "b_near"):
        assert not library[key].exists()
        moved = q / library[key].relative_to(lib)
        assert moved.is_file()
        assert before[str(library[key].relative_to(lib))][1] == tree(q)[str(moved.relative_to(q))][1]
    assert library["ref_a"].exists() and library["a"].exists() and library["b"].exists()
    assert report.journal is not None and report.journal.parent == q and report.journal.name.startswith("journal-")
    recs = records(report.journal)
    assert recs[0]["type"] == "header" and recs[0]["action"] == "move" and recs[0]["root"] == str(lib)
    assert [r["type"] for r in recs[1:]] == ["intent", "done"] * 3
    intent = recs[1]
    assert intent["src"] == str(library["a_copy"]) and intent["size"] == 5000 and len(intent["hash"]) == 32
    assert report.bytes_freed == 5000 + 5000 + 7000

    back = undo(report.journal)
    assert len(back.restored) == 3 and back.failed == []
    assert tree(lib) == before  # same bytes, same modes and mtimes, same folders
    assert not (q / "photos").exists() and not (q / "other").exists()  # the folders the move made are gone
    assert [r["type"] for r in records(report.journal)][-3:] == ["undone"] * 3
    again = undo(report.journal)  # the journal says it is undone: a no-op
    assert again.restored == [] and again.failed == [] and tree(lib) == before


def test_delete_moves_into_the_trash_and_undo_puts_it_back(tmp_path, library, make_group, tree):
    lib = tmp_path / "lib"
    before = tree(lib)
    trash = tmp_path / "coll-trash"
    report = resolve(None, groups_of(library, make_group), "delete", apply=True, journal_dir=trash)
    stem = report.journal.stem
    for key in ("a_copy", "a_again", "b_near"):
        assert not library[key].exists()
        assert (trash / stem / library[key].relative_to(lib)).is_file()  # never unlinked: in the trash
    undo(report.journal)
    assert tree(lib) == before


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_link_apply_then_undo(tmp_path, library, make_group, tree, kind):
    lib = tmp_path / "lib"
    os.chmod(library["a_copy"], 0o600)
    os.utime(library["a_copy"], ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    before = tree(lib)
    report = resolve(None, groups_of(library, make_group), kind, apply=True, journal_dir=tmp_path / "j")
    assert [s.path for s in report.done] == [str(library["a_copy"]), str(library["a_again"])]
    assert [(s.path, r) for s, r in report.skipped if r == NOT_IDENTICAL] == [(str(library["b_near"]), NOT_IDENTICAL)]
    assert before["other/b_near.jpg"] == tree(lib)["other/b_near.jpg"]  # only similar: untouched
    for key in ("a_copy", "a_again"):
        if kind == "hardlink":
            assert os.path.samefile(library[key], library["a"]) and not library[key].is_symlink()
        else:
            assert os.readlink(library[key]) == str(library["a"])
    assert not [p for p in lib.rglob(".*.tmp")]  # no temp link left behind
    back = undo(report.journal)
    assert len(back.restored) == 2 and back.failed == []
    assert tree(lib) == before  # separate files again, with their own mode and mtime
    assert not os.path.samefile(library["a_copy"], library["a"])


# ---------------------------------------------------------------------------- what is never touched
@pytest.mark.parametrize("action", ["move", "delete", "hardlink", "symlink"])
def test_reference_and_kept_files_are_never_touched(tmp_path, library, make_group, tree, action):
    ref_before = tree(tmp_path / "lib" / "ref")
    kept = {k: library[k].read_bytes() for k in ("a", "b")}
    kept_inodes = {k: library[k].stat().st_ino for k in ("a", "b")}
    # a_copy is kept by group 1 and listed as a duplicate by a second group: kept wins
    groups = groups_of(library, make_group) + [make_group(20, library["a_again"], library["a_copy"], ids=[20, 2])]
    report = resolve(None, groups, action, to=tmp_path / "q", apply=True, journal_dir=tmp_path / "j")
    assert tree(tmp_path / "lib" / "ref") == ref_before
    assert {k: library[k].read_bytes() for k in ("a", "b")} == kept
    assert {k: library[k].stat().st_ino for k in ("a", "b")} == kept_inodes
    reasons = [r for _, r in report.skipped]
    assert "in a reference folder: never moved, linked or deleted" in reasons
    assert any(r.startswith("already acted on") or r.startswith("kept in") for r in reasons)


def test_move_never_overwrites(tmp_path, library, make_group):
    q = tmp_path / "q"
    taken = q / "photos" / "2020" / "a_copy.jpg"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    report = resolve(None, groups_of(library, make_group), "move", to=q, apply=True)
    assert [(s.path, "exists" in r) for s, r in report.skipped if s.path == str(library["a_copy"])] == [
        (str(library["a_copy"]), True)]
    assert taken.read_bytes() == b"someone else's file" and library["a_copy"].exists()
    assert len(report.done) == 2


# ---------------------------------------------------------------------------- failures mid-action
def test_a_vanished_file_fails_alone(tmp_path, library, make_group, monkeypatch):
    groups = groups_of(library, make_group)
    library["a_copy"].unlink()  # gone before the run
    real_link = os.link

    def vanish_then_link(src, dst, **kw):  # gone between the journal's intent and the move
        if src == str(library["a_again"]):
            os.unlink(src)
        return real_link(src, dst, **kw)

    monkeypatch.setattr(fileops.os, "link", vanish_then_link)
    report = resolve(None, groups, "move", to=tmp_path / "q", apply=True)
    failed = dict((s.path, r) for s, r in report.failed)
    assert set(failed) == {str(library["a_copy"]), str(library["a_again"])}
    assert all("vanished" in r and "run again" in r for r in failed.values())
    assert [s.path for s in report.done] == [str(library["b_near"])]  # the others went on
    recs = records(report.journal)
    assert [r["type"] for r in recs[1:]] == ["intent", "failed", "intent", "done"]
    assert not (tmp_path / "q" / "other" / "a_again.jpg").exists()
    back = undo(report.journal)  # the failed step needs nothing; the done one comes back
    assert [s.path for s in back.restored] == [str(library["b_near"])] and library["b_near"].exists()


def test_a_permission_error_mid_move_leaves_the_file_in_place(tmp_path, library, make_group, monkeypatch, tree):
    """A read-only source folder: the link to the destination succeeds, unlinking the source
    is refused (simulated: as root the real chmod would not stop it)."""
    before = tree(tmp_path / "lib")
    real_unlink = os.unlink

    def refuse(path, *a, **kw):
        if str(path) == str(library["a_copy"]):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(fileops.os, "unlink", refuse)
    report = resolve(None, groups_of(library, make_group), "move", to=tmp_path / "q", apply=True)
    (step, reason), = report.failed
    assert step.path == str(library["a_copy"]) and "permission denied" in reason and "write access" in reason
    assert library["a_copy"].read_bytes() and not (tmp_path / "q" / "photos" / "2020" / "a_copy.jpg").exists()
    assert not (tmp_path / "q" / "photos").exists()  # the folders made for it are removed again
    assert len(report.done) == 2
    monkeypatch.undo()
    undo(report.journal)
    assert tree(tmp_path / "lib") == before  # nothing lost, nothing left over


def test_a_full_disk_mid_copy_removes_the_partial_copy(tmp_path, library, make_group, monkeypatch, tree):
    before = tree(tmp_path / "lib")

    def no_link(src, dst, **kw):  # another file system: the copy path
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def half_then_full(fsrc, fdst, length=0):
        fdst.write(fsrc.read(100))
        fdst.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileops.os, "link", no_link)
    monkeypatch.setattr(fileops.shutil, "copyfileobj", half_then_full)
    report = resolve(None, groups_of(library, make_group), "move", to=tmp_path / "q", apply=True)
    assert len(report.failed) == 3 and report.done == []
    assert all("no space left" in r and "free some space" in r for _, r in report.failed)
    assert tree(tmp_path / "lib") == before
    assert [p.name for p in (tmp_path / "q").rglob("*")] == [report.journal.name]  # no partial copy, no folder
    assert [r["type"] for r in records(report.journal)[1:]] == ["intent", "failed"] * 3


def test_a_journal_that_cannot_be_written_stops_before_touching_anything(tmp_path, library, make_group,
                                                                         monkeypatch, tree):
    before = tree(tmp_path)
    real_open = os.open

    def full(path, flags, *a, **kw):
        if str(path).endswith(".jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr("lookalike.apps.dupes.journal.os.open", full)
    report = resolve(None, groups_of(library, make_group), "move", to=tmp_path / "q", apply=True)
    assert len(report.failed) == 3 and report.journal is None
    assert all("journal could not be created" in r for _, r in report.failed)
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("q")} == before


def test_the_intent_is_durable_before_the_file_is_touched(tmp_path, library, make_group, monkeypatch):
    seen = []
    real_move = fileops.move_file

    def spy(src, dst, digest):
        journal = next((tmp_path / "q").glob("journal-*.jsonl"))
        last = records(journal)[-1]
        seen.append((last["type"], last["src"], last["hash"]))
        return real_move(src, dst, digest)

    # the module, not the function the package re-exports under the same name
    monkeypatch.setattr(importlib.import_module("lookalike.apps.dupes.resolve"), "move_file", spy)
    resolve(None, groups_of(library, make_group), "move", to=tmp_path / "q", apply=True)
    assert [(t, s) for t, s, _ in seen] == [("intent", str(library[k])) for k in ("a_copy", "a_again", "b_near")]


# ---------------------------------------------------------------------------- across file systems
@pytest.fixture
def other_fs(tmp_path):
    """A folder on another file system than tmp_path: a tmpfs mounted here, else /dev/shm."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode == 0:
        yield mnt
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        return
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = shm / f"lookalike-test-{os.getpid()}-{tmp_path.name}"
        folder.mkdir()
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
        return
    pytest.skip(f"no second file system: mount -t tmpfs failed ({done.stderr.decode().strip()}) and /dev/shm "
                f"is missing or on the same device as {tmp_path}")


def test_move_across_file_systems_copies_verifies_and_undoes(tmp_path, library, make_group, other_fs, tree):
    assert other_fs.stat().st_dev != tmp_path.stat().st_dev
    lib = tmp_path / "lib"
    before = tree(lib)
    report = resolve(None, groups_of(library, make_group), "move", to=other_fs / "q", apply=True)
    assert len(report.done) == 3 and report.failed == []
    dones = [r for r in records(report.journal) if r["type"] == "done"]
    assert [r["method"] for r in dones] == ["copy"] * 3
    copied = other_fs / "q" / "photos" / "2020" / "a_copy.jpg"
    assert copied.read_bytes() == library["a"].read_bytes() and not library["a_copy"].exists()
    assert tree(other_fs / "q")["photos/2020/a_copy.jpg"][3] == before["photos/2020/a_copy.jpg"][3]  # mtime kept
    undo(report.journal)
    assert tree(lib) == before


def test_a_copy_whose_hash_differs_is_removed_and_the_source_kept(tmp_path, library, make_group, monkeypatch):
    monkeypatch.setattr(fileops.os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "x")))
    real = fileops.shutil.copyfileobj

    def corrupt(fsrc, fdst, length=0):
        real(fsrc, fdst, length)
        fdst.write(b"!")

    monkeypatch.setattr(fileops.shutil, "copyfileobj", corrupt)
    report = resolve(None, groups_of(library, make_group)[:1], "move", to=tmp_path / "q", apply=True)
    assert len(report.failed) == 2 and all("differ" in r for _, r in report.failed)
    assert library["a_copy"].exists() and library["a_again"].exists()
    assert not list((tmp_path / "q").rglob("*.jpg"))


# ---------------------------------------------------------------------------- undo refusing
def test_undo_refuses_a_file_changed_since(tmp_path, library, make_group):
    q = tmp_path / "q"
    report = resolve(None, groups_of(library, make_group), "move", to=q, apply=True)
    moved = q / "photos" / "2020" / "a_copy.jpg"
    moved.write_bytes(moved.read_bytes()[:-1] + b"X")  # same size, other bytes
    edited = moved.read_bytes()
    back = undo(report.journal)
    (step, reason), = back.failed
    assert step.path == str(library["a_copy"]) and "changed since" in reason
    assert moved.read_bytes() == edited and not library["a_copy"].exists()  # left exactly as it was
    assert {s.path for s in back.restored} == {str(library["a_again"]), str(library["b_near"])}
    assert records(report.journal)[-1]["type"] in ("undone", "undo-refused")
    # put the bytes back: a second undo now restores it, and only it
    moved.write_bytes(library["a"].read_bytes())
    os.utime(moved)
    assert [s.path for s in undo(report.journal).restored] == [str(library["a_copy"])]


def test_undo_refuses_when_the_original_path_is_taken(tmp_path, library, make_group):
    report = resolve(None, groups_of(library, make_group), "move", to=tmp_path / "q", apply=True)
    library["b_near"].write_bytes(b"a new file at the old name")
    back = undo(report.journal)
    (step, reason), = back.failed
    assert step.path == str(library["b_near"]) and "taken" in reason
    assert library["b_near"].read_bytes() == b"a new file at the old name"
    assert (tmp_path / "q" / "other" / "b_near.jpg").exists()


def test_undo_dry_run_touches_nothing(tmp_path, library, make_group, tree):
    report = resolve(None, groups_of(library, make_group), "symlink", apply=True, journal_dir=tmp_path / "j")
    before = tree(tmp_path)
    back = undo(report.journal, apply=False)
    assert len(back.restored) == 2 and not back.applied
    assert tree(tmp_path) == before


def test_journals_are_never_overwritten(tmp_path, library, make_group):
    one = resolve(None, groups_of(library, make_group)[:1], "symlink", apply=True, journal_dir=tmp_path / "j")
    undo(one.journal)
    two = resolve(None, groups_of(library, make_group)[:1], "symlink", apply=True, journal_dir=tmp_path / "j")
    assert one.journal != two.journal and one.journal.exists() and two.journal.exists()
    assert read_journal(one.journal).entries[0].state == "undone"
    assert read_journal(two.journal).entries[0].state == "done"


# ---------------------------------------------------------------------------- with a real collection
@pytest.fixture
def indexed(tmp_path, tiny_timm_dir):
    """A collection of lib/: a.png with two byte copies (one in a subfolder), and b.png, c.png."""
    from support import make_image

    from lookalike import Collection

    lib = tmp_path / "lib"
    a = make_image(lib / "a.png", seed=1)
    files = {"a": a, "b": make_image(lib / "b.png", seed=2), "c": make_image(lib / "c.png", seed=3)}
    for key, dst in (("a_copy", lib / "sub" / "a_copy.png"), ("a_again", lib / "a_again.png")):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(a, dst)
        files[key] = dst
    coll = Collection.create(tmp_path / "coll", model=f"timm:{tiny_timm_dir}", device="cpu")
    coll.add([lib])
    yield coll, files
    coll.close()


def _paths(coll, query_id: int) -> set[str]:
    return {h.path for h in coll.search(f"id:{query_id}", k=10)}


@pytest.mark.parametrize("action", ["move", "delete"])
def test_the_collection_follows_a_move_and_its_undo(tmp_path, indexed, tree, action):
    coll, files = indexed
    ids = {k: coll.item_at(p).id for k, p in files.items()}
    before = tree(tmp_path / "lib")
    groups = coll.duplicates(tiers=("exact",))
    assert len(groups) == 1 and {m.item.id for m in groups[0].members} == {ids["a"], ids["a_copy"], ids["a_again"]}
    report = resolve(coll, groups, action, to=tmp_path / "q", apply=True)
    assert len(report.done) == 2
    gone = [p for p in (files["a_copy"], files["a_again"], files["a"]) if not p.exists()]
    assert len(gone) == 2 and all(coll.item_at(p) is None for p in gone)
    assert not {str(p) for p in gone} & _paths(coll, ids["b"])  # search never points at a moved file
    if action == "delete":
        assert report.journal.parent == coll.path / "trash"
        assert len(list((coll.path / "trash" / report.journal.stem).rglob("*.png"))) == 2
    back = undo(report.journal, coll=coll)
    assert len(back.restored) == 2 and back.failed == []
    assert tree(tmp_path / "lib") == before
    assert {k: coll.item_at(p).id for k, p in files.items()} == ids  # back with their ids
    assert {str(p) for p in gone} <= _paths(coll, ids["b"])


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_the_collection_after_links_and_their_undo(tmp_path, indexed, tree, kind):
    coll, files = indexed
    ids = {k: coll.item_at(p).id for k, p in files.items()}
    before = tree(tmp_path / "lib")
    report = resolve(coll, coll.duplicates(tiers=("exact",)), kind, apply=True)
    assert len(report.done) == 2 and report.journal.parent == coll.path / "trash"
    for step in report.done:
        assert coll.item_at(step.path) is not None  # the path still holds the image
    undo(report.journal, coll=coll)
    assert tree(tmp_path / "lib") == before
    assert {k: coll.item_at(p).id for k, p in files.items()} == ids


def test_undo_indexes_again_what_cannot_be_restored(tmp_path, indexed):
    """c's vector is compacted away after the move: undo falls back to adding the file."""
    from lookalike.store.dupes import DuplicateGroup, Member

    coll, files = indexed
    b, c = coll.item_at(files["b"]), coll.item_at(files["c"])
    group = DuplicateGroup(b.id, "duplicate", "semantic", 0.5, (Member(b, None, 1.0, "semantic", True, False),
                                                               Member(c, None, 0.5, "semantic", False, False)))
    report = resolve(coll, [group], "move", to=tmp_path / "q", apply=True)
    assert coll.item_at(files["c"]) is None
    assert coll.compact() >= 1
    undo(report.journal, coll=coll)
    again = coll.item_at(files["c"])
    assert again is not None and again.status == "ok" and files["c"].exists()
