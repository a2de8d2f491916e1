"""Multi-fidelity search (issue 22): the fidelity rule, the subsets, the GP's noise, promotion,
and searches (a fake trainer's, one tiny real one) that train on part of the images."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from engine.nas.gp import FIDELITY_STD, GaussianProcess, fidelity_noise
from engine.nas.lineage import gp_data
from engine.nas.proposals import explain_promotion, fraction_text
from engine.search import fidelity
from engine.search.fidelity import (EPOCH_SHARE, MAX_RUNGS, MIN_IMAGES, MIN_SUBSET, check_fidelities,
                                    choose_fidelities, due_promotions, epoch_factor, full_epochs, next_promotion,
                                    subset_index)
from engine.search.trial import Trial


# ----------------------------------------------------------------------------- the rule
def test_small_sets_and_fast_epochs_keep_every_image():
    assert choose_fidelities(3_000, 60.0, 270.0) == (1.0,)  # fashion-mnist-small: always all of them
    assert choose_fidelities(1_257, 5.0, 60.0) == (1.0,)  # the sample
    assert choose_fidelities(MIN_IMAGES - 1, 500.0, 600.0) == (1.0,)
    # a large set whose epoch is a small share of the budget (a fast device) keeps them all too
    assert choose_fidelities(50_000, EPOCH_SHARE * 600.0, 600.0) == (1.0,)


def test_large_slow_sets_get_a_ladder_ending_in_all_the_images():
    rungs = choose_fidelities(42_000, 30.0, 600.0)
    assert len(rungs) > 1 and rungs[-1] == 1.0 and list(rungs) == sorted(rungs)
    assert len(rungs) <= MAX_RUNGS and rungs[0] * 42_000 >= MIN_SUBSET
    # the lowest rung's epoch fits the share, or the ladder is as deep as it may go
    assert rungs[0] * 30.0 <= EPOCH_SHARE * 600.0 or len(rungs) == MAX_RUNGS or rungs[0] / 4 * 42_000 < MIN_SUBSET


def test_a_slower_epoch_or_a_shorter_budget_never_trains_on_more_images():
    lowest = [choose_fidelities(60_000, epoch, 600.0)[0] for epoch in (1, 5, 10, 20, 40, 80, 200)]
    assert lowest == sorted(lowest, reverse=True) and lowest[0] == 1.0 and lowest[-1] < 1.0
    by_budget = [choose_fidelities(60_000, 20.0, budget)[0] for budget in (4000, 1200, 600, 120)]
    assert by_budget == sorted(by_budget, reverse=True)


def test_few_images_stop_the_ladder_at_the_smallest_subset():
    rungs = choose_fidelities(12_000, 1000.0, 600.0)
    assert rungs[0] * 12_000 >= MIN_SUBSET and rungs[0] / 4 * 12_000 < MIN_SUBSET


def test_fidelities_given_by_hand_are_checked_and_end_with_all_the_images():
    assert check_fidelities([0.5, 0.125]) == (0.125, 0.5, 1.0)
    assert check_fidelities([1]) == (1.0,)
    for bad in ([0.0, 1.0], [1.5], [], "quarter", 0.25):
        with pytest.raises(ValueError, match="fidelities"):
            check_fidelities(bad)


def test_the_config_refuses_bad_fidelities_in_plain_words():
    from engine.errors import SproutError
    from engine.search.config import SearchConfig

    SearchConfig(budget_s=10, fidelities=[0.25, 1.0]).check()
    with pytest.raises(SproutError, match="fidelities must be fractions"):
        SearchConfig(budget_s=10, fidelities=[0.0, 1.0]).check()


def test_the_command_line_takes_fidelities():
    from engine.cli import build_parser

    args = build_parser().parse_args(["search", "sample", "--out", "x", "--budget", "10", "--fidelities", "0.25,1"])
    assert args.fidelities == [0.25, 1.0]


# ----------------------------------------------------------------------------- subsets
def test_a_subset_is_fixed_per_seed_nested_stratified_and_sorted():
    y = np.repeat(np.arange(5), [400, 300, 200, 80, 20])
    a, b = subset_index(y, 0.25, seed=3), subset_index(y, 0.25, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, subset_index(y, 0.25, seed=4))
    assert len(a) == round(0.25 * len(y)) and np.all(np.diff(a) > 0)
    for label, n in zip(range(5), (400, 300, 200, 80, 20)):  # each class keeps its share (within an image)
        assert abs(int(np.sum(y[a] == label)) - 0.25 * n) <= 3  # at random: sd 8.7 images for 400
    assert set(subset_index(y, 0.0625, seed=3)) <= set(a) <= set(subset_index(y, 0.5, seed=3))
    assert subset_index(y, 1.0, seed=3) is None


def test_batches_over_a_subset_gather_from_the_one_array():
    from engine.training.batches import Batches

    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    y = np.arange(100)
    index = subset_index(y % 4, 0.25, seed=0)
    batches = Batches(x, y, batch_size=8, shuffle=True, seed=0, index=index)
    assert batches.x is x and len(batches) == math.ceil(len(index) / 8)  # the data set is never copied
    seen = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert set(seen) == set(index) and len(seen) == 8 * len(batches)  # the last batch topped up from the subset
    batches.on_epoch_end()
    assert set(np.concatenate([batches[i][1] for i in range(len(batches))])) == set(index)
    plain = Batches(x, y, batch_size=8, index=index)
    assert np.array_equal(np.concatenate([plain[i][0] for i in range(len(plain))]).ravel(), x[index].ravel())
    with pytest.raises(ValueError, match="indices"):
        Batches(x, y, batch_size=8, index=np.array([0, 100]))


def test_an_epoch_on_part_of_the_images_costs_about_that_part_plus_validation():
    assert epoch_factor(1.0, 42_000, 9_000) == pytest.approx(1.0)
    factor = epoch_factor(0.25, 42_000, 9_000)
    assert 1.0 < factor < 4.0  # validation covers every validation image either way
    assert epoch_factor(0.25, 42_000, 0) == pytest.approx(4.0)
    # steady epochs scale; the first epoch's building and tracing do not
    full = full_epochs([5.0, 2.0, 2.0], factor)
    assert full[1:] == [pytest.approx(2.0 * factor)] * 2 and full[0] - full[1] == pytest.approx(3.0)
    assert full_epochs([2.0], 1.0) == [2.0]


# ----------------------------------------------------------------------------- the GP
def test_the_gp_counts_less_of_the_images_as_more_noise():
    noise = fidelity_noise([1.0, 0.5, 0.25, 0.0625])
    assert noise[0] == 0.0 and np.all(np.diff(noise) > 0)
    assert noise[2] == pytest.approx((2 * FIDELITY_STD) ** 2)


def _trial(tid, score, share=1.0, parent=None):
    from engine.nas.architecture import seed_architecture

    return Trial(str(tid), seed_architecture((8, 8, 1), 2), score,
                 {"id": str(tid), "parent_id": parent, "fidelity": share, "status": "ok", "val_accuracy": score})


def test_the_gp_data_carries_noise_only_where_a_trial_saw_part_of_the_images():
    assert gp_data([_trial(0, 0.8), _trial(1, 0.85)]).noise is None  # today's search, unchanged
    data = gp_data([_trial(0, 0.8), _trial(1, 0.85, 0.25, "0"), _trial(2, 0.82, 0.0625, "0")])
    assert data.noise[0] == 0.0 and 0.0 < data.noise[1] < data.noise[2]


def test_a_noisy_low_fidelity_score_moves_the_gp_less():
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0.80, 0.90, 0.80])
    kw = dict(length_scale=1.0, noise=1e-4, optimize=False)
    exact = GaussianProcess(**kw).fit(x, y)
    noisy = GaussianProcess(**kw).fit(x, y, noise=fidelity_noise([1.0, 0.0625, 1.0]) * 10)
    at = np.array([[1.0]])
    assert abs(exact.predict(at)[0][0] - 0.90) < abs(noisy.predict(at)[0][0] - 0.90)
    assert noisy.predict(at)[1][0] > exact.predict(at)[1][0]


# ----------------------------------------------------------------------------- promotion
def _record(tid, score, share, **kw):
    return {"id": str(tid), "status": "ok", "val_accuracy": score, "fidelity": share, **kw}


def test_the_top_third_of_a_rung_is_promoted_highest_rung_first():
    rungs = (0.25, 0.5, 1.0)
    records = [_record(0, 0.7, 1.0), _record(1, 0.80, 0.25), _record(2, 0.85, 0.25)]
    assert next_promotion(records, rungs) is None  # two at the lowest rung: no top third yet
    records.append(_record(3, 0.82, 0.25))
    p = next_promotion(records, rungs)
    assert (p.record["id"], p.to, p.rank, p.of) == ("2", 0.5, 1, 3)
    records.append(_record(4, 0.86, 0.5, promoted_from="2", parent_id="2"))
    assert next_promotion(records, rungs) is None  # trial 2 was promoted; one at 0.5 is no third of three
    records += [_record(5, 0.83, 0.5), _record(6, 0.84, 0.5)]
    assert next_promotion(records, rungs).record["id"] == "4" and next_promotion(records, rungs).to == 1.0
    records += [_record(7, 0.9, 0.25), _record(8, 0.6, 0.25), _record(9, 0.6, 0.25)]
    assert [(p.record["id"], p.to) for p in due_promotions(records, rungs)] == [("4", 1.0), ("7", 0.5)]
    records.append(_record(10, 0.8, 1.0, promoted_from="4"))
    p = next_promotion(records, rungs)
    assert p.record["id"] == "7" and p.rank == 1 and p.of == 6  # rung 0.5 has no one left: the lowest rung goes on
    failed = dict(_record(11, None, 0.25), status="failed")
    assert next_promotion([*records, failed], rungs).record["id"] == "7"


def test_a_trial_trains_on_the_lowest_rung_a_promotion_on_the_next():
    from engine.nas.proposals import Proposal

    rungs, records = (0.0625, 0.25, 1.0), [_record(0, 0.7, 1.0), _record(1, 0.8, 0.0625), _record(2, 0.8, 0.25)]
    assert fidelity.fraction_for(rungs, records, None, None) == 1.0  # the seed
    child = Proposal(None, "0", [{"op": "x"}], searcher="bayesian")
    assert fidelity.fraction_for(rungs, records, "0", child) == 0.0625
    promote = Proposal(None, "1", [], searcher=fidelity.PROMOTION)
    assert fidelity.fraction_for(rungs, records, "1", promote) == 0.25
    assert fidelity.fraction_for(rungs, records, "2", promote) == 1.0
    assert fidelity.fraction_for((1.0,), records, "0", child) == 1.0


def _loop_context(max_epochs=None):
    """Just enough of a run context for :func:`fidelity.next_step`: a measured 20 s epoch on all
    of 40,000 training images, 9,000 validation images, the recipe's 4 epochs for a grown network."""
    from types import SimpleNamespace

    from engine.nas.architecture import seed_architecture
    from engine.search.budget import CostModel

    arch = seed_architecture((8, 8, 1), 2)
    cost = CostModel(40_000)
    cost.observe(arch.flops(), [22.0, 20.0, 20.0], 62.0)
    state: dict = {}
    ctx = SimpleNamespace(config=SimpleNamespace(max_epochs=max_epochs, max_trials=None, fidelities=[0.25]),
                          state=state, stop=threading.Event(), recipe=SimpleNamespace(child_epochs=4), cost=cost,
                          train_data=SimpleNamespace(y_train=np.zeros(40_000), y_val=np.zeros(9_000)),
                          elapsed=lambda: 0.0, save_state=lambda **kw: state.update(kw), say=lambda m: None,
                          budget=600.0, pretrained=None)
    runner = SimpleNamespace(records=[], best=lambda allow_stopped=True: None)
    return ctx, runner, arch


def test_a_new_network_below_all_the_images_gets_the_recipes_epochs_as_time_allows():
    ctx, runner, arch = _loop_context()
    step = fidelity.next_step(ctx, runner, 1000.0, 1, lambda: (arch, "proposal", 1, 1000.0))
    assert step == (arch, "proposal", 4, 1000.0) and ctx.state["fidelities"] == [0.25, 1.0]
    epoch = 20.0 / epoch_factor(0.25, 40_000, 9_000)  # about 6 s
    step = fidelity.next_step(ctx, runner, 1000.0, 1, lambda: (arch, "proposal", 1, 2 + 2.5 * epoch))
    assert step[2] == 2  # two epochs fit before the deadline
    assert fidelity.next_step(ctx, runner, 1000.0, 1, lambda: None) is None
    ctx, runner, arch = _loop_context(max_epochs=1)  # the user's cap wins
    assert fidelity.next_step(ctx, runner, 1000.0, 1, lambda: (arch, "proposal", 1, 1000.0))[2] == 1


def test_the_promotion_says_why_and_the_share_in_words():
    text = explain_promotion("7", 0.853, 0.0625, 0.25, 1, 6)
    assert text.startswith("Promoted") and "85.3%" in text and "1/16" in text and "1/4" in text and "6" in text
    assert fraction_text(1.0) == "all" and fraction_text(0.5) == "1/2"


def test_the_best_network_is_chosen_among_those_trained_on_all_the_images():
    from engine.search.trials import TrialRunner

    runner = TrialRunner(ctx=None, searcher=None)
    runner.trials = [_trial(0, 0.70), _trial(1, 0.90, 0.25, "0"), _trial(2, 0.75, 1.0, "1")]
    assert runner.best().id == "2"
    runner.trials = [_trial(1, 0.90, 0.25), _trial(3, 0.80, 0.25)]
    assert runner.best().id == "1"  # none on all the images: the best of the rest


def test_hover_text_names_the_share_of_the_images_and_a_promotion():
    from engine.figures.style import trial_hover

    hover = trial_hover({"id": "4", "status": "ok", "val_accuracy": 0.8, "parent_id": "2", "operations": [],
                         "promoted_from": "2", "fidelity": 0.25})
    assert "#2 promoted" in hover and "on 1/4 of the images" in hover
    assert "of the images" not in trial_hover({"id": "0", "status": "ok", "val_accuracy": 0.8, "fidelity": 1.0})


# ----------------------------------------------------------------------------- searches
class _SubsetTrainer:
    """The fake trainer, noting how many training images each call was given to train on."""

    def __init__(self):
        from tests.helpers import FakeTrainer

        self.fake, self.seen = FakeTrainer(), []

    def __call__(self, arch, x, y, xv, yv, config=None, **kw):
        subset = getattr(config, "subset", None)
        self.seen.append(len(y) if subset is None else len(subset))
        if subset is not None:
            assert np.all(np.diff(subset) > 0) and subset.max() < len(y)
        return self.fake(arch, x, y, xv, yv, config, **kw)


def test_a_fake_search_at_low_fidelity_records_it_and_promotes_the_best(tmp_path, monkeypatch):
    from engine.search import folder as runio
    from engine.search.config import SearchConfig
    from engine.search.loop import run_search
    from engine.training import trainer

    fake = _SubsetTrainer()
    monkeypatch.setattr(trainer, "train", fake)
    events: list[dict] = []
    config = SearchConfig(budget_s=60, searcher="bayesian", seed=1, image_size=8, max_epochs=1, max_trials=5,
                          fidelities=[0.25])
    summary = run_search("sample", tmp_path / "run", config, events=events.append)
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    n_train = next(e for e in events if e["type"] == "started")["n_train"]
    assert [r["fidelity"] for r in records] == [1.0, 0.25, 0.25, 0.25, 1.0]
    assert fake.seen[:5] == [n_train, *[round(0.25 * n_train)] * 3, n_train]
    promoted = records[4]
    best_child = max(records[1:4], key=lambda r: r["val_accuracy"])
    assert promoted["promoted_from"] == promoted["parent_id"] == best_child["id"] and promoted["operations"] == []
    assert promoted["prediction"]["reason"].startswith("Promoted") and "promoted" in promoted["description"]
    assert promoted["fingerprint"] == best_child["fingerprint"]
    started = [e for e in events if e["type"] == "trial_started" and e["trial_id"] in ("1", "2", "3", "4")]
    assert [e["proposal"]["fidelity"] for e in started] == [0.25, 0.25, 0.25, 1.0]
    # the final model is the best network trained on all the images
    assert summary["best"]["trial_id"] == "4"


@pytest.mark.slow
def test_a_tiny_real_search_trains_children_on_a_quarter_of_the_images_and_promotes_one(tmp_path):
    from engine.search import folder as runio
    from engine.search.config import SearchConfig
    from engine.search.loop import run_search

    events: list[dict] = []
    stop = threading.Event()

    def on_event(event: dict) -> None:
        events.append(event)
        if event["type"] == "trial_finished" and event["trial"]["id"] == "4":
            stop.set()  # the promotion is in: no fine-tune (it would double this test's time)

    config = SearchConfig(budget_s=240, searcher="bayesian", seed=0, image_size=8, max_epochs=1, max_trials=5,
                          fidelities=[0.25, 1.0])
    summary = run_search("sample", tmp_path / "run", config, events=on_event, stop=stop)
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    assert [r["fidelity"] for r in records] == [1.0, 0.25, 0.25, 0.25, 1.0] and summary["status"] == "stopped"
    assert records[4]["promoted_from"] == max(records[1:4], key=lambda r: r["val_accuracy"])["id"]
    started = next(e for e in events if e["type"] == "started")
    batch = started["recipe"]["batch_size"]
    n_batches = {e["trial_id"]: e["n_batches"] for e in events if e["type"] == "batch"}
    assert n_batches["1"] == math.ceil(round(0.25 * started["n_train"]) / batch)
    assert n_batches["0"] == n_batches["4"] == math.ceil(started["n_train"] / batch)
    assert summary["best"]["trial_id"] in ("0", "4")
