"""The decoded data set and its stratified train/validation/test split.

A :class:`Dataset` is what :mod:`engine.data.ingest` and :mod:`engine.data.sample` both
produce; it lives here, apart from either, so neither has to import the other for it.

>>> split = stratified_split(np.array([0] * 10 + [1] * 10), test=0.2, val=0.2, seed=0)
>>> len(split.train), len(split.val), len(split.test)
(12, 4, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.data.report import DataReport
from engine.errors import SproutError


@dataclass
class Split:
    """Index arrays into a Dataset: stratified, disjoint, deterministic for a seed."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass
class Dataset:
    """Decoded images: uint8 (N, S, S, C), int32 labels, class names and relative paths."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    paths: list[str]
    report: DataReport = field(repr=False)

    def split(self, test: float = 0.15, val: float = 0.15, seed: int = 0) -> Split:
        """Stratified train/val/test indices; see :func:`stratified_split`."""
        return stratified_split(self.labels, test=test, val=val, seed=seed)


def stratified_split(labels: np.ndarray, test: float = 0.15, val: float = 0.15, seed: int = 0) -> Split:
    """Per class, shuffle (seeded by ``seed`` and the class) and cut test, val, then train.

    Each class with n >= 3 images gets max(1, round(n*test)) test and max(1, round(n*val))
    validation images (0 when the fraction is 0), always leaving at least one for training;
    a class with fewer than 3 images goes to train only. Indices come back sorted.
    """
    if not (0 <= test < 1 and 0 <= val < 1 and test + val < 1):
        raise SproutError(f"split fractions must be >= 0 and sum to less than 1; got test={test}, val={val}")
    labels = np.asarray(labels)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.random.default_rng([seed, int(c)]).permutation(np.flatnonzero(labels == c))
        n_test, n_val = _split_counts(len(idx), test, val)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return Split(**{k: np.sort(np.concatenate(v or [np.empty(0, np.int64)])).astype(np.int64)
                    for k, v in parts.items()})


def _split_counts(n: int, test: float, val: float) -> tuple[int, int]:
    """(test, val) counts for a class of ``n`` images; see :func:`stratified_split`."""
    if n < 3:
        return 0, 0
    n_test = max(1, round(n * test)) if test > 0 else 0
    n_val = max(1, round(n * val)) if val > 0 else 0
    while n_test + n_val > n - 1:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_test, n_val
