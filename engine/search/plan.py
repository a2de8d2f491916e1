"""How many epochs a trial gets when the budget is short: a short search still explores.

The recipe (:mod:`engine.training.recipe`) plans epochs in optimiser steps, whatever the budget:
on the sample that is 16 epochs for the first network and 8 for each grown one. With a one-minute
budget that left time for the first network alone, and the tree had one dot (issue 20). Here the
budget has its say too:

- the first network (the seed) takes at most :data:`SEED_SHARE` of the search time. Nothing has
  been measured yet when it starts, so its epoch is estimated from its multiply-adds
  (:func:`prior_epoch_s`); the seed's deadline stays the safety net on a slower machine;
- each grown network trains for fewer epochs (one at the least) where the recipe's would leave
  room for fewer than :data:`TARGET_TRIALS` networks in the search. It is planned once, when the
  search phase starts and the seed's epochs have been timed. Children inherit trained weights,
  so a short training still ranks them (bench/results/short-budgets.md).

At the budgets the recipe was tuned at (5 minutes and more) neither rule changes anything.

Spending the whole budget (issue 14, lever 8, ``spend=all``): near the end of the search a child
of the best network no longer fits its full epochs in the time left, and the flops cap used to
shrink until nothing fitted and the search ended early. :func:`epochs_within` lets the epoch count
shrink first (to one: a child starts from its parent's trained weights), and
:func:`fine_tune_epochs` gives the final fine-tune every whole epoch the time left holds.

>>> child_epochs(8, left_s=30.0, trials_to_go=7, epoch_s=0.5, extra_s=2.0)
3
>>> child_epochs(8, left_s=300.0, trials_to_go=7, epoch_s=0.5, extra_s=2.0)
8
>>> epochs_within(3, seconds=20.0, epoch_s=8.0)
2
>>> fine_tune_epochs(room_s=100.0, epoch_s=8.0, most=9), fine_tune_epochs(room_s=100.0, epoch_s=8.0)
(9, 12)
"""

from __future__ import annotations

import math

#: Networks a search aims to train, the seed included, before it shortens epochs for them.
#: Above the 8 that issue 20 asks for at 2 minutes: trials take longer than planned (the
#: machine's load, model building) and a plan for 8 trained 6.
TARGET_TRIALS = 10
#: A grown network's epoch against its parent's: morphisms only add (on the sample a child's
#: epoch took 1.2-2x the seed's).
GROWTH = 1.5
#: The fewest optimiser steps a grown network trains under ``--search-option child_floor=steps``
#: (issue 14). A child restarts its learning rate from the top over its parent's trained weights;
#: on fashion-mnist-small at 270 s on a slow machine the plan gave every child one epoch (55 steps,
#: half of its trial time spent building and tracing the model) and 14 children of such gained 1.8
#: points over the seed between them, where 3-epoch children gained 1-1.5 points each
#: (bench/results/compare-270s-5seeds*.md). 100 steps: 2 epochs there. A first guess, measured in
#: bench/results/levers2.md.
MIN_CHILD_STEPS = 100
#: Largest share of the search time (budget less data loading and the final reserve) the seed takes.
SEED_SHARE = 0.25
#: The seed's epochs are not cut below this: it learns from scratch.
MIN_SEED_EPOCHS = 3
#: The prior for an epoch's time: a fixed cost per optimiser step and a cost per multiply-add
#: of one image's forward pass (training is about 3 of them). Measured on 2 idle CPU cores (the
#: sample's seed at 16 and 32 px in batches of 64: 0.55 and 1.3 s an epoch: 0.02 s and 9.4e-11 s),
#: then doubled: on the same cores busy with other work the seed's epochs took twice as long and
#: a one-minute search trained 2 networks; a seed planned too short costs the search less than
#: one planned too long. Only the seed's plan uses it; every later estimate comes from measured
#: epochs (engine.search.budget.CostModel).
STEP_S = 0.04
FLOP_S = 1.9e-10
#: Model building and tracing of a trial, before its first epoch, in the prior.
PRIOR_EXTRA_S = 3.0


def prior_epoch_s(arch_flops: float, n_train: int, batch_size: int) -> float:
    """Estimated seconds of one training epoch (validation included) before anything was timed."""
    return steps_per_epoch(n_train, batch_size) * STEP_S + n_train * 1.2 * float(arch_flops) * FLOP_S


def seed_epochs(recipe_epochs: int, search_s: float, epoch_s: float, extra_s: float = PRIOR_EXTRA_S) -> int:
    """The seed's epochs: the recipe's, or as many as fit :data:`SEED_SHARE` of ``search_s``
    seconds at ``epoch_s`` each after ``extra_s`` of building, but at least
    :data:`MIN_SEED_EPOCHS` (and never more than the recipe's)."""
    recipe_epochs = max(1, int(recipe_epochs))
    if epoch_s <= 0:
        return recipe_epochs
    fit = int((SEED_SHARE * search_s - extra_s) // epoch_s)
    return max(min(MIN_SEED_EPOCHS, recipe_epochs), min(recipe_epochs, fit))


def child_epochs(recipe_epochs: int, left_s: float, trials_to_go: int, epoch_s: float, extra_s: float,
                 least: int = 1) -> int:
    """Each grown network's epochs: the recipe's, or as many as let ``trials_to_go`` more
    trials share the ``left_s`` seconds of search left (``epoch_s`` a measured epoch of the
    best network so far, :data:`GROWTH` times that for its children; ``extra_s`` a trial's
    time outside its epochs); ``least`` at the least (one; never above the recipe's)."""
    recipe_epochs = max(1, int(recipe_epochs))
    if epoch_s <= 0 or trials_to_go <= 0:
        return recipe_epochs
    fit = int((left_s / trials_to_go - extra_s) // (GROWTH * epoch_s))
    return max(min(max(1, int(least)), recipe_epochs), min(recipe_epochs, fit))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``n_train`` images in batches of ``batch_size``."""
    return max(1, math.ceil(n_train / max(1, batch_size)))


def least_child_epochs(n_train: int, batch_size: int) -> int:
    """The fewest epochs a grown network gets under ``child_floor=steps``: enough for
    :data:`MIN_CHILD_STEPS` optimiser steps."""
    return max(1, math.ceil(MIN_CHILD_STEPS / steps_per_epoch(n_train, batch_size)))


def trials_to_go(trials_so_far: int) -> int:
    """How many more trials the epoch plan makes room for: up to :data:`TARGET_TRIALS` in all,
    and always a few (a resumed run that already has many keeps searching)."""
    return max(3, TARGET_TRIALS - int(trials_so_far))


def epochs_within(full_epochs: int, seconds: float, epoch_s: float) -> int:
    """The epochs, from ``full_epochs`` down to one, that fit in ``seconds`` at ``epoch_s`` each
    (one when not even that fits: the caller decides whether one epoch may go)."""
    full_epochs = max(1, int(full_epochs))
    if epoch_s <= 0:
        return full_epochs
    return max(1, min(full_epochs, int(seconds // epoch_s)))


def fine_tune_epochs(room_s: float, epoch_s: float, most: int | None = None) -> int:
    """The final fine-tune's epochs: as many whole ones as ``room_s`` holds at ``epoch_s`` each,
    at most ``most`` (None: no cap, all the time left); 0 when not one fits."""
    if epoch_s <= 0 or room_s < epoch_s:
        return 0
    n = int(room_s // epoch_s)
    return n if most is None else min(int(most), n)

