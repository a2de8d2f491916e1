"""Benchmark of the morphisms: ``python -m bench.morph`` (writes bench/results/morph.md).

1. Speed: time to morph (weighted, NumPy) and build (Keras model with weights set) networks
   of about 30 layers and of depth 30 (the default ``Limits.max_depth``); median of several
   runs. Also the time of an unweighted morph, which the acquisition search does by the
   thousand.
2. Function preservation on real data: validation accuracy of children before any training
   against their trained parent's, for each morphism kind. Data: fashion-mnist-small
   (``../shared/datasets`` or /work/shared/datasets) when present, else scikit-learn's digits.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import datetime
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from engine.nas import morphism
from engine.nas.architecture import Architecture, init_weights, seed_architecture
from engine.training.model import build_model, read_weights

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "morph.md"
CHILDREN_PER_KIND = 5
REPEATS = 7


def load_images() -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(name, x_train, y_train, x_val, y_val): 400 / 100 images per class from the train split
    of fashion-mnist-small (its test split is left alone), or digits upscaled to 16x16."""
    for base in (ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets")):
        folder = base / "fashion-mnist-small" / "train"
        if folder.is_dir():
            from PIL import Image

            xs, ys, val = [], [], []
            for label, cls in enumerate(sorted(p.name for p in folder.iterdir() if p.is_dir())):
                files = sorted((folder / cls).glob("*.png"))
                for n, f in enumerate(files):
                    with Image.open(f) as im:
                        xs.append(np.asarray(im.convert("L").resize((28, 28)), np.uint8))
                    ys.append(label)
                    val.append(n >= len(files) * 4 // 5)
            x, y, val = np.stack(xs)[..., None], np.asarray(ys), np.asarray(val)
            return "fashion-mnist-small (train split: 4,000 train / 1,000 validation)", x[~val], y[~val], x[val], y[val]
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(np.repeat(np.repeat(d.images, 2, 1), 2, 2) * (255 / 16)).astype(np.uint8)[..., None]
    val = np.arange(len(x)) % 5 == 0
    return "scikit-learn digits upscaled to 16x16", x[~val], d.target[~val], x[val], d.target[val]


def accuracy(arch: Architecture, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    import keras

    probs = np.asarray(build_model(arch).predict(x, batch_size=500, verbose=0))
    keras.backend.clear_session()
    return float((probs.argmax(1) == y).mean()), probs


def grow(arch: Architecture, rng: np.random.Generator, done) -> Architecture:
    """Random morphs until ``done(arch)``: mostly deeper, widening only while the network is
    small and adding skips only while there are few (so the limits never block the growth)."""
    start = arch
    for step in range(10_000):
        if done(arch):
            return arch
        if step % 500 == 499:  # stuck at a limit: start again
            arch = start
        kinds = ["deeper", "deeper"] + (["wider"] if arch.n_params() < 400_000 else []) + (
            ["add_skip", "concat_skip"] if len(arch.skip_connections()) < 8 else [])
        arch = morphism.MORPHISMS[rng.choice(kinds)](arch, rng) or arch
    raise RuntimeError("could not grow the network")


def time_morph_and_build(arch: Architecture, rng: np.random.Generator) -> dict:
    import keras

    morph, build = [], []
    for _ in range(REPEATS):
        keras.backend.clear_session()
        t0 = time.perf_counter()
        child = morphism.random_morph(arch, rng)
        t1 = time.perf_counter()
        build_model(child)
        t2 = time.perf_counter()
        morph.append(t1 - t0)
        build.append(t2 - t1)
    keras.backend.clear_session()
    total = [m + b for m, b in zip(morph, build)]
    return {"layers": len(arch.layers), "depth": arch.depth(), "params": arch.n_params(),
            "morph_ms": 1e3 * statistics.median(morph), "build_ms": 1e3 * statistics.median(build),
            "total_ms": 1e3 * statistics.median(total)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> None:
    import keras
    import tensorflow as tf

    load = os.getloadavg()
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    name, xt, yt, xv, yv = load_images()
    log(f"data: {name}")
    seed = init_weights(seed_architecture(xt.shape[1:], 10), seed=0)
    model = build_model(seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    t = time.perf_counter()
    model.fit(xt, yt, epochs=2, batch_size=64, verbose=0)
    train_s = time.perf_counter() - t
    parent = read_weights(seed, model)
    parent.id = "seed"
    keras.backend.clear_session()
    parent_acc, parent_probs = accuracy(parent, xv, yv)
    log(f"seed trained in {train_s:.0f} s, validation accuracy {100 * parent_acc:.2f} %")

    rows = []
    for kind in morphism.KINDS:
        accs, diffs = [], []
        for _ in range(CHILDREN_PER_KIND):
            child = morphism.MORPHISMS[kind](parent, rng)
            acc, probs = accuracy(child, xv, yv)
            accs.append(acc)
            diffs.append(float(np.abs(probs - parent_probs).max()))
        rows.append((kind, accs, diffs))
        log(f"{kind}: {accs}")

    thirty = grow(parent, rng, lambda a: len(a.layers) >= 30)
    deep = grow(parent, rng, lambda a: a.depth() >= 30)
    log(f"timing {len(thirty.layers)} and {len(deep.layers)} layers")
    timings = [time_morph_and_build(thirty, rng), time_morph_and_build(deep, rng)]
    log(f"timings {timings}")
    bare = deep.copy(with_weights=False)
    t = time.perf_counter()
    n = 1000
    for _ in range(n):
        morphism.random_morph(bare, rng)
    unweighted_ms = 1e3 * (time.perf_counter() - t) / n

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    worst_points = max(abs(a - parent_acc) * 100 for _, accs, _ in rows for a in accs)
    lines = [
        "# Morphism benchmark (`python -m bench.morph`)", "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {os.cpu_count()} CPUs ({cpu}), no GPU used; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}; load average "
        f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (the machine is shared: timings "
        f"stretch with the load)",
        f"- Data: {name}; seed {parent.summary()} ({parent.n_params():,} parameters) trained 2 epochs "
        f"({train_s:.0f} s)", "",
        "## Speed (median of %d; morph = one random weighted morphism in NumPy, build = Keras model "
        "with weights set)" % REPEATS, "",
        "| network | layers | depth | parameters | morph | build | morph + build |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in zip(("~30 layers", "depth 30 (max_depth)"), timings):
        lines.append(f"| {label} | {r['layers']} | {r['depth']} | {r['params']:,} | {r['morph_ms']:.1f} ms | "
                     f"{r['build_ms']:.0f} ms | {r['total_ms']:.0f} ms |")
    lines += ["", f"Unweighted morph (structure only) of the depth-30 network: {unweighted_ms:.2f} ms per child "
              f"(mean of {n}).", "",
              "## Accuracy before any training (validation)", "",
              f"Parent: {100 * parent_acc:.2f} %. {CHILDREN_PER_KIND} random children per kind.", "",
              "| morphism | children's accuracy (%) | largest change (points) | largest softmax difference |",
              "|---|---|---|---|"]
    for kind, accs, diffs in rows:
        lines.append(f"| {kind} | {', '.join(f'{100 * a:.2f}' for a in accs)} | "
                     f"{max(abs(a - parent_acc) for a in accs) * 100:.2f} | {max(diffs):.1e} |")
    lines += ["", f"Largest accuracy change: {worst_points:.2f} points (must be within 1).", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    if worst_points > 1.0:
        raise SystemExit("a child's accuracy moved by more than 1 point")


if __name__ == "__main__":
    main()
