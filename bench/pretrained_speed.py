"""Forward speed of the candidate pretrained trunks on this machine (issue 19).

Run: ``.venv/bin/python -m bench.pretrained_speed [--sizes 96,128,160] [--images 256]``.
Prints a markdown table (images per second through each trunk, batches of 64, random
weights: speed does not depend on the weights) and writes ``bench/results/pretrained-speed.json``.

Candidates: MobileNetV3-Small, MobileNetV2 (alpha 0.35) and EfficientNet-B0, all
``include_top=False`` with their own preprocessing where Keras has it. Each measurement
is the best of ``--rounds`` passes over the images after one warm-up pass (tracing), so
a machine shared with other work disturbs it less.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).parent / "results"


def candidates():
    import keras

    apps = keras.applications
    return {
        "MobileNetV3Small": lambda s: apps.MobileNetV3Small(input_shape=(s, s, 3), include_top=False, weights=None),
        "MobileNetV2 a0.35": lambda s: apps.MobileNetV2(input_shape=(s, s, 3), include_top=False, weights=None,
                                                          alpha=0.35),
        "EfficientNetB0": lambda s: apps.EfficientNetB0(input_shape=(s, s, 3), include_top=False, weights=None),
    }


def measure(build, size: int, n: int, rounds: int) -> dict:
    """Images per second (best round) and the feature map's shape for one trunk at ``size``."""
    import keras

    keras.backend.clear_session()
    model = build(size)
    x = np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype(np.float32)
    model.predict(x[:64], batch_size=64, verbose=0)  # trace
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        model.predict(x, batch_size=64, verbose=0)
        best = max(best, n / (time.perf_counter() - t))
    return {"images_per_s": round(best, 1), "feature_shape": list(model.output_shape[1:]),
            "params": int(model.count_params())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="96,128,160")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for name, build in candidates().items():
        for size in sizes:
            results[f"{name}@{size}"] = {"trunk": name, "size": size, **measure(build, size, args.images, args.rounds)}
            print(name, size, results[f"{name}@{size}"], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pretrained-speed.json").write_text(json.dumps(results, indent=1))
    print("\n| trunk | " + " | ".join(f"{s} px" for s in sizes) + " | feature map at the largest | weights |")
    print("|---|" + "---|" * (len(sizes) + 2))
    for name in candidates():
        row = [results[f"{name}@{s}"] for s in sizes]
        print(f"| {name} | " + " | ".join(f"{r['images_per_s']:.0f} img/s" for r in row)
              + f" | {'x'.join(map(str, row[-1]['feature_shape']))} | {row[-1]['params'] / 1e6:.2f} M |")


if __name__ == "__main__":
    main()
