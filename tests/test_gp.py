"""Gaussian process on embedded architectures (engine.nas.gp)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from engine.nas import distance as D
from engine.nas.gp import ArchitectureGP, GaussianProcess, cholesky_jitter
from tests.helpers import random_architectures, synthetic_accuracy


def test_cholesky_jitter_grows_only_when_needed():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    spd = a @ a.T + np.eye(6)
    low, jitter = cholesky_jitter(spd)
    assert jitter == 0.0 and np.allclose(low @ low.T, spd)
    singular = np.ones((5, 5))  # rank one: needs jitter, keeps every row
    low, jitter = cholesky_jitter(singular)
    assert 0 < jitter <= 1e-2 and low.shape == (5, 5)
    np.testing.assert_allclose(low @ low.T, singular + jitter * np.eye(5), atol=1e-9)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite even with jitter"):
        cholesky_jitter(-np.eye(3))
    with pytest.raises(ValueError, match="expected a square matrix"):
        cholesky_jitter(np.ones((2, 3)))


def test_fits_a_smooth_function_and_knows_where_it_is_unsure():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, size=(40, 1))
    y = 5.0 + 2.0 * np.sin(x[:, 0]) + rng.normal(0, 0.05, 40)
    gp = GaussianProcess().fit(x, y)
    assert gp is not None and gp.L_.shape == (40, 40) and gp.alpha_.shape == (40,)
    assert gp.length_scale_bounds[0] <= gp.length_scale_ <= gp.length_scale_bounds[1]
    assert gp.noise_bounds[0] <= gp.noise_ <= gp.noise_bounds[1]
    assert gp.jitter_ == 0.0
    grid = np.linspace(-2.5, 2.5, 50)[:, None]
    mean, std = gp.predict(grid)
    assert np.max(np.abs(mean - (5.0 + 2.0 * np.sin(grid[:, 0])))) < 0.2  # original units
    far_mean, far_std = gp.predict(np.array([[30.0]]))
    assert far_std[0] > 5 * std.max()
    assert abs(far_mean[0] - y.mean()) < 0.1  # far away: back to the prior (the data's mean)
    # batched prediction equals one-by-one prediction
    one = np.array([gp.predict(grid[i:i + 1])[0][0] for i in range(5)])
    np.testing.assert_allclose(one, mean[:5], atol=1e-10)


def test_hyperparameters_maximise_the_marginal_likelihood():
    rng = np.random.default_rng(2)
    x = rng.uniform(-3, 3, size=(30, 2))
    y = np.cos(x[:, 0]) + 0.1 * rng.normal(size=30)
    fitted = GaussianProcess().fit(x, y)
    for ell in (0.1, 1.0, 10.0):
        for noise in (1e-4, 1e-2, 0.5):
            fixed = GaussianProcess(length_scale=ell, noise=noise, optimize=False).fit(x, y)
            assert fitted.log_marginal_likelihood_ >= fixed.log_marginal_likelihood_ - 1e-6


def test_no_data_one_point_and_constant_targets():
    prior = GaussianProcess(prior_mean=0.5, prior_std=0.2).fit(np.zeros((0, 3)), [])
    mean, std = prior.predict(np.zeros((4, 3)))
    np.testing.assert_allclose(mean, 0.5)
    np.testing.assert_allclose(std, 0.2)

    one = GaussianProcess(prior_std=0.1).fit(np.array([[0.0, 0.0]]), [0.8])
    mean, std = one.predict(np.array([[0.0, 0.0], [100.0, 0.0]]))
    np.testing.assert_allclose(mean, 0.8, atol=1e-6)
    assert std[0] < 0.02 and std[1] == pytest.approx(0.1)

    flat = GaussianProcess().fit(np.arange(6.0)[:, None], np.full(6, 0.7))
    mean, std = flat.predict(np.array([[2.5]]))
    assert mean[0] == pytest.approx(0.7) and np.isfinite(std).all()


def test_duplicate_points_are_kept():
    x = np.array([[0.0], [0.0], [1.0], [1.0]])
    gp = GaussianProcess(noise_bounds=(1e-6, 1.0)).fit(x, [0.1, 0.3, 0.5, 0.7])
    assert gp.L_.shape == (4, 4)  # nothing dropped
    mean, _ = gp.predict(np.array([[0.0], [1.0]]))
    assert mean[0] < mean[1]


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"expected X of shape \(n, k\) and y of shape \(n,\)"):
        GaussianProcess().fit(np.zeros((3, 2)), [1.0, 2.0])
    with pytest.raises(ValueError, match="expected finite targets"):
        GaussianProcess().fit(np.zeros((2, 1)), [1.0, np.nan])
    with pytest.raises(RuntimeError, match="before fit"):
        GaussianProcess().predict(np.zeros((1, 1)))


# -------------------------------------------------------------- on architectures
def test_recovers_a_function_of_architecture_features_on_held_out_points():
    archs = random_architectures(160, seed=11, max_steps=12)
    for i, arch in enumerate(archs):
        arch.id = str(i)
    y = np.array([synthetic_accuracy(a) for a in archs])
    train, test = archs[:110], archs[110:]
    model = ArchitectureGP(seed=0).fit(train, y[:110])
    mean, std = model.predict(test)
    rho = spearmanr(mean, y[110:]).statistic
    assert rho >= 0.8, rho
    assert np.all(std > 0) and np.all(np.isfinite(mean))
    assert model.gp_.jitter_ <= 1e-6
    # the trained points themselves are predicted from the same embedding
    mean_train, std_train = model.predict(train[:10])
    np.testing.assert_allclose(mean_train, y[:10], atol=0.03)
    assert np.all(std_train < std.mean())


def test_architecture_gp_shares_the_cache_and_handles_tiny_histories():
    archs = random_architectures(12, seed=12)
    for i, arch in enumerate(archs):
        arch.id = f"t{i}"
    cache = D.DistanceCache()
    ArchitectureGP(cache).fit(archs[:5], [0.5, 0.6, 0.7, 0.6, 0.5])
    assert cache.keys == [f"t{i}" for i in range(5)]
    ArchitectureGP(cache).fit(archs[:8], [0.5] * 8)
    assert len(cache) == 8  # five rows reused, three added
    one = ArchitectureGP(prior_std=0.1).fit(archs[:1], [0.7])
    mean, std = one.predict(archs[1:4])
    assert np.allclose(mean, 0.7, atol=1e-6) and np.all((std > 0) & (std <= 0.1 + 1e-12))
    empty = ArchitectureGP(prior_std=0.1).fit([], [])
    mean, std = empty.predict(archs[:2])
    assert np.allclose(std, 0.1)
    with pytest.raises(ValueError, match="one score per architecture"):
        ArchitectureGP().fit(archs[:2], [0.1])
