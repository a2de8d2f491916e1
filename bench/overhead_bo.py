"""What the Bayesian searcher costs between two trials, for 10 to 200 trained networks.

``python -m bench.overhead_bo [--sizes 10,50,100,200] [--repeats 3]``

For each size: the full edit-distance matrix among the trained networks, one new row
(what a finished trial adds to the cache), the GP fit (embedding + likelihood
maximisation) and one acquisition optimisation with the default annealing schedule and
no time cap. Medians of ``--repeats`` runs, wall-clock and CPU seconds of this process.
Writes ``bench/results/overhead_bo.md``. Targets: distances among 100 under 1 s,
acquisition with 100 trained under 2 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.simulate import machine, seed_arch, true_accuracy
from engine import kernel as K
from engine.acquisition import optimize_acquisition
from engine.gp import ArchitectureGP
from engine.morphism import random_morph


def trained_networks(n: int, seed: int, max_steps: int = 8) -> list:
    """``n`` distinct networks from random morph chains of the seed, with ids."""
    rng = np.random.default_rng(seed)
    base = seed_arch()
    out, keys = [], set()
    while len(out) < n:
        arch = base
        for _ in range(int(rng.integers(1, max_steps + 1))):
            child = random_morph(arch, rng)
            if child is not None:
                arch = child
        if K.distance_key(arch) in keys:
            continue
        keys.add(K.distance_key(arch))
        arch = arch.copy()
        arch.id = str(len(out) + 1)
        out.append(arch)
    return out


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure(n: int, repeat: int) -> dict:
    archs = trained_networks(n + 1, seed=repeat)
    trained, extra = archs[:n], archs[n]
    scores = [true_accuracy(a) for a in trained]
    out = {}
    cache = K.DistanceCache()
    _, out["dist_wall"], out["dist_cpu"] = timed(lambda: cache.add_many(trained))
    _, out["row_wall"], out["row_cpu"] = timed(lambda: cache.add(extra))
    cache = K.DistanceCache()
    cache.add_many(trained)
    model, out["fit_wall"], out["fit_cpu"] = timed(lambda: ArchitectureGP(cache, prior_std=0.1).fit(trained, scores))
    out["jitter"] = model.gp_.jitter_
    pairs = list(zip(trained, scores))
    proposal, out["acq_wall"], out["acq_cpu"] = timed(
        lambda: optimize_acquisition(pairs, model, np.random.default_rng(repeat)))
    out["steps"] = len(proposal.operations) if proposal else 0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead_bo", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100,200")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "overhead_bo.md"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    header = machine()
    rows = []
    for n in sizes:
        runs = [measure(n, r) for r in range(args.repeats)]
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        rows.append((n, med))
        print(f"n={n}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    lines = [
        "# Bayesian-optimisation overhead per proposal",
        "",
        f"Machine: {header}.",
        "",
        f"Medians of {args.repeats} runs; wall-clock seconds, with this process's CPU seconds in brackets "
        "(the machine is shared: when its load is above its CPU count, wall time exceeds CPU time). "
        "Trained networks: distinct random morph chains (1-8 steps) of the seed CNN for 32x32x3 inputs. "
        "Acquisition: default schedule (T 1 -> 1e-4, decay 0.9, 8 children per expansion, at most "
        "2 morphisms from a trained network), no time cap.",
        "",
        "| trained | distance matrix | + one trial (one row) | GP fit | acquisition | jitter used | proposal steps |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in rows:
        lines.append(
            f"| {n} | {m['dist_wall']:.3f} ({m['dist_cpu']:.3f}) | {m['row_wall']:.4f} ({m['row_cpu']:.4f}) | "
            f"{m['fit_wall']:.3f} ({m['fit_cpu']:.3f}) | {m['acq_wall']:.3f} ({m['acq_cpu']:.3f}) | "
            f"{m['jitter']:.0e} | {m['steps']:.0f} |")
    by_n = dict(rows)
    if 100 in by_n:
        d, a = by_n[100]["dist_wall"], by_n[100]["acq_wall"]
        lines += ["", f"Targets with 100 trained: distances {d:.2f} s (target < 1 s: "
                  f"{'met' if d < 1 else 'missed'}), acquisition {a:.2f} s (target < 2 s: "
                  f"{'met' if a < 2 else 'missed'})."]
    lines.append("")
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
