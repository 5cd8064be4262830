"""`lookalike dupes`: the table, JSON lines, CSV and HTML outputs, dry runs, --apply and --undo,
and clean one-line errors for bad option values.

The collection uses the tiny random timm model: its embeddings mean nothing, so the groups
come from the exact tier (a byte copy) and the perceptual tier (a 40% resize); the semantic
tier is left out of every run that counts groups.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from support import make_image
from lookalike.cli.app import app
from lookalike.store.collection import Collection

#: Groups by bytes and by pixels only (see the module docstring).
TIERS = ("--tiers", "exact,perceptual", "--hash-bits", "10", "--perceptual-floor", "-1")


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited default collection, a private data home, and a wide console for tables."""
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")


def _build(base: Path, model_dir: Path) -> dict[str, Path]:
    """Five distinct images, a byte copy of one (in a sub-folder) and a 40% resize of another,
    indexed into ``base/c.lkl``. Returns the paths by role, and the collection as "coll"."""
    pics = base / "pics"
    paths = {f"p{i}": make_image(pics / f"p{i}.png", seed=seed, size=(200, 160))
             for i, seed in enumerate((110, 106, 112, 113, 114))}
    paths["copy"] = pics / "copies" / "p0.png"
    paths["copy"].parent.mkdir()
    shutil.copyfile(paths["p0"], paths["copy"])
    paths["small"] = pics / "p1_small.png"
    with Image.open(paths["p1"]) as img:
        img.resize((80, 64), Image.Resampling.NEAREST).save(paths["small"])
    paths["coll"] = base / "c.lkl"
    with Collection.create(paths["coll"], model=f"timm:{model_dir}") as coll:
        coll.add([pics])
        assert len(coll) == 7
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_timm_dir: Path) -> dict[str, Path]:
    """A collection the read-only tests share."""
    return _build(tmp_path_factory.mktemp("dupes-cli"), tiny_timm_dir)


@pytest.fixture
def fresh(tmp_path: Path, tiny_timm_dir: Path) -> dict[str, Path]:
    """A collection of its own, for tests that act on files."""
    return _build(tmp_path / "own", tiny_timm_dir)


def run(*args: str | Path) -> Any:
    """Invoke the CLI in-process; stdout and stderr are captured separately."""
    return CliRunner().invoke(app, [str(a) for a in args])


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def _assert_clean_error(result: Any, code: int, *fragments: str) -> None:
    """A failed command: the exit code, one 'error:' line on stderr, no traceback, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _groups(coll: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _ok(run("dupes", "-c", coll, *TIERS, "--json")).stdout.splitlines()]


# --------------------------------------------------------------------------- outputs
def test_table_lists_groups_with_the_kept_file(built: dict[str, Path]) -> None:
    """Guards the default output: the header, one row per group with kind, tier, similarity,
    member count, kept path, resolution, size and space to free; a summary on stderr."""
    result = _ok(run("dupes", "--collection", built["coll"], *TIERS))
    lines = [ln.split() for ln in result.stdout.splitlines() if ln.strip()]
    assert lines[0] == ["group", "kind", "tier", "similarity", "members", "kept", "resolution", "size", "to",
                        "free"]
    rows = {row[2]: row for row in lines[1:]}
    assert set(rows) == {"exact", "perceptual"} and len(lines) == 3
    exact, perceptual = rows["exact"], rows["perceptual"]
    assert exact[1] == "duplicate" and exact[3] == "1.000" and exact[4] == "2"
    assert exact[5] in (str(built["p0"]), str(built["copy"])) and exact[6] == "200x160"
    assert perceptual[5] == str(built["p1"]) and perceptual[6] == "200x160"  # largest kept, not the resize
    assert "2 groups, 2 files not kept" in result.stderr


def test_json_lines_one_group_each(built: dict[str, Path]) -> None:
    """Guards --json: one object per line, the members by path, the kept one first."""
    groups = _groups(built["coll"])
    by_tier = {g["tier"]: g for g in groups}
    assert len(groups) == 2 and set(by_tier) == {"exact", "perceptual"}
    assert {m["path"] for m in by_tier["exact"]["members"]} == {str(built["p0"]), str(built["copy"])}
    perceptual = by_tier["perceptual"]
    assert [m["path"] for m in perceptual["members"]] == [str(built["p1"]), str(built["small"])]
    assert perceptual["kept"] == str(built["p1"]) and perceptual["members"][1]["width"] == 80
    assert perceptual["reclaimable_bytes"] == built["small"].stat().st_size


def test_csv_one_row_per_member(built: dict[str, Path]) -> None:
    """Guards --csv: a header and one row per member, with its group id and a kept flag."""
    result = _ok(run("dupes", "-c", built["coll"], *TIERS, "--csv"))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 4
    assert sorted(r["path"] for r in rows) == sorted(str(built[k]) for k in ("p0", "copy", "p1", "small"))
    for group in {r["group"] for r in rows}:
        assert sorted(r["kept"] for r in rows if r["group"] == group) == ["0", "1"]
    small = next(r for r in rows if r["path"] == str(built["small"]))
    assert (small["kept"], small["width"], small["height"], small["tier"]) == ("0", "80", "64", "perceptual")


def test_html_report_is_self_contained(built: dict[str, Path], tmp_path: Path) -> None:
    """Guards --html: a page with a data: URI thumbnail per member and no http(s) reference;
    nothing on stdout."""
    dest = tmp_path / "report.html"
    result = _ok(run("dupes", "-c", built["coll"], *TIERS, "--html", dest))
    assert result.stdout == "" and f"wrote {dest}" in result.stderr
    page = dest.read_text(encoding="utf-8")
    assert not re.search(r"https?:", page, re.IGNORECASE)
    thumbs = re.findall(r'<img src="(data:[^"]+)"', page)
    assert len(thumbs) == 4 and all(t.startswith("data:image/jpeg;base64,") for t in thumbs)
    assert re.findall(r'\bsrc="(?!data:)', page) == []
    assert str(built["small"]) in page and 'data-tier="perceptual"' in page


def test_reference_folder_is_kept(built: dict[str, Path]) -> None:
    """Guards --reference: the copy under the reference folder is the one kept, and marked."""
    groups = _groups_with(built["coll"], "--reference", built["copy"].parent, "--keep", "shortest-path")
    exact = next(g for g in groups if g["tier"] == "exact")
    assert exact["kept"] == str(built["copy"])  # although p0.png has the shorter path
    assert [m["reference"] for m in exact["members"]] == [True, False]


def _groups_with(coll: Path, *options: str | Path) -> list[dict[str, Any]]:
    result = _ok(run("dupes", "-c", coll, *TIERS, *options, "--json"))
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_story_options_parse_and_prefer_decides(built: dict[str, Path]) -> None:
    """Guards the options of the user story going through to the library: --prefer beats the keep
    rule (shortest-path would keep pics/p0.png, not pics/copies/p0.png)."""
    def kept_exact(*options: str | Path) -> str:
        groups = _groups_with(built["coll"], "--keep", "shortest-path", *options)
        assert len(groups) == 2
        return next(g for g in groups if g["tier"] == "exact")["kept"]

    assert kept_exact() == str(built["p0"])
    assert kept_exact("--fraction", "0.01", "--prefer", built["copy"].parent, "--prefer", built["p0"].parent,
                      "--burst-seconds", "2", "--no-flips") == str(built["copy"])


# --------------------------------------------------------------------------- actions
def test_dry_run_changes_nothing(fresh: dict[str, Path], tmp_path: Path) -> None:
    """Guards the default of --action: each step printed, a summary naming --apply, and no file,
    folder or collection row changed."""
    before = _files(fresh["p0"].parent)
    quarantine = tmp_path / "quarantine"
    result = _ok(run("dupes", "-c", fresh["coll"], *TIERS, "--action", "move", "--to", quarantine))
    steps = result.stdout.splitlines()
    assert len(steps) == 2 and all(s.startswith("move ") and f" -> {quarantine}" in s for s in steps)
    assert any(str(fresh["small"]) in s for s in steps)
    assert "would move 2 files, freeing" in result.stderr and "--apply" in result.stderr
    assert not quarantine.exists()
    assert _files(fresh["p0"].parent) == before
    assert len(_groups(fresh["coll"])) == 2
    with Collection.open(fresh["coll"]) as coll:
        assert len(coll) == 7


def test_apply_then_undo_round_trip(fresh: dict[str, Path], tmp_path: Path) -> None:
    """Guards --apply and --undo: the files not kept move to the quarantine and leave the
    collection; the printed undo command puts every byte and every row back."""
    pics = fresh["p0"].parent
    before = _files(pics)
    quarantine = tmp_path / "quarantine"
    applied = _ok(run("dupes", "-c", fresh["coll"], *TIERS, "--action", "move", "--to", quarantine, "--apply"))
    assert "moved 2 files" in applied.stderr
    journal = Path(re.search(r"journal: (\S+)", applied.stderr).group(1))  # type: ignore[union-attr]
    assert journal.is_file() and journal.parent == quarantine
    undo_cmd = re.search(r"undo with: lookalike (.+)", applied.stderr).group(1).split()  # type: ignore[union-attr]
    assert undo_cmd == ["dupes", "--undo", str(journal)]
    moved = set(before) - set(_files(pics))
    assert len(moved) == 2 and "p1_small.png" in moved
    assert len(list(quarantine.rglob("*.png"))) == 2
    with Collection.open(fresh["coll"]) as coll:
        assert len(coll) == 5
    assert "no duplicates found" in _ok(run("dupes", "-c", fresh["coll"], *TIERS)).stderr

    undone = _ok(run(*undo_cmd))  # no --collection: the journal names it
    assert "restored 2 files" in undone.stderr and len(undone.stdout.splitlines()) == 2
    assert _files(pics) == before
    assert list(quarantine.rglob("*.png")) == []
    with Collection.open(fresh["coll"]) as coll:
        assert len(coll) == 7
    assert len(_groups(fresh["coll"])) == 2
    again = _ok(run(*undo_cmd))
    assert "nothing left to undo" in again.stderr


def test_hardlink_acts_on_identical_files_only(fresh: dict[str, Path]) -> None:
    """Guards --action hardlink: the byte copy becomes a link to the kept file, the resize is
    skipped with its reason; --undo makes it a file of its own again."""
    result = _ok(run("dupes", "-c", fresh["coll"], *TIERS, "--action", "hardlink", "--apply", "--json"))
    steps = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(s["status"] for s in steps) == ["done", "skipped"]
    skipped = next(s for s in steps if s["status"] == "skipped")
    assert skipped["path"] == str(fresh["small"]) and "byte-identical" in skipped["reason"]
    assert f"skip {fresh['small']}" in result.stderr and "1 skipped" in result.stderr
    assert os.path.samefile(fresh["p0"], fresh["copy"])
    journal = re.search(r"journal: (\S+)", result.stderr).group(1)  # type: ignore[union-attr]
    _ok(run("dupes", "--undo", journal))
    assert not os.path.samefile(fresh["p0"], fresh["copy"])
    assert fresh["p0"].read_bytes() == fresh["copy"].read_bytes()


def test_delete_goes_to_the_trash_and_comes_back(fresh: dict[str, Path]) -> None:
    """Guards --action delete: the files go to the collection's trash (the summary says the space
    comes back once it is emptied), and --undo returns them."""
    before = _files(fresh["p0"].parent)
    result = _ok(run("dupes", "-c", fresh["coll"], *TIERS, "--action", "delete", "--apply"))
    assert "deleted 2 files" in result.stderr and "empty the trash" in result.stderr
    trash = fresh["coll"] / "trash"
    assert len(list(trash.rglob("*.png"))) == 2 and len(_files(fresh["p0"].parent)) == 5
    journal = re.search(r"journal: (\S+)", result.stderr).group(1)  # type: ignore[union-attr]
    assert Path(journal).parent == trash
    _ok(run("dupes", "--undo", journal))
    assert _files(fresh["p0"].parent) == before and list(trash.rglob("*.png")) == []


def test_a_vanished_file_fails_alone_and_exits_1(fresh: dict[str, Path], tmp_path: Path) -> None:
    """Guards a failed step: a file gone since it was indexed is reported with its reason, the
    other step is done, and the exit status is 1."""
    fresh["small"].unlink()
    quarantine = tmp_path / "q"
    result = run("dupes", "-c", fresh["coll"], *TIERS, "--action", "move", "--to", quarantine, "--apply")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    assert f"failed {fresh['small']}:" in result.stderr
    assert "moved 1 file," in result.stderr and "1 failed" in result.stderr
    assert len(list(quarantine.rglob("*.png"))) == 1


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("options", "fragment"), [
    (["--keep", "bogus"], "keep rule"),
    (["--tiers", "exact,nope"], "nope"),
    (["--threshold", "2"], "threshold"),
    (["--fraction", "0"], "fraction"),
    (["--threshold", "0.9", "--fraction", "0.1"], "not both"),
    (["--json", "--csv"], "--csv"),
    (["--action", "zap"], "zap"),
    (["--action", "move"], "--to"),
    (["--apply"], "--action"),
    (["--action", "delete", "--to", "somewhere"], "--to"),
    (["--action", "move", "--to", "q", "--csv"], "--csv"),
    (["--undo", "journal.jsonl", "--keep", "largest"], "--keep"),
    (["--html", "/no/such/folder/r.html"], "no such folder"),
])
def test_bad_option_values_exit_2_with_one_line(built: dict[str, Path], options: list[str], fragment: str) -> None:
    """Guards input errors: exit 2, one 'error:' line naming the problem, nothing done."""
    _assert_clean_error(run("dupes", "-c", built["coll"], *options), 2, fragment)


def test_undo_of_something_else_exits_2(tmp_path: Path, built: dict[str, Path]) -> None:
    """Guards --undo on a missing file or a file that is no journal: one line, exit 2."""
    _assert_clean_error(run("dupes", "--undo", tmp_path / "nope.jsonl"), 2, "no such journal")
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": 1}\n')
    _assert_clean_error(run("dupes", "-c", built["coll"], "--undo", other), 2, "not a lookalike duplicates journal")


def test_missing_collection_exits_1(tmp_path: Path) -> None:
    """Guards a mistyped collection: one line naming it, exit 1."""
    missing = tmp_path / "nothing.lkl"
    _assert_clean_error(run("dupes", "-c", missing), 1, "no lookalike collection", str(missing))
