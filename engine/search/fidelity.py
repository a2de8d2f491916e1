"""Multi-fidelity search (issue 22): children judged on part of the training images, the best promoted.

On a large data set a trial on all the training images costs too much for a search to explore in
minutes. Here a run gets a ladder of *fidelities*, fractions of the training images
(:func:`choose_fidelities`, e.g. ``(1/16, 1/4, 1)``):

- every network the searcher proposes trains on the lowest rung, a fixed subset of the training
  images (:func:`subset_index`: seed-determined, stratified, nested, an index into the one uint8
  array, never a copy), validated on the whole validation split so its score stays comparable in
  kind; an epoch of it costs about that fraction of a full one;
- successive halving (asynchronous, as in ASHA): a network in the top :data:`ETA`-th of the
  networks trained on its rung, not promoted yet, continues from its weights on the next rung
  (:func:`next_promotion`, :func:`promotion_step`); its proposal's reason says why;
- the seed trains on all the images, and the best network for the final phase is chosen among
  those trained on all of them (:meth:`engine.search.trials.TrialRunner.best`);
- the GP counts a lower fidelity as more noise (:func:`engine.nas.gp.fidelity_noise`).

Small sets (below :data:`MIN_IMAGES`) and fast devices get the ladder ``(1.0,)``: every trial on
all the images, the search as it was. The ladder is chosen once, when the search phase starts,
and kept in state.json (``fidelities``) for a resumed run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from engine.nas.proposals import Proposal, explain_promotion, fraction_text
from engine.search.budget import flops
from engine.search.status import TrialStatus

#: Below this many training images every trial uses all of them (the sample, fashion-mnist-small).
MIN_IMAGES = 10_000
#: An epoch of the seed on all the images that takes more than this share of the budget makes the
#: run multi-fidelity; the lowest rung is the first whose epoch takes about this share or less.
EPOCH_SHARE = 0.01
#: Each rung trains on this many times the images of the rung below it.
LADDER = 4
#: Rungs at most, all the images included.
MAX_RUNGS = 3
#: A subset never has fewer images than this (a rung that would is not used).
MIN_SUBSET = 2_000
#: A network is promoted when it is in the top 1/ETA of the networks trained on its rung.
ETA = 3
#: The cost of validating one image against training on one (a forward pass only), for the
#: cost of an epoch on part of the images: validation always covers the whole validation split.
VAL_COST = 1 / 3


def choose_fidelities(n_train: int, epoch_s: float, budget_s: float) -> tuple[float, ...]:
    """The run's ladder of fidelities, lowest first, ending with 1.0 (all the training images).

    ``n_train``: training images; ``epoch_s``: the measured seconds of one epoch of the seed on all
    of them on this device (the image size and the device enter through it); ``budget_s``: the
    run's time budget. Below :data:`MIN_IMAGES` images, or where that epoch takes at most
    :data:`EPOCH_SHARE` of the budget, the ladder is ``(1.0,)``: today's search exactly. Otherwise
    rungs of 1/:data:`LADDER` of the one above are added until a rung's epoch fits that share, up to
    :data:`MAX_RUNGS` rungs and never a subset below :data:`MIN_SUBSET` images.

    >>> choose_fidelities(3_000, 30.0, 270.0)
    (1.0,)
    >>> choose_fidelities(42_000, 30.0, 600.0)
    (0.0625, 0.25, 1.0)
    """
    if n_train < MIN_IMAGES or not (epoch_s > 0 and budget_s > 0) or epoch_s <= EPOCH_SHARE * budget_s:
        return (1.0,)
    target = EPOCH_SHARE * budget_s / epoch_s  # the share of the images whose epoch fits
    rungs = [1.0]
    while len(rungs) < MAX_RUNGS and rungs[0] > target and rungs[0] / LADDER * n_train >= MIN_SUBSET:
        rungs.insert(0, rungs[0] / LADDER)
    return tuple(rungs)


def check_fidelities(values: Sequence[float]) -> tuple[float, ...]:
    """A ladder given by hand (``SearchConfig.fidelities``), sorted, with 1.0 added when missing;
    ValueError for a value outside (0, 1]."""
    try:
        out = sorted({float(v) for v in values})
    except (TypeError, ValueError):
        raise ValueError(f"fidelities must be a list of fractions of the training images; "
                         f"received {values!r}") from None
    if not out or out[0] <= 0 or out[-1] > 1:
        raise ValueError(f"fidelities must be fractions of the training images in (0, 1]; received {list(values)}")
    return tuple(out) if out[-1] == 1.0 else (*out, 1.0)


def subset_index(y: np.ndarray, fraction: float, seed: int) -> np.ndarray | None:
    """The training images a trial at ``fraction`` sees: sorted indices into ``y`` (None for all).

    Fixed by ``seed``: every trial at one fraction sees the same images, and the subsets are
    nested (a smaller fraction's images are among a larger one's), so a promoted network continues
    on the images it saw plus new ones. Stratified: each class keeps its share of the images."""
    n = len(y)
    if fraction >= 1.0 or n == 0:
        return None
    k = max(1, int(round(fraction * n)))
    rng = np.random.default_rng([int(seed), 22])
    # each image's place within its class (a random order), as a share of the class: images
    # sorted by it interleave the classes, so any prefix holds every class in its proportion
    rank = np.empty(n)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rank[members] = (rng.permutation(len(members)) + rng.random(len(members))) / len(members)
    return np.sort(np.argsort(rank, kind="stable")[:k])


def epoch_factor(fraction: float, n_train: int, n_val: int) -> float:
    """A full epoch's seconds over an epoch's at ``fraction`` of ``n_train`` images (the
    ``n_val`` validation images are validated either way, at :data:`VAL_COST` each)."""
    val = VAL_COST * max(0, n_val)
    return (max(1, n_train) + val) / (max(1.0, fraction * n_train) + val)


def full_epochs(epoch_seconds: Sequence[float], factor: float, extra_s: float = 0.0) -> list[float]:
    """The epochs of a trial trained on part of the images, as they would have taken on all of
    them (``factor``: :func:`epoch_factor`): steady epochs scaled; the first one keeps its excess
    (building and tracing the model, about ``extra_s``) unscaled."""
    secs = [float(s) for s in epoch_seconds]
    if not secs or factor == 1.0:
        return secs
    steady = float(np.median(secs[1:])) if len(secs) > 1 else max(secs[0] - extra_s, 0.25 * secs[0])
    first = secs[0] + (factor - 1.0) * min(steady, secs[0])
    return [first] + [s * factor for s in secs[1:]]


def fidelity_of(record: dict) -> float:
    """A trials.jsonl record's fidelity (1.0 for a record written before issue 22)."""
    return float(record.get("fidelity") or 1.0)


def best_record(trials: Sequence[dict]) -> dict | None:
    """A snapshot's ``best``, ``{"trial_id", "val_accuracy"}``: the first ``ok`` trial to reach the
    highest score, among those trained on all the images when there are any (as the final phase picks)."""
    scored = [t for t in trials if t.get("status") == TrialStatus.OK and t.get("val_accuracy") is not None]
    scored = [t for t in scored if fidelity_of(t) >= 1.0] or scored
    best = max(scored, key=lambda t: t["val_accuracy"], default=None)  # max keeps the first of equals
    return None if best is None else {"trial_id": best["id"], "val_accuracy": best["val_accuracy"]}


@dataclass
class Promotion:
    """A network to promote: its record, the fidelity it goes on to, its rank and how many trained on its rung."""

    record: dict
    to: float
    rank: int
    of: int


def due_promotions(records: Sequence[dict], rungs: Sequence[float], eta: int = ETA) -> Iterator[Promotion]:
    """The promotions due, at most one per rung, highest rung below all the images first (so a
    promising network reaches all of them soonest): on each rung, the best-scored ``ok`` network
    in the top ``1/eta`` of those trained on it that has not been promoted yet."""
    promoted = {str(r["promoted_from"]) for r in records if r.get("promoted_from") is not None}
    for i in reversed(range(len(rungs) - 1)):
        at = [r for r in records if r.get("status") == TrialStatus.OK and r.get("val_accuracy") is not None
              and math.isclose(fidelity_of(r), rungs[i])]
        at.sort(key=lambda r: -float(r["val_accuracy"]))  # stable: the earlier of equal scores first
        due = next(((rank, r) for rank, r in enumerate(at[: len(at) // eta], start=1)
                    if str(r["id"]) not in promoted), None)
        if due is not None:
            yield Promotion(due[1], float(rungs[i + 1]), due[0], len(at))


def next_promotion(records: Sequence[dict], rungs: Sequence[float], eta: int = ETA) -> Promotion | None:
    """The first of :func:`due_promotions`, or None."""
    return next(due_promotions(records, rungs, eta), None)


def fraction_for(rungs: Sequence[float], records: Sequence[dict], parent_id: Any, proposal: Any) -> float:
    """The fidelity a trial trains at: all the images for the seed, the next rung above its
    parent's for a promotion, the lowest rung for a network the searcher proposed."""
    if proposal is None or not rungs:
        return 1.0
    if getattr(proposal, "searcher", "") == PROMOTION:
        parent = next((r for r in records if str(r["id"]) == str(parent_id)), {})
        return float(min((f for f in rungs if f > fidelity_of(parent) + 1e-9), default=1.0))
    return float(rungs[0])


PROMOTION = "promotion"  # the ``searcher`` of a promotion's proposal


def ladder(ctx: Any, runner: Any) -> tuple[float, ...]:
    """The run's fidelities: the config's, else chosen once from the seed's measured epoch
    (:func:`choose_fidelities`) and kept in state.json; ``(1.0,)`` for a pretrained run (its
    trials train heads on cached features, already cheap)."""
    saved = ctx.state.get("fidelities")
    if saved:
        return tuple(float(f) for f in saved)
    best = runner.best(allow_stopped=False)
    n_train = len(ctx.train_data.y_train)
    if ctx.config.fidelities:
        rungs = check_fidelities(ctx.config.fidelities)
    elif ctx.pretrained is not None or best is None or not ctx.cost.known:
        rungs = (1.0,)
    else:
        rungs = choose_fidelities(n_train, ctx.cost.epoch_s(flops(best.architecture)), ctx.budget)
    ctx.save_state(fidelities=list(rungs))
    if len(rungs) > 1:
        ctx.say(f"recipe: {n_train:,} training images: each new network trains on {fraction_text(rungs[0])} of them; "
                f"the best third at each size continue on " + ", then on ".join(fraction_text(f) for f in rungs[1:])
                + " of them")
    return rungs


def next_step(ctx: Any, runner: Any, deadline: float, epochs: int, propose: Callable[[], tuple | None]) -> tuple | None:
    """The search loop's next step, ``(network with weights, proposal, epochs, deadline)`` or None:
    a promotion when one is due and fits (:func:`promotion_step`), else ``propose()``'s new network.
    That one trains on the lowest rung; below all the images its epochs cost about that share of
    a full one, so it gets the recipe's epochs for a grown network (not fewer, as planned for
    epochs on all the images), as many as the time left holds."""
    step = promotion_step(ctx, runner, deadline, epochs)
    if step is not None:
        return step
    step = propose()
    rungs = ladder(ctx, runner)
    if step is None or rungs[0] >= 1.0 or ctx.config.max_epochs or not ctx.cost.known:
        return step
    arch, proposal, n, end = step
    fit = int((end - ctx.elapsed() - ctx.cost.extra_s()) // max(_epoch_at(ctx, arch, rungs[0]), 1e-6))
    return arch, proposal, max(n, min(int(ctx.recipe.child_epochs), fit)), end


def epoch_share(ctx: Any) -> float:
    """A new network's epoch (on the lowest rung) against one on all the training images: what the
    loop scales its time checks by; 1.0 with a single fidelity or before the ladder is chosen."""
    rungs = ctx.state.get("fidelities") or (1.0,)
    if float(rungs[0]) >= 1.0:
        return 1.0
    data = ctx.train_data
    return 1.0 / epoch_factor(float(rungs[0]), len(data.y_train), len(data.y_val))


def _epoch_at(ctx: Any, arch: Any, share: float) -> float:
    """Estimated seconds of one epoch of ``arch`` on ``share`` of the training images."""
    data = ctx.train_data
    return ctx.cost.epoch_s(flops(arch)) / epoch_factor(share, len(data.y_train), len(data.y_val))


def promotion_step(ctx: Any, runner: Any, deadline: float, epochs: int) -> tuple | None:
    """The next promotion as the loop's next step, ``(network with weights, proposal, epochs,
    deadline)``, or None (no promotion due, a single fidelity, or no time for one). ``deadline``:
    the search phase's end; ``epochs``: a grown network's planned epochs."""
    if ctx.stop.is_set() or (ctx.config.max_trials is not None and len(runner.records) >= ctx.config.max_trials):
        return None
    for promotion in due_promotions(runner.records, ladder(ctx, runner)):
        source = promotion.record
        arch = ctx.folder.load_architecture(str(source["id"]))
        arch.id = str(source["id"])
        # onto a rung below all the images: the recipe's epochs, each costing about that share of one
        n = int(epochs if promotion.to >= 1.0 or ctx.config.max_epochs else max(epochs, ctx.recipe.child_epochs))
        if ctx.cost.known:
            epoch = _epoch_at(ctx, arch, promotion.to)
            n = min(n, int((deadline - ctx.elapsed() - ctx.cost.extra_s()) // max(epoch, 1e-6)))
            if n < 1:
                continue  # it would not fit: a cheaper promotion, new networks or the final phase get the time
        reason = explain_promotion(source["id"], float(source["val_accuracy"]), fidelity_of(source), promotion.to,
                                   promotion.rank, promotion.of)
        proposal = Proposal(arch.copy(with_weights=False), str(source["id"]), [], searcher=PROMOTION, reason=reason)
        return arch, proposal, n, deadline
    return None
