"""Real photos shipped by installed packages, and the edits a user's copy of a photo goes through.

Photos: every photograph in ``skimage.data`` that needs no download (colour and grey), the two in
scikit-learn's ``load_sample_images``, and four of skimage's graphics (logo, silhouette, colour
wheel, phantom), which image collections hold too. Distractors: skimage's 200 LFW patches, 25x25
faces and non-faces. Every edit is a pure function of the image and a seeded generator.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon", "page", "retina", "rocket",
                  "text")  # fmt: skip

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]


def _uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == bool:
        return pixels.astype(np.uint8) * 255
    if pixels.dtype != np.uint8:  # floats in [0, 1]
        return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    return pixels


def load_photos() -> dict[str, Image.Image]:
    """Name -> image (RGB or L), photos first, then the four graphics."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: Image.fromarray(_uint8(getattr(skimage.data, name)())) for name in SKIMAGE_PHOTOS}
    photos["motorcycle"] = Image.fromarray(skimage.data.stereo_motorcycle()[0])  # the left view only
    samples = load_sample_images()
    for filename, pixels in zip(samples.filenames, samples.images, strict=True):
        photos[filename.rsplit("/", 1)[-1].split(".")[0]] = Image.fromarray(pixels)  # china, flower
    logo = Image.fromarray(skimage.data.logo())
    photos["logo"] = Image.alpha_composite(Image.new("RGBA", logo.size, "white"), logo).convert("RGB")
    photos["horse"] = Image.fromarray(_uint8(~skimage.data.horse()))
    photos["colorwheel"] = Image.fromarray(_uint8(skimage.data.colorwheel()))
    photos["phantom"] = Image.fromarray(_uint8(skimage.data.shepp_logan_phantom()))
    return photos


def load_distractors() -> list[Image.Image]:
    """skimage's 200 LFW patches (25x25 grey; 100 faces, 100 backgrounds)."""
    import skimage.data

    return [Image.fromarray(_uint8(patch)) for patch in skimage.data.lfw_subset()]


def encode(image: Image.Image, fmt: str = "PNG", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode(image.convert("RGB"), "JPEG", quality)))


def crop(image: Image.Image, fraction: float, rng: np.random.Generator) -> Image.Image:
    """A window of ``fraction`` of the width and height, at a random place."""
    width, height = image.size
    w, h = round(width * fraction), round(height * fraction)
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return image.crop((left, top, left + w, top + h))


def colour_shift(image: Image.Image) -> Image.Image:
    """More saturated, brighter, warmer: red up 12%, blue down 15%."""
    image = ImageEnhance.Color(image.convert("RGB")).enhance(1.5)
    image = ImageEnhance.Brightness(image).enhance(1.15)
    pixels = np.asarray(image, dtype=np.float32) * np.array([1.12, 1.0, 0.85], dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated, then the middle 85% kept, so the black corners mostly go (as a user would crop)."""
    rotated = image.convert("RGB").rotate(degrees, resample=Image.Resampling.BICUBIC)
    return ImageOps.crop(rotated, round(min(rotated.size) * 0.075))


def low_res(image: Image.Image, side: int) -> Image.Image:
    """A thumbnail whose long side is ``side`` pixels."""
    width, height = image.size
    scale = side / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)


def _tilt(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.choice([-1, 1]) * rng.uniform(low, high))


# The edits a user's copy goes through; each query is one of these applied to an original.
EDITS: dict[str, Edit] = {
    "crop": lambda image, rng: crop(image, 0.8, rng),
    "colour": lambda image, rng: colour_shift(image),
    "jpeg": lambda image, rng: jpeg(image, 30),
    "rotate": lambda image, rng: rotate(image, _tilt(rng, 4, 8)),
    "low-res": lambda image, rng: low_res(image, 64),
    "grey": lambda image, rng: image.convert("L"),
    "mirror": lambda image, rng: ImageOps.mirror(image),
    "combined": lambda image, rng: jpeg(colour_shift(low_res(crop(image, 0.9, rng), 200)), 50),
}

# Harder versions, to show where the limits are (no goal on these).
HARD_EDITS: dict[str, Edit] = {
    "crop 60%": lambda image, rng: crop(image, 0.6, rng),
    "rotate 12": lambda image, rng: rotate(image, _tilt(rng, 12, 12)),
    "48 px": lambda image, rng: low_res(image, 48),
    "32 px": lambda image, rng: low_res(image, 32),
    "grey+colour+q20": lambda image, rng: jpeg(colour_shift(image).convert("L"), 20),
    "mirror+crop 70%": lambda image, rng: ImageOps.mirror(crop(image, 0.7, rng)),
}
