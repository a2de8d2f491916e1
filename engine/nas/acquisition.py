"""UCB and its maximisation over the tree of morphisms by simulated annealing (DESIGN §5-6).

The search starts from every trained architecture, repeatedly expands the most promising
node with random morphisms, scores the new children by UCB in one batch and keeps the best.
Children remember their trained ancestor and the whole path of operations, so a proposal
can lie several morphisms away from anything trained. It stops at the lowest temperature,
at a time cap, or within a fraction of a second of ``stop`` being set.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from engine.nas.distance import encode
from engine.nas.gp import blas_single_thread
from engine.nas.morphism import random_morph
from engine.nas.proposals import Proposal, explain_bayesian, explain_cost, explain_fallback

DEFAULT_BETA = 2.576  # DESIGN §5: UCB's usual 99% quantile
SEARCH_BETA = 1.5  # what the search uses: less exploration won in bench/results/simulate.md
COST_EXPONENT = 0.7  # training time grows as flops ** 0.7 (engine.search.budget.CostModel)
COLLECT_TRIES = 4  # expand="children": random morphs tried per child wanted


class ScoreModel(Protocol):
    """Anything that predicts (mean, std) of the score for a batch of architectures
    (given as :class:`engine.nas.distance.Encoding` objects, which ``ArchitectureGP`` accepts)."""

    def predict(self, archs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]: ...


def ucb(mean: np.ndarray | float, std: np.ndarray | float, beta: float = DEFAULT_BETA) -> np.ndarray:
    """Upper confidence bound mean + beta * std (higher beta = more exploration)."""
    if beta < 0:
        raise ValueError(f"beta should be >= 0; received {beta}")
    return np.asarray(mean, dtype=np.float64) + beta * np.asarray(std, dtype=np.float64)


@dataclass
class _Node:
    arch: Any
    key: float  # priority and annealing value: observed score (trained) or UCB (candidate)
    mean: float | None = None
    std: float | None = None
    steps: int = 0  # morphisms from the trained ancestor
    cost: float = 1.0  # predicted training time relative to the best trained network's


def _predict(model: Any, children: Sequence[Any], encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The model's (mean, std) for new children: through ``predict_children`` where the model needs
    to know their trained ancestors (:class:`engine.nas.lineage.LineageModel`)."""
    if hasattr(model, "predict_children"):
        return model.predict_children(children, encodings)
    return model.predict(encodings)


def relative_cost(arch: Any, reference_flops: float) -> float:
    """Predicted training time of ``arch`` relative to a network of ``reference_flops``."""
    return (max(float(arch.flops()), 1.0) / max(float(reference_flops), 1.0)) ** COST_EXPONENT


def gain_per_cost(ucb_value: float, incumbent: float, cost: float) -> float:
    """Lever 8's acquisition: the optimistic gain over the best score per unit of training time
    (0 when the bound does not beat it)."""
    return max(0.0, float(ucb_value) - float(incumbent)) / max(float(cost), 1e-9)


def optimize_acquisition(
    trained: Sequence[tuple[Any, float]],
    model: ScoreModel,
    rng: np.random.Generator,
    limits: Any = None,
    beta: float = SEARCH_BETA,
    t0: float = 1.0,
    decay: float = 0.9,
    t_low: float = 1e-4,
    max_children: int = 8,
    max_steps: int = 2,
    time_cap_s: float | None = None,
    stop: threading.Event | None = None,
    exclude: Sequence[Any] = (),
    morph: Callable | None = None,
    expand: str = "attempts",
    cost: str = "ucb",
) -> Proposal | None:
    """Maximise UCB over morphisms of the trained architectures by simulated annealing.

    ``trained`` holds (architecture with an id, observed score); ``model.predict`` gives the
    posterior (mean, std) of candidates; ``exclude`` lists further architectures that must
    not be proposed (for example failed trials). A child is dropped when it has the
    fingerprint, or the edit-distance key (:func:`engine.nas.distance.distance_key`, equal exactly
    when the edit distance is 0), of anything trained, excluded, queued or generated.

    The annealing (DESIGN §6): a popped node is expanded with probability
    min(1, exp((key - best) / T)) and all its new children are queued.

    Nodes ``max_steps`` morphisms away from their trained ancestor are scored but not
    queued (no annealing step is spent popping them): far from the data the GP's
    uncertainty, hence UCB, keeps growing, and without a bound the annealing dives dozens of
    morphisms deep into networks nobody can judge.

    Levers (issue 14, :mod:`engine.nas.levers`): ``expand="children"`` collects ``max_children``
    new children per expansion (up to :data:`COLLECT_TRIES` times as many morphs) and first expands
    every trained network once, best first, so more roots than the top few get children;
    ``cost="gain_per_time"`` proposes the candidate with the best :func:`gain_per_cost` (training
    time from flops, relative to the best trained network), the best UCB when none beats the best
    score.

    Returns the best candidate found as a :class:`Proposal`; if none was found, a fresh
    random morph of the best trained network; ``None`` when not even that gives anything new.
    """
    if not trained:
        raise ValueError("expected at least one trained architecture with a score; received none")
    if not 0 < decay < 1:
        raise ValueError(f"decay should be in (0, 1); received {decay}")
    if max_steps < 1:
        raise ValueError(f"max_steps should be at least 1; received {max_steps}")
    morph = morph or random_morph
    deadline = None if time_cap_s is None else time.monotonic() + float(time_cap_s)

    def must_stop() -> bool:
        return (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline)

    seen_fp = {a.fingerprint() for a, _ in trained} | {a.fingerprint() for a in exclude}
    seen_dk = {encode(a).key for a, _ in trained} | {encode(a).key for a in exclude}
    counter = itertools.count()
    heap: list[tuple[float, int, _Node]] = []
    for arch, score in trained:
        heapq.heappush(heap, (-float(score), next(counter), _Node(arch, float(score))))

    best: _Node | None = None
    best_acq = -math.inf
    scored: list[_Node] = []
    tries = max_children * (COLLECT_TRIES if expand == "children" else 1)
    incumbent_arch, incumbent = max(trained, key=lambda pair: pair[1])
    reference = float(incumbent_arch.flops()) if cost == "gain_per_time" else 1.0

    def grow(node: _Node) -> None:
        nonlocal best, best_acq
        children, encodings = _expand(node.arch, rng, limits, max_children, morph, seen_fp, seen_dk, must_stop,
                                      tries)
        if not children:
            return
        mean, std = _predict(model, children, encodings)
        for child, m, s, u in zip(children, mean, std, ucb(mean, std, beta)):
            child_node = _Node(child, float(u), float(m), float(s), node.steps + 1)
            if cost == "gain_per_time":
                child_node.cost = relative_cost(child, reference)
            scored.append(child_node)
            if child_node.steps < max_steps:  # a leaf can win, but is never expanded
                heapq.heappush(heap, (-float(u), next(counter), child_node))
            if u > best_acq:
                best, best_acq = child_node, float(u)

    temperature = float(t0)
    with blas_single_thread():
        if expand == "children":  # every trained network gets children, not only the top few
            for _, _, root in sorted(heap):
                if must_stop():
                    break
                grow(root)
        while heap and temperature >= t_low and not must_stop():
            _, _, node = heapq.heappop(heap)
            if rng.random() < _accept(node.key, best_acq, temperature):
                grow(node)
            temperature *= decay

    if best is not None and cost == "gain_per_time":
        rate = max(scored, key=lambda n: gain_per_cost(n.key, incumbent, n.cost))
        if gain_per_cost(rate.key, incumbent, rate.cost) > 0:
            arch = rate.arch
            return Proposal(arch, str(arch.parent_id), list(arch.operations), rate.mean, rate.std, rate.key,
                            "bayesian", explain_cost(arch.parent_id, arch.operations, rate.mean, rate.std, rate.key,
                                                     rate.key - incumbent, rate.cost),
                            beta=float(beta))  # the teaching view splits its UCB into mean + beta * sigma
    if best is not None:
        arch = best.arch
        return Proposal(arch, str(arch.parent_id), list(arch.operations), best.mean, best.std, best_acq,
                        "bayesian", explain_bayesian(arch.parent_id, arch.operations, best.mean, best.std, best_acq),
                        beta=float(beta))
    return _fallback(trained, rng, limits, morph, seen_fp, seen_dk)


def _accept(value: float, best: float, temperature: float) -> float:
    """The annealing acceptance probability min(1, exp((value - best) / T))."""
    return 1.0 if best == -math.inf else math.exp(min(0.0, (value - best) / temperature))


def _expand(arch: Any, rng: np.random.Generator, limits: Any, max_children: int, morph: Callable,
            seen_fp: set, seen_dk: set, must_stop: Callable[[], bool],
            tries: int | None = None) -> tuple[list[Any], list[Any]]:
    """Up to ``max_children`` new random morphs of ``arch`` out of ``tries`` (default
    ``max_children``) attempts, and their encodings (new ones are added to the seen sets)."""
    children, encodings = [], []
    for _ in range(max_children if tries is None else tries):
        if must_stop() or len(children) >= max_children:
            break
        child = morph(arch, rng, limits)
        if child is None:
            continue
        fp = child.fingerprint()
        if fp in seen_fp:
            continue
        seen_fp.add(fp)
        enc = encode(child)
        if enc.key in seen_dk:
            continue
        seen_dk.add(enc.key)
        children.append(child)
        encodings.append(enc)
    return children, encodings


def _fallback(trained: Sequence[tuple[Any, float]], rng: np.random.Generator, limits: Any, morph: Callable,
              seen_fp: set, seen_dk: set, tries: int = 32) -> Proposal | None:
    """A fresh random morph of the best trained network that was not seen before, or None."""
    best_arch = max(trained, key=lambda pair: pair[1])[0]
    for _ in range(tries):
        child = morph(best_arch, rng, limits)
        if child is not None and child.fingerprint() not in seen_fp and encode(child).key not in seen_dk:
            return Proposal(child, str(child.parent_id), list(child.operations), None, None, None, "bayesian",
                            explain_fallback(child.parent_id, child.operations))
    return None
