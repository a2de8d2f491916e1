"""Does a pretrained start help on a small colour set, at equal time? (issue 19)

    python -m bench.pretrained [--budget 120] [--seeds 0,1] [--pretrain-s 300] [--side 32] [--work DIR]

Nothing is downloaded: the trunk (MobileNetV3-Small at ``--side`` px) is pretrained here, for
``--pretrain-s`` seconds, on a large generated colour set (bench.colour_shapes: triangles,
crosses, rings and stars, 600 each), and used on a small, different one (circles and squares,
60 each for the search and 30 each in a test folder the search never sees). Then:

1. from scratch against the pretrained start (``--pretrained PATH``) on the small set at equal
   budget, per seed: trials, test accuracy on the run's held-out split and on the test folder;
2. the time of one head trial (the seed head, the recipe's epochs) on the cached features
   against the same trial run through the frozen trunk on the images: trials per minute;
3. the speed of the candidate trunks (``bench.pretrained_speed``'s JSON, when it was run).

Writes ``bench/results/pretrained.json`` and ``bench/results/pretrained.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SPROUT_WEIGHTS_URL", "none")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SIDE = 32  # --side: 32 px lets the trunk pretrain for more epochs on 2 shared cores than 64
SOURCE_CLASSES = ("triangle", "cross", "ring", "star")


def make_sets(work: Path) -> tuple[Path, Path]:
    """The large pretraining set (4 shapes x 600) and the small target set (2 shapes x 60 + 30)."""
    from bench.colour_shapes import write

    source, target = work / "source", work / "target"
    if not source.exists():
        write(source, 600, 0, size=SIDE, seed=100, classes=6)
        for name in ("circle", "square"):
            shutil.rmtree(source / "train" / name)
    if not target.exists():
        write(target, 60, 30, size=SIDE, seed=200, classes=2)
    return source / "train", target


def pretrain(source: Path, seconds: float, out: Path, before: dict | None = None) -> dict:
    """Train MobileNetV3Small + a linear classifier on ``source`` for about ``seconds``; save the
    trunk. With ``before`` (an earlier call's result) training goes on from the saved trunk."""
    import keras

    from engine.data import ingest
    from engine.training.batches import Augment, Batches
    from engine.training.trunk import build_trunk

    ds = ingest.load(source, image_size=SIDE, channels=3)
    trunk = build_trunk(SIDE, out if before else None)
    for layer in trunk.layers:  # Keras' 0.999 leaves the moving statistics near their start after a few hundred steps
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    image = keras.Input((SIDE, SIDE, 3), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(trunk(keras.layers.Rescaling(1.0)(image)))
    model = keras.Model(image, keras.layers.Dense(len(ds.class_names), activation="softmax")(x))
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    batches = Batches(ds.images, ds.labels.astype(np.int32), 64, shuffle=True, augment=Augment(shift=4, flip=True))
    spent = before["seconds"] if before else 0.0
    epochs, history = (before["epochs"], list(before["train_accuracy"])) if before else (0, [])
    started = time.monotonic()
    while spent + time.monotonic() - started < seconds:
        fit = model.fit(batches, epochs=1, verbose=0)
        epochs += 1
        history.append(round(float(fit.history["accuracy"][-1]), 3))
    trunk.save_weights(out)
    return {"images": int(len(ds.labels)), "epochs": epochs, "seconds": round(spent + time.monotonic() - started, 1),
            "train_accuracy": history}


def folder_accuracy(run: Path, folder: Path) -> float:
    from engine.data import ingest
    from engine.training.evaluation import predict
    from engine.training.export import load_model

    model = load_model(run / "best_model.keras")
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    ds = ingest.load(folder, image_size=size, channels=channels)
    return float(np.mean(predict(model, ds.images).argmax(axis=1) == ds.labels))


def search(target: Path, start: str, budget: float, seed: int, work: Path) -> dict:
    from engine.search.config import SearchConfig
    from engine.search.loop import run_search

    name = "scratch" if start == "none" else "pretrained"
    out = work / f"run-{name}-{int(budget)}s-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.monotonic()
    s = run_search(target / "train", out, SearchConfig(budget_s=budget, seed=seed, image_size=SIDE, pretrained=start))
    wall = time.monotonic() - t
    state = json.loads((out / "state.json").read_text())
    return {"start": name, "seed": seed, "budget": budget, "trials": s["n_ok"], "test_accuracy": s["test_accuracy"],
            "folder_accuracy": round(folder_accuracy(out, target / "test"), 3), "wall_s": round(wall, 1),
            "fine_tuned": s["fine_tuned"], "final_epochs": s["final_epochs"], "features": state.get("features"),
            "best": (s.get("best") or {}).get("summary")}


def trial_speed(target: Path, weights: Path | None, side: int, epochs: int = 8) -> dict:
    """Seconds of one seed-head trial on cached features and through the frozen trunk, on the
    target's training images at ``side`` px (``weights`` None: random ones; speed does not
    depend on them)."""
    import keras

    from engine.data import ingest
    from engine.nas.architecture import init_weights
    from engine.search.pretrained import head_architecture
    from engine.training import features, trainer
    from engine.training.batches import Batches
    from engine.training.trunk import build_trunk

    ds = ingest.load(target / "train", image_size=side, channels=3)
    x, y = ds.images, ds.labels.astype(np.int32)
    trunk = build_trunk(side, weights)
    fd = features.feature_data(trunk, x, y, x[:20], x[:1], 0, None)
    head = init_weights(head_architecture(fd.x_train.shape[1:], 2))
    t = time.monotonic()
    trainer.train(head, fd.x_train, fd.y_train, fd.x_val, y[:20], trainer.TrainConfig(max_epochs=epochs, batch_size=32,
                                                                                      patience=epochs))
    cached = time.monotonic() - t
    trunk = build_trunk(side, weights)
    trunk.trainable = False
    model = features.fused_model(trunk, head, fd.quantizer)
    t = time.monotonic()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(Batches(x, y, 32, shuffle=True), validation_data=Batches(x[:20], y[:20], 64), epochs=epochs, verbose=0)
    through = time.monotonic() - t
    return {"side": side, "images": int(len(y)), "epochs": epochs, "cached_s": round(cached, 2),
            "trunk_s": round(through, 2), "feature_s": round(fd.seconds, 2)}


def markdown(result: dict) -> str:
    rows = result["runs"]
    lines = [
        "# A pretrained start against from scratch (issue 19)", "",
        f"{result['date']}, {result['machine']}; `python -m bench.pretrained {result['args']}`. "
        "Measured with other work on the machine (2 shared CPU cores): read the times as rough.", "",
        "No ImageNet weights could be downloaded here (the machine is offline), so the ImageNet-weights "
        "accuracy was **not measured**. The trunk below is our own: MobileNetV3-Small at "
        f"{result['side']} px pretrained "
        f"for {result['pretrain']['seconds']:.0f} s ({result['pretrain']['epochs']} epochs) on "
        f"{result['pretrain']['images']} generated colour images of four other shapes (triangle, cross, ring, star; "
        f"training accuracy {result['pretrain']['train_accuracy'][0]:.2f} after the first epoch, "
        f"{result['pretrain']['train_accuracy'][-1]:.2f} after the last, chance 0.25), then used on a small, "
        "different set: circles against squares, 60 each for the search (split 70/15/15 by the search) and 30 "
        "each in a test folder the search never sees.", "",
        "## 1. From scratch against the pretrained start, at equal budget", "",
        "| start | seed | budget s | wall s | trials | test acc. (held-out split) | test acc. (test folder) "
        "| best head / network |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['start']} | {r['seed']} | {r['budget']:.0f} | {r['wall_s']:.0f} | {r['trials']} | "
                     f"{r['test_accuracy']:.3f} | {r['folder_accuracy']:.3f} | {r['best'].replace('|', '/')} |")
    for start in ("scratch", "pretrained"):
        acc = [r["folder_accuracy"] for r in rows if r["start"] == start]
        if acc:
            lines.append(f"\nMean test-folder accuracy, {start}: **{np.mean(acc):.3f}** over {len(acc)} seed(s).")
    speeds = result["speed"]
    lines += ["", "## 2. Trials per minute: cached features against running the trunk", "",
              f"One seed-head trial, {speeds[0]['epochs']} epochs over the {speeds[0]['images']} training images "
              "(batch 32, no early stopping; model building and tracing included, as in a search):", "",
              "| image side | head trial on cached features | through the frozen trunk | features computed once |",
              "|---|---|---|---|"]
    for s in speeds:
        lines.append(f"| {s['side']} px | {s['cached_s']:.1f} s ({60 / s['cached_s']:.1f} trials/min) | "
                     f"{s['trunk_s']:.1f} s ({60 / s['trunk_s']:.1f} trials/min) | {s['feature_s']:.1f} s |")
    lines += ["", "A run computes the features once (plus 3 augmented views of each training image, and the "
              "validation and test images); every trial after that costs the first column."]
    speed = result.get("trunks")
    if speed:
        sizes = sorted({v["size"] for v in speed.values()})
        names = list(dict.fromkeys(v["trunk"] for v in speed.values()))
        lines += ["", "## 3. Speed of the candidate trunks on 2 CPU cores", "",
                  "Forward passes, batches of 64, random weights (`python -m bench.pretrained_speed`; best of 3 "
                  "rounds, measured with other work on the machine):", "",
                  "| trunk | " + " | ".join(f"{z} px" for z in sizes) + " | weights |",
                  "|---|" + "---|" * (len(sizes) + 1)]
        for name in names:
            cells = [speed.get(f"{name}@{z}") for z in sizes]
            lines.append(f"| {name} | " + " | ".join(f"{c['images_per_s']:.0f} img/s" if c else "–" for c in cells)
                         + f" | {next(c for c in cells if c)['params'] / 1e6:.2f} M |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    global SIDE
    p = argparse.ArgumentParser(prog="python -m bench.pretrained", description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=120)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--pretrain-s", type=float, default=300)
    p.add_argument("--side", type=int, default=SIDE, help="image side of both sets and the trunk's input")
    p.add_argument("--work", type=Path, default=Path("/tmp/sprout-pretrained"))
    args = p.parse_args(argv)
    SIDE = args.side
    os.environ["SPROUT_HOME"] = str(args.work / "home")
    args.work.mkdir(parents=True, exist_ok=True)
    source, target = make_sets(args.work)
    weights = args.work / "own-trunk.weights.h5"
    pre = {"images": 0, "epochs": 0, "seconds": 0.0, "train_accuracy": []}
    pre_file = args.work / "own-trunk.json"
    if weights.exists() and pre_file.exists():
        pre = json.loads(pre_file.read_text())
    if pre["seconds"] < args.pretrain_s - 30:  # (more) pretraining, going on from the saved trunk
        pre = pretrain(source, args.pretrain_s, weights, pre if pre["epochs"] else None)
        pre_file.write_text(json.dumps(pre))
    print("pretrained:", pre, flush=True)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for start in ("none", str(weights)):
            runs.append(search(target, start, args.budget, seed, args.work))
            print(runs[-1], flush=True)
    speed = [trial_speed(target, weights, SIDE), trial_speed(target, None, 128)]
    print(speed, flush=True)
    trunks = RESULTS / "pretrained-speed.json"
    result = {"side": SIDE, "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "args": " ".join(sys.argv[1:] if argv is None else argv), "pretrain": pre, "runs": runs,
              "speed": speed, "trunks": json.loads(trunks.read_text()) if trunks.exists() else None}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pretrained.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "pretrained.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
