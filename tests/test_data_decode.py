"""engine.data.decode: one file's bytes -> a square uint8 array, or a plain reason why not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.data.decode import ImageError, choose_image_size, decode_image, decode_native, probe
from engine.errors import SproutError


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(colour=(200, 30, 40), size=(16, 16), mode="RGB") -> bytes:
    return encode(Image.new(mode, size, colour), "PNG")


def reason_for(data: bytes) -> str:
    with pytest.raises(ImageError) as caught:
        decode_image(data, 16, 3)
    return caught.value.reason


# ---------------------------------------------------------------------------- bad data


def test_empty_file_is_reported_as_empty():
    assert reason_for(b"") == "empty file (0 bytes)"


def test_text_named_like_an_image_is_not_an_image():
    assert reason_for(b"this is a shopping list, not a JPEG\n") == "not an image"


def test_png_with_broken_header_is_corrupt():
    data = bytearray(png())
    data[16:24] = b"\xff" * 8  # width/height inside IHDR, now with a wrong CRC
    assert reason_for(bytes(data)) == "corrupt image"


def test_png_with_garbled_pixel_data_is_corrupt():
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(pixels), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10:start + 200] = bytes(190)
    assert reason_for(bytes(data)) in ("corrupt image", "truncated image")


def test_truncated_jpeg_is_truncated():
    pixels = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG")
    assert reason_for(data[: len(data) // 2]) == "truncated image"


def test_image_over_the_pixel_limit_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    # 144 pixels: Pillow only warns, our check refuses; 400 pixels: Pillow raises its bomb error.
    for side in (12, 20):
        assert reason_for(png(size=(side, side))) == "over the pixel limit (100 pixels)"


def test_error_is_a_sprout_error_with_a_readable_message():
    with pytest.raises(SproutError, match="not an image"):
        decode_image(b"hello", 16, 1)


@pytest.mark.parametrize("size, channels", [(0, 3), (16, 2), ("16", 3)])
def test_bad_size_or_channels_is_refused(size, channels):
    with pytest.raises(SproutError, match="size|channels"):
        decode_image(png(), size, channels)


# ---------------------------------------------------------------------------- modes and formats


def test_rgb_png_is_resized_and_keeps_its_colour():
    out = decode_image(png((200, 30, 40), size=(40, 10)), 16, 3)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out == [200, 30, 40]).all()


def test_colour_to_grey_uses_luma_and_grey_to_colour_repeats():
    grey = decode_image(png((200, 30, 40)), 8, 1)
    assert grey.shape == (8, 8, 1)
    assert abs(int(grey[0, 0, 0]) - round(200 * 0.299 + 30 * 0.587 + 40 * 0.114)) <= 1
    colour = decode_image(png(90, mode="L"), 8, 3)
    assert (colour == 90).all() and colour.shape == (8, 8, 3)


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    red = decode_image(data, 16, 3)[8, 8].astype(int)
    assert red[0] > 230 and red[1] < 25 and red[2] < 25


def test_16_bit_png_is_scaled_to_8_bits():
    values = np.zeros((10, 20), np.uint16)
    values[:, :10], values[:, 10:] = 65535, 32768
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data, 20, 1)[:, :, 0]
    assert out[5, 2] == 255 and out[5, 17] == 128


def test_16_bit_png_holding_8_bit_values_is_kept_as_is():
    data = encode(Image.fromarray(np.full((8, 8), 77, np.uint16)), "PNG")
    assert (decode_image(data, 8, 1) == 77).all()


def test_palette_png_with_transparency_is_composited_on_white():
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 8, 16))  # left half uses palette entry 1, marked transparent
    out = decode_image(encode(image, "PNG", transparency=1), 16, 3)
    assert (out[8, 2] == [255, 255, 255]).all()
    assert (out[8, 13] == [255, 0, 0]).all()


def test_rgba_and_la_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (4, 0, 8, 8))
    out = decode_image(encode(rgba, "PNG"), 8, 3)
    assert (out[4, 1] == 255).all() and (out[4, 6] == [0, 0, 255]).all()
    half = decode_image(encode(Image.new("LA", (8, 8), (0, 128)), "PNG"), 8, 1)
    assert abs(int(half[0, 0, 0]) - 127) <= 1  # black at 50 % over white


def test_animated_gif_gives_its_first_frame():
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert (decode_image(data, 16, 3) == [255, 0, 0]).all()


@pytest.mark.parametrize("fmt, options", [("WEBP", {"lossless": True}), ("TIFF", {}), ("BMP", {})])
def test_other_formats_decode(fmt, options):
    data = encode(Image.new("RGB", (12, 20), (10, 120, 250)), fmt, **options)
    assert (decode_image(data, 16, 3) == [10, 120, 250]).all()


def test_one_bit_image_becomes_black_and_white():
    image = Image.new("1", (8, 8), 0)
    image.paste(1, (0, 0, 4, 8))
    out = decode_image(encode(image, "PNG"), 8, 1)[:, :, 0]
    assert out[4, 1] == 255 and out[4, 6] == 0


def test_exif_orientation_is_applied_before_squashing():
    # Stored 20 wide x 10 tall: left half black, right half white. Orientation 6 means
    # "rotate 90 degrees clockwise to display": upright it is 10 wide x 20 tall, black on top.
    stored = Image.new("L", (20, 10), 0)
    stored.paste(255, (10, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", exif=exif, quality=95)
    assert probe(data) == (20, 10)  # stored size, from the header
    assert decode_native(data, 20)[1] == (10, 20)  # displayed size
    out = decode_image(data, 20, 1)[:, :, 0].astype(int)
    assert out[:8].mean() < 30 and out[12:].mean() > 225  # top black, bottom white
    assert abs(out[:, :8].mean() - out[:, 12:].mean()) < 30  # not left/right any more


# ---------------------------------------------------------------------------- size choice


def test_image_size_is_the_median_side_clipped_to_16_64():
    assert choose_image_size([(28, 28)] * 5) == 28
    assert choose_image_size([(8, 8), (8, 8)]) == 16
    assert choose_image_size([(4000, 3000)]) == 64
    assert choose_image_size([(50, 18), (32, 32), (10, 10)]) == 30
