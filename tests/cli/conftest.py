"""Fixtures for the command-line tests: the session's loaded ``lite`` model, and a clean
environment for each test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from lookalike.models import registry


@pytest.fixture(scope="module")
def patched_models(lite_model: Any) -> Iterator[None]:
    """Make the CLI's load_model("lite") return the session's loaded model instead of loading another."""
    real = registry.load_model

    def load_model(name: str = "lite", *, device: Any = None, **how: Any) -> Any:
        # The session's model runs torch fp32: anything else asked for loads for real.
        plain = how.get("runtime") in (None, "torch") and how.get("precision") in (None, "fp32") and not any(
            how.get(k) for k in ("calibration", "compile"))
        if registry.parse_model_name(name).canonical == "lite" and plain:
            return lite_model
        return real(name, device=device, **how)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "load_model", load_model)
        yield


@pytest.fixture
def cli_env(patched_models: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited default collection, a private data home, and a wide console for tables."""
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The user cache (embeddings, exported models) in this test's folder, and a wide console
    for tables; returns the test's folder."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "400")
    return tmp_path
