"""UCB, the annealing search over morphisms, and the searchers built on it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import norm

from engine.nas import distance as D
from engine.nas.acquisition import DEFAULT_BETA, SEARCH_BETA, optimize_acquisition, ucb
from engine.nas.architecture import seed_architecture
from engine.errors import SproutError
from engine.nas.gp import ArchitectureGP
from engine.nas.morphism import apply, random_morph
from engine.nas.proposals import Proposal
from engine.nas.searchers import make_searcher
from tests.helpers import random_architectures, synthetic_accuracy


@dataclass
class Trial:
    id: str
    architecture: object
    score: float | None


def trained_set(n, seed=0):
    archs = random_architectures(n, seed=seed, max_steps=6)
    for i, arch in enumerate(archs):
        arch.id = str(i)
    return [(a, synthetic_accuracy(a)) for a in archs]


def fitted(trained, seed=0):
    return ArchitectureGP(seed=seed, prior_std=0.1).fit([a for a, _ in trained], [s for _, s in trained])


def assert_new(proposal, trained):
    fps = {a.fingerprint() for a, _ in trained}
    keys = {D.distance_key(a) for a, _ in trained}
    assert proposal.architecture.fingerprint() not in fps
    assert D.distance_key(proposal.architecture) not in keys
    assert min(D.edit_distance(proposal.architecture, a) for a, _ in trained) > 1e-9


def assert_replayable(proposal, trained):
    ancestors = {a.id: a for a, _ in trained}
    assert proposal.ancestor_id in ancestors
    assert proposal.operations == proposal.architecture.operations
    replayed = apply(ancestors[proposal.ancestor_id], proposal.operations)
    assert replayed.fingerprint() == proposal.architecture.fingerprint()


def test_ucb_trades_the_mean_for_uncertainty():
    mean, std = np.array([0.6, 0.5]), np.array([0.0, 0.1])
    assert np.argmax(ucb(mean, std, beta=0.0)) == 0  # no exploration: the better mean wins
    assert np.argmax(ucb(mean, std, beta=2.0)) == 1  # 0.5 + 2 * 0.1 > 0.6: the uncertain one wins
    np.testing.assert_allclose(ucb(mean, std, beta=1.0), [0.6, 0.6])
    np.testing.assert_array_equal(ucb(mean, std), ucb(mean, std, beta=DEFAULT_BETA))
    assert DEFAULT_BETA == pytest.approx(norm.ppf(0.995), abs=1e-3)  # DESIGN §5: the usual 99% quantile
    assert 0 < SEARCH_BETA < DEFAULT_BETA  # the search explores less (bench/results/simulate.md)
    assert ucb(0.5, 0.1, beta=0.0) == 0.5
    with pytest.raises(ValueError, match="beta should be >= 0"):
        ucb(0.5, 0.1, beta=-1)


@pytest.fixture(scope="module")
def trained():
    return trained_set(20, seed=1)


def test_proposal_is_new_replayable_and_explained(trained):
    model = fitted(trained)
    steps = []
    for seed in range(3):
        proposal = optimize_acquisition(trained, model, np.random.default_rng(seed), t_low=1e-2)
        assert isinstance(proposal, Proposal) and proposal.searcher == "bayesian"
        assert_new(proposal, trained)
        assert_replayable(proposal, trained)
        assert proposal.ucb == pytest.approx(proposal.mean + SEARCH_BETA * proposal.sigma)
        assert proposal.reason.startswith("Chosen because the model predicts")
        assert f"from trial {int(proposal.ancestor_id)}" in proposal.reason
        json.dumps(proposal.to_dict())
        steps.append(len(proposal.operations))
    assert max(steps) >= 2  # the tree search goes beyond one morphism


@pytest.mark.parametrize("beta", [0.0, 3.0])
def test_the_proposal_is_scored_with_the_given_beta(trained, beta):
    proposal = optimize_acquisition(trained, fitted(trained), np.random.default_rng(0), t_low=0.5, beta=beta)
    assert proposal.sigma > 0 and proposal.ucb == pytest.approx(proposal.mean + beta * proposal.sigma)


def test_same_seed_same_proposal(trained):
    model = fitted(trained)
    a = optimize_acquisition(trained, model, np.random.default_rng(7), t_low=1e-2)
    b = optimize_acquisition(trained, model, np.random.default_rng(7), t_low=1e-2)
    assert a.architecture.fingerprint() == b.architecture.fingerprint() and a.ucb == b.ucb


def test_never_proposes_a_trained_or_excluded_architecture():
    base = seed_architecture((32, 32, 3), 10)
    base.id = "0"
    rng = np.random.default_rng(0)
    # all one-step children of the seed that a few hundred draws find, trained or excluded
    kids = {}
    for _ in range(300):
        child = random_morph(base, rng)
        kids.setdefault(child.fingerprint(), child)
    kids = list(kids.values())
    trained = [(base, 0.5)]
    for i, kid in enumerate(kids[: len(kids) // 2]):
        kid.id = str(i + 1)
        trained.append((kid, 0.5 + 0.001 * i))
    excluded = kids[len(kids) // 2:]
    model = fitted(trained)
    for seed in range(3):
        proposal = optimize_acquisition(trained, model, np.random.default_rng(seed), exclude=excluded,
                                        t_low=1e-2, max_steps=2)
        assert_new(proposal, trained + [(e, 0.0) for e in excluded])


def test_falls_back_to_a_random_morph_and_gives_up_when_nothing_is_new(trained):
    model = fitted(trained)
    first = trained[0][0]

    def only_duplicates(arch, rng, limits=None):
        return first.copy()

    assert optimize_acquisition(trained, model, np.random.default_rng(0), morph=only_duplicates) is None

    calls = {"n": 0}

    def new_only_late(arch, rng, limits=None):  # nothing new during the annealing, then one
        calls["n"] += 1
        return first.copy() if calls["n"] <= 2 else random_morph(arch, rng)

    best = max(trained, key=lambda p: p[1])[0]
    # t_low=0.95: one annealing step (two duplicate children), then the fallback
    proposal = optimize_acquisition(trained, model, np.random.default_rng(0), morph=new_only_late, t_low=0.95,
                                    max_children=2)
    assert calls["n"] == 3
    assert proposal is not None and proposal.mean is None and "nothing new" in proposal.reason
    assert proposal.ancestor_id == best.id


def test_stops_within_half_a_second_of_the_stop_event(trained):
    model = fitted(trained)
    stop = threading.Event()
    result = {}

    def run():
        result["proposal"] = optimize_acquisition(trained, model, np.random.default_rng(0), t_low=1e-300,
                                                  decay=0.9999, stop=stop)
        result["done"] = time.perf_counter()

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive()
    stop.set()
    set_at = time.perf_counter()
    worker.join(5)
    assert not worker.is_alive()
    assert result["done"] - set_at < 0.5
    assert result["proposal"] is not None  # the best found so far


def test_time_cap(trained):
    model = fitted(trained)
    start = time.perf_counter()
    proposal = optimize_acquisition(trained, model, np.random.default_rng(0), t_low=1e-300, decay=0.9999,
                                    time_cap_s=0.3)
    assert time.perf_counter() - start < 0.8 and proposal is not None


def test_rejects_bad_input(trained):
    with pytest.raises(ValueError, match="at least one trained"):
        optimize_acquisition([], None, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"decay should be in \(0, 1\)"):
        optimize_acquisition(trained, None, np.random.default_rng(0), decay=1.0)


# ----------------------------------------------------------------------------- searchers
def seed_history():
    base = seed_architecture((32, 32, 3), 10)
    base.id = "0"
    return [Trial("0", base, synthetic_accuracy(base))]


def run_searcher(searcher, history, n):
    history = list(history)
    proposals = []
    for _ in range(n):
        proposal = searcher.propose(history)
        arch = proposal.architecture.copy()
        arch.id = str(len(history))
        trial = Trial(arch.id, arch, synthetic_accuracy(arch))
        history.append(trial)
        searcher.observe(trial)
        proposals.append(proposal)
    return proposals, history


@pytest.mark.parametrize("name", ["bayesian", "random", "bfs"])
def test_searchers_propose_new_replayable_architectures_deterministically(name):
    params = {"t_low": 1e-2} if name == "bayesian" else {}
    first, history = run_searcher(make_searcher(name, seed=3, **params), seed_history(), 6)
    again, _ = run_searcher(make_searcher(name, seed=3, **params), seed_history(), 6)
    assert [p.architecture.fingerprint() for p in first] == [p.architecture.fingerprint() for p in again]
    assert len({t.architecture.fingerprint() for t in history}) == len(history)  # nothing proposed twice
    trained = [(t.architecture, t.score) for t in history]
    for proposal in first:
        assert proposal.searcher == name and proposal.reason.endswith(".")
        assert_replayable(proposal, trained)
        json.dumps(proposal.to_dict())


@pytest.mark.parametrize("name", ["bayesian", "random", "bfs"])
def test_state_dict_resumes_the_same_sequence(name):
    params = {"t_low": 1e-2} if name == "bayesian" else {}
    searcher = make_searcher(name, seed=5, **params)
    _, history = run_searcher(searcher, seed_history(), 3)
    state = json.loads(json.dumps(searcher.state_dict()))
    expected = searcher.propose(history).architecture.fingerprint()
    resumed = make_searcher(name, seed=5, **params)
    resumed.load_state_dict(state)
    assert resumed.propose(history).architecture.fingerprint() == expected
    with pytest.raises(ValueError, match="expected the state of a"):
        make_searcher("random" if name != "random" else "bfs").load_state_dict(state)


def test_failed_trials_are_not_proposed_again_and_empty_history_is_an_error():
    history = seed_history()
    rng = np.random.default_rng(0)
    failed = []
    for i in range(20):
        child = random_morph(history[0].architecture, rng)
        child = child.copy()
        child.id = f"f{i}"
        failed.append(Trial(child.id, child, None))
    for name in ("bayesian", "random", "bfs"):
        proposal = make_searcher(name, seed=1, t_low=1e-2).propose(history + failed) if name == "bayesian" \
            else make_searcher(name, seed=1).propose(history + failed)
        assert proposal.architecture.fingerprint() not in {t.architecture.fingerprint() for t in failed}
        with pytest.raises(SproutError, match="before one has been trained"):
            make_searcher(name).propose(failed)
    with pytest.raises(SproutError, match="unknown searcher 'genetic'"):
        make_searcher("genetic")


def test_bayesian_searcher_adds_one_cache_row_per_trial():
    searcher = make_searcher("bayesian", seed=0, t_low=1e-2)
    _, history = run_searcher(searcher, seed_history(), 4)
    assert searcher.cache.keys == [t.id for t in history[:5]]


def test_the_bayesian_searcher_scores_with_search_beta():
    searcher = make_searcher("bayesian", seed=0, t_low=1e-2)
    assert searcher.params["beta"] == SEARCH_BETA
    proposal = searcher.propose(seed_history())
    assert proposal.sigma > 0 and proposal.ucb == pytest.approx(proposal.mean + SEARCH_BETA * proposal.sigma)


def test_bfs_moves_on_when_the_best_changes():
    searcher = make_searcher("bfs", seed=0)
    history = seed_history()
    first = searcher.propose(history)
    assert first.ancestor_id == "0" and len(first.operations) == 1
    better = first.architecture.copy()
    better.id = "1"
    history.append(Trial("1", better, 0.99))
    nxt = searcher.propose(history)
    assert nxt.ancestor_id == "1" and searcher.root_id == "1"
