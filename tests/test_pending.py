"""Proposals while other trials are pending (issue 17): no duplicates, and the GP believes them."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SproutError
from engine.nas import distance as D
from engine.nas.gp import GaussianProcess
from engine.nas.searchers import make_searcher
from tests.test_acquisition import run_searcher, seed_history

PARAMS = {"bayesian": {"t_low": 0.1}, "random": {}, "bfs": {}}


def keys(arch):
    return arch.fingerprint(), D.distance_key(arch)


def propose_pending(searcher, history, pending, n):
    """``n`` proposals, each one pending (not trained) once proposed, as the loop does."""
    pending = list(pending)
    for _ in range(n):
        pending.append(searcher.propose(history, pending=pending).architecture)
    return pending


@pytest.mark.parametrize("name", ["bayesian", "random", "bfs"])
def test_four_proposals_while_three_trials_are_pending_are_all_new(name):
    searcher = make_searcher(name, seed=2, **PARAMS[name])
    _, history = run_searcher(searcher, seed_history(), 3)
    three = propose_pending(searcher, history, [], 3)
    seven = propose_pending(searcher, history, three, 4)
    assert seven[:3] == three and len(seven) == 7
    fingerprints = [a.fingerprint() for a in seven]
    distance_keys = [D.distance_key(a) for a in seven]
    assert len(set(fingerprints)) == 7 and len(set(distance_keys)) == 7
    tried = {k for t in history for k in keys(t.architecture)}
    assert not tried & (set(fingerprints) | set(distance_keys))


@pytest.mark.parametrize("mode", ["believer", "lie"])
def test_the_gp_believes_pending_networks_so_sigma_collapses_there(mode):
    searcher = make_searcher("bayesian", seed=4, t_low=0.1, pending_mode=mode)
    _, history = run_searcher(searcher, seed_history(), 3)
    pending = propose_pending(searcher, history, [], 3)
    before_mean, before_sigma = searcher.fit_model(history).predict(pending)
    after_mean, after_sigma = searcher.fit_model(history, pending).predict(pending)
    assert np.all(before_sigma > 1e-3)
    assert np.all(after_sigma < 0.1 * before_sigma)
    if mode == "believer":  # believed at its own prediction: the mean does not move
        np.testing.assert_allclose(after_mean, before_mean, atol=1e-3)
    else:  # a constant lie: the worst score so far
        worst = min(t.score for t in history if t.score is not None)
        np.testing.assert_allclose(after_mean, worst, atol=1e-3)
    ignoring = make_searcher("bayesian", seed=4, pending_mode="ignore")
    for trial in history:
        ignoring.observe(trial)
    np.testing.assert_allclose(ignoring.fit_model(history, pending).predict(pending)[1], before_sigma)
    with pytest.raises(SproutError, match="pending_mode should be one of"):
        make_searcher("bayesian", pending_mode="liar")


def test_conditioning_a_gp_keeps_its_fit_and_pins_the_new_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = np.sin(x).sum(axis=1)
    gp = GaussianProcess().fit(x, y)
    new = rng.normal(size=(2, 3))
    pinned = gp.condition(new, [0.5, -0.25])
    mean, std = pinned.predict(new)
    np.testing.assert_allclose(mean, [0.5, -0.25], atol=1e-3)
    assert np.all(std < 1e-2) and np.all(gp.predict(new)[1] > 5 * std)
    assert pinned.length_scale_ == gp.length_scale_ and len(gp.alpha_) == 12  # the original is untouched
    far = np.full((1, 3), 50.0)
    np.testing.assert_allclose(pinned.predict(far)[1], gp.predict(far)[1])
    with pytest.raises(ValueError, match="expected new rows of shape"):
        gp.condition(new, [1.0])
