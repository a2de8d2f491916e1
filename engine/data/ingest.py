"""Labelled images in, uint8 arrays and a plain-language report out.

``load(source)`` reads a folder with one sub-folder per class, a ``.zip`` of one, an upload
list of ``(relative path, bytes)`` pairs, or ``"sample"`` (see :mod:`engine.data.sources` for the
layout rule and :mod:`engine.data.decode` for how each file is decoded). Every image is resized
to a square of ``image_size`` pixels *ignoring its aspect ratio* ("squash"). The decoded
arrays are cached on disk, keyed by a hash of the files' contents and the options, so a
second load of the same data only reads and hashes the files.

Unusable data (nothing there, no images, a single class, a bad zip) raises
:class:`engine.errors.SproutError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from engine import paths

from engine.data import sources
from engine.data.dataset import Dataset
from engine.data.decode import (
    ImageError, check_channels, check_size, choose_image_size, decode_native, map_images, probe, quiet_pillow,
    to_channels,
)
from engine.data.report import DataReport, SkippedFile, _no_images_message, _quoted, build_report
from engine.data.sample import load_sample
from engine.data.sources import SourceLimits
from engine.errors import SproutError

CACHE_VERSION = 2  # 2: warnings about empty class folders, grouped few-image warnings
KEEP_BYTES = 512 * 1024**2  # file bytes kept in memory between hashing and decoding


# ---------------------------------------------------------------------------- public API


def load(source, image_size: int | None = None, channels: str | int = "auto", cache_dir=None,
         *, limits: SourceLimits | None = None) -> Dataset:
    """Decode every usable image of ``source`` into a :class:`Dataset` (cached on disk).

    ``image_size``: side of the square input; default: the median image's side (the square
    root of its pixel count), clipped to [16, 64]. ``channels``: 1, 3 or "auto" (1 when every
    image is greyscale, else 3). ``cache_dir``: default ``engine.paths.cache_dir()``.
    ``limits``: most files / uncompressed bytes accepted (defaults: 100,000 and 2 GiB).
    """
    size_req, channels_req = check_size(image_size), check_channels(channels)
    if isinstance(source, str) and source == "sample":
        return load_sample(image_size=size_req, channels=channels_req if channels_req != "auto" else 1)
    with sources.open_source(source, limits) as listing:
        files, skipped, class_folders = _plan(listing)
        blobs, digests = _read_all(files, skipped)
        content_hash = _content_hash(files, digests, skipped, class_folders)
        cache_file = _cache_file(cache_dir, content_hash, size_req, channels_req)
        dataset = _read_cache(cache_file)
        if dataset is None:
            dataset = _decode_all(files, blobs, digests, skipped, size_req, channels_req, content_hash,
                                  class_folders)
            _write_cache(cache_file, dataset)
    dataset.report.source = listing.description
    return dataset


def inspect(source, image_size=None, channels="auto", cache_dir=None, *,
            limits: SourceLimits | None = None) -> DataReport:
    """The :class:`DataReport` of ``source`` (decodes, or reuses the cache, like :func:`load`)."""
    return load(source, image_size=image_size, channels=channels, cache_dir=cache_dir, limits=limits).report


# ---------------------------------------------------------------------------- reading


@dataclass
class _File:
    path: str          # relative to the data root
    label: str
    entry: sources.Entry


def _plan(listing: sources.Listing) -> tuple[list[_File], list[SkippedFile], set[str]]:
    """Sort a listing into candidate image files (with their class) and skipped files.

    Paths become relative to the data root; things above it keep their source path. Also
    returns every class folder name (first-level folders of the root that are not hidden,
    empty ones included), so that a class left without usable images can be named.
    """
    prefix = sources.find_data_root([e.path for e in listing.entries])

    def shown(path: str) -> str:
        return path[len(prefix):] if path.startswith(prefix) else path

    skipped = [SkippedFile(shown(p), r) for p, r in listing.skipped]
    seen_junk: set[str] = set()
    files = []
    for entry in listing.entries:
        junk = sources.junk_reason(entry.path)
        label = sources.class_of(entry.path, prefix)
        rel, ext = shown(entry.path), os.path.splitext(entry.path)[1].lower()
        if junk:
            if shown(junk[0]) not in seen_junk:
                seen_junk.add(shown(junk[0]))
                skipped.append(SkippedFile(shown(junk[0]), junk[1]))
        elif label is None:
            skipped.append(SkippedFile(rel, sources.NOT_IN_CLASS))
        elif ext and not sources.looks_like_image(rel):
            skipped.append(SkippedFile(rel, f"not an image ({ext} file)"))
        else:
            files.append(_File(rel, label, entry))
    files.sort(key=lambda f: (f.label, f.path))
    class_folders = {
        label for label in (sources.class_of(p, prefix) for p in
                            [e.path for e in listing.entries] + [d + "/" for d in listing.folders]
                            if sources.junk_reason(p) is None)
        if label is not None
    }
    return files, skipped, class_folders


def _read_all(files: list[_File], skipped: list[SkippedFile]) -> tuple[list[bytes | None], list[str]]:
    """Read and hash every file; unreadable ones move to ``skipped``.

    Returns the bytes (None once KEEP_BYTES were kept: those are read again to decode) and
    the SHA-256 of each file, aligned with ``files`` (which loses the unreadable ones).
    """
    blobs, digests, kept, ok = [], [], 0, []
    for f in files:
        try:
            data = f.entry.read()
        except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
            skipped.append(SkippedFile(f.path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})"))
            continue
        ok.append(f)
        digests.append(hashlib.sha256(data).hexdigest())
        kept += len(data)
        blobs.append(data if kept <= KEEP_BYTES else None)
    files[:] = ok
    return blobs, digests


def _content_hash(files: list[_File], digests: list[str], skipped: list[SkippedFile],
                  class_folders: set[str] = frozenset()) -> str:
    """SHA-256 over every file's relative path, class and content hash, the skip list and
    the class folders holding no file at all (they are named in a warning)."""
    h = hashlib.sha256()
    for f, digest in zip(files, digests):
        h.update(f"{f.path}\0{f.label}\0{digest}\n".encode())
    for s in sorted(skipped, key=lambda s: (s.path, s.reason)):
        h.update(f"skip\0{s.path}\0{s.reason}\n".encode())
    for name in sorted(set(class_folders) - {f.label for f in files} - {s.path.split("/", 1)[0] for s in skipped}):
        h.update(f"empty\0{name}\n".encode())
    return h.hexdigest()


def _decode_all(files, blobs, digests, skipped, size_req, channels_req, content_hash,
                class_folders=frozenset()) -> Dataset:
    """Decode and stack the candidate files (after a header-only pass to choose the size)."""
    def data_of(i: int) -> bytes:
        return blobs[i] if blobs[i] is not None else files[i].entry.read()

    def keep(results: list, indices: list[int]) -> list[int]:
        for i, r in zip(indices, results):
            if isinstance(r, ImageError):
                skipped.append(SkippedFile(files[i].path, r.reason))
        return [i for i, r in zip(indices, results) if not isinstance(r, ImageError)]

    mean_bytes = sum(f.entry.size for f in files) / max(len(files), 1)
    todo = list(range(len(files)))
    with quiet_pillow():
        if size_req is None:  # the median of sqrt(w*h) does not depend on EXIF orientation
            probed = map_images(lambda i: probe(data_of(i)), todo, mean_bytes)
            todo = keep(probed, todo)
            size = choose_image_size([probed[i] for i in todo])
        else:
            size = size_req
        decoded = map_images(lambda i: decode_native(data_of(i), size), todo, mean_bytes)
    results = dict(zip(todo, decoded))
    used = keep(decoded, todo)
    if not used:
        raise SproutError(_no_images_message(skipped))
    class_names = sorted({files[i].label for i in used})
    empty = sorted(set(class_folders) - set(class_names))
    if len(class_names) < 2:
        also = (f" (folder{'s' if len(empty) > 1 else ''} {_quoted(empty)} "
                f"hold{'' if len(empty) > 1 else 's'} no usable images)") if empty else ""
        raise SproutError(
            f"only one class was found ('{class_names[0]}'){also}; put the images in at least two "
            "class folders (one sub-folder per class)"
        )
    grey = all(results[i][0].shape[2] == 1 for i in used)
    n_channels = channels_req if channels_req != "auto" else (1 if grey else 3)
    images = np.empty((len(used), size, size, n_channels), np.uint8)
    for row, i in enumerate(used):
        images[row] = to_channels(results[i][0], n_channels)
    index = {c: k for k, c in enumerate(class_names)}
    labels = np.array([index[files[i].label] for i in used], dtype=np.int32)
    rel_paths = [files[i].path for i in used]
    report = build_report(
        class_names, labels, rel_paths, [results[i][1] for i in used], [digests[i] for i in used],
        skipped, size, n_channels, content_hash, empty_classes=empty,
    )
    return Dataset(images, labels, class_names, rel_paths, report)


def _cache_file(cache_dir, content_hash: str, size_req, channels_req) -> Path:
    """Where the decoded arrays for this content and these options are cached."""
    key = f"{CACHE_VERSION}|{content_hash}|{size_req}|{channels_req}|{PIL.__version__}|{Image.MAX_IMAGE_PIXELS}"
    name = hashlib.sha256(key.encode()).hexdigest()[:40]
    return Path(cache_dir if cache_dir is not None else paths.cache_dir()) / f"dataset-{name}.npz"


def _read_cache(path: Path) -> Dataset | None:
    """The cached Dataset at ``path``, or None when absent or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return Dataset(z["images"], z["labels"], meta["class_names"], meta["paths"],
                           DataReport.from_dict(meta["report"]))
    except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None


def _write_cache(path: Path, dataset: Dataset) -> None:
    """Write ``dataset`` to ``path`` atomically (temp file + os.replace); failures are ignored."""
    meta = {"class_names": dataset.class_names, "paths": dataset.paths, "report": dataset.report.to_dict()}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            np.savez(out, images=dataset.images, labels=dataset.labels, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    except OSError:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
