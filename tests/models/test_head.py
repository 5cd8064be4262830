"""Head folders (models/head.py): strict configs, save/load round trips, ids that follow the
content (not the folder), and apply_head's normalised output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.errors import InvalidArgument, ModelLoadError, UnknownModel
from lookalike.models.head import (HEAD_FILE, TRAIN_ITEMS_FILE, WEIGHTS_FILE, HeadConfig, ProjectionHead, apply_head,
                                   load_head, save_head)


def _config(**over) -> HeadConfig:
    fields = dict(kind="projection", arch="linear", in_dim=8, out_dim=4, base="timm:/m/x", base_fingerprint="f" * 16,
                  name="logos")
    fields.update(over)
    return HeadConfig(**fields)


def _saved(folder: Path, seed: int = 0, **over) -> Path:
    torch.manual_seed(seed)
    config = _config(**over)
    return save_head(folder, ProjectionHead(config), config, report={"knn@1": 0.5}, train_hashes=["b", "a", "a"])


def test_round_trip_keeps_config_weights_report_and_train_hashes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = _config(arch="mlp", hidden=6)
    module = ProjectionHead(config)
    path = save_head(tmp_path / "h", module, config, report={"knn@1": 0.5}, train_hashes=["b", "a", "a"])
    assert sorted(p.name for p in path.iterdir()) == sorted([HEAD_FILE, WEIGHTS_FILE, TRAIN_ITEMS_FILE])
    head = load_head(path)
    assert head.config == config and head.report == {"knn@1": 0.5}
    assert head.id == f"logos-{head.digest[:8]}" and head.path == path
    assert head.train_hashes() == frozenset({"a", "b"})
    x = torch.randn(3, 8)
    assert torch.equal(head.module(x), module(x))


def test_id_follows_the_content_not_the_folder(tmp_path: Path) -> None:
    first = load_head(_saved(tmp_path / "a"))
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(first.path, copy)
    assert load_head(copy).id == first.id
    assert load_head(_saved(tmp_path / "b", seed=0)).id == first.id  # same weights, same config
    assert load_head(_saved(tmp_path / "c", seed=1)).id != first.id  # retrained: new weights
    assert load_head(_saved(tmp_path / "d", base_fingerprint="e" * 16)).id != first.id


def test_linear_head_starts_as_identity_when_dims_agree() -> None:
    config = _config(in_dim=5, out_dim=5)
    x = torch.randn(4, 5)
    assert torch.allclose(ProjectionHead(config)(x), x)


def test_apply_head_normalises_rows_and_batches(tmp_path: Path) -> None:
    head = load_head(_saved(tmp_path / "h"))
    vectors = np.random.default_rng(0).normal(size=(7, 8)).astype(np.float32)
    out = apply_head(head, vectors, batch_size=3)
    assert out.shape == (7, 4) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(head.module(torch.from_numpy(unit)), dim=-1).numpy()
    assert np.allclose(out, expected, atol=1e-6)
    assert np.allclose(apply_head(head.module, vectors), out, atol=1e-6)  # a bare module works too
    assert apply_head(head, np.zeros((0, 8), np.float32)).shape == (0, 4)
    with pytest.raises(InvalidArgument, match="dim 8"):
        apply_head(head, np.zeros((2, 5), np.float32))


@pytest.mark.parametrize(("over", "match"), [
    ({"kind": "bogus"}, "kind 'bogus'"),
    ({"arch": "transformer"}, "arch"),
    ({"in_dim": 0}, "in_dim"),
    ({"out_dim": True}, "out_dim"),
    ({"name": ""}, "name"),
    ({"arch": "mlp"}, "hidden"),
    ({"hidden": 4}, "linear head has no hidden"),
    ({"kind": "student"}, "teacher"),
    ({"teacher": "lite", "teacher_fingerprint": "x"}, "only a student"),
])
def test_config_is_strict(over: dict, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        _config(**over)


def test_from_dict_refuses_unknown_and_missing_keys() -> None:
    good = _config(kind="student", teacher="lite:448", teacher_fingerprint="t" * 16).to_dict()
    assert HeadConfig.from_dict(json.loads(json.dumps(good))).teacher == "lite:448"
    with pytest.raises(InvalidArgument, match="unknown keys"):
        HeadConfig.from_dict({**good, "extra": 1})
    with pytest.raises(InvalidArgument, match="missing keys"):
        HeadConfig.from_dict({k: v for k, v in good.items() if k != "base"})
    with pytest.raises(InvalidArgument, match="JSON object"):
        HeadConfig.from_dict([1])


def test_save_refuses_a_folder_of_other_files_but_replaces_a_head(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "photo.jpg").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="photo.jpg"):
        _saved(busy)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="is a file"):
        _saved(tmp_path / "file")
    config = _config()
    with pytest.raises(InvalidArgument, match="do not match its config"):
        save_head(tmp_path / "shape", ProjectionHead(_config(out_dim=3)), config)
    path = _saved(tmp_path / "h", seed=0)
    again = load_head(_saved(path, seed=1))
    assert again.id != load_head(_saved(tmp_path / "h0", seed=0)).id


def test_load_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match="does not exist"):
        load_head(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownModel, match="no head.json"):
        load_head(tmp_path / "empty")
    path = _saved(tmp_path / "h")
    meta = json.loads((path / HEAD_FILE).read_text())
    (path / HEAD_FILE).write_text(json.dumps({**meta, "format": 2}))
    with pytest.raises(ModelLoadError, match="upgrade lookalike"):
        load_head(path)
    (path / HEAD_FILE).write_text(json.dumps(meta))
    torch.manual_seed(5)
    other = ProjectionHead(_config())
    from safetensors.torch import save

    (path / WEIGHTS_FILE).write_bytes(save({k: v.contiguous() for k, v in other.state_dict().items()}))
    with pytest.raises(ModelLoadError, match="does not match head.json"):
        load_head(path)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="copy the whole head folder"):
        load_head(path)
