"""The training recipe: augmentation, the mirror check, defaults from the data, overrides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.training.recipe import (CHILD_EPOCHS, SEED_EPOCHS, Recipe, check_overrides, choose_recipe, mirror_check,
                                    mirror_keeps_labels, parse_overrides, with_overrides)


def _arrows(n: int, side: int = 16, seed: int = 0, mirror_changes_label: bool = True):
    """Greyscale images of an arrow head pointing left (class 0) or right (class 1), at
    random heights and offsets, plus a filled disc (class 2). Mirroring turns a left arrow
    into a right one, so it changes the label; with ``mirror_changes_label=False`` the
    classes are discs, squares and crosses instead, which mirroring keeps."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, side, side, 1), np.uint8)
    y = rng.integers(0, 3, n)
    yy, xx = np.mgrid[:side, :side]
    for i in range(n):
        cy, cx = rng.integers(5, side - 5, 2)
        if mirror_changes_label:
            if y[i] == 2:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
            else:
                d = xx - cx if y[i] == 1 else cx - xx  # tip on the right for class 1
                shape = (np.abs(yy - cy) <= 4 - d) & (d >= -4) & (d <= 4) & (np.abs(yy - cy) <= d + 4) & (d >= 0)
                shape |= (np.abs(yy - cy) <= 1) & (d < 0) & (d >= -4)
        else:
            if y[i] == 0:
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
            elif y[i] == 1:
                shape = (np.abs(yy - cy) <= 3) & (np.abs(xx - cx) <= 3)
            else:
                shape = (((np.abs(yy - cy) <= 1) & (np.abs(xx - cx) <= 4))
                         | ((np.abs(xx - cx) <= 1) & (np.abs(yy - cy) <= 4)))
        x[i, ..., 0] = np.where(shape, 200 + rng.integers(0, 55), rng.integers(0, 30, (side, side)))
    return x, y


def test_mirror_check_tells_arrows_from_symmetric_shapes():
    x, y = _arrows(600, mirror_changes_label=True)
    chance, plain, mirrored = mirror_check(x[:450], y[:450], x[450:], y[450:])
    assert plain > chance + 0.2, "the linear classifier should learn the arrows"
    assert not mirror_keeps_labels(x[:450], y[:450], x[450:], y[450:])
    x, y = _arrows(600, mirror_changes_label=False)
    assert mirror_keeps_labels(x[:450], y[:450], x[450:], y[450:])


def test_mirror_check_on_digits_says_no():
    from tests.digits import digits_16px

    x, y = digits_16px(0)
    assert not mirror_keeps_labels(x[:1200], y[:1200], x[1200:], y[1200:])


def test_mirror_check_falls_back_when_it_cannot_tell():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 16, 16, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, 300)
    assert mirror_keeps_labels(noise[:200], labels[:200], noise[200:], labels[200:]) is False  # greyscale: no
    colour = rng.integers(0, 255, (300, 16, 16, 3), dtype=np.uint8)
    assert mirror_keeps_labels(colour[:200], labels[:200], colour[200:], labels[200:]) is True  # photos: yes
    assert mirror_keeps_labels(noise[:20], labels[:20], noise[20:30], labels[20:30]) is False  # too few to tell
    # Too few to tell on colour images: the same fallback as a check that tells nothing.
    assert mirror_keeps_labels(colour[:20], labels[:20], colour[20:30], labels[20:30]) is True


@pytest.mark.parametrize("side, n, device, shift, batch", [
    (28, 3500, "CPU (2 cores)", 2, 64),
    (16, 1300, "CPU (2 cores)", 1, 64),
    (64, 3000, "GPU (NVIDIA H200)", 4, 128),
    (32, 500, "GPU (NVIDIA H200)", 2, 32),
    (6, 1500, "CPU (2 cores)", 0, 64),
])
def test_choose_recipe_follows_the_data_and_device(side, n, device, shift, batch):
    x = np.zeros((n, side, side, 1), np.uint8)
    y = np.arange(n) % 3
    recipe = choose_recipe(x, y, x[:60], y[:60], device=device)
    assert (recipe.shift, recipe.batch_size) == (shift, batch)
    assert recipe.schedule == "cosine" and recipe.seed_epochs > recipe.child_epochs >= 2
    assert any("mirror" in r for r in recipe.reasons)
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def _recipe_for(n: int):
    """(recipe, batches per epoch) for ``n`` blank 8x8 training images on a 2-core CPU."""
    x = np.zeros((n, 8, 8, 1), np.uint8)
    y = np.arange(n) % 3
    recipe = choose_recipe(x, y, x[:60], y[:60], device="CPU (2 cores)")
    return recipe, -(-n // recipe.batch_size)


def test_trial_epochs_follow_optimiser_steps_within_their_bounds():
    sizes = [100, 1000, 2000, 4000, 8000, 100_000]
    recipes = [_recipe_for(n)[0] for n in sizes]
    for recipe in recipes:
        assert SEED_EPOCHS[0] <= recipe.seed_epochs <= SEED_EPOCHS[1]
        assert CHILD_EPOCHS[0] <= recipe.child_epochs <= CHILD_EPOCHS[1]
        assert recipe.seed_epochs > recipe.child_epochs  # the seed learns from scratch, a child inherits
        assert recipe.final_epochs == recipe.child_epochs  # the fine-tune is as long as a child
    for smaller, larger in zip(recipes, recipes[1:]):  # more data: no more epochs
        assert larger.seed_epochs <= smaller.seed_epochs and larger.child_epochs <= smaller.child_epochs
    assert (recipes[0].seed_epochs, recipes[0].child_epochs) == (SEED_EPOCHS[1], CHILD_EPOCHS[1])  # tiny: the most
    assert (recipes[-1].seed_epochs, recipes[-1].child_epochs) == (SEED_EPOCHS[0], CHILD_EPOCHS[0])  # huge: the least


@pytest.mark.parametrize("n", [1000, 1300])
def test_trial_epochs_scale_inversely_with_steps_per_epoch(n):
    # Within the bounds, four times the batches per epoch give about a quarter of the
    # epochs: a trial takes about the same number of optimiser steps whatever the data size
    # (each count is rounded to whole epochs, so they differ by up to half an epoch each).
    (few, few_steps), (many, many_steps) = _recipe_for(n), _recipe_for(4 * n)
    assert many.child_epochs < few.child_epochs and many.seed_epochs < few.seed_epochs
    for attr in ("seed_epochs", "child_epochs"):
        steps_few, steps_many = getattr(few, attr) * few_steps, getattr(many, attr) * many_steps
        assert abs(steps_few - steps_many) <= (few_steps + many_steps) / 2, (attr, steps_few, steps_many)


def test_choose_recipe_rejects_float_images():
    with pytest.raises(ValueError, match="expected uint8 images"):
        choose_recipe(np.zeros((10, 8, 8, 1)), np.zeros(10), np.zeros((5, 8, 8, 1)), np.zeros(5))


def test_overrides_are_parsed_checked_and_noted():
    assert parse_overrides("flip=false, shift=0,schedule=constant") == {"flip": False, "shift": 0,
                                                                         "schedule": "constant"}
    recipe = with_overrides(Recipe(shift=2, flip=True), {"flip": False})
    assert recipe.flip is False and recipe.shift == 2 and "flip = False (set explicitly)" in recipe.reasons
    for bad, words in [("flip=maybe", "true or false"), ("shift=two", "whole number"), ("colour=1", "key=value"),
                       ("schedule=linear", "'constant' or 'cosine'"), ("child_epochs=0", "at least 1")]:
        with pytest.raises(ValueError, match=words):
            parse_overrides(bad)
    with pytest.raises(ValueError, match="unknown recipe setting"):
        check_overrides({"momentum": 0.9})


def test_augment_shifts_and_mirrors_without_touching_the_input():
    from engine.training.batches import Augment

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (200, 9, 9, 3), dtype=np.uint8)
    before = x.copy()
    out = Augment(shift=2).apply(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.uint8 and np.array_equal(x, before)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    for i in range(len(x)):  # each output is a 9x9 window of the padded image
        assert any(np.array_equal(out[i], padded[i, dy:dy + 9, dx:dx + 9]) for dy in range(5) for dx in range(5))
    assert np.mean([np.array_equal(out[i], x[i]) for i in range(len(x))]) < 0.2  # most did move
    flipped = Augment(flip=True).apply(x, np.random.default_rng(2))
    mirrored = np.array([np.array_equal(flipped[i], x[i, :, ::-1]) for i in range(len(x))])
    unchanged = np.array([np.array_equal(flipped[i], x[i]) for i in range(len(x))])
    assert np.all(mirrored | unchanged) and 0.3 < mirrored.mean() < 0.7
    with pytest.raises(ValueError, match="at least 0 pixels"):
        Augment(shift=-1)


def test_batches_augment_training_batches_only():
    from engine.training.batches import Augment, Batches

    x = np.random.default_rng(0).integers(0, 255, (64, 8, 8, 1), dtype=np.uint8)
    y = np.arange(64) % 4
    plain = Batches(x, y, 64, augment=Augment(shift=2, flip=True))  # no shuffle: validation-style
    xb, yb = plain[0]
    assert np.array_equal(xb, x) and np.array_equal(yb, y)
    shuffled = Batches(x, y, 64, shuffle=True, seed=0, augment=Augment(shift=2, flip=True))
    xa, ya = shuffled[0]
    order = np.sort(np.random.default_rng(0).permutation(64))
    assert np.array_equal(ya, y[order]) and not np.array_equal(xa, x[order])


def test_cosine_schedule_ends_at_the_floor():
    import keras

    from engine.training.trainer import TrainConfig, _learning_rate

    assert _learning_rate(TrainConfig(learning_rate=1e-3), 10) == pytest.approx(1e-3)
    schedule = _learning_rate(TrainConfig(learning_rate=1e-3, schedule="cosine", max_epochs=3, min_lr_factor=0.1), 10)
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(1e-3)
    assert float(keras.ops.convert_to_numpy(schedule(30))) == pytest.approx(1e-4, rel=1e-4)
    with pytest.raises(ValueError, match="'constant' or 'cosine'"):
        _learning_rate(TrainConfig(schedule="step"), 10)


def test_a_warmup_ramps_the_rate_up_from_the_floor_then_the_schedule_runs_its_course():
    import keras

    from engine.training.trainer import TrainConfig, _learning_rate

    def at(schedule, step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    cosine = _learning_rate(TrainConfig(learning_rate=1e-3, schedule="cosine", max_epochs=4, min_lr_factor=0.1,
                                        warmup_steps=10), 20)
    assert at(cosine, 0) == pytest.approx(1e-4) and at(cosine, 5) == pytest.approx(5.5e-4)
    assert at(cosine, 10) == pytest.approx(1e-3) and at(cosine, 45) < at(cosine, 10)
    assert at(cosine, 80) == pytest.approx(1e-4, rel=1e-4)  # the floor at the trial's last step
    constant = _learning_rate(TrainConfig(learning_rate=1e-3, max_epochs=4, min_lr_factor=0.1, warmup_steps=10), 20)
    assert at(constant, 0) == pytest.approx(1e-4) and at(constant, 10) == at(constant, 80) == pytest.approx(1e-3)
    # never more than a quarter of the run: 2 epochs of 10 steps ramp over 5
    short = _learning_rate(TrainConfig(learning_rate=1e-3, schedule="cosine", max_epochs=2, warmup_steps=20), 10)
    assert at(short, 5) == pytest.approx(1e-3)


@pytest.mark.slow
def test_a_search_records_its_recipe_and_says_why(tmp_path, monkeypatch):
    from engine.search.loop import SearchConfig, run_search
    from tests.digits import digits_16px

    x, y = digits_16px(1)
    root = tmp_path / "data"
    from PIL import Image

    for i in range(300):
        folder = root / f"d{y[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, ..., 0]).save(folder / f"{i}.png")
    messages = []
    out = tmp_path / "run"
    # Short seed and fine-tune: the point is the recipe on record, not the training.
    config = SearchConfig(budget_s=25, max_trials=1,
                          recipe={"flip": True, "child_epochs": 2, "seed_epochs": 2, "final_epochs": 1})
    summary = run_search(root, out, config, events=lambda e: messages.append(e))
    state = json.loads((out / "state.json").read_text())
    assert state["recipe"]["flip"] is True and state["recipe"]["child_epochs"] == 2 and state["recipe"]["shift"] == 1
    started = next(e for e in messages if e["type"] == "started")
    assert started["recipe"] == state["recipe"]
    assert any(e["type"] == "log" and e["message"].startswith("recipe: ") for e in messages)
    assert summary["status"] in ("done", "stopped")


def test_a_large_set_from_scratch_is_not_augmented_and_a_small_one_still_is():
    # 12,000 images of 10 classes (1,200 a class): plain; the same images in 20 classes (600 a
    # class), a set of 3,500, or a pretrained start keep today's shift (and the mirror check's say)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12_000, 16, 16, 1), dtype=np.uint8)
    ten, twenty = np.arange(12_000) % 10, np.arange(12_000) % 20
    large = choose_recipe(x, ten, x[:200], ten[:200], device="CPU (2 cores)")
    assert (large.shift, large.flip) == (0, False)
    assert any("not shifted or mirrored" in r and "12,000" in r for r in large.reasons)
    for recipe in (choose_recipe(x, twenty, x[:200], twenty[:200], device="CPU (2 cores)"),
                   choose_recipe(x[:3500], ten[:3500], x[:200], ten[:200], device="CPU (2 cores)"),
                   choose_recipe(x, ten, x[:200], ten[:200], device="CPU (2 cores)", from_scratch=False)):
        assert recipe.shift == 1 and any("mirror" in r for r in recipe.reasons)
        assert not any("not shifted or mirrored" in r for r in recipe.reasons)
