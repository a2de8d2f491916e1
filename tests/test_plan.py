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
