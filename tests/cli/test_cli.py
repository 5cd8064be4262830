"""The `lookalike` command line: index, search, info, models, and how errors are reported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from support import make_image
from lookalike.cli.app import app
from lookalike.models import registry
from lookalike.query import parse_query_tokens
from lookalike.store.collection import Collection

ROOT = Path(__file__).resolve().parents[2]
N = 10


pytestmark = pytest.mark.usefixtures("cli_env")  # conftest: the session's model, a clean environment


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lite_model: Any) -> tuple[Path, Path]:
    """A folder of N images and a lite collection of it, built once: (folder, collection)."""
    base = tmp_path_factory.mktemp("cli")
    folder = base / "pics"
    for i in range(N):
        make_image(folder / f"p{i:02d}.png", seed=500 + i)
    with Collection.create(base / "c.lkl", model=lite_model) as coll:
        assert coll.add([folder]).added == N
    return folder, base / "c.lkl"


def run(*args: str | Path) -> Any:
    """Invoke the CLI in-process; stdout and stderr are captured separately."""
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_clean_error(result: Any, code: int, *fragments: str) -> None:
    """A failed command: the given exit code, one 'error:' line on stderr, no traceback, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line message, got: {result.stderr!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]


def _path_of(coll_path: Path, item_id: int) -> str:
    with Collection.open(coll_path) as c:
        return c.item(item_id).path


# --------------------------------------------------------------------------- index
def test_index_creates_then_reports_unchanged(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    """Guards `index`: creates the collection and prints counts; a second run reports everything unchanged."""
    folder = image_folder(6)
    target = tmp_path / "new.lkl"
    first = run("index", folder, "-c", target)
    assert first.exit_code == 0, first.output
    assert (target / "manifest.json").is_file()
    assert "done" in first.stderr and "6 added" in first.stderr and "0 failed" in first.stderr
    assert str(target) in first.stderr
    assert first.stdout == "", "index writes its summary to stderr, keeping stdout for data"
    second = run("index", folder, "-c", target)
    assert second.exit_code == 0
    assert "0 added" in second.stderr and "6 unchanged" in second.stderr
    with Collection.open(target) as c:
        assert len(c) == 6


def test_index_quiet_prints_nothing(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    """Guards --quiet: no summary and no progress output."""
    result = run("index", image_folder(2), "-c", tmp_path / "q.lkl", "--quiet")
    assert result.exit_code == 0 and result.output == ""


def test_index_reports_failed_files(tmp_path: Path) -> None:
    """Guards failed files during index: a skip line naming the file and reason, counted in the summary."""
    folder = tmp_path / "f"
    make_image(folder / "ok.png", seed=1)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run("index", folder, "-c", tmp_path / "c.lkl")
    assert result.exit_code == 0
    assert "1 added" in result.stderr and "1 failed" in result.stderr
    assert "skip" in result.stderr and "broken.jpg" in result.stderr


# --------------------------------------------------------------------------- search
def test_search_prints_table(built: tuple[Path, Path]) -> None:
    """Guards the default output: a table with rank, score, id and path, best first."""
    _, coll = built
    result = run("search", "id:3", "-c", coll, "-k", "4")
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert lines[0].split() == ["rank", "score", "id", "path"]
    assert len(lines) == 5
    rank, score, item_id, path = lines[1].split()
    assert (rank, item_id, path) == ("1", "3", _path_of(coll, 3)) and float(score) == pytest.approx(1.0, abs=1e-3)


def test_search_json_lines(built: tuple[Path, Path]) -> None:
    """Guards --json: one JSON object per line with exactly id, path and score."""
    _, coll = built
    result = run("search", "id:2", "-c", coll, "-k", "5", "--json")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5 and all(set(r) == {"id", "path", "score"} for r in rows)
    assert rows[0]["id"] == 2 and rows[0]["path"] == _path_of(coll, 2)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_search_files_only(built: tuple[Path, Path]) -> None:
    """Guards -f: bare paths, one per line, nothing else on stdout."""
    folder, coll = built
    result = run("search", "id:1", "-c", coll, "-k", "3", "-f")
    assert result.exit_code == 0
    paths = result.stdout.splitlines()
    assert len(paths) == 3 and paths[0] == _path_of(coll, 1)
    assert all(Path(p).is_file() and Path(p).parent == folder for p in paths)


def test_search_options_min_score_and_under(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Guards --min-score and --under reaching the library."""
    _, coll = built
    result = run("search", "id:1", "-c", coll, "-k", "10", "--json", "--min-score", "0.999")
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1]
    elsewhere = run("search", "id:1", "-c", coll, "--under", tmp_path, "-f")
    assert elsewhere.exit_code == 0 and elsewhere.stdout == ""
    table = run("search", "id:1", "-c", coll, "--under", tmp_path)
    assert table.exit_code == 0 and "no results" in table.stderr


def test_search_weighted_mix(built: tuple[Path, Path]) -> None:
    """Guards a mixed query `"2:word" + IMG - "other"` giving the library's ranking for the same query."""
    folder, coll = built
    img = folder / "p04.png"
    tokens = ["2:red square", "+", str(img), "-", "blue circle"]
    result = run("search", *tokens, "-c", coll, "-k", "5", "--json")
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.splitlines()]
    with Collection.open(coll, model=registry.load_model("lite")) as c:
        want = c.search(parse_query_tokens(tokens), k=5)
    assert [r["id"] for r in got] == [h.id for h in want]
    assert [r["score"] for r in got] == pytest.approx([h.score for h in want], abs=1e-5)


def test_search_by_image_path(built: tuple[Path, Path]) -> None:
    """Guards an image path argument: the same image is the top hit."""
    folder, coll = built
    result = run("search", folder / "p06.png", "-c", coll, "-k", "1", "-f")
    assert result.exit_code == 0 and result.stdout.strip() == str(folder / "p06.png")


def test_default_collection_from_env(image_folder: Callable[..., Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards $LOOKALIKE_COLLECTION as the default for index, search and info (with ~ expanded)."""
    folder = image_folder(3)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOKALIKE_COLLECTION", "~/mine.lkl")
    assert run("index", folder).exit_code == 0
    assert (tmp_path / "home" / "mine.lkl" / "manifest.json").is_file()
    result = run("search", "id:1", "--json")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
    assert str(tmp_path / "home" / "mine.lkl") in run("info").stdout


def test_default_collection_falls_back_to_xdg(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    """Guards the fallback default: $XDG_DATA_HOME/lookalike/default.lkl when no env var is set."""
    assert run("index", image_folder(2)).exit_code == 0
    assert (tmp_path / "xdg" / "lookalike" / "default.lkl" / "manifest.json").is_file()


# --------------------------------------------------------------------------- info and models
def test_info_shows_model_counts_and_errors(tmp_path: Path, lite_model: Any) -> None:
    """Guards `info`: model, counts, and each failed file with its reason; --json carries the same."""
    folder = tmp_path / "pics"
    for i in range(3):
        make_image(folder / f"i{i}.png", seed=i)
    (folder / "bad.png").write_bytes(b"nope")
    coll = tmp_path / "c.lkl"
    assert run("index", folder, "-c", coll).exit_code == 0
    result = run("info", "-c", coll)
    assert result.exit_code == 0
    out = result.stdout
    summary = out.split("failed files")[0]
    fields = dict(m.groups() for m in re.finditer(r"^\s*(\S.*?)\s{2,}(\S.*?)\s*$", summary, re.MULTILINE))
    assert fields["model"] == "lite" and fields["images"] == "3" and fields["failed"] == "1"
    assert fields["dimensions"] == "1280" and fields["fingerprint"] == lite_model.fingerprint()
    assert "failed files" in out and f"{folder / 'bad.png'}: not an image" in out
    data = json.loads(run("info", "-c", coll, "--json").stdout)
    assert (data["model_id"], data["items"], data["failed"], data["dim"]) == ("lite", 3, 1, 1280)
    assert data["errors"][0][0] == str(folder / "bad.png")
    assert fields["faces"] == "not looked for (opt-in: lookalike faces index)" and data["faces"] is None


def test_models_lists_lite() -> None:
    """Guards `models`: the bundled model is listed as offline, in the table and in --json."""
    result = run("models")
    assert result.exit_code == 0
    lite_line = next(ln for ln in result.stdout.splitlines() if ln.split()[:1] == ["lite"])
    assert "1280" in lite_line and "yes" in lite_line
    data = json.loads(run("models", "--json").stdout)
    lite = next(m for m in data if m["name"] == "lite")
    assert lite["offline"] is True and lite["dim"] == 1280


def test_version() -> None:
    """Guards --version."""
    import lookalike

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"lookalike {lookalike.__version__}"


# --------------------------------------------------------------------------- errors
def test_missing_collection_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a long error message stays on one line (it was wrapped at the console width)."""
    monkeypatch.setenv("COLUMNS", "60")
    missing = tmp_path / "no" / "such" / "collection.lkl"
    _assert_clean_error(run("search", "dog", "-c", missing), 1, "no lookalike collection", str(missing))
    _assert_clean_error(run("info", "-c", missing), 1, "no lookalike collection")


@pytest.mark.parametrize("query,fragment", [
    (["dog", "+"], "ends with an operator"),
    (["dog", "+", "-", "cat"], "two operators"),
    (["id:abc"], "whole number"),
    (["./no/such/picture.jpg"], "no such image file"),
    (["id:999"], "no item with id 999"),
])
def test_bad_query_exits_2(built: tuple[Path, Path], query: list[str], fragment: str) -> None:
    """Guards query errors: exit status 2 and the parser's explanation, no traceback."""
    _, coll = built
    _assert_clean_error(run("search", *query, "-c", coll), 2, fragment)


def test_unknown_model_exits_2_and_creates_nothing(image_folder: Callable[..., Path], tmp_path: Path) -> None:
    """Guards an unknown model name: exit 2 with a hint, and no half-made collection left behind."""
    target = tmp_path / "x.lkl"
    _assert_clean_error(run("index", image_folder(1), "-c", target, "--model", "nosuchmodel"), 2,
                        "unknown model 'nosuchmodel'")
    assert not target.exists()


def test_model_mismatch_on_existing_collection(built: tuple[Path, Path]) -> None:
    """Guards indexing into a collection with another model: exit 1 with how to make a new collection."""
    folder, coll = built
    _assert_clean_error(run("index", folder, "-c", coll, "--model", "openclip:ViT-B-32/laion2b_s34b_b79k"), 1,
                        "new collection", "--collection")


def test_k_below_one_is_usage_error(built: tuple[Path, Path]) -> None:
    """Guards -k 0: rejected before any work."""
    _, coll = built
    result = run("search", "id:1", "-c", coll, "-k", "0")
    assert result.exit_code == 2 and result.stdout == ""


# --------------------------------------------------------------------------- literal output
def test_paths_with_markup_and_emoji_codes_print_verbatim(tmp_path: Path) -> None:
    """Regression: file names with "[...]" or ":name:" were eaten as rich markup / turned into emoji."""
    folder = tmp_path / "odd"
    odd = make_image(folder / "a[red]b :smile: [/x].png", seed=11)
    bad = folder / "bad[bold].png"
    bad.write_bytes(b"not an image")
    coll = tmp_path / "c.lkl"
    indexed = run("index", folder, "-c", coll)
    assert indexed.exit_code == 0, indexed.output
    assert f"skip {bad}:" in indexed.stderr
    files = run("search", odd, "-c", coll, "-f")
    assert files.stdout.splitlines() == [str(odd)]
    table = run("search", odd, "-c", coll)
    assert table.exit_code == 0 and str(odd) in table.stdout
    info = run("info", "-c", coll)
    assert f"{bad}: not an image" in info.stdout


def test_error_message_with_brackets_is_literal(tmp_path: Path) -> None:
    """Regression: an error naming a path with "[...]" showed it mangled by markup."""
    missing = tmp_path / "x[red]y.lkl"
    _assert_clean_error(run("info", "-c", missing), 1, str(missing))


# --------------------------------------------------------------------------- the installed script
def test_console_script_help() -> None:
    """Guards the installed entry point: `lookalike --help` runs and lists the commands."""
    exe = Path(sys.executable).parent / "lookalike"
    if not exe.exists():
        exe = ROOT / ".venv" / "bin" / "lookalike"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    for command in ("index", "search", "info", "models"):
        assert command in proc.stdout
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- index flags, batch, filters


def test_index_flag_builds_and_info_reports_it(tmp_path: Path) -> None:
    """--index ivf builds an index whose measured recall, latency and memory `info` shows."""
    pytest.importorskip("faiss")
    folder = tmp_path / "imgs"
    for i in range(40):
        make_image(folder / f"i{i:02d}.png", seed=i)
    coll = tmp_path / "c.lkl"
    # Never configured: info shows the defaults, the latency budget included.
    assert run("index", str(folder), "--collection", str(coll), "-q").exit_code == 0
    info_out = run("info", "--collection", str(coll)).output
    assert "exact search (auto, recall target 0.95, latency budget 2 ms)" in info_out
    result = run("index", str(folder), "--collection", str(coll), "--index", "ivf", "-q")
    assert result.exit_code == 0, result.output
    info_out = run("info", "--collection", str(coll)).output
    assert "IVF" in info_out and "measured recall@10" in info_out and "p50" in info_out
    assert "held-out images" in info_out and "latency budget 2 ms" in info_out
    # Both measurements of issue 8: the independent confirmation, and the text prompts (lite has text).
    flat = " ".join(info_out.split())  # the table folds long lines
    assert "confirmed 1.000 on" in flat and "text queries" in flat and "text confirmed" in flat
    state = json.loads(run("info", "--collection", str(coll), "--json").stdout)["index"]["state"]
    assert state["confirmed"]["query_set"] == "confirm" and state["text"]["n_queries"] > 0
    bad = run("index", str(folder), "--collection", str(coll), "--index", "lsh")
    _assert_clean_error(bad, 2, "unknown index mode")
    # Budgets are remembered and shown; --latency-ms 0 lifts the latency budget.
    assert run("index", str(folder), "--collection", str(coll), "--index", "auto", "--memory", "1GB",
               "--latency-ms", "5", "-q").exit_code == 0
    info_out = run("info", "--collection", str(coll)).output
    assert "exact search (auto" in info_out and "latency budget 5 ms" in info_out and "memory budget" in info_out
    assert run("index", str(folder), "--collection", str(coll), "--latency-ms", "0", "-q").exit_code == 0
    info_out = run("info", "--collection", str(coll)).output
    assert "latency budget" not in info_out and "memory budget" in info_out
    _assert_clean_error(run("index", str(folder), "--collection", str(coll), "--latency-ms", "-3"), 2,
                        "latency budget must be positive")


def test_search_batch_json_and_filters(tmp_path: Path) -> None:
    """--batch FILE answers each line; --json lines carry the query; --min-width filters inside."""
    folder = tmp_path / "imgs"
    for i in range(12):
        make_image(folder / f"i{i:02d}.png", seed=i, size=(60 + 40 * (i % 2), 50))
    coll = tmp_path / "c.lkl"
    assert run("index", str(folder), "--collection", str(coll), "-q").exit_code == 0
    queries = tmp_path / "q.txt"
    queries.write_text("# a comment\nid:1\n\nid:2 + 0.5:red\n")
    result = run("search", "--batch", str(queries), "--collection", str(coll), "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["query"] for r in rows] == ["id:1"] * 3 + ["id:2 + 0.5:red"] * 3
    assert rows[0]["rank"] == 1 and rows[0]["id"] == 1
    wide = run("search", "id:1", "--collection", str(coll), "-k", "12", "-f", "--min-width", "90")
    assert wide.exit_code == 0 and len(wide.stdout.splitlines()) == 6
    both = run("search", "id:1", "--batch", str(queries), "--collection", str(coll))
    assert both.exit_code == 2
    bad_date = run("search", "id:1", "--collection", str(coll), "--after", "yesterday")
    _assert_clean_error(bad_date, 2, "2024-06-30")


# --------------------------------------------------------------------------- serve
@pytest.fixture
def served_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """uvicorn.run replaced by a recorder: what `serve` would start, without serving."""
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    return calls


def test_serve_binds_loopback_by_default(tmp_path: Path, served_runs: list[dict]) -> None:
    folder = tmp_path / "imgs"
    make_image(folder / "a.png", seed=1)
    coll = tmp_path / "c.lkl"
    assert run("index", str(folder), "--collection", str(coll), "-q").exit_code == 0
    result = run("serve", "--collection", str(coll))
    assert result.exit_code == 0, result.output
    assert served_runs[0]["host"] == "127.0.0.1" and served_runs[0]["port"] == 8000
    assert "http://127.0.0.1:8000/" in result.output and "warning" not in result.output
    # Any other address without a token: served, with a warning; with a token: no warning.
    result = run("serve", "--collection", str(coll), "--host", "0.0.0.0", "--port", "9001")
    assert result.exit_code == 0 and served_runs[1]["host"] == "0.0.0.0"
    assert "without a token" in result.output
    result = run("serve", "--collection", str(coll), "--host", "0.0.0.0", "--token", "long-enough-token")
    assert result.exit_code == 0 and "without a token" not in result.output and "?token=" in result.output


def test_serve_errors_are_clean(tmp_path: Path, served_runs: list[dict]) -> None:
    _assert_clean_error(run("serve", "--collection", str(tmp_path / "nothing.lkl")), 1, "no lookalike collection")
    folder = tmp_path / "imgs"
    make_image(folder / "a.png", seed=1)
    coll = tmp_path / "c.lkl"
    assert run("index", str(folder), "--collection", str(coll), "-q").exit_code == 0
    _assert_clean_error(run("serve", "--collection", str(coll), "--token", "short"), 2, "at least 8")
    assert not served_runs


# --------------------------------------------------------------------------- regressions (issue 8)
def test_relative_under_with_another_filter(built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `--under ./pics --min-width 10` returned nothing (the relative folder was not
    normalised on the filtered path), while the absolute folder, or no other filter, worked."""
    folder, coll = built
    monkeypatch.chdir(folder.parent)
    relative = os.path.join(".", folder.name)
    for extra in ([], ["--min-width", "10"], ["--glob", "*.png", "--max-height", "10000"]):
        result = run("search", "id:1", "-c", coll, "-k", "3", "--under", relative, "-f", *extra)
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == 3, (extra, result.stdout, result.stderr)
    # and the filter really filters: a bound that excludes everything gives nothing
    result = run("search", "id:1", "-c", coll, "--under", relative, "--min-width", "100000", "-f")
    assert result.exit_code == 0 and result.stdout == ""


def test_leading_negative_weight(built: tuple[Path, Path]) -> None:
    """Regression: `lookalike search -2:dog` was taken as an option. A negative weight now
    means the same as the operator spelling, first or after an operator."""
    folder, coll = built

    def ids(*query: str) -> list[int]:
        result = run("search", *query, "-c", coll, "-k", "4", "--json")
        assert result.exit_code == 0, result.output
        return [json.loads(line)["id"] for line in result.stdout.splitlines()]

    assert ids("-2:id:3", "+", "id:1") == ids("-", "2:id:3", "+", "id:1")
    assert ids("id:1", "+", "-0.5:id:3") == ids("id:1", "-", "0.5:id:3")
    assert ids("id:1", "-", "-0.5:id:3") == ids("id:1", "+", "0.5:id:3")
    assert 3 not in ids("-2:id:3", "+", "id:1") and ids("2:id:3", "+", "id:1")[0] == 3  # the sign counts


def test_index_of_a_missing_folder_creates_nothing(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    """Regression: `index /nonexistent` printed "1 skipped", created the collection and exited 0."""
    target = tmp_path / "new.lkl"
    missing = tmp_path / "no-such-folder"
    _assert_clean_error(run("index", missing, "-c", target), 2, str(missing), "no such folder")
    assert not target.exists()
    # One missing root among several stays a skip.
    folder = image_folder(3)
    result = run("index", folder, missing, "-c", target)
    assert result.exit_code == 0, result.output
    assert "3 added" in result.stderr and "1 skipped" in result.stderr and str(missing) in result.stderr


def test_bad_index_settings_create_nothing(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    """Invalid --index / --memory values are usage errors (exit 2) caught before anything is created."""
    target = tmp_path / "new.lkl"
    folder = image_folder(2)
    _assert_clean_error(run("index", folder, "-c", target, "--index", "bogus"), 2, "unknown index mode")
    _assert_clean_error(run("index", folder, "-c", target, "--memory", "lots"), 2, "500MB")
    assert not target.exists()


def test_serve_without_uvicorn_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `serve` wrote its own message for a missing uvicorn; it is MissingExtra's now."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    _assert_clean_error(run("serve", "--collection", str(tmp_path / "c.lkl")), 1,
                        "'uvicorn'", "pip install 'lookalike[server]'")
