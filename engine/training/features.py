"""Searching a head over a frozen trunk: the trunk's features, computed once, and the
one model (trunk + head) that is fine-tuned and exported at the end (issue 19).

While the search runs the trunk is frozen, so its feature map of every image is the same
in every trial: :func:`extract` computes it once, in batches, for the training images (plus
a few augmented views of them: the trials cannot shift or mirror a feature map), the
validation and the test images. The features are stored as uint8 (:class:`Quantizer`:
an affine map of the training features' range onto 0-255), which lets the trainer, its
batches and the IR treat a feature map exactly like an image: the head is an
:class:`~engine.nas.architecture.Architecture` whose input is the ``(h, w, 576)`` map, and
its model's own ``Rescaling(1/255)`` turns the codes back into [0, 1].

:func:`fused_model` puts the trunk and the head into one plain Keras model on raw uint8
images: trunk -> ``Rescaling`` (the quantizer's affine map, unrounded) -> ``ReLU(max 1)``
(its clipping) -> the head's layers; built-in layers only, so it loads with safe mode.
:func:`fine_tune` trains it on images with the top of the trunk unfrozen.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.training import device  # noqa: F401 - sets up the backend before Keras is first used
import keras  # noqa: E402

from engine.nas.architecture import Architecture  # noqa: E402
from engine.training import trunk as trunks  # noqa: E402
from engine.training.batches import Augment, Batches  # noqa: E402
from engine.training.model import apply_layers, set_weights  # noqa: E402

HIGH_PERCENTILE = 99.99  # the top of the quantizer's range: a few outlying activations are clipped
EXTRACT_BATCH = 64


@dataclass(frozen=True)
class Quantizer:
    """uint8 codes of float features: ``code = clip(round((f - low) / step), 0, 255)``."""

    low: float
    step: float

    @staticmethod
    def fit(features: np.ndarray) -> "Quantizer":
        """The quantizer spanning ``features`` (their minimum up to a high percentile)."""
        low = float(np.min(features))
        high = float(np.percentile(features, HIGH_PERCENTILE))
        return Quantizer(low, max(high - low, 1e-6) / 255.0)

    def apply(self, features: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((features - self.low) / self.step), 0, 255).astype(np.uint8)

    @property
    def scale(self) -> float:
        """Rescaling's scale from features to ``code / 255`` (unrounded)."""
        return 1.0 / (255.0 * self.step)

    @property
    def offset(self) -> float:
        return -self.low / (255.0 * self.step)

    def to_dict(self) -> dict:
        return {"low": self.low, "step": self.step}


def extractor(trunk):
    """A model from raw uint8 images to the trunk's float feature map."""
    size = int(trunk.input_shape[1])
    image = keras.Input((size, size, 3), dtype="uint8", name="image")
    return keras.Model(image, trunk(keras.layers.Rescaling(1.0, name="to_float")(image)), name="features")


def extract(model, images: np.ndarray, batch_size: int = EXTRACT_BATCH) -> np.ndarray:
    """The float32 feature maps of uint8 ``images`` through :func:`extractor`'s ``model``.

    Every batch has ``batch_size`` images (the last one padded with zeros, its padding
    dropped from the result), so the model is traced once for all the calls of a run
    rather than once per new last-batch size."""
    n = len(images)
    full = n - n % batch_size
    parts = [np.zeros((0, *model.output_shape[1:]), np.float32)]
    if full:
        parts.append(model.predict(Batches(images[:full], None, batch_size), verbose=0))
    if n > full:
        last = np.zeros((batch_size, *images.shape[1:]), images.dtype)
        last[: n - full] = images[full:]
        parts.append(model.predict(Batches(last, None, batch_size), verbose=0)[: n - full])
    return np.concatenate(parts).astype(np.float32, copy=False)


@dataclass
class FeatureData:
    """uint8 feature codes for a search: training codes (the images, then each augmented
    view of them), validation and test codes, the quantizer and how long it took."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    quantizer: Quantizer
    seconds: float
    images_per_s: float  # forward passes per second through the trunk, once it is traced


def feature_data(trunk, x_train, y_train, x_val, x_test, views: int, augment: Augment | None,
                 seed: int = 0) -> FeatureData:
    """:class:`FeatureData` of the images: ``views`` augmented copies of the training images
    (``augment``'s shifts and mirroring) are added to the training features."""
    t = time.monotonic()
    model = extractor(trunk)
    rng = np.random.default_rng(seed)
    parts = [extract(model, x_train)]
    # The speed is measured on the augmented views: same batch shapes as the first pass, so
    # nothing is traced again (the first pass and every call with a new last batch retrace).
    traced = time.monotonic()
    for _ in range(views if augment is not None and augment.active else 0):
        parts.append(extract(model, augment.apply(x_train, rng)))
    viewed = time.monotonic()
    train = np.concatenate(parts)
    quantizer = Quantizer.fit(train)
    val, test = extract(model, x_val), extract(model, x_test)
    end = time.monotonic()
    n = len(train) + len(val) + len(test)
    speed = ((len(parts) - 1) * len(x_train) / max(viewed - traced, 1e-6) if len(parts) > 1
             else n / max(end - t, 1e-6))
    return FeatureData(quantizer.apply(train), np.tile(np.asarray(y_train), len(parts)), quantizer.apply(val),
                       quantizer.apply(test), quantizer, end - t, speed)


def fused_model(trunk, head: Architecture, quantizer: Quantizer):
    """One Keras model on raw uint8 images: ``trunk``, the quantizer's map and ``head``
    (with its weights), named ``sprout`` like every Sprout model."""
    size = int(trunk.input_shape[1])
    image = keras.Input((size, size, 3), dtype="uint8", name="image")
    x = trunk(keras.layers.Rescaling(1.0, name="to_float")(image))
    x = keras.layers.Rescaling(quantizer.scale, offset=quantizer.offset, name="feature_scale")(x)
    x = keras.layers.ReLU(max_value=1.0, name="feature_clip")(x)
    model = keras.Model(image, apply_layers(head, x), name="sprout")
    set_weights(model, head)
    return model


class _Progress(keras.callbacks.Callback):
    """Reports epochs, stops before the next batch once ``stop`` is set, and ends on a NaN loss."""

    def __init__(self, on_epoch, stop: threading.Event | None):
        super().__init__()
        self.on_epoch, self.stop, self.diverged = on_epoch, stop, False

    def on_train_batch_begin(self, batch, logs=None):
        if self.stop is not None and self.stop.is_set():
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if not math.isfinite(logs.get("loss", 0.0)):
            self.diverged = self.model.stop_training = True
            return
        if self.on_epoch is not None:
            self.on_epoch(epoch, logs)


@dataclass
class FineTuneResult:
    epochs: int
    status: str  # "ok" | "stopped" | "failed"
    error: str | None
    history: dict
    seconds: float


def fine_tune(model, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 32, learning_rate: float = 1e-4,
              augment: Augment | None = None, seed: int = 0, on_epoch: Callable[[int, dict], None] | None = None,
              stop: threading.Event | None = None) -> FineTuneResult:
    """Train ``model`` (from :func:`fused_model`) on uint8 images with the top of its trunk
    unfrozen (:func:`engine.training.trunk.set_top_trainable`) at a low, cosine-annealed
    learning rate, no early stopping. A NaN loss or an error puts the weights back as they
    were (status "failed"); ``stop`` ends it before the next batch (status "stopped",
    the weights as they are)."""
    started = time.monotonic()
    before = model.get_weights()
    trunks.set_top_trainable(trunks.trunk_of(model))
    batches = Batches(x, y, batch_size, shuffle=True, seed=seed, augment=augment)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * len(batches)),
                                                      alpha=0.05)
    keras.utils.set_random_seed(int(seed))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    progress = _Progress(on_epoch, stop)
    try:
        fit = model.fit(batches, epochs=int(epochs), verbose=0, callbacks=[progress])
        history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    except Exception as exc:  # noqa: BLE001 - a failed fine-tune keeps the searched model
        model.set_weights(before)
        return FineTuneResult(0, "failed", f"training failed: {type(exc).__name__}: {str(exc)[:200]}", {},
                              time.monotonic() - started)
    if progress.diverged:
        model.set_weights(before)
        return FineTuneResult(0, "failed", "the loss became NaN (training diverged)", history,
                              time.monotonic() - started)
    done = len(history.get("loss", []))
    status = "stopped" if stop is not None and stop.is_set() else "ok"
    return FineTuneResult(done, status, None, history, time.monotonic() - started)
