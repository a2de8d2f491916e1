"""The built-in sample data set: scikit-learn's bundled handwritten digits (no download).

1,797 greyscale 8x8 images of the digits 0-9 (values 0..16), scaled to 0..255 and upscaled
with Pillow's bilinear filter to a square chosen as for any folder of 8x8 images (16x16, the
smallest automatic size): 32x32, the old default, held no more detail and made every epoch
about twice as slow, which a one-minute search on the sample could not afford (issue 20).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from engine.data.dataset import Dataset
from engine.data.decode import RESAMPLE, check_size, choose_image_size, to_channels
from engine.data.report import build_report
from engine.errors import SproutError


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) in 0..16, labels int32 (1797,)) from scikit-learn's files.

    Reads the CSV that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``) without
    importing scikit-learn, which takes seconds; falls back to ``load_digits()`` if the file
    is not where it used to be.
    """
    spec = importlib.util.find_spec("sklearn")
    roots = spec.submodule_search_locations if spec and spec.submodule_search_locations else []
    for root in roots:
        csv = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            with gzip.open(csv, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
            return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64].astype(np.int32)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.uint8), bunch.target.astype(np.int32)


#: The digits' own side in pixels.
NATIVE_SIDE = 8


def load_sample(image_size: int | None = None, channels: int = 1) -> Dataset:
    """The digits as a Dataset: uint8 (1797, image_size, image_size, channels), classes "0".."9";
    ``image_size`` None: the size a folder of 8x8 images gets (see the module docstring)."""
    image_size = check_size(image_size)
    if image_size is None:
        image_size = choose_image_size([(NATIVE_SIDE, NATIVE_SIDE)])
    if channels not in (1, 3):
        raise SproutError(f"the sample has 1 or 3 channels, got {channels!r}")
    small, labels = digits()
    raw = np.clip(np.rint(small * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = np.stack([
        to_channels(np.asarray(Image.fromarray(img).resize((image_size, image_size), RESAMPLE))[:, :, None], channels)
        for img in raw
    ])
    class_names = [str(k) for k in range(10)]
    paths = [f"{labels[i]}/{i:04d}.png" for i in range(len(labels))]
    digests = [hashlib.sha256(img.tobytes()).hexdigest() for img in raw]
    content_hash = hashlib.sha256(raw.tobytes() + labels.tobytes()).hexdigest()
    report = build_report(class_names, labels, paths, [(NATIVE_SIDE, NATIVE_SIDE)] * len(labels), digests, [],
                          image_size, channels, content_hash)
    report.source = "sample"
    return Dataset(images, labels, class_names, paths, report)
