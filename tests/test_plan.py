"""engine.search.plan: how many epochs a trial gets when the budget is short."""

from __future__ import annotations

import doctest

import pytest

from engine.search import plan


def test_doctests():
    result = doctest.testmod(plan)
    assert result.failed == 0 and result.attempted > 0


def test_the_seed_keeps_the_recipes_epochs_when_they_fit_its_share():
    assert plan.seed_epochs(16, search_s=200.0, epoch_s=0.5) == 16


def test_the_seed_takes_about_its_share_of_a_short_search():
    n = plan.seed_epochs(16, search_s=40.0, epoch_s=1.0)
    assert n < 16
    assert n * 1.0 + plan.PRIOR_EXTRA_S <= plan.SEED_SHARE * 40.0 + 1.0


def test_the_seed_never_drops_below_its_least_epochs_nor_above_the_recipe():
    assert plan.seed_epochs(16, search_s=1.0, epoch_s=5.0) == plan.MIN_SEED_EPOCHS
    assert plan.seed_epochs(2, search_s=1.0, epoch_s=5.0) == 2
    assert plan.seed_epochs(16, search_s=1e6, epoch_s=0.001) == 16


@pytest.mark.parametrize("left", [10.0, 30.0, 60.0, 120.0, 240.0])
def test_child_epochs_grow_with_the_time_left_between_one_and_the_recipes(left):
    n = plan.child_epochs(8, left_s=left, trials_to_go=9, epoch_s=0.5, extra_s=2.0)
    assert 1 <= n <= 8
    assert n <= plan.child_epochs(8, left_s=2 * left, trials_to_go=9, epoch_s=0.5, extra_s=2.0)


def test_planned_children_fit_the_time_left():
    left, to_go, epoch, extra = 60.0, 9, 0.5, 2.0
    n = plan.child_epochs(8, left_s=left, trials_to_go=to_go, epoch_s=epoch, extra_s=extra)
    assert 1 < n < 8
    assert to_go * (extra + n * plan.GROWTH * epoch) <= left


def test_trials_to_go_counts_down_to_a_few():
    assert plan.trials_to_go(1) == plan.TARGET_TRIALS - 1
    assert plan.trials_to_go(50) == 3


# ----- lever 8, spend=all: the epochs shrink before the cost cap, the fine-tune takes the rest
def test_epochs_within_shrink_to_one_and_never_past_the_full_count():
    assert plan.epochs_within(3, seconds=100.0, epoch_s=2.0) == 3
    assert plan.epochs_within(3, seconds=5.0, epoch_s=2.0) == 2
    assert plan.epochs_within(3, seconds=1.0, epoch_s=2.0) == 1  # the caller decides whether one goes
    assert plan.epochs_within(3, seconds=5.0, epoch_s=0.0) == 3


def test_the_fine_tune_takes_every_whole_epoch_the_time_holds_unless_capped():
    assert plan.fine_tune_epochs(room_s=100.0, epoch_s=8.0) == 12
    assert plan.fine_tune_epochs(room_s=100.0, epoch_s=8.0, most=9) == 9
    assert plan.fine_tune_epochs(room_s=7.0, epoch_s=8.0) == 0
    assert plan.fine_tune_epochs(room_s=-3.0, epoch_s=8.0, most=9) == 0


def _context(levers: dict | None = None):
    """What affordable_limits reads of a run: one measured network (2 s epochs, 2 s extra)."""
    from types import SimpleNamespace

    from engine.nas.architecture import Limits
    from engine.search.budget import CostModel

    cost = CostModel(n_train=1000)
    cost.observe(1e6, [4.0, 2.0, 2.0], 8.0)
    return SimpleNamespace(cost=cost, limits=Limits(), child_epochs=None,
                           config=SimpleNamespace(max_epochs=None, levers=levers or {}),
                           recipe=SimpleNamespace(child_epochs=3, seed_epochs=6))


def test_spend_all_keeps_a_child_of_the_best_affordable_near_the_end_with_fewer_epochs():
    from engine.search.loop import affordable_limits

    ctx = _context()
    epoch_best, extra = ctx.cost.epoch_s(1e6), ctx.cost.extra_s()
    best_trial = extra + 3 * epoch_best
    child = plan.GROWTH * epoch_best
    # mid-search the two rules agree: the full epochs fit
    assert (affordable_limits(ctx, 200.0, best_trial).max_flops
            == affordable_limits(ctx, 200.0, best_trial, child).max_flops)
    left = extra + 2 * child + 0.5  # two of a child's epochs fit, not three
    capped = affordable_limits(ctx, left, best_trial).max_flops
    spend = affordable_limits(ctx, left, best_trial, child).max_flops
    assert ctx.cost.epoch_s(capped) < child <= ctx.cost.epoch_s(spend)  # capped: no child of the best fits
    assert 2 * ctx.cost.epoch_s(spend) + extra <= left + 1e-6  # and it trains two epochs in the time left


def test_a_child_floor_in_steps_keeps_children_above_one_epoch_where_epochs_are_short():
    # fashion-mnist-small's 55 steps an epoch: 2 epochs; a few hundred images (6 steps): 17, within the recipe's
    assert plan.least_child_epochs(3500, 64) == 2 and plan.least_child_epochs(350, 64) == 17
    assert plan.least_child_epochs(32000, 64) == 1
    tight = dict(left_s=40.0, trials_to_go=9, epoch_s=5.5, extra_s=4.0)  # the plan alone gives one epoch
    assert plan.child_epochs(3, **tight) == 1
    assert plan.child_epochs(3, **tight, least=2) == 2
    assert plan.child_epochs(3, **tight, least=17) == 3  # never above the recipe's
    roomy = dict(left_s=400.0, trials_to_go=9, epoch_s=5.5, extra_s=4.0)
    assert plan.child_epochs(3, **roomy, least=2) == plan.child_epochs(3, **roomy) == 3


@pytest.mark.parametrize("floor", ["epoch", "steps"])
def test_the_search_plans_children_with_the_floor_its_lever_names(floor, monkeypatch):
    from types import SimpleNamespace

    from engine.search import loop

    ctx = _context({"child_floor": floor})  # 2 s epochs: with 40 s left for 9 more, one epoch each
    ctx.recipe.batch_size, ctx.budget, ctx.say, ctx.elapsed = 64, 60.0, lambda text: None, lambda: 0.0
    ctx.train_data = SimpleNamespace(y_train=[0] * 3500)  # 55 steps an epoch
    runner = SimpleNamespace(best=lambda allow_stopped=True: SimpleNamespace(architecture=None), records=[1])
    monkeypatch.setattr(loop, "search_deadline", lambda c, r: 40.0)
    monkeypatch.setattr(loop, "flops", lambda arch: 1e6)
    assert loop.planned_child_epochs(ctx, runner) == (1 if floor == "epoch" else 2)
