"""sluice.image_embedding on real images: skimage's sample photos, the real model (no mocks).

The model is exported once into a temporary data dir for this module (~4 s), then reused.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageEnhance

from sluice.errors import InvalidInput
from sluice.image_embedding import (
    DIM,
    MAX_PIXELS,
    NOT_AN_IMAGE,
    ImageDecodeError,
    decode_image,
    embed_bytes,
    embed_images,
)
from sluice.settings import get_settings

PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "immunohistochemistry", "moon",
          "retina", "rocket", "brick", "grass", "gravel", "page", "text", "cell", "clock")  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh Sluice data dir, where the model's ONNX file is cached."""
    path = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLUICE_DATA_DIR", str(path))
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS}


@pytest.fixture(scope="module")
def originals(photos: dict[str, Image.Image]) -> np.ndarray:
    return embed_images(list(photos.values()))


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def edited_copy(image: Image.Image) -> bytes:
    """80% crop off-centre, more saturated, brighter and warmer, saved as JPEG quality 40."""
    width, height = image.size
    image = image.convert("RGB").crop(
        (width // 10, height // 20, width // 10 + width * 4 // 5, height // 20 + height * 4 // 5)
    )
    image = ImageEnhance.Brightness(ImageEnhance.Color(image).enhance(1.5)).enhance(1.15)
    pixels = np.asarray(image, dtype=np.float32) * np.array([1.12, 1.0, 0.85], dtype=np.float32)
    return encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=40)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: a few bytes that would decode to gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


# --- decode_image ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"name,price\nteapot,12\n",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # Pillow could open EPS with Ghostscript
        b"\x00" * 1000,
    ],
    ids=["csv", "pdf", "eps", "zeros"],
)
def test_decode_image_not_an_image(data: bytes):
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data)
    assert str(raised.value) == NOT_AN_IMAGE == "not an image (PNG, JPEG, GIF, WebP, BMP or TIFF)"


def test_decode_image_empty_bytes():
    with pytest.raises(ImageDecodeError, match="^empty file: not an image$"):
        decode_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_decode_image_truncated(photos: dict[str, Image.Image], fmt: str):
    data = encode(photos["astronaut"], fmt)
    with pytest.raises(ImageDecodeError, match="^damaged or truncated image file$"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("side", [9_000, 50_000], ids=["over-our-limit", "over-pillow-bomb-limit"])
def test_decode_image_decompression_bomb(side: int):
    assert side * side > MAX_PIXELS
    with pytest.raises(ImageDecodeError, match="^image too large"):
        decode_image(png_header_only(side, side))


def test_decode_image_error_is_a_400_and_a_value_error():
    with pytest.raises(InvalidInput):
        decode_image(b"not an image")
    with pytest.raises(ValueError):
        decode_image(b"not an image")


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (30, 20), 128),
        Image.new("RGBA", (30, 20), (255, 0, 0, 0)),  # fully transparent: white, not red
        Image.new("I;16", (30, 20), 65535),
        Image.new("CMYK", (30, 20), (0, 0, 0, 0)),
        Image.new("P", (30, 20), 0),
    ],
    ids=lambda image: image.mode,
)
def test_decode_image_returns_rgb(image: Image.Image):
    fmt = "TIFF" if image.mode in ("CMYK", "I;16") else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (30, 20)
    if image.mode in ("RGBA", "I;16", "CMYK"):
        assert decoded.getpixel((0, 0)) == (255, 255, 255)


def test_decode_image_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a phone held upright
    decoded = decode_image(encode(Image.new("RGB", (40, 20), "red"), "JPEG", exif=exif))
    assert decoded.size == (20, 40)


# --- embed_images / embed_bytes -------------------------------------------------------------------


def test_embed_images_shape_dtype_unit_length(photos: dict[str, Image.Image]):
    images = [photos["astronaut"], photos["camera"].convert("L"), Image.new("RGB", (1, 1), "blue")]
    vectors = embed_images(images)
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_images_empty_list():
    vectors = embed_images([])
    assert vectors.shape == (0, DIM) and vectors.dtype == np.float32


def test_embed_bytes_matches_embed_images(photos: dict[str, Image.Image], originals: np.ndarray):
    data = encode(photos["astronaut"])
    vector = embed_bytes(data)
    assert vector.shape == (DIM,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector, embed_images([decode_image(data)])[0], atol=1e-6)
    # decode_image shrinks big images (512 px here) before embedding; the vector barely moves
    assert float(vector @ originals[PHOTOS.index("astronaut")]) > 0.995


def test_embed_bytes_bad_bytes():
    with pytest.raises(ImageDecodeError):
        embed_bytes(b"<html></html>")


@pytest.mark.parametrize("name", PHOTOS)
def test_edited_copy_nearest_to_its_original(photos: dict[str, Image.Image], originals: np.ndarray, name: str):
    similarity = originals @ embed_bytes(edited_copy(photos[name]))
    nearest = PHOTOS[int(np.argmax(similarity))]
    assert nearest == name, dict(zip(PHOTOS, similarity.round(3).tolist(), strict=True))


def test_embed_images_from_threads_same_as_alone(photos: dict[str, Image.Image], originals: np.ndarray):
    images = list(photos.values())
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = embed_images(images[i::4])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        np.testing.assert_allclose(results[i], originals[i::4], atol=1e-5)


def test_model_exported_once_then_read_from_the_data_dir_without_torch(tmp_path: Path):
    """First use in a data dir writes the ONNX file; a new process then starts from it without torch."""
    code = (
        "import sys\nfrom PIL import Image\nfrom sluice.image_embedding import embed_images\n"
        "embed_images([Image.new('RGB', (8, 8))])\nprint('torch' in sys.modules)"
    )
    env = {**os.environ, "SLUICE_DATA_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
            for _ in range(2)]  # fmt: skip
    assert [run.stdout.split()[-1] for run in runs] == ["True", "False"]
    files = sorted(path.name for path in (tmp_path / "models").iterdir())
    assert len(files) == 1 and files[0].endswith(".onnx"), files  # no temp file left behind
