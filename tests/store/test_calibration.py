"""The int8 calibration sample: deterministic, evenly spread, local images only."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.errors import InvalidArgument
from lookalike.sources import FileListSource, FolderSource
from lookalike.store.calibration import _spread, calibration_sample
from support import make_image


def test_spread_is_even_over_a_stream_of_unknown_length():
    for total, n in [(10, 300), (1000, 10), (1023, 7), (5, 5)]:
        chosen, seen = _spread(iter(range(total)), n)
        assert seen == total
        assert len(chosen) == min(total, n)
        assert chosen == sorted(set(chosen))
        if total > n:
            gaps = [b - a for a, b in zip(chosen, chosen[1:])]
            assert max(gaps) <= 2 * total / n, (total, n, gaps)  # no region left out
            assert chosen[-1] >= total - 2 * total / n


def test_folder_sample_is_deterministic_and_spread(tmp_path: Path):
    for i in range(40):
        make_image(tmp_path / "imgs" / f"{i:03d}.png", seed=i, size=(16, 16))
    first = calibration_sample([FolderSource([str(tmp_path / "imgs")])], n=8)
    again = calibration_sample([FolderSource([str(tmp_path / "imgs")])], n=8)
    assert first == again and len(first) == 8
    names = [Path(p).name for p in first]
    assert names[0] == "000.png" and names[-1] >= "030.png"


def test_urls_alone_cannot_calibrate(tmp_path: Path):
    listing = tmp_path / "urls.txt"
    listing.write_text("https://example.org/a.jpg\nhttps://example.org/b.jpg\n")
    with pytest.raises(InvalidArgument, match="--calibration FOLDER"):
        calibration_sample([FileListSource(str(listing))])


def test_int8_by_default_only_for_measured_models_and_enough_images(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.store import calibration

    for i in range(12):
        make_image(tmp_path / "imgs" / f"{i:03d}.png", seed=i, size=(16, 16))
    folder = [FolderSource([str(tmp_path / "imgs")])]
    assert calibration.default_int8_sample(folder, "lite") is None  # 12 images: fp32
    monkeypatch.setattr(calibration, "INT8_DEFAULT_FROM", 10)
    sample = calibration.default_int8_sample([FolderSource([str(tmp_path / "imgs")])], "lite")
    assert sample is not None and len(sample) == 12
    assert calibration.default_int8_sample(folder, "timm:vit_small_patch14_dinov2.lvd142m") is None
