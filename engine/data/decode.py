"""Turning the bytes of one image file into a small square uint8 array.

Every decode goes through the same steps, whatever the file format:

1. open with Pillow (header only) and refuse empty files, non-images and images over
   Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, left at its default);
2. take the first frame of animated files (GIF, APNG, WebP, multi-page TIFF);
3. apply the EXIF orientation tag (``ImageOps.exif_transpose``) so the pixels are the way
   a photo viewer shows them;
4. bring every mode to 8-bit greyscale ("L") or RGB: transparency is composited on white,
   palettes are expanded, CMYK/YCbCr/LAB/HSV are converted to RGB, and 16/32-bit integer
   or float greyscale is scaled to 0..255 (see :func:`_wide_to_l`);
5. resize to ``size x size`` ignoring the aspect ratio ("squash").

Problems are raised as :class:`ImageError`, whose ``reason`` is the plain-language text
shown in the list of skipped files.
"""

from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import SproutError

RESAMPLE = Image.Resampling.BILINEAR  # Pillow's bilinear filter antialiases when shrinking.
MIN_AUTO_SIZE, MAX_AUTO_SIZE = 16, 64
THREAD_MIN_FILES, THREAD_MIN_MEAN_BYTES = 64, 32 * 1024

# Leading bytes of the formats people put in image folders: a file that starts like an
# image but cannot be opened is "corrupt", anything else is "not an image".
_SIGNATURES = (
    b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
    b"RIFF", b"\x00\x00\x01\x00", b"8BPS",
)


class ImageError(SproutError):
    """One image could not be used; ``reason`` says why in a few plain words."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def pixel_limit_reason() -> str:
    """The skip reason for images over Pillow's current pixel limit."""
    return f"over the pixel limit ({Image.MAX_IMAGE_PIXELS:,} pixels)"


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Silence Pillow's warnings (decompression-bomb, odd metadata) for a batch of decodes.

    The pixel limit is still enforced: :func:`open_image` raises for any image over it.
    ``warnings.catch_warnings`` is process-global, so enter this once around a whole batch
    (worker threads included), not inside each worker.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


def open_image(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header only) after checking it is a usable image.

    Raises :class:`ImageError` with reason "empty file (0 bytes)", "not an image",
    "corrupt image", "truncated image" or "over the pixel limit (... pixels)".
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(pixel_limit_reason(), str(exc)) from exc
    except UnidentifiedImageError as exc:
        reason = "corrupt image" if data.startswith(_SIGNATURES) else "not an image"
        raise ImageError(reason, f"Pillow cannot read a {len(data):,}-byte file") from exc
    except Exception as exc:  # Pillow raises many types on malformed headers
        raise _load_error(exc) from exc
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ImageError(pixel_limit_reason(), f"{width}x{height} = {width * height:,} pixels")
    if width < 1 or height < 1:
        raise ImageError("corrupt image", f"size {width}x{height}")
    return image


def probe(data: bytes) -> tuple[int, int]:
    """Stored (width, height) of the image in ``data``, reading only its header.

    EXIF orientation is not applied (reading it can mean decoding a whole PNG); the
    displayed size comes with :func:`decode_native`.
    """
    return open_image(data).size


def to_l_or_rgb(image: Image.Image) -> Image.Image:
    """The first frame of ``image``, upright, as an 8-bit "L" or "RGB" image."""
    image.load()  # Image.open leaves animated files on frame 0; decoding errors raise here
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 - broken EXIF metadata (Pillow raises many kinds): keep the stored orientation
        pass
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        return _on_white(image.convert("RGBA")) if has_alpha else image.convert("RGB")
    if mode in ("LA", "La", "PA"):
        return _on_white(image.convert("RGBA")).convert("L")
    if mode in ("RGBA", "RGBa"):
        return _on_white(image.convert("RGBA"))
    if mode.startswith("I") or mode == "F":
        return _wide_to_l(image)
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _on_white(rgba: Image.Image) -> Image.Image:
    """An RGBA image composited over a white background, as RGB."""
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def _wide_to_l(image: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float greyscale image mapped to 8 bits.

    Integer images whose values all fit in 0..255 are kept as they are (8-bit data in a
    wide container); otherwise values are clipped to 0..65535 and scaled by 255/65535, the
    standard 16-bit to 8-bit mapping. Float images in 0..1 are scaled by 255, others clipped
    to 0..255.
    """
    values = np.asarray(image)
    if image.mode == "F":
        peak = float(np.nanmax(values)) if values.size else 0.0
        scaled = np.nan_to_num(values) * (255.0 if peak <= 1.0 else 1.0)
    else:
        values = values.astype(np.int64)
        if values.size and values.max() <= 255:
            scaled = values
        else:
            scaled = np.clip(values, 0, 65535) * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def decode_native(data: bytes, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``data`` decoded, upright and squashed to ``size x size``, with its own channels.

    Returns (pixels, (width, height) of the original as displayed, i.e. after EXIF
    orientation). Pixels are uint8 (size, size, 1) when the picture is greyscale (an "L"
    image, or an RGB one whose three channels are equal everywhere), else (size, size, 3).
    Raises :class:`ImageError` on unusable data.
    """
    image = open_image(data)
    width, height = image.size
    try:
        if image.format == "JPEG" and getattr(image, "n_frames", 1) == 1:
            image.draft(None, (size, size))  # let libjpeg shrink big photos cheaply (DCT scaling)
        stored = image.size
        image = to_l_or_rgb(image)
        if image.size != stored:  # EXIF orientation swapped width and height
            width, height = height, width
        if image.size != (size, size):
            image = image.resize((size, size), RESAMPLE, reducing_gap=3.0)
        pixels = np.asarray(image, dtype=np.uint8)
    except ImageError:
        raise
    except Exception as exc:
        raise _load_error(exc) from exc
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 1] == pixels[:, :, 2]).all():
        pixels = np.ascontiguousarray(pixels[:, :, :1])
    return pixels, (width, height)


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """``pixels`` (S, S, 1 or 3) with exactly ``channels`` channels.

    Colour to grey uses Pillow's ITU-R 601-2 luma (L = R*299/1000 + G*587/1000 + B*114/1000);
    grey to colour repeats the channel.
    """
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    grey = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    return np.asarray(grey, dtype=np.uint8)[:, :, None]


def decode_image(data: bytes, size: int, channels: int) -> np.ndarray:
    """One image file's bytes -> uint8 array (size, size, channels), channels 1 or 3.

    Raises :class:`ImageError` (a :class:`SproutError`) on bad data, and SproutError on a
    bad ``size`` or ``channels``.
    """
    size, channels = check_size(size), check_channels(channels)
    if size is None or channels == "auto":
        raise SproutError(f"decode_image needs a size and 1 or 3 channels, got {size!r}, {channels!r}")
    with quiet_pillow():
        return to_channels(decode_native(data, size)[0], channels)


def map_images(fn: Callable, items: list, mean_bytes: float) -> list:
    """``[fn(x) for x in items]`` with any ImageError returned in place of its result.

    Runs on a thread pool only where that measurably helps: Pillow releases the GIL while
    decoding, so threads pay off for big files (mean >= 32 KiB); for small ones (e.g. 28x28
    PNGs) Python overhead dominates and threads are slower (see bench/results/ingest.md).
    """
    def safe(x):
        try:
            return fn(x)
        except ImageError as exc:
            return exc

    workers = min(os.cpu_count() or 1, 8)
    if workers < 2 or len(items) < THREAD_MIN_FILES or mean_bytes < THREAD_MIN_MEAN_BYTES:
        return [safe(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(safe, items, chunksize=8))


def choose_image_size(sizes: list[tuple[int, int]]) -> int:
    """Side of the square input: the median of sqrt(width*height), rounded, clipped to [16, 64]."""
    if not sizes:
        return MIN_AUTO_SIZE
    median = float(np.median([np.sqrt(w * h) for w, h in sizes]))
    return int(np.clip(round(median), MIN_AUTO_SIZE, MAX_AUTO_SIZE))


def check_size(image_size) -> int | None:
    """``image_size`` validated: None (choose from the data) or a whole number from 4 to 1024."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not 4 <= image_size <= 1024:
        raise SproutError(f"image size must be a whole number from 4 to 1024, got {image_size!r}")
    return int(image_size)


def check_channels(channels) -> int | str:
    """``channels`` validated: "auto", 1 or 3 (the strings "1" and "3" are accepted)."""
    if channels in ("auto", None):
        return "auto"
    if str(channels) in ("1", "3"):
        return int(channels)
    raise SproutError(f"channels must be 'auto', 1 or 3, got {channels!r}")


def _load_error(exc: BaseException) -> ImageError:
    """The ImageError for an exception Pillow raised while reading pixels."""
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(pixel_limit_reason(), str(exc))
    text = str(exc)
    if "truncated" in text.lower():
        return ImageError("truncated image", text)
    return ImageError("corrupt image", f"{type(exc).__name__}: {text}")
