"""Gaussian-process regression on embedded architectures (DESIGN §5).

``GaussianProcess`` works on vectors: the :class:`engine.nas.kernel.RBF` kernel on
standardised targets, plus noise variance s^2 on the diagonal; the length scale and s^2
maximise the log marginal likelihood (L-BFGS-B in log space with the kernel's gradient, a
few starts, bounded). ``ArchitectureGP`` puts the edit distance, the embedding and the GP
together so callers hand it architectures. Pure NumPy/SciPy.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Sequence

import numpy as np
from scipy.linalg import cho_solve, lapack, solve_triangular
from scipy.optimize import minimize

from engine.nas.distance import DistanceCache
from engine.nas.embedding import make_embedding
from engine.nas.kernel import RBF, sq_dists

try:  # small matrices: one BLAS thread is several times faster than many
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    _threadpool_limits = None

JITTER_START = 1e-10
JITTER_MAX = 1e-2
#: The extra standard deviation (accuracy units) of a score measured on part of the training
#: images, per halving of them (issue 22): a first guess in the spirit of levers.TRUNCATED_STD;
#: bench/large.py reports the GP's rank correlation per fidelity to check it.
FIDELITY_STD = 0.01


def blas_single_thread():
    """A context in which BLAS uses one thread: for the small matrices here, thread start-up
    costs more than it saves, above all while a training process keeps the cores busy.
    (The limit is process-wide while the context is open.)"""
    if _threadpool_limits is None:  # pragma: no cover
        return contextlib.nullcontext()
    return _threadpool_limits(1, "blas")


def cholesky_jitter(k: np.ndarray, start: float = JITTER_START,
                    max_jitter: float = JITTER_MAX) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of ``k``, adding jitter * I (0, then start, x10 each try up to
    max_jitter) until it succeeds. Returns (L, jitter used). Raises LinAlgError if even
    max_jitter fails; no row or column is ever dropped."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"expected a square matrix; received shape {k.shape}")
    eye = np.eye(k.shape[0])
    jitter = 0.0
    while True:
        try:
            return np.linalg.cholesky(k + jitter * eye), jitter
        except np.linalg.LinAlgError:
            jitter = start if jitter == 0.0 else jitter * 10.0
            if jitter > max_jitter * (1 + 1e-9):
                raise np.linalg.LinAlgError(
                    f"matrix is not positive definite even with jitter {max_jitter:g} on the diagonal"
                ) from None


def fidelity_noise(fractions) -> np.ndarray:
    """Extra noise variance (accuracy units squared) of scores measured on the given fractions
    of the training images: (:data:`FIDELITY_STD` x the halvings below all of them)^2, 0 at 1."""
    f = np.clip(np.asarray(fractions, dtype=np.float64).ravel(), 1e-6, 1.0)
    return (FIDELITY_STD * np.log2(1.0 / f)) ** 2


class GaussianProcess:
    """GP regression with an RBF kernel of unit signal variance on standardised targets.

    Learned attributes after ``fit``: ``X_``, ``y_mean_``, ``y_std_``, ``kernel_`` (the fitted
    :class:`engine.nas.kernel.RBF`), ``length_scale_`` (its length scale), ``noise_`` (variance,
    standardised units), ``L_`` (Cholesky factor of K + noise I), ``alpha_`` ((K + noise I)^-1 y
    standardised), ``jitter_`` (extra diagonal used), ``log_marginal_likelihood_``, ``ys_`` (the
    standardised targets), ``noise_diag_`` (each row's noise: ``noise_``, or 0 for a row added by
    :meth:`condition`). With no data ``predict`` returns (prior_mean, prior_std); with one point the targets'
    scale is taken as prior_std.
    """

    def __init__(self, length_scale: float | None = None, noise: float = 1e-2,
                 length_scale_bounds: tuple[float, float] = (1e-2, 1e2),
                 noise_bounds: tuple[float, float] = (1e-6, 1.0),
                 optimize: bool = True, n_restarts: int = 3,
                 prior_mean: float = 0.0, prior_std: float = 1.0, min_y_std: float = 1e-6) -> None:
        self.length_scale = length_scale
        self.noise = noise
        self.length_scale_bounds = length_scale_bounds
        self.noise_bounds = noise_bounds
        self.optimize = optimize
        self.n_restarts = n_restarts
        self.prior_mean = prior_mean
        self.prior_std = prior_std
        self.min_y_std = min_y_std

    # ----------------------------------------------------------------- likelihood
    def _neg_lml(self, theta: np.ndarray, d2: np.ndarray, y: np.ndarray,
                 extra: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Negative log marginal likelihood and its gradient in (kernel theta..., log noise);
        ``extra``: fixed noise variance added per point (standardised units)."""
        kernel, noise = self._kernel().with_theta(theta[:-1]), math.exp(theta[-1])
        k_kernel, k_grad = kernel.of_sq_dists(d2, eval_gradient=True)
        k = k_kernel + noise * np.eye(len(y)) + (0.0 if extra is None else np.diag(extra))
        try:
            low = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return 1e25, np.zeros(len(theta))
        alpha = cho_solve((low, True), y)
        nll = 0.5 * y @ alpha + np.log(np.diag(low)).sum() + 0.5 * len(y) * math.log(2 * math.pi)
        k_inv, info = lapack.dpotri(low, lower=1)
        if info != 0:
            return 1e25, np.zeros(len(theta))
        k_inv = np.tril(k_inv) + np.tril(k_inv, -1).T
        # d lml / d theta_i = (alpha^T dK_i alpha - tr(K^-1 dK_i)) / 2; dK/d log noise = noise * I
        grads = []
        for i in range(k_grad.shape[2]):
            dk = np.ascontiguousarray(k_grad[:, :, i])
            grads.append(alpha @ dk @ alpha - (k_inv * dk).sum())
        grads.append(noise * (alpha @ alpha - np.trace(k_inv)))
        return float(nll), -0.5 * np.array(grads)

    def _kernel(self, length_scale: float = 1.0) -> RBF:
        """The GP's kernel with the given length scale and the GP's bounds on it."""
        return RBF(length_scale, self.length_scale_bounds)

    def _fit_hyper(self, d2: np.ndarray, y: np.ndarray, extra: np.ndarray | None = None) -> tuple[float, float]:
        lo_n, hi_n = self.noise_bounds
        scale = math.sqrt(float(np.median(d2[d2 > 0]))) if np.any(d2 > 0) else 1.0
        starts_l = [self.length_scale] if self.length_scale else []
        starts_l += [scale * f for f in (1.0, 0.3, 3.0)][: max(1, self.n_restarts)]
        bounds = [tuple(b) for b in self._kernel().bounds] + [(math.log(lo_n), math.log(hi_n))]
        best = (math.inf, None)
        for ell0 in starts_l:
            x0 = np.clip([*self._kernel(ell0).theta, math.log(self.noise)],
                         [b[0] for b in bounds], [b[1] for b in bounds])
            res = minimize(self._neg_lml, x0, args=(d2, y, extra), jac=True, method="L-BFGS-B",
                           bounds=bounds, options={"maxiter": 50})
            if res.fun < best[0]:
                best = (float(res.fun), res.x)
        if best[1] is None:
            lo_l, hi_l = self.length_scale_bounds
            return float(np.clip(scale, lo_l, hi_l)), float(np.clip(self.noise, lo_n, hi_n))
        return math.exp(best[1][0]), math.exp(best[1][1])

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: np.ndarray, y: np.ndarray, noise: np.ndarray | None = None) -> "GaussianProcess":
        """Fit on rows of X (n, k) with targets y (n,); ``noise`` (n,), when given, is extra
        noise variance per point in the units of y (a less trustworthy observation, e.g. a
        trial cut short), on top of the fitted noise common to all; returns self."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"expected X of shape (n, k) and y of shape (n,); received {X.shape} and {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("expected finite targets; received NaN or infinity")
        n = len(y)
        self.X_ = X
        self.y_mean_ = float(y.mean()) if n else float(self.prior_mean)
        std = float(y.std()) if n > 1 else 0.0
        self.y_std_ = std if std > self.min_y_std else float(self.prior_std)
        ys = (y - self.y_mean_) / self.y_std_
        extra = None
        if noise is not None:
            extra = np.asarray(noise, dtype=np.float64).ravel()
            if extra.shape != y.shape or not np.all(np.isfinite(extra)) or np.any(extra < 0):
                raise ValueError(f"expected one finite noise variance >= 0 per target ({n}); received {extra}")
            extra = extra / self.y_std_ ** 2
        d2 = sq_dists(X, X) if n else np.zeros((0, 0))
        with blas_single_thread():
            if self.optimize and n >= 2:
                self.length_scale_, self.noise_ = self._fit_hyper(d2, ys, extra)
            else:
                median = math.sqrt(float(np.median(d2[d2 > 0]))) if np.any(d2 > 0) else 1.0
                self.length_scale_, self.noise_ = float(self.length_scale or median), float(self.noise)
            self.kernel_ = self._kernel(self.length_scale_)
            k = self.kernel_.of_sq_dists(d2) + self.noise_ * np.eye(n) + (0.0 if extra is None else np.diag(extra))
            self.L_, self.jitter_ = cholesky_jitter(k)
        self.alpha_ = cho_solve((self.L_, True), ys) if n else np.zeros(0)
        # a row's own extra noise stays with it when pending rows are added (condition)
        self.ys_, self.noise_diag_ = ys, np.full(n, self.noise_) + (0.0 if extra is None else extra)
        self.log_marginal_likelihood_ = (
            float(-0.5 * ys @ self.alpha_ - np.log(np.diag(self.L_)).sum() - 0.5 * n * math.log(2 * math.pi))
            if n else 0.0
        )
        return self

    def condition(self, X_new: np.ndarray, y_new: np.ndarray) -> "GaussianProcess":
        """A copy of this fitted GP that also holds the rows ``X_new`` at targets ``y_new``
        (units of y) with no noise, keeping the length scale, the noise of the observed rows and
        the targets' standardisation: how pending trials enter it (kriging believer, constant
        lie). Its std at those rows collapses to about zero; its mean there is ``y_new``."""
        if not hasattr(self, "L_"):
            raise RuntimeError("GaussianProcess.condition called before fit")
        X_new = np.asarray(X_new, dtype=np.float64)
        y_new = np.asarray(y_new, dtype=np.float64).ravel()
        if X_new.ndim != 2 or X_new.shape != (len(y_new), self.X_.shape[1]):
            raise ValueError(f"expected new rows of shape ({len(y_new)}, {self.X_.shape[1]}) (one per target); "
                             f"received {X_new.shape}")
        out = copy.copy(self)
        out.X_ = np.vstack([self.X_, X_new])
        ys = np.concatenate([self.ys_, (y_new - self.y_mean_) / self.y_std_])
        noise = np.concatenate([self.noise_diag_, np.zeros(len(y_new))])
        with blas_single_thread():
            k = self.kernel_.of_sq_dists(sq_dists(out.X_, out.X_)) + np.diag(noise)
            out.L_, out.jitter_ = cholesky_jitter(k)
        out.alpha_ = cho_solve((out.L_, True), ys)
        out.ys_, out.noise_diag_ = ys, noise
        return out

    def predict(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function at rows of Xc,
        in the units of y (noise not included in the std)."""
        if not hasattr(self, "L_"):
            raise RuntimeError("GaussianProcess.predict called before fit")
        Xc = np.asarray(Xc, dtype=np.float64)
        m = Xc.shape[0]
        if len(self.alpha_) == 0:
            return np.full(m, self.y_mean_), np.full(m, float(self.prior_std))
        ks = self.kernel_(Xc, self.X_)
        mean = ks @ self.alpha_
        v = solve_triangular(self.L_, ks.T, lower=True, check_finite=False)
        var = np.maximum(1.0 - (v * v).sum(axis=0), 0.0)
        return mean * self.y_std_ + self.y_mean_, np.sqrt(var) * self.y_std_


class ArchitectureGP:
    """Edit distance -> embedding -> GP, fitted on trained architectures.

    ``embedding``: ``"landmark"`` (default; coordinates = distances to each trained point,
    the singleton level of Bourgain's construction) or ``"bourgain"`` (random subsets of
    sizes 2^i); see :func:`engine.nas.embedding.make_embedding`.

    ``fit(archs, scores)`` adds any new architecture to the shared :class:`DistanceCache`
    (one row each), embeds the trained set and fits the GP; ``predict(candidates)`` embeds
    candidates with the same map from their distances to the trained set.
    """

    def __init__(self, cache: DistanceCache | None = None, seed: int = 0, embedding: str = "landmark",
                 **gp_params: Any) -> None:
        self.cache = cache if cache is not None else DistanceCache()
        self.seed = seed
        self.embedding = embedding
        self.gp_params = gp_params

    def fit(self, archs: Sequence[Any], scores: Sequence[float], noise: Sequence[float] | None = None,
            features: np.ndarray | None = None) -> "ArchitectureGP":
        """Fit on trained architectures and their scores; ``noise``: extra noise variance per
        point (see :meth:`GaussianProcess.fit`); ``features`` (n, f): further inputs appended to
        the embedding's coordinates (e.g. how long the weights trained), which ``predict`` then
        needs for every candidate too."""
        if len(archs) != len(scores):
            raise ValueError(f"expected one score per architecture; received {len(archs)} and {len(scores)}")
        self.keys_ = self.cache.add_many(archs)
        if len(set(self.keys_)) != len(self.keys_):
            raise ValueError("expected distinct trained architectures (ids); received duplicates")
        d = self.cache.matrix(self.keys_)
        self.embedding_ = make_embedding(self.embedding, self.seed).fit(d)
        self.X_ = _with_features(self.embedding_.transform(d) if len(d) else np.zeros((0, 0)), features)
        self.n_features_ = 0 if features is None else np.asarray(features).shape[1]
        self.gp_ = GaussianProcess(**self.gp_params).fit(self.X_, np.asarray(scores, dtype=np.float64), noise)
        return self

    def with_pending(self, pending: Sequence[Any], lie: float | None = None) -> "ArchitectureGP":
        """A copy that also believes the ``pending`` architectures (proposed, still training)
        score ``lie``, or, with ``lie=None``, what this GP predicts for them (kriging
        believer), with no noise: its sigma collapses at and near them, so the next proposal
        goes elsewhere. The embedding and the hyperparameters stay those of the trained set."""
        if not len(pending):
            return self
        d = self.distances(pending)
        x = self.embedding_.transform(d) if self.keys_ else np.zeros((len(pending), 0))
        mean, _ = self.gp_.predict(x)
        targets = mean if lie is None else np.full(len(pending), float(lie))
        out = copy.copy(self)
        out.gp_ = self.gp_.condition(x, targets)
        return out

    def distances(self, candidates: Sequence[Any]) -> np.ndarray:
        """Edit distances from candidates to the trained set, (len(candidates), n_trained)."""
        return self.cache.distances_to(candidates, self.keys_)

    def predict_from_distances(self, d: np.ndarray,
                               features: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.n_features_ and (features is None or np.asarray(features).shape != (d.shape[0], self.n_features_)):
            raise ValueError(f"expected {self.n_features_} features per candidate, as fitted; received "
                             f"{None if features is None else np.asarray(features).shape}")
        if not self.keys_:
            m = d.shape[0]
            return self.gp_.predict(np.zeros((m, 0)))
        return self.gp_.predict(_with_features(self.embedding_.transform(d), features))

    def predict(self, candidates: Sequence[Any], features: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, std) of the score of each candidate architecture (or its
        :class:`engine.nas.distance.Encoding`); ``features`` as in :meth:`fit`."""
        if not candidates:
            return np.zeros(0), np.zeros(0)
        return self.predict_from_distances(self.distances(candidates), features)


def _with_features(x: np.ndarray, features: np.ndarray | None) -> np.ndarray:
    """Embedding coordinates with further input columns appended (unchanged without)."""
    if features is None:
        return x
    features = np.asarray(features, dtype=np.float64).reshape(len(x), -1)
    return np.hstack([x, features])


__all__ = ["GaussianProcess", "ArchitectureGP", "cholesky_jitter", "blas_single_thread", "fidelity_noise"]
