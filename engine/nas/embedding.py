"""The edit distance's embedding into Euclidean space (DESIGN §4).

The Gaussian process needs a positive-definite kernel; an RBF of the raw edit distance is
not one in general. So each architecture is mapped to coordinates made of its distances
to (subsets of) the trained architectures, a Bourgain embedding, and the kernel
(:mod:`engine.nas.kernel`) is taken between those coordinates. Pure NumPy.

>>> import numpy as np
>>> d = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
>>> x = make_embedding("landmark").fit_transform(d)
>>> x.shape, bool(np.allclose(x, d / np.sqrt(3)))
((3, 3), True)
"""

from __future__ import annotations

import math

import numpy as np


class BourgainEmbedding:
    """Embed a finite metric into R^k: for random subsets S of the trained points of sizes
    2^i (``n_per_size`` per size), a point's coordinate is min_{s in S} d(x, s).

    ``singletons=True`` makes every trained point its own subset (the 2^0 level taken
    exhaustively); ``max_size`` caps the random subsets' size. Both together with
    ``max_size=1`` give the *landmark* embedding (coordinates = distances to each trained
    point), which predicted best in our measurements (bench/results/simulate.md).
    Fit on the trained points' distance matrix; transform any point, trained or candidate,
    from its distances to the trained points: one map for both. Coordinates are divided by
    sqrt(k), so Euclidean gaps stay on the edit distance's scale (1-Lipschitz for a metric).
    """

    def __init__(self, n_per_size: int | None = None, seed: int | np.random.Generator | None = 0,
                 singletons: bool = False, max_size: int | None = None) -> None:
        self.n_per_size, self.seed, self.singletons, self.max_size = n_per_size, seed, singletons, max_size

    def fit(self, distances: np.ndarray) -> "BourgainEmbedding":
        d = np.asarray(distances, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != d.shape[1]:
            raise ValueError(f"expected a square distance matrix; received shape {d.shape}")
        n, rng = d.shape[0], np.random.default_rng(self.seed)
        subsets = [np.array([i]) for i in range(n)] if self.singletons else []
        per_size = self.n_per_size or max(3, math.ceil(math.log2(n + 1)))
        for i in range(1 if self.singletons else 0, int(math.log2(min(n, self.max_size or n))) + 1 if n else 0):
            for _ in range(per_size if 2 ** i < n else 1):
                subsets.append(np.sort(rng.choice(n, size=2 ** i, replace=False)))
        self.subsets_, self.n_train_, self.dim_ = subsets, n, len(subsets)
        return self

    def transform(self, distances_to_train: np.ndarray) -> np.ndarray:
        """Coordinates from distances to the trained points: (m, n_train) -> (m, dim_)."""
        d = np.atleast_2d(np.asarray(distances_to_train, dtype=np.float64))
        if d.shape[1] != self.n_train_:
            raise ValueError(f"expected distances to the {self.n_train_} fitted points; received {d.shape[1]} columns")
        if not self.subsets_:
            return np.zeros((d.shape[0], 0))
        if self.singletons and self.dim_ == self.n_train_:
            return d / math.sqrt(self.dim_)
        return np.stack([d[:, s].min(axis=1) for s in self.subsets_], axis=1) / math.sqrt(self.dim_)

    def fit_transform(self, distances: np.ndarray) -> np.ndarray:
        return self.fit(distances).transform(distances)


def make_embedding(kind: str = "landmark", seed: int = 0) -> BourgainEmbedding:
    """``"landmark"`` (a coordinate per trained point) or ``"bourgain"`` (random subsets of
    sizes 1, 2, 4, ...)."""
    if kind not in ("landmark", "bourgain"):
        raise ValueError(f"embedding should be 'landmark' or 'bourgain'; received {kind!r}")
    return (BourgainEmbedding(seed=seed, singletons=True, max_size=1) if kind == "landmark"
            else BourgainEmbedding(seed=seed))
