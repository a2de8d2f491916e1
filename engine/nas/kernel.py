"""The RBF kernel between embedded architectures (DESIGN §5), in scikit-learn's style.

An RBF of the raw edit distance is not positive definite in general, so the Gaussian
process takes the kernel between the coordinates of :mod:`engine.nas.embedding`.
:class:`RBF` holds its hyperparameter explicitly and, called with ``eval_gradient=True``,
also returns the gradient of the kernel matrix with respect to the log of it, which is what
the marginal likelihood's optimiser in :mod:`engine.nas.gp` needs. Pure NumPy.

>>> import numpy as np
>>> x = np.array([[0.0, 0.0], [3.0, 4.0]])
>>> k, grad = RBF(length_scale=5.0)(x, eval_gradient=True)
>>> bool(np.isclose(k[0, 1], np.exp(-0.5))), grad.shape
(True, (2, 2, 1))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


def sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of x (m, k) and y (n, k) (an exact zero
    diagonal when y is x)."""
    same = y is x
    x = np.atleast_2d(x)
    y = x if same else np.atleast_2d(y)
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    d2 = np.maximum(d2, 0.0)
    if same:
        np.fill_diagonal(d2, 0.0)
        d2 = 0.5 * (d2 + d2.T)
    return d2


@dataclass(frozen=True)
class RBF:
    """k(x, y) = exp(-||x - y||^2 / (2 length_scale^2)), unit signal variance.

    ``length_scale_bounds`` bound the fitted value; ``theta`` (log length scale) and
    ``bounds`` (its log bounds) are the search space of the optimiser, as in scikit-learn.
    """

    length_scale: float = 1.0
    length_scale_bounds: tuple[float, float] = (1e-2, 1e2)

    def __post_init__(self) -> None:
        if not self.length_scale > 0:
            raise ValueError(f"length_scale should be > 0; received {self.length_scale}")

    @property
    def theta(self) -> np.ndarray:
        """The log-transformed hyperparameters: [log length_scale]."""
        return np.array([math.log(self.length_scale)])

    @property
    def bounds(self) -> np.ndarray:
        """Log bounds of ``theta``, shape (1, 2)."""
        low, high = self.length_scale_bounds
        return np.array([[math.log(low), math.log(high)]])

    def with_theta(self, theta: np.ndarray) -> "RBF":
        """The same kernel with the hyperparameters exp(theta)."""
        return dataclasses.replace(self, length_scale=math.exp(float(theta[0])))

    def __call__(self, X: np.ndarray, Y: np.ndarray | None = None,
                 eval_gradient: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The kernel matrix between rows of X and Y (Y=None: X with itself); with
        ``eval_gradient`` (only for Y=None) also its gradient with respect to ``theta``,
        shape (n, n, 1)."""
        if Y is not None and eval_gradient:
            raise ValueError("expected Y=None when eval_gradient is True; received a second matrix")
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        d2 = sq_dists(X, X) if Y is None else sq_dists(X, np.asarray(Y, dtype=np.float64))
        return self.of_sq_dists(d2, eval_gradient)

    def of_sq_dists(self, d2: np.ndarray, eval_gradient: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The kernel from precomputed squared distances (what ``__call__`` computes after
        :func:`sq_dists`), so an optimiser can compute the distances once for all its steps."""
        scale2 = self.length_scale * self.length_scale
        k = np.exp(-0.5 * d2 / scale2)
        if not eval_gradient:
            return k
        # d k / d log(l) = k * d2 / l^2
        return k, (k * d2 / scale2)[:, :, np.newaxis]

    def diag(self, X: np.ndarray) -> np.ndarray:
        """k(x, x) for each row of X: ones, the RBF's unit variance."""
        return np.ones(np.atleast_2d(X).shape[0])
