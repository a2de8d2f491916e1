"""Real labelled images for tests that train: scikit-learn's bundled digits (no download)."""

from __future__ import annotations

import numpy as np


def digits_16px(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 images (n, 16, 16, 1) (8x8 upscaled by pixel repetition)
    and int64 labels, shuffled with ``seed``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.repeat(np.repeat((d.images / 16.0 * 255).astype(np.uint8), 2, 1), 2, 2)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order]
