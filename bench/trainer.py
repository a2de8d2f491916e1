"""Training throughput of the seed network: how to feed data, batch size, thread pools.

Run: ``.venv/bin/python -m bench.trainer [--quick]``. Results go to
``bench/results/trainer.json`` and a table on stdout.

Compared, for the seed architecture on 28x28x1 images:
- feed: ``pydataset`` (engine.training.batches.Batches: index-shuffled batches gathered from the
  uint8 array, what train() uses) vs ``arrays`` (the arrays passed to ``fit`` with
  ``shuffle=True``; Keras then converts the whole array into one backend tensor per
  ``fit`` call, i.e. per trial, reported separately as ``setup_s``);
- batch size 64 vs 128;
- TensorFlow intra/inter-op threads: default (0/0 = one per core) vs explicit values;
- XLA: the trainer's choice (Keras' "auto": off on a CPU-only TensorFlow) vs forced on;
  ``first_fit_s`` (the first one-epoch fit of each variant: tracing/compiling included)
  shows what compiling costs every trial.

The development machine is shared and its load jumps, so the measurement is built to
survive that: the feed x batch variants run *interleaved in one process* (one epoch each,
``--rounds`` times, after a tracing warm-up), so they see the same disturbance, and each
reports its best epoch (least disturbed). Thread settings need a fresh process each
(TensorFlow sizes its pools once), and are compared the same way, best of rounds.

Measured on the 2-core development CPU (TF 2.21, load 3-4 from other work; best of 3
rounds, 4000 images; bench/results/trainer.md):
- feed: PyDataset 2004 / 2147 images/s (batch 64 / 128) vs arrays 2069 / 2117: the same
  within noise, the same CPU time per image (0.81 / 0.77 ms), so train() uses the
  PyDataset, which copies nothing;
- batch 128 is 3-7 % faster than 64 (the default stays 64: more steps per epoch);
- threads: TensorFlow's default best; 2 intra + 1 inter ~20 % slower, 1 + 1 ~35 %;
- XLA forced on: ~690 images/s, 1.4 ms CPU per image, 20 s first epoch instead of 2.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [("pydataset", 64), ("arrays", 64), ("pydataset", 128), ("arrays", 128)]


def _data(n: int, side: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    # Blobs whose position depends on the class: learnable, so this is real training.
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, side, side, 1)).astype(np.uint8)
    for k in range(10):
        r, c = divmod(k, 4)
        x[y == k, r * side // 4:(r + 1) * side // 4, c * side // 4:(c + 1) * side // 4] += 150
    return x, y


def measure(n: int, side: int, rounds: int, jit: str) -> dict:
    """In this process: every variant, interleaved; best training images/s of each."""
    import keras

    from engine.nas.architecture import init_weights, seed_architecture
    from engine.training import trainer
    from engine.training.batches import Batches
    from engine.training.device import device_name
    from engine.training.model import build_model

    x, y = _data(n, side)
    xv, yv = _data(max(64, n // 5), side, seed=1)
    keras.utils.set_random_seed(0)
    model = build_model(init_weights(seed_architecture((side, side, 1), 10)))
    jit_compile = {"trainer": trainer.JIT_COMPILE, "auto": "auto", "false": False, "true": True}[jit]
    model.compile(optimizer=trainer._adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    marks: dict[str, float] = {}

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            marks["begin"] = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            marks["epoch"], marks["epoch_cpu"] = time.perf_counter(), time.process_time()

        def on_test_begin(self, logs=None):  # training part of the epoch ends here
            if "test" not in marks:
                marks["test"], marks["test_cpu"] = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            marks["end"] = time.perf_counter()

    def fit(feed: str, batch: int) -> dict:
        marks.clear()
        start = time.perf_counter()
        if feed == "pydataset":
            model.fit(Batches(x, y, batch, shuffle=True), epochs=1, verbose=0, callbacks=[Clock()],
                      validation_data=Batches(xv, yv, batch * trainer.EVAL_BATCH_FACTOR))
        else:
            model.fit(x, y, batch_size=batch, shuffle=True, epochs=1, verbose=0, callbacks=[Clock()],
                      validation_data=(xv, yv), validation_batch_size=batch * trainer.EVAL_BATCH_FACTOR)
        return {"train_s": marks["test"] - marks["epoch"], "train_cpu_s": marks["test_cpu"] - marks["epoch_cpu"],
                "val_s": marks["end"] - marks["test"],
                "setup_s": marks["begin"] - start}

    first = {}
    for variant in VARIANTS:  # trace each variant's functions once
        t = time.perf_counter()
        fit(*variant)
        first[variant] = time.perf_counter() - t
    got: dict[tuple, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            got[variant].append(fit(*variant))
    out = {}
    for (feed, batch), runs in got.items():
        best = min(runs, key=lambda r: r["train_s"])
        out[f"{feed},{batch}"] = {"images_per_s": n / best["train_s"],
                                  "median_images_per_s": n / sorted(r["train_s"] for r in runs)[len(runs) // 2],
                                  "val_images_per_s": len(xv) / min(r["val_s"] for r in runs),
                                  # CPU time (all threads) per image: what load on the machine disturbs least
                                  "cpu_ms_per_image": 1000 * min(r["train_cpu_s"] for r in runs) / n,
                                  "setup_s": min(r["setup_s"] for r in runs), "first_fit_s": first[(feed, batch)]}
    return {"device": device_name(), "jit_compile": str(model.jit_compile), "variants": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="default threads only, fewer images; writes no results")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help="training images (default 4000, 2000 with --quick)")
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--jit", default="trainer", help=argparse.SUPPRESS)
    parser.add_argument("--thread-rounds", type=int, default=2, help="processes per thread setting")
    args = parser.parse_args()
    n = args.n or (2000 if args.quick else 4000)
    if args.one:
        print(json.dumps(measure(n, args.side, args.rounds, args.jit)))
        return

    # (intra, inter, jit): thread pools, and Keras' XLA default ("auto") next to the trainer's choice
    threads = [("", "", "trainer")] + ([] if args.quick else [("2", "1", "trainer"), ("2", "2", "trainer"),
                                                                ("1", "1", "trainer"), ("", "", "true")])
    per_setting: dict[tuple, list[dict]] = {t: [] for t in threads}
    for _ in range(args.thread_rounds):
        for intra, inter, jit in threads:
            env = dict(os.environ, SPROUT_INTRA_OP_THREADS=intra, SPROUT_INTER_OP_THREADS=inter,
                       TF_CPP_MIN_LOG_LEVEL="3")
            out = subprocess.run([sys.executable, "-m", "bench.trainer", "--one", "--n", str(n), "--side",
                                  str(args.side), "--rounds", str(args.rounds), "--jit", jit],
                                 cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            per_setting[(intra, inter, jit)].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for (intra, inter, jit), runs in per_setting.items():
        for key in runs[0]["variants"]:
            feed, batch = key.split(",")
            best = max((r["variants"][key] for r in runs), key=lambda v: v["images_per_s"])
            rows.append({"threads": f"{intra or 'default'}/{inter or 'default'}", "jit_compile": runs[0]["jit_compile"],
                         "feed": feed, "batch": int(batch),
                         **best, "device": runs[0]["device"]})
    for row in rows:
        print(f"threads {row['threads']:>15} jit {row['jit_compile']:5}  {row['feed']:9} batch {row['batch']:3}  "
              f"train {row['images_per_s']:6.0f} img/s (median {row['median_images_per_s']:6.0f})  "
              f"cpu {row['cpu_ms_per_image']:.3f} ms/img  validate {row['val_images_per_s']:6.0f} img/s  "
              f"setup {row['setup_s']:.3f}s  first fit {row['first_fit_s']:.1f}s", flush=True)
    if args.quick:  # a smoke run: keep the recorded results
        return
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    data = {"n": n, "side": args.side, "rounds": args.rounds, "load_average_at_end": os.getloadavg(), "rows": rows}
    (results / "trainer.json").write_text(json.dumps(data, indent=1))
    (results / "trainer.md").write_text(_markdown(data, args.thread_rounds))


def _markdown(d: dict, processes: int) -> str:
    lines = ["# Trainer throughput (bench/trainer.py)", "",
             f"Seed architecture, {d['side']}x{d['side']}x1 uint8 images, {d['n']} training images, best of "
             f"{d['rounds']} interleaved one-epoch rounds per variant and {processes} processes per thread setting; "
             f"2-core CPU shared with other work (load average at the end {d['load_average_at_end'][0]:.1f}). "
             "Regenerate: `.venv/bin/python -m bench.trainer`.", "",
             "| threads (intra/inter) | XLA | feed | batch | train images/s (best) | median | CPU ms/image "
             "| validate images/s | first fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['threads']} | {r['jit_compile']} | {r['feed']} | {r['batch']} | {r['images_per_s']:.0f} "
                     f"| {r['median_images_per_s']:.0f} | {r['cpu_ms_per_image']:.3f} | {r['val_images_per_s']:.0f} "
                     f"| {r['first_fit_s']:.1f} |")
    lines += ["", "`first fit` is the first one-epoch fit of each variant in its process (tracing, and XLA "
              "compiling where on); the first variant of each process also pays the process's own warm-up.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
