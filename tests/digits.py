"""Real labelled images for tests that train: scikit-learn's bundled digits (no download)."""

from __future__ import annotations

import numpy as np

from engine.data.sample import digits


def digits_8px(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 images (n, 8, 8, 1) at their own size (0..16 scaled to
    0..255) and int64 labels, shuffled with ``seed``."""
    images, labels = digits()  # scikit-learn's file, read without importing scikit-learn (seconds)
    x = (images / 16.0 * 255).astype(np.uint8)[..., None]
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], labels.astype(np.int64)[order]


def digits_16px(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`digits_8px` upscaled to (n, 16, 16, 1) by pixel repetition."""
    x, y = digits_8px(seed)
    return np.repeat(np.repeat(x, 2, 1), 2, 2), y
