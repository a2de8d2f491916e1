"""Feeding a training run: batches gathered by index, with optional augmentation.

:class:`Batches` is a ``keras.utils.PyDataset`` over the data module's cached uint8
arrays: each epoch visits them in a fresh seeded order, one batch gathered at a time, so
neither an epoch nor a trial copies the data set (passing the arrays to ``fit`` instead
converts the whole array to a backend tensor once per trial, for no speed:
``bench/trainer.py``). :class:`Augment` changes training batches only.

>>> import numpy as np
>>> x, y = np.zeros((10, 4, 4, 1), np.uint8), np.arange(10)
>>> batches = Batches(x, y, batch_size=4, shuffle=True, augment=Augment(shift=1))
>>> len(batches), batches[2][0].shape  # training batches all have one shape
(3, (4, 4, 4, 1))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.training import device  # noqa: F401 - sets up the backend before Keras is first used
import keras  # noqa: E402


@dataclass(frozen=True)
class Augment:
    """Label-preserving random changes to each training batch (never to validation data).

    ``shift``: each image moves by up to this many pixels in each direction (the border
    pixels are repeated into the gap), so the network cannot rely on where an object sits.
    ``flip``: half of the images are mirrored left to right; only where mirroring keeps the
    label (a shoe, a cat: yes; a digit 2, a letter: no; see ``engine.training.recipe``).

    >>> import numpy as np
    >>> x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    >>> Augment(shift=1, flip=True).apply(x, np.random.default_rng(0)).shape
    (2, 4, 4, 1)
    """

    shift: int = 0
    flip: bool = False

    def __post_init__(self):
        if self.shift < 0:
            raise ValueError(f"expected a shift of at least 0 pixels, received {self.shift}")

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.flip

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A changed copy of the uint8 batch ``x`` of shape ``(n, h, w, c)``."""
        n, h, w, _ = x.shape
        if self.shift > 0:
            p = min(int(self.shift), h - 1, w - 1)
            padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
            rows = rng.integers(0, 2 * p + 1, n)[:, None] + np.arange(h)
            cols = rng.integers(0, 2 * p + 1, n)[:, None] + np.arange(w)
            x = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        else:
            x = x.copy()
        if self.flip:
            mirror = rng.random(n) < 0.5
            x[mirror] = x[mirror, :, ::-1]
        return x

    def to_dict(self) -> dict:
        return {"shift": int(self.shift), "flip": bool(self.flip)}



class Batches(keras.utils.PyDataset):
    """Batches of ``x`` (and ``y``) gathered by index from the arrays given, never a copy
    of the whole set. With ``shuffle`` the order is a fresh permutation every epoch
    (seeded) and the last batch is topped up from the start of it to a full batch; without
    it batches are consecutive slices (views). ``index``: only these rows of ``x`` and ``y``
    (a trial on part of the training images, issue 22), still gathered from the one array."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int, shuffle: bool = False, seed: int = 0,
                 augment: Augment | None = None, index: np.ndarray | None = None):
        super().__init__()  # one worker, no multiprocessing: a gather is cheaper than a hand-off
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        if self.index is not None and len(self.index) and not (0 <= self.index.min() and self.index.max() < len(x)):
            raise ValueError(f"expected indices of rows 0 to {len(x) - 1}; received {self.index.min()} to "
                             f"{self.index.max()}")
        self._rng = np.random.default_rng(seed)
        rows = len(x) if self.index is None else len(self.index)
        if shuffle:
            self._order = self._rng.permutation(rows) if self.index is None else self._rng.permutation(self.index)
        else:
            self._order = None
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return math.ceil((len(self.x) if self.index is None else len(self.index)) / self.batch_size)

    def __getitem__(self, i: int):
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        if self._order is None and self.index is not None:
            rows = self.index[part]
            xb = np.take(self.x, rows, axis=0)
            return xb if self.y is None else (xb, np.take(self.y, rows, axis=0))
        if self._order is None:
            xb = self.x[part]
            return xb if self.y is None else (xb, self.y[part])
        index = self._order[part]
        short = self.batch_size - len(index)
        if 0 < short <= len(self._order) - len(index):
            # The last batch is filled up from the start of the order, so every training batch
            # has one shape: TensorFlow traces the training step once per shape, and a second
            # trace cost ~1.4 s a trial on 2 CPU cores (a third of a one-epoch trial).
            index = np.concatenate([index, self._order[:short]])
        index = np.sort(index)  # sorted: reads memory forwards; order in a batch is irrelevant
        xb = np.take(self.x, index, axis=0)
        if self.augment is not None:
            xb = self.augment.apply(xb, self._rng)
        return xb if self.y is None else (xb, np.take(self.y, index, axis=0))

    def on_epoch_end(self) -> None:
        if self._order is not None:
            self._rng.shuffle(self._order)

