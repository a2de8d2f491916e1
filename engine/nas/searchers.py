"""Searchers: what to train next, given the finished trials (DESIGN §6-7).

One interface for all: ``propose(history) -> Proposal`` and ``observe(trial)``, where a
trial exposes ``.id``, ``.architecture`` and ``.score`` (validation accuracy, or None if the
trial failed). ``make_searcher`` builds ``"bayesian"`` (GP + UCB + annealing over the
morphism tree), ``"random"`` (a random morph of a random trained network) or ``"bfs"``
(breadth-first over the morphisms of the best network). Same seed, same history, same
proposals. State for resume is JSON: ``state_dict()`` / ``load_state_dict()``.

``propose(history, pending=[architectures])`` proposes while other trials still train: no
searcher returns a network that is pending or was tried; the Bayesian one also takes each
pending network into its GP (``pending_mode``: ``"believer"``, at its predicted mean with no
noise, the default; ``"lie"``, at the worst score so far, a constant lie; ``"ignore"``, not at
all), so its sigma collapses there and the next proposal goes elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from engine.errors import SproutError
from engine.nas.acquisition import SEARCH_BETA, optimize_acquisition
from engine.nas.distance import DistanceCache, distance_key
from engine.nas.gp import ArchitectureGP
from engine.nas.levers import Levers
from engine.nas.lineage import LineageModel, gp_data
from engine.nas.morphism import random_morph
from engine.nas.proposals import Proposal, explain_bfs, explain_random


class TrialLike(Protocol):
    id: str
    architecture: Any
    score: float | None


# ---------------------------------------------------------------------------- helpers
def _trained_arch(trial: TrialLike) -> Any:
    """The trial's architecture, carrying the trial's id (copied if it did not)."""
    arch = trial.architecture
    if getattr(arch, "id", None) != trial.id:
        arch = arch.copy(with_weights=False) if hasattr(arch, "copy") else arch
        arch.id = trial.id
    return arch


def _scored(history: Sequence[TrialLike]) -> list[TrialLike]:
    scored = [t for t in history if t.score is not None]
    if not scored:
        raise SproutError(f"cannot propose an architecture before one has been trained "
                          f"({len(history)} trials so far, none finished with a score)")
    return scored


class Searcher:
    """Base class: an rng, optional limits and the morphism function."""

    name = "base"

    def __init__(self, seed: int = 0, limits: Any = None, morph: Callable | None = None) -> None:
        self.seed = int(seed)
        self.limits = limits
        self.rng = np.random.default_rng(self.seed)
        self.morph: Callable = morph or random_morph

    def observe(self, trial: TrialLike) -> None:
        """Take note of a finished trial (optional: ``propose`` reads the full history)."""

    def propose(self, history: Sequence[TrialLike], stop: threading.Event | None = None,
                time_cap_s: float | None = None, pending: Sequence[Any] = ()) -> Proposal:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"expected the state of a {self.name!r} searcher; received {state.get('name')!r}")
        self.rng.bit_generator.state = state["rng"]

    def _unseen_morph(self, arch: Any, seen: set, tries: int = 50) -> Any | None:
        """A random morph of ``arch`` whose fingerprint and distance key are not in ``seen``."""
        for _ in range(tries):
            child = self.morph(arch, self.rng, self.limits)
            if child is not None and child.fingerprint() not in seen and distance_key(child) not in seen:
                return child
        return None


def _seen(history: Sequence[TrialLike], pending: Sequence[Any] = ()) -> set:
    """Fingerprints and distance keys of every architecture tried so far, failed ones included,
    and of the ``pending`` ones (still training)."""
    archs = [t.architecture for t in history if t.architecture is not None] + list(pending)
    return {a.fingerprint() for a in archs} | {distance_key(a) for a in archs}


class RandomSearcher(Searcher):
    """A random morph of a uniformly chosen trained network (the ``random`` baseline)."""

    name = "random"

    def propose(self, history, stop=None, time_cap_s=None, pending=()) -> Proposal:
        scored, seen = _scored(history), _seen(history, pending)
        for _ in range(10):
            trial = scored[int(self.rng.integers(len(scored)))]
            child = self._unseen_morph(_trained_arch(trial), seen, tries=10)
            if child is not None:
                return Proposal(child, str(child.parent_id), list(child.operations), searcher=self.name,
                                reason=explain_random(child.parent_id, child.operations))
        raise SproutError("no new architecture can be proposed: "
                          "the allowed changes of the trained networks are used up")


class BFSSearcher(Searcher):
    """Breadth-first over the morphism tree of the best network.

    The one-step children of a network are enumerated in a fixed random order (drawn from
    an rng seeded by the searcher's seed and the network's fingerprint, so a resumed search
    finds the same order) and proposed one by one. When the best network changes, the
    search restarts from it; when a network's children are used up, the search moves on to
    its trained children in the order they were proposed (the next level).
    """

    name = "bfs"

    def __init__(self, seed: int = 0, limits: Any = None, morph: Callable | None = None, n_draws: int = 200) -> None:
        super().__init__(seed, limits, morph)
        self.n_draws = int(n_draws)
        self.root_id: str | None = None
        self.queue: list[str] = []  # trial ids to expand, breadth-first
        self._children: dict[tuple[str, str], list[Any]] = {}  # (fingerprint, limits) -> children

    def children(self, arch: Any) -> list[Any]:
        """The distinct one-step morphs of ``arch`` in this searcher's fixed order for it."""
        key = (arch.fingerprint(), repr(self.limits))
        cached = self._children.get(key)
        if cached is not None and all(c.parent_id == arch.id for c in cached[:1]):
            return cached
        digest = hashlib.blake2b(str(arch.fingerprint()).encode(), digest_size=8).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest, "little")])
        out, seen = [], set()
        for _ in range(self.n_draws):
            child = self.morph(arch, rng, self.limits)
            if child is not None and child.fingerprint() not in seen:
                seen.add(child.fingerprint())
                out.append(child)
        self._children[key] = out
        return out

    def propose(self, history, stop=None, time_cap_s=None, pending=()) -> Proposal:
        scored = _scored(history)
        best = max(scored, key=lambda t: t.score)
        if best.id != self.root_id:
            self.root_id, self.queue = best.id, [best.id]
        by_id = {t.id: t for t in scored}
        by_fp = {t.architecture.fingerprint(): t.id for t in scored}
        seen = _seen(history, pending)
        while self.queue:
            parent = by_id.get(self.queue[0])
            if parent is not None:
                kids = self.children(_trained_arch(parent))
                for child in kids:
                    if child.fingerprint() not in seen and distance_key(child) not in seen:
                        return Proposal(child, str(child.parent_id), list(child.operations), searcher=self.name,
                                        reason=explain_bfs(child.parent_id, child.operations))
                self.queue += [by_fp[c.fingerprint()] for c in kids if c.fingerprint() in by_fp
                               and by_fp[c.fingerprint()] not in self.queue]
            self.queue.pop(0)
        # Everything reachable breadth-first is tried: fall back to a random change of the best.
        child = self._unseen_morph(_trained_arch(best), seen)
        if child is None:
            raise SproutError("no new architecture can be proposed: "
                              "the allowed changes of the trained networks are used up")
        return Proposal(child, str(child.parent_id), list(child.operations), searcher=self.name,
                        reason=explain_bfs(child.parent_id, child.operations, used_up=True))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "root_id": self.root_id, "queue": list(self.queue)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.root_id, self.queue = state.get("root_id"), list(state.get("queue", []))


class BayesianSearcher(Searcher):
    """GP on the edit-distance embedding + UCB, maximised by annealing over morphisms.

    Keeps one :class:`DistanceCache` across calls (each new trial adds one row) and refits
    the GP at every ``propose``. Parameters: see :func:`engine.nas.acquisition.optimize_acquisition`
    (beta ... max_steps), :class:`engine.nas.gp.ArchitectureGP` (embedding) and the GP's scale with a
    single trial (``prior_std``, in accuracy units). ``beta`` defaults to
    :data:`engine.nas.acquisition.SEARCH_BETA` (1.5), not DESIGN's 2.576: with the annealing search
    maximising UCB thoroughly, 2.576 over-explores (bench/results/simulate.md). With a time cap the proposal depends on
    the machine's speed; without one, same seed and history give the same proposal. ``distance``,
    ``truncated``, ``lineage``, ``expand`` and ``cost`` are issue 14's levers (:mod:`engine.nas.levers`).
    """

    name = "bayesian"

    def __init__(self, seed: int = 0, limits: Any = None, morph: Callable | None = None,
                 beta: float = SEARCH_BETA, t0: float = 1.0, decay: float = 0.9, t_low: float = 1e-4,
                 max_children: int = 8, max_steps: int = 2, time_cap_s: float | None = None, lam: float = 1.0,
                 prior_std: float = 0.1, embedding: str = "landmark", distance: str = "all", truncated: str = "same",
                 lineage: str = "none", expand: str = "attempts", cost: str = Levers.cost,
                 pending_mode: str = "believer") -> None:
        super().__init__(seed, limits, morph)
        if pending_mode not in PENDING_MODES:
            raise SproutError(f"pending_mode should be one of {', '.join(PENDING_MODES)}; received {pending_mode!r}")
        self.pending_mode = pending_mode
        self.params = dict(beta=beta, t0=t0, decay=decay, t_low=t_low, max_children=max_children,
                           max_steps=max_steps, expand=expand, cost=cost)
        self.time_cap_s = time_cap_s
        self.prior_std = prior_std
        self.embedding = embedding
        self.truncated, self.lineage = truncated, lineage
        self.cache = DistanceCache(lam, layers=distance)

    def observe(self, trial: TrialLike) -> None:
        if trial.score is not None:
            self.cache.add(_trained_arch(trial))

    def fit_model(self, history: Sequence[TrialLike], pending: Sequence[Any] = ()):
        """The GP fitted on the scored trials of ``history`` (under the truncation and lineage
        levers: :mod:`engine.nas.lineage`), believing the ``pending`` architectures as
        ``pending_mode`` says (see the module docstring). The lineage model takes further inputs
        that a pending network has no value for yet, so under it pending networks are only kept
        out of the proposals, not believed."""
        data = gp_data(_scored(history), self.truncated, self.lineage)
        archs = [_trained_arch(t) for t in data.trials]
        gp = ArchitectureGP(self.cache, seed=self.seed, embedding=self.embedding, prior_std=self.prior_std).fit(
            archs, data.targets, data.noise, data.features)
        if self.truncated != "same" or self.lineage != "none":
            return LineageModel(gp, data)
        if not pending or self.pending_mode == "ignore":
            return gp
        scores = [float(t.score) for t in _scored(history)]
        return gp.with_pending(list(pending), lie=min(scores) if self.pending_mode == "lie" else None)

    def propose(self, history, stop=None, time_cap_s=None, pending=()) -> Proposal:
        model = self.fit_model(history, pending)
        scored = _scored(history)
        trained = [(_trained_arch(t), float(t.score)) for t in scored]
        failed = [t.architecture for t in history if t.score is None and t.architecture is not None] + list(pending)
        cap = time_cap_s if time_cap_s is not None else self.time_cap_s
        proposal = optimize_acquisition(trained, model, self.rng, self.limits, time_cap_s=cap, stop=stop,
                                        exclude=failed, morph=self.morph, **self.params)
        if proposal is None:
            raise SproutError("no new architecture can be proposed: no change of the trained networks fits the limits")
        return proposal


PENDING_MODES = ("believer", "lie", "ignore")
SEARCHERS = {"bayesian": BayesianSearcher, "random": RandomSearcher, "bfs": BFSSearcher}


def make_searcher(name: str, seed: int = 0, limits: Any = None, **params: Any) -> Searcher:
    """A searcher by name ("bayesian", "random" or "bfs") under the default levers
    (:class:`engine.nas.levers.Levers`) but for those in ``params``, which go to its constructor;
    ``wider`` says how a widened layer's new channels read out (lever 4b)."""
    if name not in SEARCHERS:
        raise SproutError(f"unknown searcher {name!r}; expected one of {', '.join(SEARCHERS)}")
    params = Levers().searcher_params(name) | params
    params["morph"] = functools.partial(random_morph, wider_outgoing=params.pop("wider"))
    return SEARCHERS[name](seed=seed, limits=limits, **params)
