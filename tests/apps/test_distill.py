"""distill: a student head on a tiny timm model learns a tiny CLIP teacher's space.

The tiny models are random, so only the mechanics are judged: the head loads as a model,
lives in the teacher's space (closer to the teacher than an untrained head, on images it
never saw), answers text with the teacher's text tower, and comes out the same for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.apps.distill import (DistillReport, DistillSettings, distill, distill_images, model_name,
                                   validation_mask)
from lookalike.apps.embed_cache import EmbeddingCache
from lookalike.errors import InvalidArgument
from support import make_image

SETTINGS = DistillSettings(epochs=20)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_timm_dir: Path, tiny_clip_dir: Path) -> dict:
    import lookalike
    from lookalike.apps.distill import image_pairs

    root = tmp_path_factory.mktemp("distill")
    images = root / "imgs"
    for i in range(16):
        make_image(images / f"{i:02d}.png", seed=i)
    make_image(images / "copy.png", seed=0)  # a copy counts once
    (images / "broken.png").write_bytes(b"not an image")  # left out, as index does
    unseen = [make_image(root / "unseen" / f"{i}.png", seed=1000 + i) for i in range(6)]
    cache = EmbeddingCache(root / "cache")
    teacher = lookalike.load_model(f"openclip:{tiny_clip_dir}", device="cpu")
    student = lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")
    pairs = image_pairs(images, None)
    report = distill_images(teacher, student, pairs, out=root / "head", views=1, settings=SETTINGS, cache=cache)
    return {"root": root, "pairs": pairs, "unseen": unseen, "cache": cache, "teacher": teacher,
            "student": student, "report": report, "student_name": f"timm:{tiny_timm_dir}"}


def test_the_head_loads_as_a_model_in_the_teachers_space(setup: dict) -> None:
    import lookalike
    from lookalike.models.head import ProjectionHead, apply_head, load_head

    report: DistillReport = setup["report"]
    assert report.images == 16 and report.train_images + report.val_images == 16 and report.views == 1
    assert report.skipped == 1 and "1 unreadable" in str(report)
    assert report.train_cos_before is None  # 64-d student, 32-d teacher: nothing to compare without a head
    assert report.val_cos_after > report.val_cos_untrained
    # auto: both archs trained, the one closer to the teacher on validation kept.
    assert set(report.val_cos_by_arch) == {"linear", "mlp"}
    assert report.val_cos_by_arch[report.arch] == max(report.val_cos_by_arch.values())
    teacher, student = setup["teacher"], setup["student"]
    model = lookalike.load_model(f"{setup['student_name']}+head:{report.out}", device="cpu")
    assert model.dim == teacher.dim == 32
    assert model.model_id == f"{report.student}+head:{report.head_id}"
    # A head model (as a teacher) is recorded by the name that loads it again.
    assert model_name(model) == f"{report.student}+head:{report.out}"
    # On images it never saw, the trained head is closer to the teacher than an untrained one.
    target = teacher.encode_images(setup["unseen"])
    distilled = model.encode_images(setup["unseen"])
    head = load_head(report.out)
    untrained = apply_head(ProjectionHead(head.config), student.encode_images(setup["unseen"]))
    assert np.sum(distilled * target, axis=1).mean() > np.sum(untrained * target, axis=1).mean() + 0.2
    # Text goes to the teacher's text tower.
    texts = ["a red square", "a dog"]
    np.testing.assert_allclose(model.encode_text(texts), teacher.encode_text(texts), atol=1e-6)
    # The head records what it was fitted on and whom it imitates.
    assert head.config.kind == "student" and head.config.teacher == report.teacher
    assert head.config.teacher_fingerprint == teacher.fingerprint()
    assert len(head.train_hashes()) == 16 and head.report is not None and head.report["views"] == 1


def test_same_seed_same_head(setup: dict) -> None:
    # The vectors (views included) come from the cache now: only training runs again.
    again = distill_images(setup["teacher"], setup["student"], setup["pairs"], out=setup["root"] / "again", views=1,
                           settings=SETTINGS, cache=setup["cache"])
    from lookalike.models.head import load_head

    first, second = load_head(setup["report"].out).module.state_dict(), load_head(again.out).module.state_dict()
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)
    assert again.val_cos_after == setup["report"].val_cos_after


def test_validation_split_depends_on_content_only() -> None:
    hashes = [f"{i:032x}" for i in range(50)]
    mask = validation_mask(hashes, seed=0)
    assert mask.sum() == 10
    order = np.random.default_rng(0).permutation(50)
    shuffled = validation_mask([hashes[i] for i in order], seed=0)
    assert {hashes[i] for i in order[shuffled]} == {h for h, m in zip(hashes, mask) if m}
    assert not np.array_equal(validation_mask(hashes, seed=1), mask)


def test_bad_input_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        distill("lite", tmp_path / "nowhere", out=tmp_path / "out")
    one = make_image(tmp_path / "one" / "a.png", seed=0)
    with pytest.raises(InvalidArgument, match="at least 2 different images"):
        distill("lite", [one, one], out=tmp_path / "out")
    with pytest.raises(InvalidArgument, match="views"):
        distill("lite", [one], out=tmp_path / "out", views=-1)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not a head folder"):
        distill("lite", [one], out=tmp_path / "taken")
    from lookalike.models.head import HeadConfig, ProjectionHead, save_head

    config = HeadConfig(kind="projection", arch="linear", in_dim=4, out_dim=4, base="lite", base_fingerprint="x",
                        name="h")
    head = save_head(tmp_path / "head", ProjectionHead(config), config)
    with pytest.raises(InvalidArgument, match="cannot sit on another"):
        distill("lite", [one], student=f"lite+head:{head}", out=tmp_path / "out")
