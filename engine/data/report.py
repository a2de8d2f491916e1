"""The data report: what a source holds, in plain words, and what to watch out for.

:func:`build_report` turns what :mod:`engine.data.ingest` decoded (labels, original sizes, file
digests) and the files it skipped into a :class:`DataReport`: classes and counts, image
sizes, and warnings about classes with few images, imbalance, duplicate files, folders
that look like data splits rather than classes, and images that resizing will stretch.

>>> count_warnings({"cat": 40, "dog": 3})[0]
"Class 'dog' has only 3 images; at least 10 per class is recommended."
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from engine.data import sources

FEW_IMAGES = 10            # warn about classes with fewer images than this
IMBALANCE = 10.0           # warn when the largest class is this many times the smallest
MAX_DUPLICATE_WARNINGS = 10
MAX_FEW_WARNINGS = 10      # more classes with few images than this: one warning for all
SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation"}


@dataclass
class SkippedFile:
    """A file that is not used, and why, in plain words."""

    path: str
    reason: str


@dataclass
class DataReport:
    """What was found in a source: classes, counts, sizes, skipped files and warnings.

    ``resize`` is always "squash": images are resized to an ``image_size`` square ignoring
    their aspect ratio. ``size_stats`` holds min/median/max of the originals' width and
    height (as displayed, after EXIF orientation).
    """

    classes: list[str]
    counts: dict[str, int]
    n_images: int
    image_size: int
    channels: int
    resize: str
    size_stats: dict
    skipped: list[SkippedFile]
    warnings: list[str]
    source: str
    content_hash: str

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (skipped files as {"path", "reason"} dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataReport":
        """The report that :meth:`to_dict` described."""
        return cls(**{**d, "skipped": [SkippedFile(**s) for s in d["skipped"]]})


def _quoted(names: list[str], most: int = 5) -> str:
    """The names quoted and joined: "'a', 'b', 'c'", or "'a', ... 'e' and 3 more"."""
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _no_images_message(skipped: list[SkippedFile]) -> str:
    """One line saying no usable image was found, with the commonest skip reasons."""
    if not skipped:
        return "no images found: expected a folder with one sub-folder per class, with images inside"
    reasons = Counter(s.reason for s in skipped).most_common(3)
    top = "; ".join(f"{n} {r}" for r, n in reasons)
    hint = ("; is this one class folder? Choose the folder that holds the class folders"
            if reasons[0][0] == sources.NOT_IN_CLASS else "")
    return f"no usable images found (skipped: {top}); expected one sub-folder per class with images inside{hint}"


def build_report(class_names, labels, rel_paths, sizes, digests, skipped, size, channels, content_hash,
                 empty_classes=()) -> DataReport:
    """The DataReport of decoded images (their sizes, digests) and the skipped files.

    ``empty_classes``: class folders without a usable image (left out, named in a warning).
    """
    counts = {c: int(n) for c, n in zip(class_names, np.bincount(labels, minlength=len(class_names)))}
    widths, heights = np.array([w for w, _ in sizes]), np.array([h for _, h in sizes])
    stats = {
        name: {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}
        for name, v in (("width", widths), ("height", heights))
    }
    skipped = sorted(skipped, key=lambda s: s.path)
    warns = []
    if empty_classes:
        n = len(empty_classes)
        warns.append(
            f"{'Class folder' if n == 1 else f'{n} class folders'} {_quoted(list(empty_classes))} "
            f"{'holds' if n == 1 else 'hold'} no usable images and {'is' if n == 1 else 'are'} left out."
        )
    warns += count_warnings(counts) + duplicate_warnings(
        [class_names[k] for k in labels], rel_paths, digests
    )
    if {c.lower() for c in class_names} <= SPLIT_NAMES:
        warns.append(
            f"The class folders are named {', '.join(class_names)}: these look like data splits, "
            "not classes. Choose the folder that holds the class folders (for example 'train')."
        )
    stretched = int(np.sum(np.maximum(widths, heights) > 2 * np.minimum(widths, heights)))
    if stretched:
        warns.append(
            f"{stretched} image(s) are more than twice as long one way as the other; images are "
            f"resized to {size}x{size} ignoring aspect ratio, so these will look stretched."
        )
    if skipped:
        warns.append(f"{len(skipped)} file(s) or folder(s) were skipped; see the list of skipped files.")
    return DataReport(
        classes=list(class_names), counts=counts, n_images=int(len(labels)), image_size=int(size),
        channels=int(channels), resize="squash", size_stats=stats, skipped=skipped,
        warnings=warns, source="", content_hash=content_hash,
    )


def count_warnings(counts: dict[str, int]) -> list[str]:
    """Warnings about classes with few images and about imbalance between classes.

    Up to MAX_FEW_WARNINGS small classes get a line each; more get one line together.
    """
    few = {c: n for c, n in counts.items() if n < FEW_IMAGES}
    if len(few) > MAX_FEW_WARNINGS:
        named = ", ".join(f"'{c}' ({n})" for c, n in list(few.items())[:5])
        warns = [f"{len(few)} of the {len(counts)} classes have fewer than {FEW_IMAGES} images "
                 f"({named} and {len(few) - 5} more); at least {FEW_IMAGES} per class is recommended."]
    else:
        warns = [
            f"Class '{c}' has only {n} image{'s' if n != 1 else ''}; at least {FEW_IMAGES} per class is recommended."
            for c, n in few.items()
        ]
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    if counts[big] > IMBALANCE * counts[small]:
        warns.append(
            f"Classes are imbalanced: '{big}' has {counts[big]} images but '{small}' only "
            f"{counts[small]} ({counts[big] / counts[small]:.0f}x fewer)."
        )
    return warns


def duplicate_warnings(labels: list[str], rel_paths: list[str], digests: list[str]) -> list[str]:
    """Warnings naming byte-identical files, within one class or across classes."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    warns = []
    for members in sorted((g for g in groups.values() if len(g) > 1), key=lambda g: rel_paths[g[0]]):
        names = ", ".join(rel_paths[i] for i in members)
        classes = sorted({labels[i] for i in members})
        if len(classes) == 1:
            warns.append(f"Duplicate images in class '{classes[0]}': {names}.")
        else:
            warns.append(f"The same image is in classes {', '.join(repr(c) for c in classes)}: {names}.")
    if len(warns) > MAX_DUPLICATE_WARNINGS:
        more = len(warns) - MAX_DUPLICATE_WARNINGS
        warns = warns[:MAX_DUPLICATE_WARNINGS] + [f"... and {more} more group(s) of duplicate images."]
    return warns
