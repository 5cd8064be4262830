"""`lookalike faces index/forget/stats` and `lookalike people` (list, name, merge, split, not,
faces, regroup) on real face photos, in-process with CliRunner.

The shared ``face_collection`` (tests/conftest.py) holds the photos of ``face_photos`` with their
faces indexed: two unnamed people, Obama (6 faces) and Biden (3). Tests that change it work on
a copy; ``faces index`` from scratch runs on a new collection of the same photos.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lookalike.cli import faces_cmds
from lookalike.cli.app import app
from lookalike.store.collection import Collection

pytest.importorskip("dlib")

OBAMA, BIDEN = 6, 3  # faces of each person in face_photos


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited default collection, a private data home, and a wide console for tables."""
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")


def run(*args: str | Path | int) -> Any:
    """Invoke the CLI in-process; stdout and stderr are captured separately."""
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def people_json(coll: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(run("people", "--collection", coll, "--json")).stdout.splitlines()]


def folder_of(fixture: Any) -> Path:
    return Path(getattr(fixture, "path", fixture))


@pytest.fixture
def own(face_collection: Any, tmp_path: Path) -> Path:
    """A copy of the shared face collection, for the tests that change it."""
    return Path(shutil.copytree(folder_of(face_collection), tmp_path / "faces.lkl"))


def by_faces(coll: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Obama, Biden) as `people --json` lists them."""
    listed = people_json(coll)
    assert sorted(p["faces"] for p in listed) == [BIDEN, OBAMA], listed
    obama, biden = sorted(listed, key=lambda p: -p["faces"])
    return obama, biden


# --------------------------------------------------------------------------- listing
def test_people_table_json_and_stats(face_collection: Any) -> None:
    coll = folder_of(face_collection)
    result = ok(run("people", "--collection", coll))
    header = result.stdout.splitlines()[0].split()
    assert header == ["id", "name", "faces", "photos", "sample"]
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert [(r[1], r[2], r[3]) for r in rows] == [("(unnamed)", str(OBAMA), str(OBAMA)),
                                                   ("(unnamed)", str(BIDEN), str(BIDEN))]
    assert all(Path(r[4]).is_file() for r in rows)  # the sample photo
    assert "2 people (0 named)" in result.stderr
    assert "lookalike people name ID NAME" in result.stderr  # the next step

    obama, biden = by_faces(coll)
    assert obama["name"] is None and len(obama["photos"]) == OBAMA and len(biden["photos"]) == BIDEN
    assert not set(obama["photos"]) & set(biden["photos"])
    assert all(Path(p).is_file() for p in obama["photos"] + biden["photos"])
    assert any("biden" in Path(p).name for p in biden["photos"])

    stats = json.loads(ok(run("faces", "stats", "--collection", coll, "--json")).stdout)
    assert stats["indexed"] is True and stats["faces"] == OBAMA + BIDEN and stats["people"] == 2
    assert "unassigned faces" in ok(run("faces", "stats", "--collection", coll)).stdout
    assert [p["id"] for p in people_json(coll)] == [obama["id"], biden["id"]]  # most faces first
    info = ok(run("info", "--collection", coll))
    assert f"{OBAMA + BIDEN} in 11 photos scanned, 2 people (0 named), 0 faces in no person" in info.stdout
    assert json.loads(ok(run("info", "--collection", coll, "--json")).stdout)["faces"]["people"] == 2

    faces = [json.loads(line) for line in
             ok(run("people", "faces", biden["id"], "--json", "--collection", coll)).stdout.splitlines()]
    assert len(faces) == BIDEN and {f["path"] for f in faces} == set(biden["photos"])
    left, top, right, bottom = faces[0]["box"]
    assert right > left and bottom > top and faces[0]["person_id"] == biden["id"]
    table = ok(run("people", "faces", biden["id"], "--collection", coll))
    assert f"lookalike people split {biden['id']} FACE_ID" in table.stderr
    assert str(faces[0]["id"]) in table.stdout.split()


# --------------------------------------------------------------------------- index from scratch
def test_faces_index_from_scratch_then_nothing_again(face_photos: Any, tiny_clip_dir: Path,
                                                     tmp_path: Path) -> None:
    # Three of the photos (two small ones of Obama, one without a face): face_collection has
    # paid for scanning all of them already, and this is about what the commands say.
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama2.jpg", "obama_partial_face.jpg", "landscape.jpg"):
        shutil.copy2(folder_of(face_photos) / name, photos / name)
    target = tmp_path / "c.lkl"
    with Collection.create(target, model=f"openclip:{tiny_clip_dir}") as coll:
        assert coll.add([photos]).added == 3
    never = ok(run("people", "--collection", target))
    assert never.stdout == "" and "faces have not been indexed" in never.stderr
    assert f"lookalike faces index --collection {target}" in never.stderr  # what to run first

    first = ok(run("faces", "index", "--collection", target))
    assert re.search(r"\b3 photos scanned \(1 without faces\), 2 faces found; 0 new people\b", first.stderr), \
        first.stderr
    assert "2 faces in no person" in first.stderr and "photos/s" in first.stderr
    assert "lookalike people name ID NAME" in first.stderr  # the next steps
    # Two faces are too few for a person (3 by default): the listing says what to do.
    alone = ok(run("people", "--collection", target))
    assert alone.stdout == "" and "lookalike people regroup --min-faces 1" in alone.stderr

    again = ok(run("faces", "index", "--collection", target, "--quiet"))
    assert "0 photos scanned (3 unchanged), 0 faces found" in again.stderr, again.stderr
    assert "lookalike people" not in again.stderr  # --quiet: no hints

    regrouped = ok(run("people", "regroup", "--min-faces", "1", "--collection", target))
    assert "1 person, 2 faces in people, 0 unassigned" in regrouped.stderr, regrouped.stderr
    [person] = people_json(target)
    assert person["faces"] == 2 and sorted(Path(p).name for p in person["photos"]) == [
        "obama2.jpg", "obama_partial_face.jpg"]

    # `index` never looks for faces, but on a collection that has them it says what is left.
    shutil.copy2(folder_of(face_photos) / "pattern.png", photos / "pattern.png")
    added = ok(run("index", photos, "--collection", target))
    assert f"1 photo not scanned for faces yet: lookalike faces index --collection {target}" in added.stderr, \
        added.stderr


def test_missing_extra_gives_the_install_hint(face_collection: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    result = run("faces", "index", "--collection", folder_of(face_collection))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "pip install 'lookalike[faces]'" in result.stderr


def test_missing_collection_is_one_line(tmp_path: Path) -> None:
    result = run("faces", "index", "--collection", tmp_path / "nothing.lkl")
    assert result.exit_code == 1 and "no lookalike collection" in result.stderr and "Traceback" not in result.output


# --------------------------------------------------------------------------- forget
def test_forget_asks_then_deletes_everything(own: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = run("faces", "forget", "--collection", own)  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert f"{OBAMA + BIDEN} faces and 2 people" in refused.stderr
    assert len(people_json(own)) == 2  # nothing deleted
    monkeypatch.setattr(faces_cmds, "_interactive", lambda: True)  # as on a terminal: it asks
    declined = CliRunner().invoke(app, ["faces", "forget", "--collection", str(own)], input="n\n")
    assert declined.exit_code == 1 and "cannot be undone" in declined.stderr
    assert len(people_json(own)) == 2

    done = ok(run("faces", "forget", "--collection", own, "--yes"))
    assert f"deleted {OBAMA + BIDEN} faces" in done.stderr
    listed = ok(run("people", "--collection", own))
    assert listed.stdout.strip() == ""
    assert "no people" in listed.stderr and "lookalike faces index" in listed.stderr
    stats = json.loads(ok(run("faces", "stats", "--collection", own, "--json")).stdout)
    assert stats["indexed"] is False and stats["faces"] == 0 and stats["people"] == 0
    assert not list(own.glob("faces-*.f32"))  # no face vectors left on disk


# --------------------------------------------------------------------------- editing people
def test_name_merge_split_not_and_regroup(own: Path) -> None:
    obama, biden = by_faces(own)
    named = ok(run("people", "name", obama["id"], "Barack Obama", "--collection", own))
    assert "Barack Obama" in named.stderr
    # The group's --collection serves its subcommands too.
    ok(run("people", "--collection", own, "name", biden["id"], "Joe"))
    assert {p["id"]: p["name"] for p in people_json(own)} == {obama["id"]: "Barack Obama", biden["id"]: "Joe"}
    taken = run("people", "name", "joe", "Barack Obama", "--collection", own)  # names match without case
    assert taken.exit_code == 2 and "merge" in taken.stderr

    faces = [json.loads(line)["id"] for line in
             ok(run("people", "faces", "barack obama", "--json", "--collection", own)).stdout.splitlines()]
    assert len(faces) == OBAMA
    split = ok(run("people", "split", "Barack Obama", faces[0], faces[1], "--name", "Other", "--collection", own))
    assert "Other" in split.stderr
    ok(run("people", "not", obama["id"], faces[2], "--collection", own))
    counts = {p["name"]: p["faces"] for p in people_json(own)}
    assert counts == {"Barack Obama": OBAMA - 3, "Joe": BIDEN, "Other": 2}

    ok(run("people", "merge", "Barack Obama", "other", "--collection", own))
    assert {p["name"]: p["faces"] for p in people_json(own)} == {"Barack Obama": OBAMA - 1, "Joe": BIDEN}

    regrouped = ok(run("people", "regroup", "--min-faces", "1", "--collection", own))
    assert "people" in regrouped.stderr
    after = {p["name"]: p for p in people_json(own)}
    assert after["Barack Obama"]["faces"] == OBAMA - 1 and after["Joe"]["faces"] == BIDEN  # edits kept
    in_obama = {json.loads(line)["id"] for line in
                ok(run("people", "faces", obama["id"], "--json", "--collection", own)).stdout.splitlines()}
    assert faces[2] not in in_obama  # "not this person" holds through a regroup


def test_unknown_person_is_a_clear_error(face_collection: Any) -> None:
    coll = folder_of(face_collection)
    for args in (("name", "999", "X"), ("faces", "Nobody"), ("merge", "999", "998"), ("not", "999", "1")):
        result = run("people", *args, "--collection", coll)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.stderr and "Traceback" not in result.output
        assert args[1] in result.stderr
