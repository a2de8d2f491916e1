"""Hostile and odd input, one visible list (issue #8): what ``python -m engine inspect`` does
with each case, run in-process through ``engine.cli.main``.

Every case builds its input itself in ``tmp_path`` (tiny images made with Pillow/NumPy; no
network, nothing from ../shared). For each one the CLI either succeeds (exit 0, the JSON
report with the expected classes, skipped files and warnings, nothing on stderr) or exits
with status 2 and one plain-language line on stderr (no traceback). Either way nothing is
written outside ``SPROUT_HOME`` (only its ``cache/`` gets a file): the test snapshots its
whole temporary tree, and the folder above it, before and after.

The cases (49; ids as in ``CASES``):

Broken files
  1. corrupt_png               a PNG whose header is garbage                -> skipped "corrupt image"
  2. truncated_jpeg            a JPEG cut in half                           -> skipped "truncated image"
  3. zero_byte_file            a 0-byte .png                                -> skipped "empty file (0 bytes)"
  4. text_named_jpg            a shopping list saved as .jpg                -> skipped "not an image"
  5. png_named_jpg             a PNG with a .jpg name                       -> used (content decides)
  6. other_file_types          .txt, .zip, .py files in class folders       -> skipped "not an image (.x file)"
  7. fifo_in_class             a named pipe in a class folder (would block) -> skipped "not a regular file"
  8. every_file_broken         nothing decodable at all                     -> error "no usable images found"
Zips
  9. zip_dotdot_entries        "../evil.png", "a/../../up.png"              -> skipped, never written
 10. zip_absolute_entries      "/tmp/sprout-...png", "C:/windows.png"       -> skipped, never written
 11. zip_symlink_entry         a member that is a link to /etc/passwd       -> skipped "symbolic link not followed"
 12. zip_encrypted_entry       a member flagged as encrypted                -> skipped "encrypted file in zip"
 13. zip_duplicate_names       the same name twice                          -> second skipped "duplicate file name"
 14. zip_bomb_declared_size    central directory claims 3 GiB uncompressed  -> error "too large" (2 GiB limit)
 15. zip_bomb_deflate          6 MiB of zeros in a few KiB, 1 MiB limit     -> error "too large"
 16. zip_bomb_many_entries     1,001 empty entries, a 1,000-file limit      -> error "too many files"
 17. zip_with_macosx_wrapper   photos/<class>/... plus __MACOSX/            -> used, __MACOSX skipped
 18. not_a_zip                 text named photos.zip                        -> error "not a valid zip file"
Images that are too big
 19. decompression_bomb_png    a PNG header claiming 30000x30000 pixels     -> skipped "over the pixel limit"
 20. photo_20mb                one 20 MB JPEG photo                         -> used, its size in the report
Links
 21. symlink_file_outside      a class image linking outside the data       -> skipped, not followed
 22. symlink_folder_outside    a class folder linking outside the data      -> skipped, not followed
Layout
 23. missing_path              a path that does not exist                   -> error "no such folder or file"
 24. empty_folder              a folder with nothing in it                  -> error "no images found"
 25. single_file_given         an image file instead of a folder            -> error "expected a folder ..."
 26. single_class              one class folder only                        -> error "only one class was found"
 27. single_class_beside_empty_ones  one class, two without usable images  -> error naming the empty ones
 28. empty_class_folder        a third class folder with no files           -> warning naming it
 29. class_all_broken          a third class whose every file is broken     -> warning naming it
 30. class_with_one_image      a class holding one image                    -> warning "has only 1 image"
 31. images_at_top_level       images with no class folder at all           -> error "... is this one class folder"
 32. stray_images_beside_classes  images beside the class folders           -> skipped "not inside a class folder"
 33. nested_deeper_than_class  animals/cats/..., plants/trees/...           -> classes animals, plants
 34. wrapper_folders           dataset/train/<class>/...                    -> classes found under the wrappers
 35. five_hundred_classes      500 classes of 2 images                      -> used, one grouped warning
 36. split_named_classes       class folders named train / test             -> warning "look like data splits"
 37. duplicates_across_classes the same bytes in two classes                -> warning naming both files
Formats and modes
 38. cmyk_jpeg                 CMYK JPEGs                                   -> used as RGB
 39. png_16bit                 16-bit greyscale PNGs                        -> used, 1 channel
 40. palette_png_transparency  palette PNGs with a transparent entry        -> used
 41. animated_gif              two-frame GIFs                               -> used (first frame)
 42. webp                      lossless WebP                                -> used
 43. tiff                      TIFF                                         -> used
 44. grey_and_rgb_mixed        greyscale and colour classes                 -> used, 3 channels
 45. exif_rotated_photos       JPEGs stored 20x10 with EXIF orientation 6   -> used, sizes as displayed (10x20)
 46. tiny_1x1_and_stretched    1x1 images and 200x5 strips                  -> used, warning "stretched"
Names
 47. unicode_and_spaces        "chats noirs/é 1.png", "über straße/日本 語.png" -> used, names kept
 48. long_file_names           250-character file names                     -> used
 49. macosx_ds_store_thumbs    __MACOSX/, .DS_Store, Thumbs.db, desktop.ini -> skipped "hidden or system ..."
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from engine import cli

from engine.data import sources
from engine.data.sources import SourceLimits
from tests.helpers import write_zip

# ---------------------------------------------------------------------------- builders


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def png(colour=(200, 30, 40), size=(12, 12), mode="RGB") -> bytes:
    return encode(Image.new(mode, size, colour), "PNG")


def colour_of(c: int, k: int) -> tuple[int, int, int]:
    """A distinct colour for image ``k`` of class number ``c`` (no accidental duplicates)."""
    return ((c * 60 + k * 7) % 256, (255 - k * 11) % 256, (c * 97) % 256)


def two_classes(root: Path, n: int = 3, names=("cat", "dog")) -> Path:
    """Classes ``names`` holding ``n`` distinct 12x12 PNGs each."""
    for c, name in enumerate(names):
        for k in range(n):
            write(root / name / f"{k}.png", png(colour_of(c, k)))
    return root


def classes_of(root: Path, make: Callable[[int, int], bytes], ext: str, n: int = 2) -> Path:
    """Classes "a" and "b", ``n`` files each, made by ``make(class_number, k)``."""
    for c, name in enumerate("ab"):
        for k in range(n):
            write(root / name / f"{k}{ext}", make(c, k))
    return root


def noise_jpeg(size=(64, 64), seed=0, quality=90) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=quality)


def png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose header claims ``width x height`` 8-bit grey pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def good_members(prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{name}/{k}.png": png(colour_of(c, k)) for c, name in enumerate(("cat", "dog")) for k in range(2)}


def patch_central_directory(path: Path, offset: int, fmt: str, value: int, name: str | None = None) -> None:
    """Overwrite one field of the central-directory record(s) (of member ``name``, or all)."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"PK\x01\x02")
    while pos != -1:
        n_name = struct.unpack_from("<H", raw, pos + 28)[0]
        if name is None or raw[pos + 46:pos + 46 + n_name].decode() == name:
            struct.pack_into(fmt, raw, pos + offset, value)
        pos = raw.find(b"PK\x01\x02", pos + 46)
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------------------- the cases


@dataclass
class Case:
    """``build(folder)`` makes the input inside ``folder`` and returns the path to inspect.

    ``error``: a regex the one-line message must match (exit 2); otherwise the report must have
    ``classes``/``counts``/``channels`` (when given), each ``skipped`` path with a reason
    starting with the given text, and each ``warnings`` text inside some warning.
    ``check(report, folder)`` runs last. ``limits`` replaces the default limits.
    ``outside(folder)`` lists paths that must not exist afterwards.
    """

    build: Callable[[Path], Path]
    error: str | None = None
    classes: list[str] | None = None
    counts: dict[str, int] | None = None
    channels: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    check: Callable[[dict, Path], None] | None = None
    limits: SourceLimits | None = None
    outside: Callable[[Path], list[Path]] | None = None


CASES: dict[str, Case] = {}


def case(name: str, **kw) -> None:
    assert name not in CASES
    CASES[name] = Case(**kw)


SKIPPED_1 = "1 file(s) or folder(s) were skipped"
CAT_DOG = {"cat": 3, "dog": 3}

# ----- broken files


def _corrupt_png(d: Path) -> Path:
    good = png()
    write(d / "cat" / "broken.png", good[:8] + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 17)
    return two_classes(d)


case("corrupt_png", build=_corrupt_png, counts=CAT_DOG, skipped={"cat/broken.png": "corrupt image"},
     warnings=[SKIPPED_1])


def _truncated_jpeg(d: Path) -> Path:
    data = noise_jpeg()
    write(d / "cat" / "half.jpg", data[: len(data) // 2])
    return two_classes(d)


case("truncated_jpeg", build=_truncated_jpeg, counts=CAT_DOG, skipped={"cat/half.jpg": "truncated image"})


def _zero_byte(d: Path) -> Path:
    write(d / "dog" / "empty.png", b"")
    return two_classes(d)


case("zero_byte_file", build=_zero_byte, counts=CAT_DOG, skipped={"dog/empty.png": "empty file (0 bytes)"})


def _text_named_jpg(d: Path) -> Path:
    write(d / "cat" / "list.jpg", b"eggs, milk, bread\n")
    return two_classes(d)


case("text_named_jpg", build=_text_named_jpg, counts=CAT_DOG, skipped={"cat/list.jpg": "not an image"})


def _png_named_jpg(d: Path) -> Path:
    write(d / "cat" / "really a png.jpg", png((1, 2, 3)))
    return two_classes(d)


case("png_named_jpg", build=_png_named_jpg, counts={"cat": 4, "dog": 3}, warnings=[])


def _other_file_types(d: Path) -> Path:
    write(d / "cat" / "notes.txt", b"these are cats")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("cat/0.png", png())
    write(d / "dog" / "more.zip", inner.getvalue())
    write(d / "dog" / "script.py", b"import os\nos.system('echo hi')\n")
    return two_classes(d)


case("other_file_types", build=_other_file_types, counts=CAT_DOG,
     skipped={"cat/notes.txt": "not an image (.txt file)", "dog/more.zip": "not an image (.zip file)",
              "dog/script.py": "not an image (.py file)"})


def _fifo(d: Path) -> Path:
    two_classes(d)
    os.mkfifo(d / "cat" / "pipe.png")  # reading it would block forever
    return d


case("fifo_in_class", build=_fifo, counts=CAT_DOG, skipped={"cat/pipe.png": "not a regular file"})


def _every_file_broken(d: Path) -> Path:
    write(d / "cat" / "a.png", b"")
    write(d / "dog" / "b.jpg", b"not a picture")
    return d


case("every_file_broken", build=_every_file_broken,
     error=r"no usable images found \(skipped: .*empty file.*not an image")

# ----- zips

_ABS = f"/tmp/sprout-bad-input-{uuid.uuid4().hex}.png"


def _zip_dotdot(d: Path) -> Path:
    return write_zip(d / "z.zip", {**good_members(), "../evil.png": png(), "a/../../up.png": png(),
                                   "cat/../../../../tmp/evil2.png": png()})


case("zip_dotdot_entries", build=_zip_dotdot, counts={"cat": 2, "dog": 2},
     skipped={"../evil.png": "unsafe path in zip", "a/../../up.png": "unsafe path in zip",
              "cat/../../../../tmp/evil2.png": "unsafe path in zip"},
     outside=lambda d: [d.parent / "evil.png", d.parent.parent / "up.png", Path("/tmp/evil2.png")])


def _zip_absolute(d: Path) -> Path:
    return write_zip(d / "z.zip", {**good_members(), _ABS: png(), "C:/windows.png": png(),
                                   "C:\\win\\x.png": png()})


case("zip_absolute_entries", build=_zip_absolute, counts={"cat": 2, "dog": 2},
     skipped={_ABS: "unsafe path in zip", "C:/windows.png": "unsafe path in zip", "C:/win/x.png": "unsafe path in zip"},
     outside=lambda d: [Path(_ABS), Path("/windows.png")])


case("zip_symlink_entry",
     build=lambda d: write_zip(d / "z.zip", good_members(), symlinks={"cat/passwd.png": "/etc/passwd"}),
     counts={"cat": 2, "dog": 2}, skipped={"cat/passwd.png": "symbolic link not followed"})


def _zip_encrypted(d: Path) -> Path:
    path = write_zip(d / "z.zip", {**good_members(), "dog/secret.png": png((9, 9, 9))}, method=zipfile.ZIP_STORED)
    patch_central_directory(path, 8, "<H", 0x1, name="dog/secret.png")  # general purpose flag: encrypted
    return path


case("zip_encrypted_entry", build=_zip_encrypted, counts={"cat": 2, "dog": 2},
     skipped={"dog/secret.png": "encrypted file in zip"})


def _zip_duplicates(d: Path) -> Path:
    path = d / "z.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in good_members().items():
            archive.writestr(name, payload)
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("cat/0.png", png((5, 5, 5)))
    return path


case("zip_duplicate_names", build=_zip_duplicates, counts={"cat": 2, "dog": 2},
     skipped={"cat/0.png": "duplicate file name"})


def _zip_declared_3gib(d: Path) -> Path:
    path = write_zip(d / "bomb.zip", good_members(), method=zipfile.ZIP_STORED)
    patch_central_directory(path, 24, "<I", 3 * 1024**3, name="cat/0.png")  # uncompressed size
    return path


case("zip_bomb_declared_size", build=_zip_declared_3gib,
     error=r"too large: the data holds 3,07\d\.\d MiB uncompressed, the limit is 2,048\.0 MiB")


def _zip_deflate_bomb(d: Path) -> Path:
    path = write_zip(d / "bomb.zip", {f"c{k}/z.png": bytes(2 * 1024**2) for k in range(3)})
    assert path.stat().st_size < 100_000
    return path


case("zip_bomb_deflate", build=_zip_deflate_bomb, limits=SourceLimits(max_total_bytes=1024**2),
     error=r"too large: the data holds 6\.0 MiB uncompressed, the limit is 1\.0 MiB")


def _zip_many_entries(d: Path) -> Path:
    path = d / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for k in range(1_001):
            archive.writestr(f"c{k % 2}/{k}.png", b"")
    return path


# A lowered limit: 100,001 entries against the default took seconds to write, for the same check.
case("zip_bomb_many_entries", build=_zip_many_entries, limits=SourceLimits(max_files=1_000),
     error=r"too many files: the data holds 1,001 files, the limit is 1,000")


def _zip_macosx(d: Path) -> Path:
    return write_zip(d / "photos.zip", {**good_members("photos/"), "__MACOSX/photos/cat/._0.png": b"\x00\x05\x16\x07",
                                        "photos/.DS_Store": b"\x00\x00\x00\x01Bud1"})


case("zip_with_macosx_wrapper", build=_zip_macosx, counts={"cat": 2, "dog": 2},
     skipped={"__MACOSX/": "hidden or system folder", ".DS_Store": "hidden or system file"})


case("not_a_zip", build=lambda d: write(d / "photos.zip", b"not a zip at all"),
     error=r"'photos.zip' is not a valid zip file")

# ----- too big


def _decompression_bomb(d: Path) -> Path:
    write(d / "cat" / "bomb.png", png_header_only(30000, 30000))
    return two_classes(d)


case("decompression_bomb_png", build=_decompression_bomb, counts=CAT_DOG,
     skipped={"cat/bomb.png": "over the pixel limit"})


def _photo_20mb(d: Path) -> Path:
    photo = noise_jpeg(size=(3500, 3000), quality=100)
    assert len(photo) >= 20 * 1000**2, len(photo)
    write(d / "cat" / "big photo.jpg", photo)
    return two_classes(d)


def _check_20mb(report: dict, d: Path) -> None:
    assert report["size_stats"]["width"]["max"] == 3500 and report["size_stats"]["height"]["max"] == 3000
    assert report["image_size"] == 16  # the median image decides (12 px, clipped to 16), not the big one


case("photo_20mb", build=_photo_20mb, counts={"cat": 4, "dog": 3}, check=_check_20mb)

# ----- links


def _symlink_file(d: Path) -> Path:
    secret = write(d.parent / "secret" / "private.png", png((5, 5, 5)))
    two_classes(d / "data")
    os.symlink(secret, d / "data" / "cat" / "link.png")
    return d / "data"


case("symlink_file_outside", build=_symlink_file, counts=CAT_DOG,
     skipped={"cat/link.png": "symbolic link not followed"})


def _symlink_folder(d: Path) -> Path:
    secret = write(d.parent / "secret" / "private.png", png((5, 5, 5))).parent
    two_classes(d / "data")
    os.symlink(secret, d / "data" / "linked_class")
    os.symlink("/etc", d / "data" / "etc")
    return d / "data"


case("symlink_folder_outside", build=_symlink_folder, counts=CAT_DOG,
     skipped={"linked_class": "symbolic link not followed", "etc": "symbolic link not followed"})

# ----- layout

case("missing_path", build=lambda d: d / "nowhere", error=r"no such folder or file: '.*nowhere'")
case("empty_folder", build=lambda d: d, error=r"no images found: expected a folder with one sub-folder per class")
case("single_file_given", build=lambda d: write(d / "photo.png", png()),
     error=r"expected a folder with one sub-folder per class, or a \.zip of one; got the file")
case("single_class", build=lambda d: two_classes(d, names=("cat",)), error=r"only one class was found \('cat'\);")


def _one_class_and_empty_ones(d: Path) -> Path:
    (d / "dog").mkdir()
    write(d / "bird" / "x.png", b"")
    return two_classes(d, names=("cat",))


case("single_class_beside_empty_ones", build=_one_class_and_empty_ones,
     error=r"only one class was found \('cat'\) \(folders 'bird', 'dog' hold no usable images\)")


def _empty_class(d: Path) -> Path:
    (d / "bird").mkdir()
    return two_classes(d)


case("empty_class_folder", build=_empty_class, classes=["cat", "dog"],
     warnings=["Class folder 'bird' holds no usable images and is left out."])


def _class_all_broken(d: Path) -> Path:
    write(d / "bird" / "a.png", b"")
    write(d / "bird" / "b.jpg", b"hello")
    return two_classes(d)


case("class_all_broken", build=_class_all_broken, classes=["cat", "dog"],
     skipped={"bird/a.png": "empty file", "bird/b.jpg": "not an image"},
     warnings=["Class folder 'bird' holds no usable images and is left out.", "2 file(s) or folder(s) were skipped"])


def _one_image(d: Path) -> Path:
    two_classes(d)
    for k in (1, 2):
        (d / "dog" / f"{k}.png").unlink()
    return d


case("class_with_one_image", build=_one_image, counts={"cat": 3, "dog": 1},
     warnings=["Class 'dog' has only 1 image; at least 10 per class is recommended."])


def _top_level(d: Path) -> Path:
    for k in range(4):
        write(d / f"{k}.png", png(colour_of(0, k)))
    return d


case("images_at_top_level", build=_top_level,
     error=r"no usable images found \(skipped: 4 not inside a class folder\).*is this one class folder")


def _stray(d: Path) -> Path:
    write(d / "stray.png", png((1, 1, 1)))
    return two_classes(d)


case("stray_images_beside_classes", build=_stray, counts=CAT_DOG, skipped={"stray.png": "not inside a class folder"})


def _nested(d: Path) -> Path:
    for c, (top, sub) in enumerate([("animals", "cats"), ("animals", "dogs"), ("plants", "trees")]):
        for k in range(2):
            write(d / top / sub / f"{k}.png", png(colour_of(c, k)))
    write(d / "plants" / "a" / "b" / "c" / "d" / "deep.png", png((7, 7, 7)))
    return d


case("nested_deeper_than_class", build=_nested, counts={"animals": 4, "plants": 3})


def _wrappers(d: Path) -> Path:
    two_classes(d / "dataset" / "train")
    write(d / "dataset" / "README.md", b"about")
    return d


case("wrapper_folders", build=_wrappers, counts=CAT_DOG, skipped={"dataset/README.md": "not inside a class folder"})


def _five_hundred(d: Path) -> Path:
    for c in range(500):
        for k in range(2):
            write(d / f"class {c:03d}" / f"{k}.png", png(((c * 2 + k) % 256, (c * 2 + k) // 256, 77), size=(8, 8)))
    return d


def _check_500(report: dict, d: Path) -> None:
    assert len(report["classes"]) == 500 and report["n_images"] == 1000
    assert len(report["warnings"]) <= 12, "one grouped warning, not 500 lines"


case("five_hundred_classes", build=_five_hundred, check=_check_500,
     warnings=["500 of the 500 classes have fewer than 10 images ('class 000' (2)"])
case("split_named_classes", build=lambda d: two_classes(d, names=("test", "train")), classes=["test", "train"],
     warnings=["look like data splits"])


def _duplicates(d: Path) -> Path:
    two_classes(d)
    (d / "dog" / "copy of a cat.png").write_bytes((d / "cat" / "1.png").read_bytes())
    return d


case("duplicates_across_classes", build=_duplicates, counts={"cat": 3, "dog": 4},
     warnings=["The same image is in classes 'cat', 'dog': cat/1.png, dog/copy of a cat.png."])

# ----- formats and modes

case("cmyk_jpeg",
     build=lambda d: classes_of(d, lambda c, k: encode(Image.new("CMYK", (12, 12), (c * 200, 255, k * 50, 0)), "JPEG"),
                                ".jpg"),
     counts={"a": 2, "b": 2}, channels=3)


def _png16(c: int, k: int) -> bytes:
    values = np.full((10, 14), 1000 + 20000 * c + 7000 * k, np.uint16)
    return encode(Image.fromarray(values), "PNG")


case("png_16bit", build=lambda d: classes_of(d, _png16, ".png"), counts={"a": 2, "b": 2}, channels=1)


def _palette(c: int, k: int) -> bytes:
    image = Image.new("P", (12, 12), 0)
    image.putpalette([255, 0, 0, 0, 255 - 100 * c, 10 * k] + [0] * 762)
    image.paste(1, (0, 0, 6, 12))
    return encode(image, "PNG", transparency=0)


case("palette_png_transparency", build=lambda d: classes_of(d, _palette, ".png"), counts={"a": 2, "b": 2}, channels=3)


def _gif(c: int, k: int) -> bytes:
    first, second = Image.new("RGB", (12, 12), colour_of(c, k)), Image.new("RGB", (12, 12), (0, 0, 255))
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


case("animated_gif", build=lambda d: classes_of(d, _gif, ".gif"), counts={"a": 2, "b": 2})
case("webp",
     build=lambda d: classes_of(d, lambda c, k: encode(Image.new("RGB", (12, 12), colour_of(c, k)), "WEBP",
                                                       lossless=True), ".webp"),
     counts={"a": 2, "b": 2}, channels=3)
case("tiff",
     build=lambda d: classes_of(d, lambda c, k: encode(Image.new("RGB", (12, 12), colour_of(c, k)), "TIFF"), ".tif"),
     counts={"a": 2, "b": 2}, channels=3)


def _grey_and_rgb(d: Path) -> Path:
    for k in range(2):
        write(d / "grey" / f"{k}.png", png(40 + k, mode="L"))
        write(d / "colour" / f"{k}.png", png(colour_of(1, k)))
    return d


case("grey_and_rgb_mixed", build=_grey_and_rgb, counts={"colour": 2, "grey": 2}, channels=3)


def _exif(c: int, k: int) -> bytes:
    stored = Image.new("L", (20, 10), 30 * c + k)
    stored.paste(255, (10, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return encode(stored, "JPEG", exif=exif, quality=95)


def _check_exif(report: dict, d: Path) -> None:
    assert report["size_stats"]["width"] == {"min": 10, "median": 10.0, "max": 10}
    assert report["size_stats"]["height"] == {"min": 20, "median": 20.0, "max": 20}


case("exif_rotated_photos", build=lambda d: classes_of(d, _exif, ".jpg"), counts={"a": 2, "b": 2}, check=_check_exif)


def _tiny_and_stretched(d: Path) -> Path:
    for k in range(2):
        write(d / "dot" / f"{k}.png", png(colour_of(0, k), size=(1, 1)))
        write(d / "strip" / f"{k}.png", png(colour_of(1, k), size=(200, 5)))
    return d


def _check_tiny(report: dict, d: Path) -> None:
    assert report["image_size"] == 16  # the smallest automatic size
    assert report["size_stats"]["width"]["min"] == 1 and report["size_stats"]["width"]["max"] == 200


case("tiny_1x1_and_stretched", build=_tiny_and_stretched, counts={"dot": 2, "strip": 2},
     warnings=["2 image(s) are more than twice as long one way as the other"], check=_check_tiny)

# ----- names


def _unicode(d: Path) -> Path:
    write(d / "chats noirs" / "é 1.png", png((1, 1, 1)))
    write(d / "chats noirs" / " leading space.png", png((3, 3, 3)))
    write(d / "über straße" / "日本 語.png", png((2, 2, 2)))
    write(d / "über straße" / "emoji 🐈.png", png((4, 4, 4)))
    return d


case("unicode_and_spaces", build=_unicode, counts={"chats noirs": 2, "über straße": 2})


def _long_names(d: Path) -> Path:
    for c, name in enumerate(("a" * 200, "b")):
        for k in range(2):
            write(d / name / (f"{k}" + "x" * 246 + ".png"), png(colour_of(c, k)))
    return d


case("long_file_names", build=_long_names, counts={"a" * 200: 2, "b": 2})


def _junk(d: Path) -> Path:
    two_classes(d)
    write(d / "cat" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write(d / "dog" / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    write(d / "dog" / "desktop.ini", b"[.ShellClassInfo]")
    write(d / "__MACOSX" / "cat" / "._0.png", b"\x00\x05\x16\x07")
    write(d / ".thumbnails" / "x.png", png())
    return d


case("macosx_ds_store_thumbs", build=_junk, counts=CAT_DOG,
     skipped={"cat/.DS_Store": "hidden or system file", "dog/Thumbs.db": "hidden or system file",
              "dog/desktop.ini": "hidden or system file", "__MACOSX/": "hidden or system folder",
              ".thumbnails/": "hidden or system folder"})


def test_the_list_has_at_least_30_cases_and_the_docstring_lists_them_all():
    assert len(CASES) >= 30
    assert f"({len(CASES)}; ids as in ``CASES``)" in __doc__
    listed = re.findall(r"^ *(\d+)\. (\S+) ", __doc__, flags=re.M)
    assert [name for _, name in listed] == list(CASES)
    assert [int(n) for n, _ in listed] == list(range(1, len(CASES) + 1))


# ---------------------------------------------------------------------------- the test


def tree(root: Path, skip: Path) -> dict[str, str]:
    """Every item under ``root`` (``skip`` excluded): file -> content hash, link -> target, folder -> "dir"."""
    out = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if here == skip:
            dirs.clear()
            continue
        for name in dirs + files:
            path = here / name
            if path == skip:
                continue
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[key] = "link -> " + os.readlink(path)
            elif path.is_dir():
                out[key] = "dir"
            elif stat.S_ISFIFO(path.lstat().st_mode):
                out[key] = "fifo"
            else:
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, monkeypatch, capsys):
    spec = CASES[name]
    if name == "fifo_in_class" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this system")
    home, work, cwd = tmp_path / "home", tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("SPROUT_HOME", str(home))
    monkeypatch.chdir(cwd)  # a relative write would land here, inside the snapshot
    target = spec.build(work)
    if spec.limits is not None:
        monkeypatch.setattr(sources, "SourceLimits", lambda: spec.limits)
    before, neighbours = tree(tmp_path, skip=home), sorted(os.listdir(tmp_path.parent))

    code = cli.main(["inspect", str(target)])
    out, err = capsys.readouterr()

    # nothing written outside SPROUT_HOME, whose only new files are the decoded-data cache
    assert tree(tmp_path, skip=home) == before
    assert sorted(os.listdir(tmp_path.parent)) == neighbours
    for path in (spec.outside(work) if spec.outside else []):
        assert not os.path.lexists(path), f"{path} was written"
    written = [p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert all(p.startswith("cache/dataset-") and p.endswith(".npz") for p in written), written
    assert "Traceback" not in err

    if spec.error is not None:
        assert code == 2 and out == "", (code, out, err)
        assert err.endswith("\n") and err.count("\n") == 1, err
        assert err.startswith("error: ")
        assert re.search(spec.error, err), err
        assert written == []
        return
    assert code == 0 and err == "", (code, err)
    report = json.loads(out)
    if spec.classes is not None:
        assert report["classes"] == spec.classes
    if spec.counts is not None:
        assert report["counts"] == spec.counts
        assert report["classes"] == sorted(spec.counts)
    if spec.channels is not None:
        assert report["channels"] == spec.channels
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    for path, reason in spec.skipped.items():
        assert path in reasons, (path, reasons)
        assert reasons[path].startswith(reason), (path, reasons[path])
    if not spec.skipped:
        assert reasons == {}, reasons
    for text in spec.warnings:
        assert any(text in w for w in report["warnings"]), (text, report["warnings"])
    if spec.check is not None:
        spec.check(report, work)
    assert len(written) == 1
