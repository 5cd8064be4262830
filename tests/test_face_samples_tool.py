"""tools/face_samples.py without the network: what it unpacks, and how it fails."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tools import face_samples, samples


def _sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fake_pip(members: dict[str, bytes], calls: list[list[str]]):
    def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        _sdist(dest / f"face_recognition-{face_samples.FACE_VERSION}.tar.gz", members)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetches_once_and_unpacks_only_the_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(samples.ENV_CACHE_DIR, str(tmp_path / "cache"))
    prefix = f"face_recognition-{face_samples.FACE_VERSION}/"
    members = {prefix + "tests/test_images/" + name: name.encode() for name in face_samples.FACE_PHOTOS}
    members[prefix + "setup.py"] = b"code"
    members[prefix + "tests/test_images/../../escape.jpg"] = b"no"  # named outside the folder: left out
    calls: list[list[str]] = []
    monkeypatch.setattr(face_samples.subprocess, "run", _fake_pip(members, calls))
    photos = face_samples.face_images()
    assert set(photos) == set(face_samples.FACE_PHOTOS)
    assert all(path.read_bytes() == name.encode() for name, path in photos.items())
    assert sorted(p.name for p in photos["obama.jpg"].parent.iterdir()) == sorted(face_samples.FACE_PHOTOS)
    assert "--no-binary" in calls[0] and f"face_recognition=={face_samples.FACE_VERSION}" in calls[0]
    assert face_samples.face_images() == photos and len(calls) == 1  # cached: pip runs once


def test_download_failure_is_samples_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(samples.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setattr(face_samples.subprocess, "run",
                        lambda cmd, **kwargs: subprocess.CompletedProcess(cmd, 1, "", "No matching distribution"))
    with pytest.raises(samples.SamplesUnavailable, match="No matching distribution"):
        face_samples.face_images()
    assert not (tmp_path / "cache" / "pypi" / f"face_recognition-{face_samples.FACE_VERSION}").exists()


def test_an_archive_without_the_photos_is_samples_unavailable(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(samples.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setattr(face_samples.subprocess, "run", _fake_pip({"face_recognition-1.3.0/setup.py": b""}, []))
    with pytest.raises(samples.SamplesUnavailable, match="lacks"):
        face_samples.face_images()
