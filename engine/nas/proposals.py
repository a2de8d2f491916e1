"""What a searcher proposes and the sentence that explains it to the user.

A :class:`Proposal` is the next architecture to train, as a path of recorded morphisms from
a trained ancestor, with the model's prediction when there is one. The ``explain_*``
functions write its ``reason``: one plain sentence for the UI, naming the prediction and
the path in the words of :mod:`engine.nas.operations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.nas.operations import describe_all

_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


@dataclass
class Proposal:
    """The next architecture to train and why.

    ``architecture`` is the unweighted candidate; realise it by loading trial
    ``ancestor_id``'s weights and applying ``operations`` in order. ``mean``/``sigma``/``ucb``
    are the model's prediction (None for searchers without a model), ``beta`` the weight of
    ``sigma`` in ``ucb``; ``reason`` is one plain sentence for the UI.
    """

    architecture: Any
    ancestor_id: str
    operations: list[dict] = field(default_factory=list)
    mean: float | None = None
    sigma: float | None = None
    ucb: float | None = None
    searcher: str = ""
    reason: str = ""
    beta: float | None = None  # the UCB's weight on sigma: ucb = mean + beta * sigma

    def to_dict(self) -> dict:
        arch = self.architecture
        as_float = lambda v: None if v is None else float(v)  # noqa: E731
        return {
            "architecture": arch.to_dict() if hasattr(arch, "to_dict") else None,
            "fingerprint": arch.fingerprint(),
            "ancestor_id": self.ancestor_id,
            "operations": list(self.operations),
            "mean": as_float(self.mean),
            "sigma": as_float(self.sigma),
            "ucb": as_float(self.ucb),
            "beta": as_float(self.beta),
            "searcher": self.searcher,
            "reason": self.reason,
        }


def steps_text(n: int) -> str:
    """``1`` -> ``one step``, ``3`` -> ``three steps`` (digits above ten)."""
    word = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"{word} step" + ("" if n == 1 else "s")


def path_text(ancestor_id: Any, operations: Sequence[dict]) -> str:
    """The path from a trained trial in words: ``two steps from trial 3: widen ..., deepen ...``."""
    ops = describe_all(operations, none="", sep=", ")
    return f"{steps_text(len(operations))} from trial {ancestor_id}" + (f": {ops}" if ops else "")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def explain_bayesian(ancestor_id: Any, operations: Sequence[dict], mean: float, sigma: float, ucb: float) -> str:
    """Why the Bayesian searcher chose this path: the predicted accuracy and its optimistic bound."""
    return (f"Chosen because the model predicts {_pct(mean)} ± {_pct(sigma)} accuracy "
            f"(optimistic estimate {_pct(ucb)}), {path_text(ancestor_id, operations)}.")


def explain_cost(ancestor_id: Any, operations: Sequence[dict], mean: float, sigma: float, ucb: float,
                 gain: float, cost: float) -> str:
    """Why the Bayesian searcher chose this path for its expected gain per second of training
    (``cost``: its training time relative to the best network's); names a cheaper child as such."""
    size = (f"about {1 / cost:.1f}x cheaper to train than the best network" if cost < 0.95 else
            f"about {cost:.1f}x the best network's training time" if cost > 1.05 else
            "about as costly to train as the best network")
    return (f"Chosen for the most expected gain per second of training: the model predicts {_pct(mean)} ± "
            f"{_pct(sigma)} accuracy (optimistic estimate {_pct(ucb)}, {100 * gain:.1f} points above the best "
            f"so far), {size}, {path_text(ancestor_id, operations)}.")


def explain_fallback(ancestor_id: Any, operations: Sequence[dict]) -> str:
    """Why a random change was proposed when the annealing found nothing new."""
    return (f"The search found nothing new worth trying, so this is a random change of the best network "
            f"so far, {path_text(ancestor_id, operations)}.")


def explain_random(ancestor_id: Any, operations: Sequence[dict]) -> str:
    """The random baseline's reason."""
    return f"Chosen at random (the random baseline), {path_text(ancestor_id, operations)}."


def explain_bfs(ancestor_id: Any, operations: Sequence[dict], used_up: bool = False) -> str:
    """The breadth-first searcher's reason (``used_up``: its order is exhausted, so a random change)."""
    if used_up:
        return f"Breadth-first order is used up, so this is a random change, {path_text(ancestor_id, operations)}."
    return f"Next untried change in breadth-first order, {path_text(ancestor_id, operations)}."


def fraction_text(fraction: float) -> str:
    """A share of the training images in words: ``0.25`` -> ``1/4``, ``1.0`` -> ``all``."""
    from fractions import Fraction

    if fraction >= 1.0:
        return "all"
    share = Fraction(float(fraction)).limit_denominator(1000)
    return f"{share.numerator}/{share.denominator}"


def explain_promotion(trial_id: Any, score: float, fraction: float, to: float, rank: int, of: int) -> str:
    """Why a network trained on part of the images goes on to more of them (successive halving)."""
    place = "the best" if rank == 1 else f"number {rank}"
    return (f"Promoted: it scored {_pct(score)} trained on {fraction_text(fraction)} of the images, {place} of the "
            f"{of} networks trained on that many, so trial {trial_id} continues from its weights on "
            f"{fraction_text(to)} of the images.")
