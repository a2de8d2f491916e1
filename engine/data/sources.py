"""Where labelled images come from, and how a file tree is read as classes.

A *source* is a folder, a ``.zip`` file, or a list of ``(relative path, bytes)`` pairs as
Streamlit's directory uploader gives them. Each is listed the same way: a flat list of
:class:`Entry` (a file, its path relative to the source with "/" separators, NFC-normalised)
plus ``(path, reason)`` pairs for what was refused while listing.

Layout rule, the same for all three kinds of source:

* The *data root* is the source itself, or, when the source holds nothing but a single
  folder (ignoring hidden/system files and non-image files such as a README) and that folder
  holds no images directly but has sub-folders, that folder -- repeatedly. So ``photos.zip``
  containing ``photos/cat/...`` and ``photos/dog/...`` works, and so does a folder holding
  ``dataset/train/<class>/...``.
* A class is a first-level sub-folder of the data root; its images may sit in deeper
  sub-folders too (``cat/indoor/a.jpg`` belongs to class ``cat``).
* Files directly in the data root are skipped ("not inside a class folder").

Safety: symbolic links are never followed; zip entries with absolute paths, drive letters
or ``..`` are never read or written; totals above :class:`SourceLimits` stop the load.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from engine.errors import SproutError

JUNK_NAMES = frozenset({
    "__macosx", "thumbs.db", "ehthumbs.db", "desktop.ini", "$recycle.bin",
    "system volume information", "icon\r",
})
NOT_IN_CLASS = "not inside a class folder"
SYMLINK = "symbolic link not followed"
UNSAFE_ZIP_PATH = "unsafe path in zip (would land outside the target folder)"
_DRIVE = re.compile(r"^[A-Za-z]:")
_RESERVED = re.compile(r'[<>:"|?*]')


@dataclass(frozen=True)
class SourceLimits:
    """Most files and most uncompressed bytes a source may hold (stops zip bombs)."""

    max_total_bytes: int = 2 * 1024**3
    max_files: int = 100_000


@dataclass
class Entry:
    """One file of a source: its path (relative, "/"-separated), size and a reader."""

    path: str
    size: int
    read: Callable[[], bytes]


@dataclass
class Listing:
    """Everything a source holds: files to consider, and what was refused on the way."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    folders: list[str] = field(default_factory=list)  # folders seen (so empty class folders are known)


# ---------------------------------------------------------------------------- names


def is_junk_name(name: str) -> bool:
    """True for hidden (dot) files/folders and OS clutter such as .DS_Store or __MACOSX."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def junk_reason(path: str) -> tuple[str, str] | None:
    """(what to report, reason) when ``path`` is or lies in a hidden/system item, else None.

    A file inside a junk folder is reported once, as the folder ("__MACOSX/").
    """
    parts = path.split("/")
    for depth, part in enumerate(parts[:-1]):
        if is_junk_name(part):
            return "/".join(parts[: depth + 1]) + "/", "hidden or system folder"
    if is_junk_name(parts[-1]):
        return path, "hidden or system file"
    return None


@lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    """File extensions Pillow can read, lower-case with the dot (".png", ".jpg", ...)."""
    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def looks_like_image(path: str) -> bool:
    """True when the file name has an image extension (content decides later)."""
    return os.path.splitext(path)[1].lower() in image_suffixes()


def sanitise_path(name: str) -> str:
    """A safe relative "/"-path for an uploaded file name ("" when nothing usable is left).

    Backslashes become "/", a drive letter ("C:") and leading slashes go, "." and ".."
    parts are dropped, control/format characters are removed, characters Windows forbids
    (<>:"|?*) become "_", each part is trimmed of surrounding spaces and trailing dots and
    cut to 200 characters. Unicode letters and inner spaces are kept (NFC-normalised).
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    name = _DRIVE.sub("", name)
    parts = []
    for part in name.split("/"):
        part = "".join(ch for ch in part if unicodedata.category(ch)[0] != "C")
        part = _RESERVED.sub("_", part).strip().rstrip(".").strip()
        if part and part not in (".", ".."):
            parts.append(part[:200])
    return "/".join(parts)


def zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be read or extracted (unsafe path, link, encryption)."""
    name = info.filename.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or _DRIVE.match(name) or ".." in parts or "\x00" in name:
        return UNSAFE_ZIP_PATH
    if stat.S_ISLNK(info.external_attr >> 16):
        return SYMLINK
    if info.flag_bits & 0x1:
        return "encrypted file in zip"
    return None


# ---------------------------------------------------------------------------- layout


def find_data_root(paths: list[str]) -> str:
    """The prefix ("" or "a/b/") of the folder that holds the class folders.

    Descends into a lone top folder while there are no images beside it and the folder
    itself has sub-folders but no images directly inside (see the module docstring).
    """
    prefix = ""
    rel = [p for p in paths if junk_reason(p) is None]
    while True:
        if any("/" not in p and looks_like_image(p) for p in rel):
            return prefix
        folders = {p.split("/", 1)[0] for p in rel if "/" in p}
        if len(folders) != 1:
            return prefix
        top = folders.pop()
        inner = [p.split("/", 1)[1] for p in rel if p.startswith(top + "/")]
        if not any("/" in p for p in inner) or any("/" not in p and looks_like_image(p) for p in inner):
            return prefix
        prefix, rel = prefix + top + "/", inner


def class_of(path: str, prefix: str) -> str | None:
    """The class of the file at ``path`` under data root ``prefix``; None if in no class."""
    if not path.startswith(prefix):
        return None
    rel = path[len(prefix):]
    return rel.split("/", 1)[0] if "/" in rel else None


# ---------------------------------------------------------------------------- listing


def list_folder(root: Path) -> Listing:
    """Every regular file under ``root``, without following symbolic links.

    Hidden/system folders are not entered (reported once); links and special files are
    reported; unreadable folders are reported with the operating system's reason.
    """
    listing = Listing(description=str(root))
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            listing.skipped.append((rel_dir + "/", f"folder cannot be read ({exc.strerror})"))
            continue
        for item in items:
            rel = unicodedata.normalize("NFC", f"{rel_dir}/{item.name}" if rel_dir else item.name)
            if item.is_symlink():
                listing.skipped.append((rel, SYMLINK))
            elif item.is_dir(follow_symlinks=False):
                if is_junk_name(item.name):
                    listing.skipped.append((rel + "/", "hidden or system folder"))
                else:
                    listing.folders.append(rel)
                    stack.append(rel)
            elif item.is_file(follow_symlinks=False):
                size = item.stat(follow_symlinks=False).st_size
                listing.entries.append(Entry(rel, size, partial(_read_file, item.path)))
            else:
                listing.skipped.append((rel, "not a regular file"))
    return listing


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def list_zip(archive: zipfile.ZipFile, description: str) -> Listing:
    """Every safe file member of ``archive``; unsafe, linked or encrypted ones are reported."""
    listing = Listing(description=description)
    seen: set[str] = set()
    for info in archive.infolist():
        problem = zip_entry_problem(info)
        path = unicodedata.normalize("NFC", info.filename.replace("\\", "/"))
        if info.is_dir():
            if not problem and path.strip("/"):
                listing.folders.append(path.strip("/"))
            continue
        if problem:
            listing.skipped.append((path, problem))
        elif path in seen:
            listing.skipped.append((path, "duplicate file name"))
        else:
            seen.add(path)
            listing.entries.append(Entry(path, info.file_size, partial(archive.read, info)))
    return listing


def list_upload(files: list[tuple[str, bytes]]) -> Listing:
    """The uploaded ``(name, bytes)`` pairs under sanitised names."""
    listing = Listing(description=f"upload ({len(files)} files)")
    seen: set[str] = set()
    for name, data in files:
        path = sanitise_path(name)
        if not path:
            listing.skipped.append((name, "invalid file name"))
        elif path in seen:
            listing.skipped.append((path, "duplicate file name"))
        else:
            seen.add(path)
            listing.entries.append(Entry(path, len(data), partial(bytes, data)))
    return listing


def check_limits(n_files: int, total_bytes: int, limits: SourceLimits) -> None:
    """Raise SproutError when a source holds more files or bytes than ``limits`` allow."""
    if n_files > limits.max_files:
        raise SproutError(
            f"too many files: the data holds {n_files:,} files, the limit is {limits.max_files:,}"
        )
    if total_bytes > limits.max_total_bytes:
        raise SproutError(
            f"too large: the data holds {_mib(total_bytes)} uncompressed, "
            f"the limit is {_mib(limits.max_total_bytes)}"
        )


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB"


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise SproutError(f"'{path.name}' is not a valid zip file ({exc})") from exc


@contextmanager
def open_source(source, limits: SourceLimits | None = None) -> Iterator[Listing]:
    """List a folder path, .zip path or upload list, checking ``limits``; closes zips after.

    Raises SproutError for a path that does not exist, a file that is not a zip, or a
    source over the limits.
    """
    limits = limits or SourceLimits()
    if isinstance(source, (list, tuple)):
        listing, archive = list_upload(list(source)), None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise SproutError(f"no such folder or file: '{path}'")
        if path.is_dir():
            listing, archive = list_folder(path.resolve()), None
        elif path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
            archive = open_zip(path)
            listing = list_zip(archive, str(path))
        else:
            raise SproutError(
                f"expected a folder with one sub-folder per class, or a .zip of one; got the file '{path}'"
            )
    else:
        raise SproutError(
            f"expected a folder path, a .zip path, a list of (name, bytes) or 'sample'; got {type(source).__name__}"
        )
    try:
        check_limits(len(listing.entries), sum(e.size for e in listing.entries), limits)
        yield listing
    finally:
        if archive is not None:
            archive.close()
