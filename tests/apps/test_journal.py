"""The duplicates journal (durable JSON lines) and undo from a step a crash cut short."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lookalike.apps.dupes import fileops, read_journal, resolve, undo
from lookalike.apps.dupes.journal import JournalWriter, journal_stem
from lookalike.errors import InvalidArgument


# ---------------------------------------------------------------------------- writing and reading
def test_each_record_is_fsynced_and_the_folder_too(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr("lookalike.apps.dupes.journal.os.fsync", spy)
    monkeypatch.setattr("lookalike.apps.dupes.fileops.os.fsync", spy)
    with JournalWriter.create(tmp_path / "j", "journal-x", {"action": "move"}) as w:
        path = w.path
        assert synced.count(str(path)) == 1 and str(tmp_path / "j") in synced  # header, then the new entry
        w.write({"type": "intent", "seq": 1})
        w.write({"type": "done", "seq": 1})
    assert synced.count(str(path)) == 3
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and json.loads(lines[0])["format"] == "lookalike-dupes-journal"
    with pytest.raises(FileExistsError):  # never overwritten
        JournalWriter.create(tmp_path / "j", "journal-x", {})


def test_a_line_cut_short_is_ignored_and_appending_starts_a_fresh_line(tmp_path):
    with JournalWriter.create(tmp_path, "journal-x", {"action": "move"}) as w:
        w.write({"type": "intent", "seq": 1, "action": "move", "src": "/a", "dst": "/b"})
    with open(w.path, "ab") as f:
        f.write(b'{"type": "done", "se')  # a power cut mid-write
    journal = read_journal(w.path)
    assert journal.damaged_lines == 1 and [e.state for e in journal.entries] == ["cut"]
    with JournalWriter.append_to(w.path) as a:
        a.write({"type": "undone", "seq": 1})
    journal = read_journal(w.path)
    assert journal.damaged_lines == 1 and [e.state for e in journal.entries] == ["undone"]


def test_reading_something_that_is_not_a_journal_is_a_typed_error(tmp_path):
    with pytest.raises(InvalidArgument, match="no such journal"):
        read_journal(tmp_path / "nope.jsonl")
    (tmp_path / "x.jsonl").write_text('{"type": "intent"}\n')
    with pytest.raises(InvalidArgument, match="not a lookalike duplicates journal"):
        read_journal(tmp_path / "x.jsonl")
    (tmp_path / "y.jsonl").write_text('{"type": "header", "format": "lookalike-dupes-journal", "version": 99}\n')
    with pytest.raises(InvalidArgument, match="newer"):
        read_journal(tmp_path / "y.jsonl")
    with pytest.raises(InvalidArgument, match="folder"):
        undo(tmp_path)


def test_journal_names_are_unique_against_journals_and_trash_folders(tmp_path):
    from datetime import datetime

    now = datetime(2026, 11, 25, 10, 0, 0)
    assert journal_stem(tmp_path, now) == "journal-2026-11-25T10-00-00"
    (tmp_path / "journal-2026-11-25T10-00-00.jsonl").write_text("")
    assert journal_stem(tmp_path, now) == "journal-2026-11-25T10-00-00-2"
    trash = tmp_path / "trash"
    (trash / "journal-2026-11-25T10-00-00-2").mkdir(parents=True)
    assert journal_stem(tmp_path, now, also_free=trash) == "journal-2026-11-25T10-00-00-3"


# ---------------------------------------------------------------------------- file operations
def test_move_file_on_one_file_system_links_then_unlinks(tmp_path):
    src = tmp_path / "a"
    src.write_bytes(b"data")
    ino = src.stat().st_ino
    made = fileops.make_dirs(tmp_path / "x" / "y")
    assert made == [str(tmp_path / "x"), str(tmp_path / "x" / "y")]
    assert fileops.move_file(str(src), str(tmp_path / "x" / "y" / "a"), fileops.file_hash(src)) == "link"
    assert not src.exists() and (tmp_path / "x" / "y" / "a").stat().st_ino == ino
    other = tmp_path / "b"
    other.write_bytes(b"other")
    with pytest.raises(fileops.Exists):
        fileops.move_file(str(other), str(tmp_path / "x" / "y" / "a"), fileops.file_hash(other))
    assert other.exists() and (tmp_path / "x" / "y" / "a").read_bytes() == b"data"


# ---------------------------------------------------------------------------- undo after a crash
@pytest.fixture
def moved_then_cut(tmp_path, library, make_group):
    """Move a_copy with a journal, then make the journal look as if the run was cut short after
    its intent (the done record dropped); returns (journal, src, dst)."""
    group = make_group(1, library["a"], library["a_copy"])
    report = resolve(None, [group], "move", to=tmp_path / "q", apply=True)
    lines = report.journal.read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["header", "intent", "done"]
    report.journal.write_text("\n".join(lines[:2]) + "\n")
    return report.journal, library["a_copy"], tmp_path / "q" / "a_copy.jpg"


def test_cut_before_anything_happened(moved_then_cut):
    journal, src, dst = moved_then_cut
    os.link(dst, src)
    os.unlink(dst)  # the state before the move: source there, destination absent
    back = undo(journal)
    assert [s.path for s in back.restored] == [str(src)] and src.exists() and not dst.exists()
    assert read_journal(journal).entries[0].state == "undone"


def test_cut_between_link_and_unlink(moved_then_cut):
    journal, src, dst = moved_then_cut
    os.link(dst, src)  # both names, one inode
    back = undo(journal)
    assert len(back.restored) == 1 and src.exists() and not dst.exists()


def test_cut_after_the_move_completed(moved_then_cut):
    journal, src, dst = moved_then_cut
    undo(journal)
    assert src.exists() and not dst.exists()


def test_cut_mid_copy_across_file_systems(moved_then_cut):
    journal, src, dst = moved_then_cut
    data = dst.read_bytes()
    os.unlink(dst)
    src.write_bytes(data)
    dst.write_bytes(data[:1000])  # a partial copy; the source intact
    back = undo(journal)
    assert len(back.restored) == 1 and src.read_bytes() == data and not dst.exists()


def test_cut_with_a_stranger_at_the_destination_is_refused(moved_then_cut):
    journal, src, dst = moved_then_cut
    data = dst.read_bytes()
    dst.write_bytes(b"x" * 100_000)
    src.write_bytes(data)
    (step, reason), = undo(journal).failed
    assert "different file" in reason and dst.read_bytes() == b"x" * 100_000 and src.read_bytes() == data


@pytest.mark.parametrize("replaced", [False, True])
def test_cut_link_step(tmp_path, library, make_group, replaced):
    """A symlink step cut short: before the rename (the temp link left beside the duplicate)
    or after it (the duplicate is the link)."""
    group = make_group(1, library["a"], library["a_copy"])
    data = library["a_copy"].read_bytes()
    report = resolve(None, [group], "symlink", apply=True, journal_dir=tmp_path / "j")
    lines = report.journal.read_text().splitlines()
    report.journal.write_text("\n".join(lines[:2]) + "\n")
    tmp = json.loads(lines[1])["tmp"]
    if not replaced:
        os.unlink(library["a_copy"])
        library["a_copy"].write_bytes(data)
        os.symlink(library["a"], tmp)
    back = undo(report.journal)
    assert len(back.restored) == 1 and not os.path.lexists(tmp)
    assert not library["a_copy"].is_symlink() and library["a_copy"].read_bytes() == data


def test_undo_refuses_a_link_whose_kept_file_changed(tmp_path, library, make_group):
    group = make_group(1, library["a"], library["a_copy"])
    report = resolve(None, [group], "hardlink", apply=True, journal_dir=tmp_path / "j")
    with open(library["a"], "r+b") as f:
        f.write(b"edited")  # through either name: the one inode changed
    (step, reason), = undo(report.journal).failed
    assert "kept file changed" in reason and os.path.samefile(library["a"], library["a_copy"])


def test_undo_refuses_another_collections_journal(tmp_path, library, make_group):
    group = make_group(1, library["a"], library["a_copy"])
    report = resolve(None, [group], "move", to=tmp_path / "q", apply=True)
    text = report.journal.read_text().replace('"collection":null', '"collection":"/elsewhere"')
    report.journal.write_text(text)

    class Other:
        path = Path("/somewhere/else")

    with pytest.raises(InvalidArgument, match="/elsewhere"):
        undo(report.journal, coll=Other())  # type: ignore[arg-type]


def test_an_undo_whose_record_was_lost_is_a_no_op_next_time(tmp_path, library, make_group, tree):
    group = make_group(1, library["a"], library["a_copy"])
    report = resolve(None, [group], "move", to=tmp_path / "q", apply=True)
    undo(report.journal)
    lines = report.journal.read_text().splitlines()
    assert json.loads(lines[-1])["type"] == "undone"
    report.journal.write_text("\n".join(lines[:-1]) + "\n")  # the undone record lost to a full disk
    def files():
        return {k: v for k, v in tree(tmp_path).items() if not k.endswith(".jsonl")}

    before = files()
    back = undo(report.journal)
    assert len(back.restored) == 1 and back.failed == []
    assert files() == before  # nothing touched: the file was back already


def test_a_full_disk_during_undo_leaves_that_file_where_it_was(tmp_path, library, make_group, monkeypatch):
    import errno

    groups = [make_group(1, library["a"], library["a_copy"], library["a_again"])]
    report = resolve(None, groups, "move", to=tmp_path / "q", apply=True)
    monkeypatch.setattr(fileops.os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "x")))

    def full(fsrc, fdst, length=0):
        if "a_copy" in fsrc.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        fdst.write(fsrc.read())

    monkeypatch.setattr(fileops.shutil, "copyfileobj", full)
    back = undo(report.journal)
    (step, reason), = back.failed
    assert step.path == str(library["a_copy"]) and "no space left" in reason
    assert not library["a_copy"].exists() and (tmp_path / "q" / "photos" / "2020" / "a_copy.jpg").exists()
    assert [s.path for s in back.restored] == [str(library["a_again"])] and library["a_again"].exists()
    monkeypatch.undo()
    assert [s.path for s in undo(report.journal).restored] == [str(library["a_copy"])]
