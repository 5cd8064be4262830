"""The exception tree: deliberate errors are LookalikeErrors, and install hints name real extras."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from support import ROOT
from lookalike.errors import InvalidArgument, LookalikeError, MissingExtra


def test_install_hints_name_extras_that_exist() -> None:
    """Regression: lite_bridge told users to `pip install 'lookalike[lite]'`, an extra that does not
    exist. Every MissingExtra raised in the source names an extra that pyproject.toml declares."""
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set()
    for path in (ROOT / "src" / "lookalike").rglob("*.py"):
        for match in re.finditer(r"MissingExtra\(\s*[^,]+,\s*(None|\"[^\"]*\"|'[^']*')", path.read_text()):
            if match.group(1) != "None":
                named.add((match.group(1).strip("\"'"), path.name))
    assert named, "no MissingExtra calls found: the pattern is stale"
    assert {extra for extra, _ in named} <= extras, sorted(named)


def test_missing_core_dependency_of_lite_text_says_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a missing sentence-transformers (a core dependency) gave the non-existent
    `lookalike[lite]` extra; the hint now names the package itself."""
    from lookalike.models import lite_bridge

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(MissingExtra) as info:
        lite_bridge.load_minilm(device="cpu")  # type: ignore[arg-type]
    message = str(info.value)
    assert "lookalike[" not in message and "pip install 'sentence-transformers'" in message


def _thumbnail_size_error(tmp_path: Path) -> None:
    from lookalike.images.thumbnails import make_thumbnail

    make_thumbnail(tmp_path / "x.png", tmp_path / "t.jpg", 100)


def _auto_index_on_nothing(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    from lookalike.index.tune import auto_index

    auto_index(np.zeros((0, 8), dtype=np.float32), candidates=[])


@pytest.mark.parametrize("make", [
    lambda tmp: __import__("lookalike").IndexSettings(mode="fast"),
    lambda tmp: __import__("lookalike").IndexSettings(recall=1.5),
    lambda tmp: __import__("lookalike.index.faiss_index", fromlist=["IndexSpec"]).IndexSpec("nope"),
    lambda tmp: __import__("lookalike.images.transforms", fromlist=["x"]).PreprocessConfig(size=0),
    _thumbnail_size_error,
    _auto_index_on_nothing,
    lambda tmp: __import__("lookalike.server.config", fromlist=["x"]).ServerConfig(collection=tmp, token="short"),
], ids=["index-mode", "recall", "index-spec", "preprocess", "thumbnail", "auto-index", "server-config"])
def test_bad_settings_raise_typed_errors(make, tmp_path: Path) -> None:  # noqa: ANN001
    """Regression: settings objects and the thumbnail code raised plain ValueError, outside the tree
    that errors.py promises; the CLI and the server had to catch ValueError separately."""
    with pytest.raises(LookalikeError) as info:
        make(tmp_path)
    assert isinstance(info.value, (InvalidArgument, LookalikeError))
    assert str(info.value)
