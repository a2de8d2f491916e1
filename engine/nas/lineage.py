"""What the Gaussian process is fitted on, beyond architecture and score (issue 14, levers 5 and 6).

A trial's weights carry its ancestors' training: a child of the incumbent starts where the
incumbent ended, so part of what its score says is "trained longer", not "better architecture".
And a trial cut short by the deadline scores below what its network would reach. This module turns
the finished trials into the GP's training data under the searcher's levers
(:class:`engine.nas.levers.Levers`):

- ``truncated="noise"``: a cut trial gets extra noise variance, (:data:`TRUNCATED_STD` x the
  missing share of its planned epochs)^2; ``"exclude"`` leaves it out of the fit.
- ``lineage="epochs"``: one more GP input, log2(1 + the epochs its weights trained in all, its
  ancestors' included); a candidate gets its trained ancestor's plus a typical child's epochs.
- ``lineage="gain"``: the GP models a trial's score minus its parent's (0 for a seed) and a
  candidate's prediction is its ancestor's score plus the predicted gain.

A trial is anything with ``id``, ``architecture``, ``score`` and optionally ``record`` (its
trials.jsonl line: ``parent_id``, ``epochs``, ``max_epochs``, ``truncated``, ``short``,
``full_epochs``); without a record the
architecture's ``parent_id`` names the parent and a trial counts one epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from engine.nas.gp import fidelity_noise
from engine.nas.levers import TRUNCATED_STD


def _record(trial: Any) -> dict:
    return getattr(trial, "record", None) or {}


def parent_of(trial: Any) -> str | None:
    """The id of the trial whose weights ``trial`` started from (None for a seed)."""
    parent = _record(trial).get("parent_id", getattr(trial.architecture, "parent_id", None))
    return None if parent is None else str(parent)


def epochs_of(trial: Any) -> int:
    """The epochs ``trial`` itself trained (1 when it has no record)."""
    return int(_record(trial).get("epochs") or 1)


def truncated_share(trial: Any) -> float:
    """The share of its planned epochs a trial cut by the deadline did not train, or of a grown
    network's usual epochs (``full_epochs``) a trial planned ``short`` near the budget's end did
    not train (0 otherwise)."""
    record = _record(trial)
    if not (record.get("truncated") or record.get("short")):
        return 0.0
    planned = max(1, int(record.get("full_epochs") or record.get("max_epochs") or 1))
    return max(0.0, 1.0 - epochs_of(trial) / planned)


def cumulative_epochs(trials: Sequence[Any]) -> dict[str, int]:
    """Per trial id, the epochs its weights trained in all: its own plus its ancestors'."""
    by_id = {str(t.id): t for t in trials}
    out: dict[str, int] = {}

    def total(tid: str, depth: int = 0) -> int:
        if tid in out:
            return out[tid]
        trial = by_id.get(tid)
        if trial is None:
            return 0
        parent = parent_of(trial)
        own = epochs_of(trial)
        out[tid] = own + (total(parent, depth + 1) if parent is not None and depth < 1000 else 0)
        return out[tid]

    for t in trials:
        total(str(t.id))
    return out


def epoch_feature(epochs: float) -> float:
    """The GP input for a number of cumulative epochs: doubling them moves it by 1, about one layer
    of edit distance."""
    return math.log2(1.0 + max(0.0, float(epochs)))


@dataclass
class GPData:
    """The GP's training set under the levers, and what a candidate's prediction needs."""

    trials: list[Any]
    targets: np.ndarray
    noise: np.ndarray | None = None
    features: np.ndarray | None = None
    lineage: str = "none"
    scores: dict[str, float] = field(default_factory=dict)  # trial id -> score (gain: the offsets)
    cumulative: dict[str, int] = field(default_factory=dict)  # trial id -> cumulative epochs
    child_epochs: float = 1.0  # a typical child's own epochs, for candidates

    def candidate_features(self, ancestors: Sequence[Any]) -> np.ndarray | None:
        """The extra inputs of candidates grown from the trained ``ancestors`` (ids)."""
        if self.lineage != "epochs":
            return None
        return np.array([[epoch_feature(self.cumulative.get(str(a), 0) + self.child_epochs)] for a in ancestors])

    def offsets(self, ancestors: Sequence[Any]) -> np.ndarray:
        """What to add to the GP's mean for candidates grown from ``ancestors``: their scores
        when the GP models gains, else 0."""
        if self.lineage != "gain":
            return np.zeros(len(ancestors))
        return np.array([self.scores.get(str(a), 0.0) for a in ancestors])


def gp_data(scored: Sequence[Any], truncated: str = "same", lineage: str = "none") -> GPData:
    """The GP's training data from the scored trials (see the module docstring)."""
    scores = {str(t.id): float(t.score) for t in scored}
    keep = [t for t in scored if not (truncated == "exclude" and truncated_share(t) > 0)] or list(scored)
    y = np.array([float(t.score) for t in keep])
    if lineage == "gain":
        y = np.array([float(t.score) - scores.get(parent_of(t) or "", float(t.score)) for t in keep])
    noise = None
    if truncated == "noise":
        noise = np.array([(TRUNCATED_STD * truncated_share(t)) ** 2 for t in keep])
    shares = np.array([float(_record(t).get("fidelity") or 1.0) for t in keep])
    if np.any(shares < 1.0):  # scores on part of the training images (issue 22): noisier
        noise = fidelity_noise(shares) + (0.0 if noise is None else noise)
    data = GPData(keep, y, noise, lineage=lineage, scores=scores)
    if lineage == "epochs":
        data.cumulative = cumulative_epochs(scored)
        grown = [epochs_of(t) for t in scored if parent_of(t) is not None]
        data.child_epochs = float(np.median(grown)) if grown else float(epochs_of(scored[0]))
        data.features = np.array([[epoch_feature(data.cumulative[str(t.id)])] for t in keep])
    return data


class LineageModel:
    """An :class:`engine.nas.gp.ArchitectureGP` fitted on :func:`gp_data`, predicting for candidates
    given with their trained ancestors (what :func:`engine.nas.acquisition.optimize_acquisition`
    calls as ``predict_children``)."""

    def __init__(self, gp: Any, data: GPData) -> None:
        self.gp, self.data = gp, data

    def predict_children(self, children: Sequence[Any], encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        ancestors = [getattr(c, "parent_id", None) for c in children]
        mean, std = self.gp.predict(list(encodings), self.data.candidate_features(ancestors))
        return mean + self.data.offsets(ancestors), std

    def predict(self, archs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) for architectures that carry their trained ancestor as ``parent_id``."""
        return self.predict_children(archs, archs)
