"""A pretrained start (issue 19): which start a run takes, and the run's side of it.

:func:`choose_start` decides, before the data is loaded at its final size, between the
search from scratch and a head searched over a pretrained trunk
(``SearchConfig.pretrained``: "auto", "none" or a weights file). "auto" takes the
pretrained start for colour images of at least :data:`AUTO_MIN_SIDE` pixels when weights
are at hand (cached or downloadable, ``engine.training.trunk.find_weights``); digits,
greyscale scans and small images keep the search from scratch. The :class:`Start` (kind,
reason in words, weights file, trunk input size) is saved in state.json.

:class:`PretrainedStart` is ``RunContext.pretrained`` for a pretrained run: it computes the
trunk's features once (``engine.training.features``), gives the trials those features
(``RunContext.train_data``) and a recipe for heads, seeds the search with a head, and at
the end builds the one model (trunk + best head), fine-tunes the top of its trunk on the
images and hands it to the finishing step.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from engine.errors import SproutError
from engine.nas.architecture import Architecture, Layer

AUTO_MIN_SIDE = 64            # "auto": the images' median shorter side must be at least this
SIZES = (96, 128, 160, 192, 224)
CPU_MAX_SIZE = 128            # bench/results/pretrained.md: 160 px costs ~1.6x the time of 128 on 2 cores
GPU_MAX_SIZE = 224
VIEWS = 3                     # augmented views of each training image in the feature cache
MAX_FEATURE_BYTES = 400 * 2**20  # fewer views when the training features would pass this
FINAL_SHARE = 0.3             # budget share kept for fine-tuning the trunk's top with the head
FINAL_STEPS_MAX = 600         # the fine-tune's optimiser steps at most, and at most FINAL_EPOCHS_FACTOR x the
FINAL_EPOCHS_FACTOR = 10      # recipe's final epochs: on a few hundred images 3x (45 epochs) left a third of the budget
FINE_TUNE_LR = 1e-4           # low: the trunk's ImageNet (or own) features must survive
TRAIN_COST = 2.0              # one training image costs this many forward passes (backward through the top, augment)
SETUP_S = 10.0                # building and tracing the whole model once


@dataclass
class Start:
    """How a run starts: ``kind`` "pretrained" or "scratch", ``reason`` in words, the
    weights file and where it came from, and the trunk's input size."""

    kind: str
    reason: str
    weights: str | None = None
    source: str = "none"
    image_size: int | None = None

    @property
    def pretrained(self) -> bool:
        return self.kind == "pretrained"

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict | None) -> "Start":
        d = d or {"kind": "scratch", "reason": "a run from before the pretrained start"}
        return Start(**{k: d[k] for k in ("kind", "reason", "weights", "source", "image_size") if k in d})


def trunk_size(report: Any, requested: int | None, gpu: bool) -> int:
    """The trunk's input size: ``requested`` when given (at least the trunk's minimum),
    else the largest of :data:`SIZES` not above the images' median shorter side (at least
    the smallest), capped for the device."""
    if requested:
        return max(32, int(requested))
    stats = getattr(report, "size_stats", None) or {}
    side = min(float(stats.get(k, {}).get("median", 0)) for k in ("width", "height")) if stats else 0.0
    fitting = [s for s in SIZES if s <= side] or [SIZES[0]]
    return min(fitting[-1], GPU_MAX_SIZE if gpu else CPU_MAX_SIZE)


def choose_start(choice: str, report: Any, requested_size: int | None = None, gpu: bool | None = None) -> Start:
    """The start for ``choice`` ("auto" | "none" | a weights file) and data with ``report``
    (a DataReport: channels, size_stats). A named file that is missing raises SproutError;
    "auto" without weights falls back to the search from scratch, saying why."""
    if choice == "none":
        return Start("scratch", "the search starts from scratch (the pretrained start is turned off)")
    channels = int(getattr(report, "channels", 3))
    stats = getattr(report, "size_stats", None) or {}
    side = min(float(stats.get(k, {}).get("median", 0)) for k in ("width", "height")) if stats else 0.0
    if choice == "auto":
        if channels != 3:
            return Start("scratch", "the search starts from scratch: the images are greyscale (like digits "
                                    "or scans), unlike the colour photos a pretrained network knows")
        if side < AUTO_MIN_SIDE:
            return Start("scratch", f"the search starts from scratch: the images are small ({side:g} px; a "
                                    f"pretrained start needs at least {AUTO_MIN_SIDE} px)")
    from engine.training import trunk as trunks  # TensorFlow: only once a pretrained start is possible

    weights = trunks.find_weights(choice)
    if weights.path is None:
        return Start("scratch", f"the search starts from scratch: {weights.message}")
    if gpu is None:
        from engine.training.device import device_name

        gpu = "gpu" in device_name().lower()
    size = trunk_size(report, requested_size, gpu)
    why = ("colour images" if channels == 3 else "greyscale images shown to it as colour") + f" of {side:g} px"
    return Start("pretrained", f"the search starts from a pretrained {trunks.NAME} trunk at {size}x{size} px "
                               f"for {why} ({weights.message}); it grows the head on the trunk's features",
                 weights=str(weights.path), source=weights.source, image_size=size)


def head_architecture(feature_shape: tuple[int, int, int], n_classes: int, filters: int = 128,
                      dropout: float = 0.2) -> Architecture:
    """The seed head over a pretrained trunk's feature map (issue 19): Conv1x1 -> BN -> ReLU
    -> GlobalAveragePooling -> Dropout -> Dense(n_classes) -> softmax.

    Global pooling and a dense layer are the classic head; the 1x1 convolution (fewer
    channels than the trunk's) gives the main chain a conv part, so the morphisms can grow
    the head with convolutions on the feature map, wider layers and skips, as they grow a
    network from scratch.

    >>> head_architecture((4, 4, 576), 5).summary()
    'conv128k1 | dense5'
    """
    h, w, c = (int(v) for v in feature_shape)
    if min(h, w) < 1 or c < 1:
        raise ValueError(f"expected a feature map of shape (h, w, channels), received {feature_shape}")
    if n_classes < 2:
        raise ValueError(f"expected at least 2 classes, received {n_classes}")
    kinds = [("conv", {"filters": int(filters), "kernel": 1, "stride": 1}), ("bn", {}), ("relu", {}), ("gap", {}),
             ("dropout", {"rate": dropout}), ("dense", {"units": n_classes}), ("softmax", {})]
    layers = [Layer(i + 1, kind, [i], config) for i, (kind, config) in enumerate(kinds)]
    return Architecture((h, w, c), n_classes, layers)


def views_for(n_train: int, feature_bytes: int) -> int:
    """Augmented views per training image, fewer where the features would not fit :data:`MAX_FEATURE_BYTES`."""
    return int(max(0, min(VIEWS, MAX_FEATURE_BYTES // max(1, n_train * feature_bytes) - 1)))


@dataclass
class PretrainedStart:
    """``RunContext.pretrained``: the trunk's cached features and what the run needs of it."""

    start: Start
    features: Any                 # a PreparedData of uint8 feature codes (the trials' data)
    trunk_weights: list[np.ndarray]
    quantizer: Any                # engine.training.features.Quantizer
    image_recipe: Any             # the recipe chosen from the images (the fine-tune's augmentation)
    head_recipe: Any              # the trials' recipe: no augmentation, epochs for the larger feature set
    images_per_s: float           # forward passes through the trunk per second, as measured
    views: int

    def seed_architecture(self, n_classes: int, filters: tuple[int, ...]) -> Architecture:
        """The seed head on the feature map (``filters[-1]`` channels in its 1x1 conv)."""
        return head_architecture(tuple(self.features.x_train.shape[1:]), n_classes, filters=int(filters[-1]))

    def epoch_s(self, n_images: int) -> float:
        """Estimated seconds of one fine-tune epoch over ``n_images`` images."""
        return TRAIN_COST * n_images / max(self.images_per_s, 1e-6)

    def reserve_s(self, budget: float, n_fit: int, n_test: int) -> tuple[float, float]:
        """(fine-tune, evaluation) seconds the search keeps for the final phase."""
        tune = max(FINAL_SHARE * budget, SETUP_S + 2 * self.epoch_s(n_fit))
        return tune, SETUP_S / 2 + n_test / max(self.images_per_s, 1e-6)

    def final_model(self, ctx, head: Architecture, stopped: bool) -> tuple[Any, bool, int]:
        """The model of trunk + ``head``, fine-tuned on training + validation images unless
        ``stopped`` or out of time: (model, fine-tuned?, epochs)."""
        from engine.training import features, trainer, trunk as trunks

        # Counted as a trial of the trainer's, so a search running beside this one (the app runs
        # two) does not clear the Keras session under the fine-tune (engine.training.trainer).
        trainer.session_enter()
        try:
            return self._final_model(ctx, head, stopped, features, trunks)
        finally:
            trainer.session_leave()

    def _final_model(self, ctx, head: Architecture, stopped: bool, features, trunks) -> tuple[Any, bool, int]:
        trunk = trunks.build_trunk(self.start.image_size)
        trunk.set_weights(self.trunk_weights)
        model = features.fused_model(trunk, head, self.quantizer)
        if stopped:
            return model, False, 0
        data = ctx.data
        x = np.concatenate([data.x_train, data.x_val])
        y = np.concatenate([data.y_train, data.y_val])
        evaluate = SETUP_S / 2 + len(data.y_test) / max(self.images_per_s, 1e-6)
        deadline = ctx.budget - evaluate
        steps = math.ceil(len(y) / self.image_recipe.batch_size)
        most = max(1, min(FINAL_STEPS_MAX // steps, FINAL_EPOCHS_FACTOR * max(1, int(self.image_recipe.final_epochs))))
        epochs = min(most, int((deadline - ctx.elapsed() - SETUP_S) // self.epoch_s(len(y))))
        if epochs < 1:
            ctx.say("no time left to fine-tune the trunk; the head keeps its searched weights")
            return model, False, 0
        ctx.say(f"fine-tuning the best head with the top of the trunk on training + validation images for "
                f"{epochs} epoch{'s' if epochs != 1 else ''} (learning rate {FINE_TUNE_LR:g})")
        result = _with_deadline(ctx, deadline, lambda stop, on_epoch: features.fine_tune(
            model, x, y, epochs, batch_size=self.image_recipe.batch_size, learning_rate=FINE_TUNE_LR,
            augment=self.image_recipe.augment(), seed=ctx.config.seed, on_epoch=on_epoch, stop=stop), epochs)
        ctx.timings.add("training_s", result.seconds)
        if result.status == "failed" or result.epochs < 1:
            ctx.say(f"fine-tuning did not finish ({result.error or result.status}); keeping the searched head")
            return model, False, 0
        return model, True, int(result.epochs)


def _with_deadline(ctx, deadline: float, run, epochs: int):
    """``run(stop, on_epoch)`` with ``stop`` set at the run's stop or ``deadline`` (RunContext.watching)."""
    stop = threading.Event()

    def on_epoch(epoch: int, logs: dict) -> None:
        ctx.emit("epoch", trial_id="final", epoch=epoch + 1, max_epochs=epochs, logs=dict(logs))

    ctx.emit("trial_started", trial_id="final", parent_id=None, max_epochs=epochs, proposal=None, operations=[],
             description="fine-tune the trunk's top with the best head on training + validation images")
    with ctx.watching(deadline, stop, "sprout-deadline-final"):
        return run(stop, on_epoch)


def begin(state: dict, data, recipe, seed: int, say, timings) -> PretrainedStart | None:
    """The run's :class:`PretrainedStart` when state.json's start is pretrained (None
    otherwise): the trunk with its weights and the features of every image, computed now."""
    start = Start.from_dict(state.get("start"))
    if not start.pretrained:
        return None
    from engine.training import features, trunk as trunks

    try:
        trunk = trunks.build_trunk(start.image_size, start.weights)
    except (OSError, SproutError) as exc:
        raise SproutError(f"the pretrained trunk could not be loaded: {exc}") from None
    feature_bytes = int(np.prod(trunk.output_shape[1:]))
    views = views_for(len(data.y_train), feature_bytes)
    with timings.timed("training_s"):  # forward passes through the trunk, once for the whole search
        got = features.feature_data(trunk, data.x_train, data.y_train, data.x_val, data.x_test, views,
                                    recipe.augment(), seed)
    n = len(got.x_train) + len(got.x_val) + len(got.x_test)
    state["features"] = {"seconds": round(got.seconds, 3), "images": n, "images_per_s": round(got.images_per_s, 1),
                         "views": views, "shape": list(got.x_train.shape[1:]), "quantizer": got.quantizer.to_dict()}
    scale = len(got.x_train) / max(1, len(data.y_train))
    head_recipe = replace(recipe, shift=0, flip=False,
                          seed_epochs=max(3, math.ceil(recipe.seed_epochs / scale)),
                          child_epochs=max(2, math.ceil(recipe.child_epochs / scale)))
    say(f"features: the trunk's {'x'.join(map(str, got.x_train.shape[1:]))} feature map of {n} images "
        f"({views} augmented view{'s' if views != 1 else ''} of each training image) in {got.seconds:.1f} s "
        f"({got.images_per_s:.0f} images/s); the trunk stays frozen while the head is searched, the first head "
        f"trains up to {head_recipe.seed_epochs} epochs over these features and each grown one up to "
        f"{head_recipe.child_epochs}")
    feats = replace(data, image_size=int(got.x_train.shape[1]), channels=int(got.x_train.shape[3]),
                    x_train=got.x_train, y_train=got.y_train, x_val=got.x_val, x_test=got.x_test)
    return PretrainedStart(start, feats, trunks.weights_of(trunk), got.quantizer, recipe, head_recipe,
                           got.images_per_s, views)
