"""Model names of issue 13: ``lite:SIZE`` and ``BASE+head:DIR`` parse strictly, and a head's
model id names the head's content, not its folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lookalike.errors import ModelLoadError, UnknownModel
from lookalike.models.names import ModelSpec, parse_model_name


def _head_dir(folder: Path, head_id: str = "logos-0123abcd", fmt: int = 1) -> Path:
    """A folder with a head.json (name parsing reads only that file)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "head.json").write_text(json.dumps({"format": fmt, "id": head_id, "config": {}}))
    return folder


def _timm_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"architecture": "resnet18"}')
    (path / "model.safetensors").write_bytes(b"")
    return path


@pytest.mark.parametrize(("name", "canonical"), [
    ("lite:448", "lite:448"), ("LITE:448", "lite:448"), ("lite:224", "lite"), ("lite:32", "lite:32"),
    ("lite:1024", "lite:1024"),
])
def test_lite_sizes(name: str, canonical: str) -> None:
    spec = parse_model_name(name)
    assert spec.canonical == canonical == spec.model_id
    assert parse_model_name(spec.canonical) == spec
    assert spec.backend == "lite" and spec.head is None


@pytest.mark.parametrize(("name", "match"), [
    ("lite:abc", "size in pixels"), ("lite:", "size in pixels"), ("lite:-5", "size in pixels"),
    ("lite:16", "32 to 1024"), ("lite:4096", "32 to 1024"),
])
def test_bad_lite_sizes_explain(name: str, match: str) -> None:
    with pytest.raises(UnknownModel, match=match):
        parse_model_name(name)


def test_head_names_canonical_loads_the_folder_and_model_id_names_the_head(tmp_path: Path, monkeypatch) -> None:
    head = _head_dir(tmp_path / "heads" / "logos")
    monkeypatch.chdir(tmp_path)
    spec = parse_model_name("lite+head:heads/logos")
    assert spec == ModelSpec("lite", "builtin", "lite", head=str(head))
    assert spec.canonical == f"lite+head:{head}"
    assert spec.model_id == "lite+head:logos-0123abcd"
    assert spec.base == ModelSpec("lite", "builtin", "lite")
    assert parse_model_name(spec.canonical) == spec
    copy = shutil.copytree(head, tmp_path / "collection" / "models" / "head-logos-0123abcd")
    assert parse_model_name(f"lite+head:{copy}").model_id == spec.model_id  # every copy: one model
    timm = _timm_dir(tmp_path / "m" / "x")
    on_timm = parse_model_name(f"timm:{timm}+head:{head}")
    assert on_timm.canonical == f"timm:{timm}+head:{head}"
    assert on_timm.model_id == f"timm:{timm}+head:logos-0123abcd"
    assert parse_model_name(f"lite:448+head:{head}").model_id == "lite:448+head:logos-0123abcd"


def test_bad_head_names_explain(tmp_path: Path) -> None:
    head = _head_dir(tmp_path / "h")
    (tmp_path / "plain").mkdir()
    cases = {
        f"lite+head:{tmp_path / 'missing'}": "does not exist",
        f"lite+head:{tmp_path / 'plain'}": "no head.json",
        "lite+head:": "needs the head's folder",
        f"+head:{head}": "base model in front",
        f"lite+head:{head}+head:{head}": "one head per model",
        f"lite:abc+head:{head}": "size in pixels",
        f"nope+head:{head}": "unknown model",
    }
    for name, match in cases.items():
        with pytest.raises(UnknownModel, match=match):
            parse_model_name(name)
    _head_dir(tmp_path / "newer", fmt=2)
    with pytest.raises(ModelLoadError, match="upgrade lookalike"):
        parse_model_name(f"lite+head:{tmp_path / 'newer'}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "head.json").write_text("{")
    with pytest.raises(ModelLoadError, match="cannot read"):
        parse_model_name(f"lite+head:{tmp_path / 'broken'}")
