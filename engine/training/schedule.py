"""The learning rate of one training run: constant or cosine, after an optional warm-up ramp."""

from __future__ import annotations

import keras


def learning_rate(config, steps_per_epoch: int):
    """The learning rate (or schedule) of ``config``: constant, or a cosine decay from
    ``learning_rate`` to ``learning_rate * min_lr_factor`` over ``max_epochs`` epochs; either after
    a linear ramp from ``learning_rate * min_lr_factor`` over ``warmup_steps`` steps (at most a
    quarter of the run's steps).

    Why cosine within a trial: a trial is scored at its end, and a decayed rate settles the
    weights into a better point than the same epochs at a constant rate (the child then
    restarts at the full rate from its parent's weights, like warm restarts).

    Why a ramp for a network that inherits trained weights: Adam's first updates move every
    weight by about the learning rate whatever its gradient (its moment estimates start from one
    batch), so the first steps push trained weights, and the zero weights that read a morphism's
    new units, as hard as a fresh network's (bench/results/inheritance-step.md)."""
    if config.schedule not in ("constant", "cosine"):
        raise ValueError(f"expected schedule 'constant' or 'cosine', received {config.schedule!r}")
    steps = max(1, int(config.max_epochs) * int(steps_per_epoch))
    warmup = min(int(config.warmup_steps), steps // 4)
    if config.schedule == "constant" and warmup == 0:
        return float(config.learning_rate)
    alpha = 1.0 if config.schedule == "constant" else float(config.min_lr_factor)  # alpha 1: no decay
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(float(config.learning_rate), decay_steps=steps, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        float(config.learning_rate) * float(config.min_lr_factor), decay_steps=steps - warmup, alpha=alpha,
        warmup_target=float(config.learning_rate), warmup_steps=warmup)
