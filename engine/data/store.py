"""Writing a source into a folder of Sprout's: uploaded files and extracted zips.

Names are sanitised (:func:`engine.data.sources.sanitise_path`), nothing is written outside
the target folder, symbolic links and unsafe zip entries are never written, and the sizes
are checked against :class:`~engine.data.sources.SourceLimits` before and while writing.
"""

from __future__ import annotations

import os
import unicodedata
import zipfile
import zlib
from pathlib import Path

from engine.data.sources import (SourceLimits, check_limits, find_data_root, list_zip, open_zip, sanitise_path,
                                 zip_entry_problem)
from engine.errors import SproutError


def _safe_target(dest: Path, rel: str) -> Path:
    """``dest / rel`` with its parent folders created; refuses to resolve outside ``dest``."""
    target = (dest / rel).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise SproutError(f"refusing to write '{rel}' outside '{dest}'")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SproutError(f"cannot create the folder for '{rel}' under '{dest}' ({exc.strerror})") from exc
    return target


def _unique(rel: str, taken: set[str]) -> str:
    """``rel``, or ``name (2).ext`` etc. when that path was already written."""
    stem, ext = os.path.splitext(rel)
    candidate, n = rel, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem} ({n}){ext}"
    taken.add(candidate)
    return candidate


def save_upload(files: list[tuple[str, bytes]], dest: Path, limits: SourceLimits | None = None) -> Path:
    """Write uploaded ``(name, bytes)`` pairs under ``dest`` with sanitised names; return dest.

    Names that sanitise to nothing are dropped; clashing names get " (2)", " (3)"...
    """
    limits = limits or SourceLimits()
    check_limits(len(files), sum(len(data) for _, data in files), limits)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for name, data in files:
        rel = sanitise_path(name)
        if not rel:
            continue
        target = _safe_target(dest, _unique(rel, taken))
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise SproutError(f"cannot write '{rel}' under '{dest}' ({exc.strerror})") from exc
    return dest


def extract_zip(zip_path, dest: Path, limits: SourceLimits | None = None) -> Path:
    """Extract ``zip_path`` safely under ``dest``; return the folder holding the class folders.

    Members with unsafe paths, symbolic links, encryption, repeated names or corrupt data
    are not written. The declared sizes and member count are checked against ``limits``
    first, and the bytes actually written are counted too. Raises SproutError for a bad
    zip, a limit exceeded or a failed write.
    """
    limits = limits or SourceLimits()
    dest = Path(dest)
    with open_zip(Path(zip_path)) as archive:
        listing = list_zip(archive, str(zip_path))
        entries = listing.entries
        check_limits(len(entries), sum(e.size for e in entries), limits)
        dest.mkdir(parents=True, exist_ok=True)
        written, seen = 0, set()
        for info in archive.infolist():
            rel = unicodedata.normalize("NFC", info.filename.replace("\\", "/"))
            if info.is_dir() or zip_entry_problem(info) or rel in seen:
                continue
            seen.add(rel)
            target = _safe_target(dest, rel)
            try:
                with archive.open(info) as src, open(target, "wb") as out:
                    written += _copy_limited(src, out, limits.max_total_bytes - written)
            except (EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error):  # corrupt: left out
                target.unlink(missing_ok=True)
            except OSError as exc:
                raise SproutError(f"cannot extract '{rel}' from '{Path(zip_path).name}' ({exc})") from exc
    return dest / find_data_root([e.path for e in entries])


def _copy_limited(src, out, budget: int) -> int:
    """Copy ``src`` to ``out``; raise SproutError once more than ``budget`` bytes came."""
    copied = 0
    while chunk := src.read(1 << 20):
        copied += len(chunk)
        if copied > budget:
            raise SproutError("too large: the zip expands beyond the size limit while extracting")
        out.write(chunk)
    return copied
