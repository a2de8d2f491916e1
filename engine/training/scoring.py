"""Which epoch a trial's score comes from when it is the kept weights' (issue 14, lever 3).

A trial's score used to be the mean validation accuracy of its last epochs, while the weights its
children inherit are those of its lowest validation loss: two different epochs. These functions
give the epoch whose weights :func:`engine.training.trainer.train` returns, and its accuracy.
NumPy only, so they are tested without Keras.
"""

from __future__ import annotations

import numpy as np


def kept_epoch(history: dict[str, list[float]], finished: bool) -> int | None:
    """The 0-based epoch whose weights training returns: the first lowest validation loss when
    ``fit`` finished (Keras' EarlyStopping with ``restore_best_weights`` restores it at the end
    of training, stopped early or not), the last epoch when training was stopped (nothing is
    restored then); None when no epoch ran."""
    losses = history.get("val_loss", [])
    if not losses:
        return None
    return int(np.argmin(losses)) if finished else len(losses) - 1


def kept_score(history: dict[str, list[float]], finished: bool) -> float | None:
    """The validation accuracy of the weights training returns (see :func:`kept_epoch`)."""
    epoch = kept_epoch(history, finished)
    return None if epoch is None else float(history["val_accuracy"][epoch])
