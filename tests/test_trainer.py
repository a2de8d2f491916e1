"""engine.training.trainer with real Keras on scikit-learn's bundled digits (8x8 uint8, no
network; 16x16 where it must learn them): it learns, reports per epoch, stops within a batch,
turns NaN and out-of-memory into failed trials, and keeps memory flat over many trials."""

from __future__ import annotations

import gc
import math
import threading

import keras
import numpy as np
import pytest

from engine.training import trainer
from engine.nas.architecture import init_weights, seed_architecture
from engine.training.model import build_model
from engine.training.device import device_name
from engine.training.evaluation import evaluate, predict
from engine.training.scoring import kept_score
from engine.training.trainer import NAN_ERROR, TrainConfig, train
from tests.digits import digits_8px, digits_16px

CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits():
    """The digits at their own 8x8: what these tests check does not depend on the size, and
    a trial on them costs less."""
    x, y = digits_8px(0)
    return x[:1400], y[:1400], x[1400:], y[1400:]  # 1400 training, 397 validation images


@pytest.fixture(scope="module")
def arch():
    return seed_architecture((8, 8, 1), 10)


@pytest.fixture
def every_batch(monkeypatch):
    monkeypatch.setattr(trainer, "BATCH_REPORT_INTERVAL_S", 0.0)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ----- learning and reporting -----------------------------------------------------------
@pytest.mark.slow
def test_seed_learns_digits_with_one_history_entry_and_callback_per_epoch():
    # 16x16: at 8x8 the seed has a single conv block, which learns digits too slowly to test.
    x, y = digits_16px(0)
    x, y, xv, yv = x[:1400], y[:1400], x[1400:], y[1400:]
    arch = seed_architecture((16, 16, 1), 10)
    epochs_seen, batches_seen = [], []
    config = TrainConfig(max_epochs=5, batch_size=32, patience=5, score_epochs=2)
    result = train(arch, x, y, xv, yv, config, on_epoch=lambda e, logs: epochs_seen.append((e, dict(logs))),
                   on_batch=lambda b, n: batches_seen.append((b, n)))

    assert result.status == "ok" and result.error is None and not result.out_of_memory
    assert result.epochs == 5
    assert all(len(result.history[k]) == 5 for k in ("loss", "accuracy", "val_loss", "val_accuracy"))
    assert [e for e, _ in epochs_seen] == list(range(5))
    assert [logs["val_accuracy"] for _, logs in epochs_seen] == result.history["val_accuracy"]
    assert result.score == pytest.approx(np.mean(result.history["val_accuracy"][-2:]))
    assert result.score > 0.85, result.history
    assert result.history["loss"][-1] < result.history["loss"][0]
    n_batches = math.ceil(1400 / 32)
    assert batches_seen and all(n == n_batches and 0 <= b < n for b, n in batches_seen)
    assert batches_seen.count((n_batches - 1, n_batches)) >= 5  # each epoch's end is reported
    assert result.seconds > 0

    # The returned weights are the best epoch's (early stopping restores them).
    trained = result.architecture
    assert trained.weights is not None and trained.fingerprint() == arch.fingerprint()
    report = evaluate(build_model(trained), xv, yv, CLASSES)
    best = int(np.argmin(result.history["val_loss"]))
    assert report["accuracy"] == pytest.approx(result.history["val_accuracy"][best], abs=0.005)
    # what score="kept" (issue 14, lever 3) reports is the accuracy of these weights
    assert kept_score(result.history, finished=True) == pytest.approx(report["accuracy"], abs=0.005)
    assert report["n"] == len(yv) and sum(map(sum, report["confusion"])) == len(yv)


@pytest.mark.slow
def test_training_is_reproducible_with_the_same_seed(digits, arch):
    x, y, xv, yv = digits
    config = TrainConfig(max_epochs=1, batch_size=64, seed=3)
    a, b = train(arch, x[:300], y[:300], xv, yv, config), train(arch, x[:300], y[:300], xv, yv, config)
    assert a.history == b.history


def test_score_is_the_mean_of_the_last_epochs_run():
    history = {"val_accuracy": [0.5, 0.7, 0.8, 0.9]}
    assert trainer.score_of(history, 2) == pytest.approx(0.85)
    assert trainer.score_of(history, 10) == pytest.approx(0.725)
    assert trainer.score_of(history, 1) == pytest.approx(0.9)
    assert trainer.score_of({"val_accuracy": []}, 2) is None


def test_bad_arrays_are_refused(digits, arch):
    x, y, xv, yv = digits
    with pytest.raises(ValueError, match="uint8"):
        train(arch, x.astype(np.float32), y, xv, yv)
    with pytest.raises(ValueError, match="labels"):
        train(arch, x, y[:10], xv, yv)
    with pytest.raises(ValueError, match="uint8"):
        train(seed_architecture((28, 28, 1), 10), x, y, xv, yv)


# ----- stopping ---------------------------------------------------------------------------
def test_stop_from_another_thread_mid_epoch_ends_within_one_batch(digits, arch, every_batch):
    x, y, xv, yv = digits
    stop, reached = threading.Event(), threading.Event()
    seen: list[int] = []
    at_request: list[int] = []

    def on_batch(b, n):
        seen.append(b)
        if b == 10:
            reached.set()

    def stopper():
        reached.wait(30)
        stop.set()
        at_request.append(len(seen))  # batches finished when the request was made (or later)

    thread = threading.Thread(target=stopper)
    thread.start()
    result = train(arch, x, y, xv, yv, TrainConfig(max_epochs=3, batch_size=16), on_batch=on_batch, stop=stop)
    thread.join()
    gc.collect()

    assert result.status == "stopped" and result.error is None
    assert result.epochs == 0 and result.history["val_accuracy"] == [] and result.score is None
    # At most the batch that was running when stop was set finishes: one more report.
    assert len(seen) - at_request[0] <= 1, (seen, at_request)
    assert len(seen) < math.ceil(1400 / 16)
    # The weights so far come back: trained for a few batches, so not the initial ones.
    assert result.architecture.weights is not None
    first_conv = arch.main_chain()[0].id
    assert not np.allclose(result.architecture.weights[first_conv][0], init_weights(arch).weights[first_conv][0])


@pytest.mark.slow
def test_stop_seen_by_a_batch_callback_starts_no_further_batch(digits, arch, every_batch):
    x, y, xv, yv = digits
    stop = threading.Event()
    seen: list[int] = []

    def on_batch(b, n):
        seen.append(b)
        if b == 3:
            done = threading.Event()
            threading.Thread(target=lambda: (stop.set(), done.set())).start()
            done.wait(10)  # the request arrives while the trainer is between batches

    threads_before = threading.active_count()
    result = train(arch, x, y, xv, yv, TrainConfig(max_epochs=2, batch_size=16), on_batch=on_batch, stop=stop)
    assert result.status == "stopped"
    assert seen == [0, 1, 2, 3]
    for _ in range(2):  # leaving fit by an exception leaves no threads behind
        seen.clear()
        stop.clear()
        assert train(arch, x, y, xv, yv, TrainConfig(max_epochs=2, batch_size=16), on_batch=on_batch,
                     stop=stop).status == "stopped"
    assert threading.active_count() <= threads_before + 1


def test_stop_after_an_epoch_keeps_the_epochs_done(digits, arch):
    x, y, xv, yv = digits
    stop = threading.Event()
    result = train(arch, x[:400], y[:400], xv, yv, TrainConfig(max_epochs=4, batch_size=32, patience=9),
                   on_epoch=lambda e, logs: stop.set() if e == 1 else None, stop=stop)
    assert result.status == "stopped" and result.epochs == 2
    assert result.score == pytest.approx(np.mean(result.history["val_accuracy"]))


def test_stop_set_before_training_returns_at_once(digits, arch):
    x, y, xv, yv = digits
    stop = threading.Event()
    stop.set()
    result = train(arch, x, y, xv, yv, TrainConfig(max_epochs=3), stop=stop)
    assert result.status == "stopped" and result.epochs == 0 and result.score is None


# ----- failures -------------------------------------------------------------------------
def _poisoned(arch):
    bad = init_weights(arch)
    conv = arch.main_chain()[0].id
    kernel = bad.weights[conv][0].copy()
    kernel[0, 0, 0, 0] = np.inf
    bad.weights[conv] = [kernel, bad.weights[conv][1]]
    return bad


@pytest.mark.slow
def test_a_nan_loss_fails_the_trial_and_the_next_one_trains(digits, arch):
    x, y, xv, yv = digits
    bad = _poisoned(arch)
    result = train(bad, x[:300], y[:300], xv, yv, TrainConfig(max_epochs=2))
    assert result.status == "failed" and result.error == NAN_ERROR and not result.out_of_memory
    assert result.score is None and result.architecture is bad

    after = train(arch, x[:300], y[:300], xv, yv, TrainConfig(max_epochs=1))
    assert after.status == "ok" and math.isfinite(after.history["loss"][0])


def test_a_nan_loss_is_caught_within_the_epoch(digits, arch, every_batch, monkeypatch):
    monkeypatch.setattr(trainer, "NAN_CHECK_INTERVAL_S", 0.0)
    x, y, xv, yv = digits
    seen, epochs = [], []
    result = train(_poisoned(arch), x, y, xv, yv, TrainConfig(max_epochs=2, batch_size=16),
                   on_batch=lambda b, n: seen.append(b), on_epoch=lambda e, logs: epochs.append(e))
    assert result.status == "failed" and result.error == NAN_ERROR
    assert epochs == [] and len(seen) <= 2


def test_a_huge_learning_rate_diverges_into_a_failed_trial(digits, arch):
    x, y, xv, yv = digits
    result = train(arch, x[:600], y[:600], xv, yv, TrainConfig(max_epochs=3, learning_rate=1e12))
    # The clipped cross-entropy stays finite while the weights overflow: caught all the same.
    assert result.status == "failed" and result.error == NAN_ERROR and result.epochs == 0


def _resource_exhausted():
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,32,16,16]")


@pytest.mark.parametrize("make_error", [
    pytest.param(_resource_exhausted, id="tf-ResourceExhaustedError"),
    pytest.param(lambda: MemoryError(), id="MemoryError"),
    pytest.param(lambda: RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB"), id="jax"),
])
def test_out_of_memory_in_a_batch_fails_the_trial(digits, arch, every_batch, make_error):
    if keras.backend.backend() != "tensorflow" and make_error is _resource_exhausted:
        pytest.skip("TensorFlow's error type")
    x, y, xv, yv = digits

    def on_batch(b, n):
        if b == 2:
            raise make_error()

    result = train(arch, x[:400], y[:400], xv, yv, TrainConfig(max_epochs=2, batch_size=16), on_batch=on_batch)
    assert result.status == "failed" and result.out_of_memory
    assert "out of memory" in result.error and result.architecture is arch and result.score is None


@pytest.mark.slow
def test_out_of_memory_from_fit_fails_the_trial_and_the_next_one_trains(digits, arch, monkeypatch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's error type")
    x, y, xv, yv = digits

    def fit(self, *args, **kwargs):
        raise _resource_exhausted()

    with monkeypatch.context() as m:
        m.setattr(keras.Model, "fit", fit)
        result = train(arch, x[:200], y[:200], xv, yv, TrainConfig(max_epochs=1))
    assert result.status == "failed" and result.out_of_memory and "out of memory" in result.error
    assert train(arch, x[:200], y[:200], xv, yv, TrainConfig(max_epochs=1)).status == "ok"


def test_another_error_inside_keras_fails_the_trial_in_plain_words(digits, arch, monkeypatch):
    x, y, xv, yv = digits

    def fit(self, *args, **kwargs):
        raise ValueError("Input 0 of layer conv_1 is incompatible\nwith lots of detail")

    monkeypatch.setattr(keras.Model, "fit", fit)
    result = train(arch, x[:200], y[:200], xv, yv, TrainConfig(max_epochs=1))
    assert result.status == "failed" and not result.out_of_memory
    assert result.error == "training failed: ValueError: Input 0 of layer conv_1 is incompatible"


@pytest.mark.slow
def test_an_error_in_the_callers_callback_propagates(digits, arch):
    x, y, xv, yv = digits

    def on_epoch(e, logs):
        raise KeyError("bug in the caller")

    with pytest.raises(KeyError, match="bug in the caller"):
        train(arch, x[:200], y[:200], xv, yv, TrainConfig(max_epochs=1), on_epoch=on_epoch)
    assert train(arch, x[:200], y[:200], xv, yv, TrainConfig(max_epochs=1)).status == "ok"


def test_is_out_of_memory_reads_causes_and_messages():
    assert trainer.is_out_of_memory(MemoryError())
    assert trainer.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert trainer.is_out_of_memory(outer)
    assert not trainer.is_out_of_memory(ValueError("shapes do not match"))


# ----- memory ---------------------------------------------------------------------------
@pytest.mark.slow
def test_memory_stays_flat_over_many_trials(digits, arch):
    x, y, xv, yv = digits
    x, y, xv, yv = x[:128], y[:128], xv[:64], yv[:64]
    config = TrainConfig(max_epochs=1, batch_size=64)
    assert train(arch, x, y, xv, yv, config).status == "ok"  # warm-up: imports, kernels, allocator pools
    gc.collect()
    rss, threads = _rss_mb(), threading.active_count()
    # Flat measured within +-10 MB over 15 trials (2-core CPU); the TensorFlow leak that
    # _adam works around cost ~12 MB a trial, ~72 MB over these 6. The 100-trial version is
    # python -m bench.memory (bench/results/memory.md).
    for i in range(6):
        assert train(arch, x, y, xv, yv, TrainConfig(max_epochs=1, batch_size=64, seed=i)).status == "ok"
    gc.collect()
    grown = _rss_mb() - rss
    assert grown < 40, f"RSS grew by {grown:.0f} MB over 6 trials"
    assert threading.active_count() <= threads + 2


@pytest.mark.slow
def test_trials_in_two_threads_at_once_both_train(digits, arch):
    """The app may run two searches at once: overlapping trials must not clear the
    Keras session under each other."""
    x, y, xv, yv = digits
    results = {}

    def run(seed):
        results[seed] = train(arch, x[:300], y[:300], xv[:100], yv[:100], TrainConfig(max_epochs=2, seed=seed))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[s].status for s in (1, 2)] == ["ok", "ok"]
    assert trainer._session_users == 0


# ----- inference ------------------------------------------------------------------------
class _FixedModel:
    """Stands in for a Keras model: predict() gives fixed probabilities."""

    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities, np.float32)

    def predict(self, batches, verbose=0):
        return self.probabilities[:len(batches.x)]


def test_evaluate_counts_per_class_and_confusion():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = [0, 0, 1, 1, 1, 1]  # class 2 never predicted
    model = _FixedModel(np.eye(3)[pred])
    report = evaluate(model, np.zeros((6, 4, 4, 1), np.uint8), y, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6) and report["n"] == 6
    assert report["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                        "accuracy": pytest.approx(2 / 3), "n": 3}
    assert report["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "accuracy": 0.0, "n": 1}


def test_predict_is_batched_and_gives_probabilities(arch):
    model = build_model(init_weights(arch))
    x = np.random.default_rng(0).integers(0, 256, (300, *arch.input_shape)).astype(np.uint8)
    probabilities = predict(model, x, batch_size=128)
    assert probabilities.shape == (300, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities[:5], np.asarray(model(x[:5], training=False)), atol=1e-5)


def test_device_name_says_where_training_runs():
    name = device_name()
    assert name.startswith("GPU (") or (name.startswith("CPU (") and name.endswith("cores)"))


def test_doctests_of_the_training_modules():
    import doctest

    import engine.training.batches
    import engine.training.device
    import engine.training.evaluation

    for module in (engine.training.batches, engine.training.device, engine.training.evaluation):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_patience_is_at_least_patience_steps_optimiser_steps():
    from engine.training.trainer import _patience

    config = TrainConfig(patience=2, patience_steps=40)
    assert _patience(config, 55) == 2  # fashion-mnist-small in batches of 64: 2 epochs are 110 steps
    assert _patience(config, 20) == 2
    assert _patience(config, 8) == 5  # 244 images in batches of 32: 5 epochs are 40 steps
    assert _patience(config, 6) == 7
    assert _patience(TrainConfig(patience=16, patience_steps=40), 8) == 16  # the final fine-tune's "never"


# ----- a deepened child's new BatchNorm ---------------------------------------------------
def _n_bn(arch) -> int:
    return sum(layer.kind == "bn" for layer in arch.layers)


def _deepened_in_the_conv_part(parent):
    from engine.nas.morphism import deeper

    for seed in range(50):
        child = deeper(parent, np.random.default_rng(seed))
        if child is not None and _n_bn(child) > _n_bn(parent):
            return child
    raise AssertionError("no conv-part deepening found in 50 tries")


def test_a_new_batchnorm_is_the_identity_in_training_mode_too(digits):
    from engine.training import batchnorm

    x, y, xv, yv = digits
    parent = train(seed_architecture((8, 8, 1), 10), x, y, xv, yv, TrainConfig(max_epochs=1)).architecture
    child = _deepened_in_the_conv_part(parent)
    batch = x[:256]
    want = build_model(parent)(batch, training=False).numpy()
    unmatched = build_model(child)
    assert np.abs(unmatched(batch, training=False).numpy() - want).max() < 1e-4  # kept in inference mode
    before = np.abs(unmatched(batch, training=True).numpy() - want).max()  # (this call moves its statistics)
    model = build_model(child)

    sample = batchnorm.sample(x, 0)
    assert batchnorm.match_inputs(model, sample) == 1
    assert np.abs(model(batch, training=False).numpy() - want).max() < 1e-4  # still the parent's function
    after = np.abs(model(batch, training=True).numpy() - want).max()
    assert after < 0.5 * before, (before, after)  # and now close to it while training as well
    assert batchnorm.match_inputs(model, sample) == 0  # trained-looking layers are left alone
