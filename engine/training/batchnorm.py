"""BatchNorm statistics computed from training images before each validation (small data sets).

Why. In inference mode a BatchNormalization layer normalises with its *moving* mean and
variance, an exponential average (momentum 0.9, ``engine.training.model.BN_MOMENTUM``) of
the statistics of recent training batches. While the weights change fast, early in a
trial, that average describes older weights. On a few hundred images an epoch is 6-8
steps and the lag lasts for epochs: measured on 244 generated 64 px colour images of two
classes (batches of 32), the seed predicted one class in inference mode (training images
0.50, validation 0.50) for the first six epochs while it already scored 0.63-0.79 on the
training images with statistics recomputed from them; early stopping then ended it after
three epochs. On thousands of images an epoch has enough steps for the average to catch
up, so :func:`needed` limits the recomputation to short epochs (nothing changes there).

How. :func:`recompute` runs the model in training mode over a fixed sample of training
images (not augmented: inference sees plain images), with each layer's momentum set so
that its moving statistics become the mean of the batch statistics over the sample
(PyTorch users know this as "precise BN"). One forward pass, backend-neutral: only public
Keras layer attributes and ``keras.ops``. Dropout is active in that pass too; it does not
matter because in Sprout's networks BatchNorm follows convolutions only and dropout sits
in the dense head after them (engine.nas.architecture.seed_architecture).

>>> needed(steps_per_epoch=8), needed(steps_per_epoch=20)
(True, False)
"""

from __future__ import annotations

import numpy as np

from engine.training import device  # noqa: F401 - sets up the backend before Keras is first used
import keras  # noqa: E402

#: Epochs of fewer optimiser steps than this get their BatchNorm statistics recomputed
#: before validation. The moving statistics were measured to be right at 20 steps an
#: epoch (1,260 digits in batches of 64: 0.92 validation accuracy); the recomputation
#: would cost those epochs ~20% (0.13-0.2 s a 1 s epoch on 2 CPU cores), so they and
#: larger sets (fashion-mnist-small: 55 steps) are left alone.
MAX_STEPS = 20
#: Training images the statistics are computed from at most (a fixed random sample), in
#: one batch: ~0.15 s on 2 CPU cores at 64 px, ~15% of an epoch of 244 images (two
#: batches of 64 took 0.2 s: in eager mode a call has a fixed cost).
SAMPLE_IMAGES = 128


def needed(steps_per_epoch: int) -> bool:
    """Whether epochs of ``steps_per_epoch`` steps are too short for the moving statistics."""
    return int(steps_per_epoch) < MAX_STEPS


def batchnorm_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def sample(x: np.ndarray, seed: int = 0, n: int = SAMPLE_IMAGES) -> np.ndarray:
    """At most ``n`` images of ``x`` (a copy), chosen at random with ``seed``, in their order in ``x``."""
    if len(x) <= n:
        return x
    return np.take(x, np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False)), axis=0)


def recompute(model, x: np.ndarray, batch_size: int) -> None:
    """Set the moving mean and variance of every BatchNormalization layer of ``model`` to
    the size-weighted mean of its batch statistics over ``x`` in batches of ``batch_size``.

    Each batch is normalised with its own statistics (training mode), as in training; the
    variance is the mean of the batch variances, which leaves out the (small, for batches
    of dozens of images) spread of the batch means."""
    layers = batchnorm_layers(model)
    if not layers or len(x) == 0:
        return
    momenta = [layer.momentum for layer in layers]
    seen = 0
    try:
        for start in range(0, len(x), int(batch_size)):
            batch = x[start:start + int(batch_size)]
            # new = old * m + batch * (1 - m) with m = seen / (seen + n): a running mean over
            # the images so far (m = 0 for the first batch forgets the old statistics).
            for layer in layers:
                layer.momentum = seen / (seen + len(batch))
            model(keras.ops.convert_to_tensor(batch), training=True)
            seen += len(batch)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


class RecomputeBeforeValidation(keras.callbacks.Callback):
    """Recomputes the BatchNorm statistics from ``x`` (see :func:`recompute`) when a
    validation starts: Keras calls ``on_test_begin`` after an epoch's last step and before
    its validation, so the validation, early stopping (whose best weights include the
    statistics) and the weights read back after ``fit`` all see the recomputed statistics."""

    def __init__(self, x: np.ndarray, batch_size: int = SAMPLE_IMAGES):
        super().__init__()
        self.x, self.batch_size = x, int(batch_size)

    def on_test_begin(self, logs=None):
        recompute(self.model, self.x, self.batch_size)


def is_untrained_identity(layer) -> bool:
    """Whether a BatchNormalization layer holds exactly the identity weights that the deeper
    morphism gives a new layer (engine.nas.surgery): scale 1, offset 0, moving mean 0 and
    moving variance 1 - epsilon. No layer that has trained keeps all four."""
    gamma, beta, mean, var = layer.get_weights()
    return (np.all(gamma == 1.0) and np.all(beta == 0.0) and np.all(mean == 0.0)
            and np.allclose(var, 1.0 - layer.epsilon, rtol=0, atol=1e-7))


def match_inputs(model, x: np.ndarray) -> int:
    """Give every new BatchNormalization layer of ``model`` (see :func:`is_untrained_identity`)
    the mean and variance of its input over the images ``x`` as its moving statistics, and
    offset and scale that undo them; returns how many layers it set.

    Why. The identity weights keep the network's function in inference mode only. In training
    mode the layer normalises with each batch's statistics, so from the first step a deepened
    child computes something else than its parent and its training starts from a disrupted
    network: measured on the sample (16 px digits), a child of a 0.94 parent validated at 0.13-0.24
    after 1-2 epochs and 0.61 after 3. With the statistics of its input, the layer is the identity
    in both modes (up to the spread between batches), as the morphism intends (DESIGN §3)."""
    fresh = [layer for layer in batchnorm_layers(model) if is_untrained_identity(layer)]
    if not fresh or len(x) == 0:
        return 0
    probe = keras.Model(model.inputs[0], [layer.input for layer in fresh])  # one input: no structure warning
    outputs = probe(keras.ops.convert_to_tensor(x), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for layer, out in zip(fresh, outputs):
        a = np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)
        axes = tuple(range(a.ndim - 1))
        mean, var = a.mean(axis=axes), a.var(axis=axes)
        scale = np.sqrt(var + layer.epsilon)
        layer.set_weights([w.astype(np.float32) for w in (scale, mean, mean, var)])
    return len(fresh)
