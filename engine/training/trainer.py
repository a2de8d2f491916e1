"""Training one architecture: Keras ``fit`` on the cached uint8 arrays, no copies.

:func:`train` builds the Keras model of an :class:`~engine.nas.architecture.Architecture`,
fits it with Adam and sparse categorical cross-entropy, stops early on validation loss
(restoring the best weights; patience at least ``patience_steps`` optimiser steps) and,
on epochs of few steps, recomputes the BatchNorm statistics before each validation
(``engine.training.batchnorm``). It returns a :class:`TrainResult` holding the trained
(weighted) architecture, the per-epoch curves and a *score*. It never raises for what a
trial can do wrong: a diverging loss, running out of memory or a stop request become the
result's ``status``; only bad arguments and errors raised by the caller's own callbacks
escape.

Data. The arrays are the data module's cached uint8 images ``(n, h, w, c)`` and integer
labels. Each epoch visits them in a fresh random order through
:class:`engine.training.batches.Batches`, which gathers one batch at a time by index, so neither
an epoch nor a trial copies the data set. The model itself rescales the uint8 pixels.
Scoring a trained model (``predict``, ``evaluate``, ``scores``) lives in
``engine.training.evaluation``.

Backends. Everything goes through backend-neutral Keras (``keras.ops``, PyDataset), so
the same code trains on TensorFlow, JAX or PyTorch. What is backend-specific is set up
once by ``engine.training.device`` (TensorFlow: memory growth on its GPUs; JAX: no GPU memory
preallocation) or guarded where it is used (:func:`_adam` works around a
TensorFlow leak that otherwise cost ~12 MB per trial).

Memory. Each trial builds its own model; train() clears the Keras session around it and
collects garbage, and holds on to nothing but the weights it returns, so a long search
stays flat (tests/test_trainer.py runs 6 trials and bounds the growth; bench/memory.py runs 100).

Example (doctest skipped: it trains):

>>> from engine.nas.architecture import seed_architecture
>>> result = train(seed_architecture((16, 16, 1), 10), x, y, xv, yv, TrainConfig(max_epochs=3))  # doctest: +SKIP
>>> result.status, len(result.history["val_accuracy"]) == result.epochs  # doctest: +SKIP
('ok', True)
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine.training import device  # noqa: F401 - sets up the backend (and its environment) before Keras is imported
import keras  # noqa: E402

from engine.nas.architecture import Architecture, init_weights  # noqa: E402

from engine.training import batchnorm  # noqa: E402
from engine.training.schedule import learning_rate as _learning_rate  # noqa: E402
from engine.training.batches import Augment, Batches  # noqa: E402
from engine.training.scoring import kept_score  # noqa: E402
from engine.training.model import build_model, read_weights  # noqa: E402

log = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
NAN_ERROR = "the loss became NaN (training diverged)"
OOM_ERROR = "out of memory: the network is too large for this machine at this batch size"

#: Least time between two ``on_batch`` reports (seconds); tests set it to 0.
BATCH_REPORT_INTERVAL_S = 0.25
#: Least time between two mid-epoch checks of the running loss and the weights for
#: NaN/inf (each one waits for the device, so not after every batch; every epoch end is
#: checked as well).
NAN_CHECK_INTERVAL_S = 2.0
#: XLA compilation of the train step. Keras' "auto" turns it on where it helps (GPUs) and
#: off on a CPU-only TensorFlow. Forced on, this 2-core CPU trained the 28x28 seed at
#: ~690 images/s instead of ~2000, and the first epoch of every trial took 20 s instead
#: of 2.5 s (bench/trainer.py).
JIT_COMPILE: bool | str = "auto"
#: Validation and prediction batches are this many times the training batch: inference
#: keeps no activations for a backward pass, so it fits, and it is faster.
EVAL_BATCH_FACTOR = 2


@dataclass
class TrainConfig:
    max_epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 2  # early stopping on val_loss, in epochs; at least patience_steps optimiser steps
    patience_steps: int = 40
    score_epochs: int = 2  # score = mean val_accuracy of the last `score_epochs` epochs run
    score: str = "last"  # "last": as above; "kept": val_accuracy of the epoch whose weights are returned
    seed: int = 0
    augment: "Augment | None" = None  # random shifts / mirroring of training batches
    schedule: str = "constant"  # "constant" or "cosine" (decays over max_epochs to lr * min_lr_factor)
    min_lr_factor: float = 0.05
    subset: "np.ndarray | None" = None  # rows of x_train to train on (None: all; engine.search.fidelity)
    warmup_steps: int = 0  # the rate ramps up from lr * min_lr_factor over these first steps (issue 14)


@dataclass
class TrainResult:
    architecture: Architecture  # weighted (trained weights read back); the input arch when failed
    status: str  # "ok" | "failed" | "stopped"
    error: str | None  # plain words when failed
    out_of_memory: bool
    history: dict[str, list[float]] = field(default_factory=dict)  # loss, accuracy, val_loss, val_accuracy
    epochs: int = 0
    score: float | None = None
    seconds: float = 0.0


def _patience(config: TrainConfig, steps_per_epoch: int) -> int:
    """Early stopping's patience in epochs: ``config.patience``, or more epochs where that is
    fewer than ``config.patience_steps`` optimiser steps.

    Why steps: on a few hundred images an epoch is 6-8 steps and the validation loss of a
    few dozen images jumps between epochs; 2 epochs ended the seed after 3 epochs while its
    validation loss went on improving for 20 (2 classes of 244 64 px colour images, 0.69 to
    0.55; tests/test_small_sets.py). 40 steps leave 2 epochs on 1,260 digits in batches of
    64 (20 steps) and fashion-mnist-small (55) unchanged."""
    return max(int(config.patience), math.ceil(int(config.patience_steps) / max(1, int(steps_per_epoch))))


def _adam(learning_rate):
    """Adam, minus a TensorFlow leak.

    On TensorFlow, Keras' optimizer all-reduces the gradients across replicas even under
    the default (single-replica) strategy; that all-reduce is a ``tf.custom_gradient``,
    which registers its gradient function in TensorFlow's process-wide gradient registry
    and never removes it. The registered closure holds the gradient tensors and through
    them the whole traced train step, so every trial leaked its graph: ~12 MB per trial
    for the seed network, whatever clear_session() and gc did. With one replica the
    all-reduce is a sum over one term, the identity, so it is skipped.
    """
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if keras.backend.backend() == "tensorflow" and hasattr(optimizer, "_all_reduce_sum_gradients"):
        import tensorflow as tf

        if tf.distribute.get_strategy().num_replicas_in_sync == 1:
            optimizer._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)
    return optimizer


# ----- failures -------------------------------------------------------------------------
class _Stopped(Exception):
    """Raised inside fit when the stop event is set: leaves at once, skipping validation."""


class _Diverged(Exception):
    """Raised inside fit when the loss is NaN or infinite."""


class _CallerError(Exception):
    """Wraps an exception raised by the caller's on_epoch/on_batch, which is re-raised."""

    def __init__(self, error: BaseException):
        super().__init__(repr(error))
        self.error = error


def is_out_of_memory(error: BaseException) -> bool:
    """True when ``error`` (or one it was raised from) says the device ran out of memory:
    TensorFlow's ResourceExhaustedError, MemoryError, or a message like JAX's
    ``RESOURCE_EXHAUSTED: Out of memory`` or PyTorch's ``CUDA out of memory``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MemoryError) or type(error).__name__ in ("ResourceExhaustedError", "OutOfMemoryError"):
            return True
        text = str(error).lower()
        if any(words in text for words in ("out of memory", "resource_exhausted", "resource exhausted", "oom when")):
            return True
        error = error.__cause__ or error.__context__
    return False


def _plain(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


def _weights_finite(model) -> bool:
    """Whether every weight (BatchNorm statistics included) is finite.

    The loss alone does not tell: Keras' cross-entropy clips the predicted probabilities,
    so a network whose weights (and outputs) are all NaN reports a finite loss of ln(n_classes)."""
    # One reduction per weight and one transfer: a NaN or inf anywhere makes the total
    # non-finite (so does a finite overflow past 1e38, which is divergence as well).
    ops = keras.ops
    sums = [ops.sum(w) for w in model.weights if "float" in str(w.dtype)]
    return bool(np.isfinite(ops.convert_to_numpy(ops.sum(ops.stack(sums))))) if sums else True


# ----- the callback ---------------------------------------------------------------------
class _Monitor(keras.callbacks.Callback):
    """Publishes progress, honours the stop event and catches NaN (in the loss or the
    weights), between batches.

    It leaves ``on_train_batch_end`` alone on purpose: a callback that defines it makes
    Keras wait for every batch's result before dispatching the next (on a GPU that costs
    throughput). ``on_train_batch_begin(b)`` is called synchronously right before batch
    ``b`` runs, which is exactly where a stop request must be seen: Keras itself would
    only look at ``model.stop_training`` after the batch *and* would then still validate,
    so a stop here raises instead and ends training before another batch starts.
    """

    def __init__(self, n_batches: int, history: dict, on_epoch, on_batch, stop):
        super().__init__()
        self.n_batches, self.history = n_batches, history
        self.on_epoch, self.on_batch, self.stop = on_epoch, on_batch, stop
        self._last_report = self._last_check = time.monotonic()

    def _call(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:
            if is_out_of_memory(e):
                raise
            raise _CallerError(e) from e

    def on_train_batch_begin(self, batch, logs=None):
        now = time.monotonic()
        if self.on_batch is not None and batch > 0 and now - self._last_report >= BATCH_REPORT_INTERVAL_S:
            self._last_report = now
            self._call(self.on_batch, batch - 1, self.n_batches)
        if self.stop is not None and self.stop.is_set():
            raise _Stopped()
        if batch > 0 and now - self._last_check >= NAN_CHECK_INTERVAL_S:
            self._last_check = now
            sync = getattr(self.model, "jax_state_sync", None)  # JAX keeps the state off the model mid-epoch
            if sync is not None:
                sync()
            loss = self.model.get_metrics_result().get("loss")
            if (loss is not None and not math.isfinite(float(loss))) or not _weights_finite(self.model):
                raise _Diverged()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if not all(math.isfinite(logs.get(k, 0.0)) for k in ("loss", "val_loss")) or not _weights_finite(self.model):
            raise _Diverged()
        for key in HISTORY_KEYS:
            self.history[key].append(logs.get(key, float("nan")))
        if self.on_batch is not None:
            self._last_report = time.monotonic()
            self._call(self.on_batch, self.n_batches - 1, self.n_batches)
        if self.on_epoch is not None:
            self._call(self.on_epoch, epoch, {k: logs[k] for k in HISTORY_KEYS if k in logs})


# ----- training -------------------------------------------------------------------------
def _check_arrays(arch: Architecture, x: np.ndarray, y: np.ndarray, what: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape[1:] != tuple(arch.input_shape):
        shape = ", ".join(map(str, arch.input_shape))
        raise ValueError(f"expected {what} images as a uint8 array of shape (n, {shape}), "
                         f"received {getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if not isinstance(y, np.ndarray) or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected {what} labels as an integer array of shape ({len(x)},), "
                         f"received {getattr(y, 'dtype', type(y))} {getattr(y, 'shape', '')}")
    if len(x) == 0:
        raise ValueError(f"expected at least one {what} image, received none")


_session_lock = threading.Lock()
_session_users = 0


def session_enter() -> None:
    """Start a trial: a fresh Keras session, unless another trial (in another thread) is
    using the current one; clear_session() under a running fit would pull Keras' global
    state and TensorFlow's kernel caches from under it."""
    global _session_users
    with _session_lock:
        if _session_users == 0:
            keras.backend.clear_session(free_memory=False)
        _session_users += 1


def session_leave() -> None:
    """End a trial: the last one out clears the session; garbage is collected once."""
    global _session_users
    with _session_lock:
        _session_users -= 1
        if _session_users == 0:
            keras.backend.clear_session(free_memory=False)  # its collection would be a second one (~0.5 s)
    gc.collect()


def score_of(history: dict[str, list[float]], score_epochs: int) -> float | None:
    """Mean validation accuracy of the last ``score_epochs`` epochs run (fewer when fewer
    ran; None when none did).

    Why not the last epoch alone: with a few epochs on a small validation set, the
    validation accuracy jumps by a point or two from one epoch to the next (mini-batch
    noise, BatchNorm statistics, the early-stopping epoch being a bad one by design). The
    GP models the score as a smooth function of the architecture, so a less noisy score
    is worth more to it than the freshest one; averaging a couple of epochs halves the
    variance of that jitter while still reflecting the end of training.
    """
    values = history.get("val_accuracy", [])[-max(1, int(score_epochs)):]
    return float(np.mean(values)) if values else None


def train(arch: Architecture, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          config: TrainConfig | None = None, on_epoch: Callable[[int, dict], None] | None = None,
          on_batch: Callable[[int, int], None] | None = None, stop: threading.Event | None = None) -> TrainResult:
    """Train ``arch`` (its weights where it has them, fresh ones elsewhere) and score it.

    ``on_epoch(epoch_index, logs)`` is called after each epoch with ``loss``, ``accuracy``,
    ``val_loss`` and ``val_accuracy``; ``on_batch(batch_index, n_batches)`` at most every
    :data:`BATCH_REPORT_INTERVAL_S` seconds and at the end of each epoch, where
    ``batch_index`` is the 0-based index of the last finished batch of the epoch. Setting
    ``stop`` ends training before the next batch starts: status ``"stopped"``, with the
    weights as they are (and the epochs completed in ``history``).

    Early stopping watches ``val_loss`` with ``config.patience`` and restores the weights
    of the best epoch; ``score`` is :func:`score_of` the epochs run. A NaN/inf loss gives
    status ``"failed"`` with :data:`NAN_ERROR`; running out of memory gives ``"failed"``
    with ``out_of_memory=True``; any other error inside Keras gives ``"failed"`` with the
    error's first line. An exception raised by ``on_epoch``/``on_batch`` propagates.

    Each call starts with ``keras.backend.clear_session()`` and ends by dropping the model,
    clearing the session again and collecting garbage, so memory stays flat over many
    trials (while trials overlap in several threads, the session is cleared only when
    none is running). It sets Keras' global random seed to ``config.seed``.
    """
    config = config or TrainConfig()
    _check_arrays(arch, x_train, y_train, "training")
    _check_arrays(arch, x_val, y_val, "validation")
    started = time.monotonic()
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    status, error, oom, caller_error = "ok", None, False, None
    trained = arch

    session_enter()
    model = None
    try:
        keras.utils.set_random_seed(int(config.seed))
        try:
            model = build_model(init_weights(arch, int(config.seed)))  # BN momentum: engine.training.model
            batchnorm.match_inputs(model, batchnorm.sample(x_train, int(config.seed)))  # a deepened child's new BN
            train_batches = Batches(x_train, y_train, config.batch_size, shuffle=True, seed=int(config.seed),
                                    augment=config.augment, index=config.subset)
            model.compile(optimizer=_adam(_learning_rate(config, len(train_batches))),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=JIT_COMPILE)
            val_batches = Batches(x_val, y_val, config.batch_size * EVAL_BATCH_FACTOR)
            callbacks = [
                _Monitor(len(train_batches), history, on_epoch, on_batch, stop),
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=_patience(config, len(train_batches)),
                                              restore_best_weights=True),
            ]
            if batchnorm.needed(len(train_batches)):  # few steps an epoch: see engine.training.batchnorm
                callbacks.insert(0, batchnorm.RecomputeBeforeValidation(batchnorm.sample(x_train, int(config.seed))))
            if stop is not None and stop.is_set():
                raise _Stopped()
            model.fit(train_batches, validation_data=val_batches, epochs=int(config.max_epochs), verbose=0,
                      callbacks=callbacks)
            trained = read_weights(arch, model)
        except _Stopped:
            status = "stopped"
            trained = read_weights(arch, model) if model is not None else arch
        except _Diverged:
            status, error = "failed", NAN_ERROR
        except _CallerError as e:
            caller_error = e.error
        except Exception as e:
            status = "failed"
            if is_out_of_memory(e):
                error, oom = OOM_ERROR, True
            else:
                error = f"training failed: {_plain(e)}"
                log.exception("training %s failed", arch.summary())
    finally:
        # Drop every reference to the model (a caught exception, with its traceback, is
        # gone once its except block ends), then let Keras and the allocator let go.
        model = callbacks = train_batches = val_batches = None  # noqa: F841
        session_leave()
    if caller_error is not None:
        raise caller_error

    epochs = len(history["loss"])
    score = (kept_score(history, finished=status == "ok") if config.score == "kept"  # issue 14, lever 3
             else score_of(history, config.score_epochs))
    return TrainResult(architecture=trained, status=status, error=error, out_of_memory=oom, history=history,
                       epochs=epochs, score=score if status != "failed" else None,
                       seconds=time.monotonic() - started)
