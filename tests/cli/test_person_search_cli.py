"""``lookalike search --person`` and ``person:`` on the command line, over ``face_collection``
(real face photos: Obama 6 faces, Biden 3, unnamed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lookalike
from lookalike.cli.app import app


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")


def _search(collection: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["search", *args, "--collection", str(collection)])
    return result.exit_code, result.output


def test_person_option_alone_lists_the_persons_photos(face_collection: Path) -> None:
    with lookalike.Collection.open(face_collection) as coll:
        biden = coll.people()[1]
        want = coll.search(f"person:{biden.id}", k=10)
    code, output = _search(face_collection, "--person", str(biden.id), "--json")
    assert code == 0, output
    lines = [json.loads(line) for line in output.splitlines()]
    assert [(d["id"], d["path"]) for d in lines] == [(h.id, h.path) for h in want] and len(lines) == 3
    # The same as a query token, with -k and --files; and with a query beside the option.
    code, output = _search(face_collection, f"person:{biden.id}", "-k", "2", "--files")
    assert code == 0 and output.splitlines() == [h.path for h in want[:2]], output
    code, output = _search(face_collection, "a man", "--person", str(biden.id), "--files")
    assert code == 0 and set(output.splitlines()) == {h.path for h in want}, output


def test_person_filter_combines_with_other_options(face_collection: Path, face_photos: Path) -> None:
    with lookalike.Collection.open(face_collection) as coll:
        obama = coll.people()[0]
    code, output = _search(face_collection, "--person", str(obama.id), "--glob", "*.png", "--files")
    assert code == 0 and [Path(p).name for p in output.splitlines()] == ["32bit.png"], output
    code, output = _search(face_collection, "--person", str(obama.id), "--under", str(face_photos / "none"))
    assert code == 0 and "no results" in output


@pytest.mark.parametrize("args, message", [
    (["--person", "Nobody"], "Nobody"),
    (["beach", "person:424242"], "424242"),
    (["beach", "-", "person:1"], "person: is a filter"),
])
def test_bad_persons_fail_with_a_message(face_collection: Path, args: list[str], message: str) -> None:
    code, output = _search(face_collection, *args)
    assert code == 2 and "error:" in output and message in output, output
