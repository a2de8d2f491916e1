"""Memory over a long search: resident memory after 100 real trials against after 20.

``python -m bench.memory [--trials 100] [--warmup 20]``

Trains ``--trials`` one-epoch trials of small networks on 8x8 digits in one process, as a
long search does (the seed and three of its morphs in turn), and reads the resident set
size after trial ``--warmup`` (imports, kernels and allocator pools are warm by then) and
after the last. Target: under 60 MB of growth. Writes ``bench/results/memory.md``.

This was a test until the suite had to fit in 7 minutes: it takes 2-4 minutes of training.
The suite keeps a short version (tests/test_trainer.py: 6 measured trials, bound 40 MB),
which would catch the leak it guards against (about 12 MB per trial, so about 72 MB over those 6).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.simulate import machine

OUT = Path(__file__).parent / "results" / "memory.md"
BOUND_MB = 60.0


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(trials: int, warmup: int) -> dict:
    """Train ``trials`` one-epoch trials and return the RSS after ``warmup`` and after the last."""
    from engine.data.sample import digits
    from engine.nas.architecture import init_weights, seed_architecture
    from engine.nas.morphism import random_morph
    from engine.training import trainer

    images, labels = digits()  # (n, 8, 8) in 0..16, as the tests' digits_8px scales them
    x = (images / 16.0 * 255).astype(np.uint8)[..., None]
    y = np.asarray(labels, np.int64)
    xt, yt, xv, yv = x[:128], y[:128], x[128:192], y[128:192]
    seed = init_weights(seed_architecture((8, 8, 1), 10), seed=0)
    seed.id = "0"
    rng = np.random.default_rng(0)
    archs = [seed] + [a for a in (random_morph(seed, rng, None) for _ in range(8)) if a is not None][:3]
    rss, t0 = {}, time.monotonic()
    for i in range(1, trials + 1):
        result = trainer.train(archs[i % len(archs)], xt, yt, xv, yv,
                               trainer.TrainConfig(max_epochs=1, batch_size=128, seed=i))
        if result.status != "ok":
            raise RuntimeError(f"trial {i} failed: {result.error}")
        del result
        if i in (warmup, trials):
            gc.collect()
            rss[i] = rss_mb()
    return {"trials": trials, "warmup": warmup, "networks": len(archs), "rss_warm": rss[warmup],
            "rss_end": rss[trials], "grown": rss[trials] - rss[warmup], "seconds": time.monotonic() - t0}


def report(r: dict) -> str:
    verdict = "within" if r["grown"] < BOUND_MB else "OVER"
    return "\n".join([
        "# Memory over a long search", "",
        f"Machine: {machine()}.", "",
        f"`python -m bench.memory --trials {r['trials']} --warmup {r['warmup']}`: {r['trials']} one-epoch trials "
        f"of {r['networks']} small networks (the seed and three morphs) on 8x8 digits, in one process.", "",
        "| RSS after trial %d | RSS after trial %d | growth | bound | time |" % (r["warmup"], r["trials"]),
        "|---|---|---|---|---|",
        f"| {r['rss_warm']:.1f} MB | {r['rss_end']:.1f} MB | {r['grown']:+.1f} MB | {BOUND_MB:.0f} MB ({verdict}) "
        f"| {r['seconds']:.0f} s |", "",
        "The suite's short version is `tests/test_trainer.py::test_memory_stays_flat_over_many_trials`.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    if not 1 <= args.warmup < args.trials:
        parser.error(f"expected 1 <= --warmup < --trials; received {args.warmup} and {args.trials}")
    result = measure(args.trials, args.warmup)
    text = report(result)
    OUT.write_text(text)
    print(text)
    return 0 if result["grown"] < BOUND_MB else 1


if __name__ == "__main__":
    sys.exit(main())
