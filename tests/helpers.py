"""Builders that several test modules share: random architectures and a score over them,
a zip writer, and a trainer that stands in for TensorFlow.

Test modules import these from here, never from one another, so that a test module can be
run, renamed or deleted on its own.
"""

from __future__ import annotations

import math
import stat
import time
import zipfile
from pathlib import Path

import numpy as np

from engine.nas import distance as K
from engine.nas.architecture import init_weights, seed_architecture
from engine.nas.morphism import random_morph


# ------------------------------------------------------------------ architectures
def random_chain(base, rng, steps):
    """``base`` after ``steps`` random morphisms (fewer if some do not apply)."""
    arch = base
    for _ in range(steps):
        child = random_morph(arch, rng)
        if child is not None:
            arch = child
    return arch


def random_architectures(n, seed=0, max_steps=8, distinct=True, input_shape=(32, 32, 3)):
    """``n`` architectures from random morph chains of 1..max_steps steps from the seed CNN
    (distinct by edit distance unless ``distinct`` is False)."""
    rng = np.random.default_rng(seed)
    base = seed_architecture(input_shape, 10)
    base.id = "seed"
    out, keys = [], set()
    while len(out) < n:
        arch = random_chain(base, rng, int(rng.integers(1, max_steps + 1)))
        key = K.distance_key(arch)
        if distinct and key in keys:
            continue
        keys.add(key)
        out.append(arch)
    return out


def features(arch):
    """(number of conv layers, log2 of their total filters, number of skips) of ``arch``."""
    chain = arch.main_chain()
    convs = [layer.config["filters"] for layer in chain if layer.kind == "conv"]
    return len(convs), np.log2(sum(convs)), len(arch.skip_connections())


def synthetic_accuracy(arch):
    """A smooth function of depth, total width and skip count with a peak."""
    depth, width, skips = features(arch)
    return 0.9 - 0.01 * (depth - 6) ** 2 - 0.03 * (width - 8.5) ** 2 - 0.01 * (skips - 2) ** 2


# ---------------------------------------------------------------------------- files
def write_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None,
              method=zipfile.ZIP_DEFLATED) -> Path:
    """A zip at ``path`` holding ``members`` ({name: bytes}) and ``symlinks`` ({name: target})."""
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


# ------------------------------------------------------------------------- training
class FakeTrainer:
    """Stands in for engine.training.trainer.train: instant, deterministic, scores by structure.

    ``oom_over``: networks with more parameters fail as out of memory; ``epoch_s``: the
    seconds one epoch sleeps (three batches). ``calls`` holds every architecture trained,
    ``configs`` the TrainConfig of each.
    """

    def __init__(self, oom_over: int | None = None, epoch_s: float = 0.01):
        self.calls: list = []
        self.configs: list = []
        self.oom_over, self.epoch_s = oom_over, epoch_s

    def __call__(self, arch, x, y, xv, yv, config=None, on_epoch=None, on_batch=None, stop=None):
        from engine.training.trainer import TrainResult

        self.calls.append(arch)
        self.configs.append(config)
        t0 = time.monotonic()
        if self.oom_over is not None and arch.n_params() > self.oom_over:
            return TrainResult(arch, "failed", "out of memory", True, {}, 0, None, 0.01)
        history = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        acc = 0.5 + 0.4 * (1 - math.exp(-arch.n_params() / 1e5))
        status = "ok"
        for epoch in range(config.max_epochs):
            for b in range(3):
                if stop is not None and stop.is_set():
                    status = "stopped"
                    break
                time.sleep(self.epoch_s / 3)
                if on_batch:
                    on_batch(b, 3)
            if status == "stopped":
                break
            for k, v in (("loss", 1.0), ("accuracy", acc), ("val_loss", 1.0), ("val_accuracy", acc)):
                history[k].append(v)
            if on_epoch:
                on_epoch(epoch, {"val_accuracy": acc})
        trained = init_weights(arch, 0)
        epochs = len(history["loss"])
        return TrainResult(trained, status, None, False, history, epochs, acc if epochs else None,
                           time.monotonic() - t0)


# ------------------------------------------------------------------------ the app
def app_at_page(page: str, **query):
    """The app (app.py) in Streamlit's AppTest, opened with ``query`` in its address and then
    switched to ``page`` (a views/ script). Streamlit's caches are cleared first (each test gets
    its own registry), and the warm-up's imports are waited for, as in a server that has been up
    a few seconds: a page and the warm-up importing pandas at once can fail."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from views.warmup import start_warm_up

    st.cache_resource.clear()
    st.cache_data.clear()
    assert start_warm_up().done.wait(120)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page)
    at.run()
    return at
