"""Device JPEG decoding (lookalike.pipeline.gpu_decode) on the CPU: torchvision's decoder and
the torch preprocessing run there too, so the mechanics are checked without a GPU.

Stated closeness to the CPU path (Pillow + draft mode + build_transform):
* preprocessing alone, on the same decoded pixels: nearly exact (PIL's two rounded passes are
  mimicked): mean difference < 0.05 of an 8-bit level, at most 2 levels;
* vectors of ``lite`` on real photos (JPEG wallpapers, 1280-2560 px): cosine >= 0.99 each and
  >= 0.995 on average. (The gap is draft mode: the CPU path decodes big JPEGs at 1/2..1/8
  scale; against a full-size CPU decode the device path is within ~0.9995.)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import lookalike
from lookalike.errors import InvalidArgument, UnreadableImage
from lookalike.images.transforms import PreprocessConfig, build_transform
from lookalike.pipeline import gpu_decode
from lookalike.pipeline.embed import embed_sources
from lookalike.pipeline.gpu_decode import DeviceDecoder, DevicePreprocess, embed_sources_gpu, gpu_decode_problem, orient
from lookalike.pipeline.jpeg_header import read_jpeg_header

CPU = torch.device("cpu")
# torchvision 0.29 deprecates its decoders (TorchCodec); outside pytest DeprecationWarnings
# raised inside torchvision are not shown anyway.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision")


def _smooth(size: tuple[int, int], seed: int = 0) -> Image.Image:
    blocks = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.BICUBIC)


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def _chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("cfg", [
    PreprocessConfig(size=64, resize_mode="letterbox", crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3),
    PreprocessConfig(size=64),  # crop 0.875, bicubic
    PreprocessConfig(size=64, resize_mode="squash", interpolation="bilinear"),
    PreprocessConfig(size=64, interpolation="nearest", fill=(0, 0, 0)),
], ids=["letterbox", "crop", "squash", "nearest"])
def test_device_preprocessing_matches_the_cpu_transform(cfg: PreprocessConfig) -> None:
    sizes = [(300, 200), (200, 300), (50, 40), (64, 64), (300, 200)]  # a repeated size is batched together
    images = [_smooth(s, seed=i) for i, s in enumerate(sizes)]
    cpu = np.stack([build_transform(cfg)(img) for img in images])
    dev = DevicePreprocess(cfg, CPU)([_chw(img) for img in images]).numpy()
    assert dev.shape == cpu.shape and dev.dtype == np.float32
    levels = np.abs(cpu - dev) * (np.asarray(cfg.std).reshape(1, 3, 1, 1) * 255)
    assert levels.max() <= 2.01, levels.max()  # 2 only in rare upscaling spots; mostly exact
    assert levels.mean() < 0.05, levels.mean()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    img.getexif()[0x0112] = orientation
    want = np.asarray(ImageOps.exif_transpose(img))
    got = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert got.shape == want.shape and (got == want).all()


def test_jpeg_header_routes_only_plain_complete_jpegs() -> None:
    img = _smooth((40, 30))
    exif = img.getexif()
    exif[0x0112] = 6
    plain = _jpeg(img, exif=exif.tobytes())
    header = read_jpeg_header(plain)
    assert header is not None and (header.width, header.height, header.orientation) == (40, 30, 6)
    assert header.device_ok
    assert read_jpeg_header(_jpeg(img, progressive=True)).device_ok
    assert read_jpeg_header(_jpeg(img.convert("L"))).device_ok
    assert not read_jpeg_header(_jpeg(img.convert("CMYK"))).device_ok
    assert not read_jpeg_header(plain[: len(plain) * 2 // 3]).device_ok  # cut short: no end marker
    assert read_jpeg_header(plain + b"trailing junk").device_ok  # data after the image is fine
    png = io.BytesIO()
    img.save(png, format="PNG")
    assert read_jpeg_header(png.getvalue()) is None
    assert read_jpeg_header(b"\xff\xd8\xff\xe0\x00") is None  # malformed


@pytest.fixture(scope="module")
def real_jpegs(photo_sources) -> list[Path]:
    picked = []
    for path in photo_sources:
        if path.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(path) as img:
                if max(img.size) <= 2600:
                    picked.append(path)
    if len(picked) < 4:
        pytest.skip("too few real JPEG photos among the samples")
    return picked[:5]


def test_vectors_on_real_photos_match_the_cpu_path(lite_model, real_jpegs) -> None:
    cpu = lite_model.encode_images(real_jpegs, batch_size=4)
    dev = embed_sources(lite_model, real_jpegs, batch_size=4, gpu_decode=True)
    cos = np.sum(cpu * dev, axis=1)
    assert cos.min() >= 0.99 and cos.mean() >= 0.995, cos
    # and each vector is its own image's: order kept
    sims = dev @ cpu.T
    assert (sims.argmax(axis=1) == np.arange(len(real_jpegs))).all()


@pytest.fixture(scope="module")
def tiny_model(tiny_timm_dir):
    return lookalike.load_model(f"timm:{tiny_timm_dir}", device="cpu")


def _mixed(tmp_path: Path) -> tuple[list, list]:
    """JPEG bytes, a PNG file, a PIL image, a JPEG file, a CMYK JPEG: the non-JPEGs take the CPU path."""
    imgs = [_smooth((90 + 10 * i, 70), seed=i) for i in range(5)]
    png = tmp_path / "b.png"
    imgs[1].save(png)
    jpg = tmp_path / "d.jpg"
    jpg.write_bytes(_jpeg(imgs[3]))
    sources = [_jpeg(imgs[0]), png, imgs[2], jpg, _jpeg(imgs[4].convert("CMYK"))]
    return sources, [True, False, False, True, False]


def test_fallbacks_keep_order_and_match_the_cpu_path(tiny_model, tmp_path: Path) -> None:
    sources, jpeg = _mixed(tmp_path)
    want = embed_sources(tiny_model, sources, batch_size=2)
    got = embed_sources(tiny_model, sources, batch_size=2, gpu_decode=True)
    cos = np.sum(want * got, axis=1)
    assert (cos[~np.array(jpeg)] > 0.99999).all(), cos  # the CPU path itself
    assert (cos > 0.99).all(), cos
    assert ((got @ want.T).argmax(axis=1) == np.arange(len(sources))).all()


def test_encode_images_takes_the_option(tiny_model, tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(gpu_decode, "embed_sources_gpu", lambda model, images, **kw: calls.append(kw) or "dev")
    assert tiny_model.encode_images([tmp_path / "a.jpg"], gpu_decode=True) == "dev" and len(calls) == 1


def test_device_failures_fall_back_per_item(tiny_model, tmp_path: Path, monkeypatch) -> None:
    """A batched decode that fails is retried one image at a time; an image the device still
    cannot decode goes the CPU path: no image is dropped or replaced by another."""
    import torchvision.io

    sources, _ = _mixed(tmp_path)
    want = embed_sources(tiny_model, sources, batch_size=8)
    real = torchvision.io.decode_jpeg
    bad = sources[0]  # the device "cannot" decode this one

    def flaky(data, **kw):
        if any(bytes(t.numpy()) == bad for t in data):
            raise RuntimeError("nvjpeg says no")
        return real(data, **kw)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", flaky)
    decoder = DeviceDecoder(tiny_model.preprocess, CPU, tiny_model.image_transform, 0)
    staged = [decoder.stage(s) for s in sources]
    errors, pixels = decoder.decode_batch(staged)
    assert errors == [None] * 5 and pixels.shape[0] == 5
    assert decoder.on_device == 1  # d.jpg; the first JPEG went to the CPU path
    got = tiny_model.embed_pixels(pixels)
    assert (np.sum(want * got, axis=1) > 0.99).all()


def test_an_unreadable_image_raises_as_the_cpu_path_does(tiny_model, tmp_path: Path) -> None:
    good = _jpeg(_smooth((80, 60)))
    for broken in (good[: len(good) // 2], b"\xff\xd8\xff" + b"\x00" * 50, b"not an image"):
        with pytest.raises(UnreadableImage):
            embed_sources(tiny_model, [good, broken, good], gpu_decode=True)
    with pytest.raises(UnreadableImage, match="not found"):
        embed_sources(tiny_model, [tmp_path / "missing.jpg"], gpu_decode=True)


def test_header_that_lies_is_left_to_the_cpu_path(tiny_model) -> None:
    """A decoded size other than the header's (a decoder quirk) is not trusted."""
    data = _jpeg(_smooth((80, 60)))
    decoder = DeviceDecoder(tiny_model.preprocess, CPU, tiny_model.image_transform, 0)
    staged = decoder.stage(data)
    staged.header = type(staged.header)(**{**staged.header.__dict__, "width": 81})
    errors, pixels = decoder.decode_batch([staged])
    assert errors == [None] and pixels.shape[0] == 1 and decoder.on_device == 0


def test_huge_jpegs_take_the_cpu_path(tiny_model) -> None:
    decoder = DeviceDecoder(tiny_model.preprocess, CPU, tiny_model.image_transform, 0, max_pixels=100)
    assert decoder.stage(_jpeg(_smooth((80, 60)))).data is None


def test_devices_without_a_jpeg_decoder_are_refused(tiny_model) -> None:
    assert gpu_decode_problem(CPU) is None
    assert "meta" in gpu_decode_problem(torch.device("meta"))
    with pytest.raises(InvalidArgument, match="run without gpu_decode"):
        embed_sources_gpu(tiny_model, [b""], device=torch.device("meta"))
