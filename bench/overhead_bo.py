"""What the Bayesian searcher costs between two trials, for 10 to 200 trained networks.

``python -m bench.overhead_bo [--sizes 10,50,100,200] [--repeats 3]``

For each size: the full edit-distance matrix among the trained networks, one new row
(what a finished trial adds to the cache), the GP fit (embedding + likelihood
maximisation) and one acquisition optimisation with the default annealing schedule and
no time cap. Medians of ``--repeats`` runs, wall-clock and CPU seconds of this process.
Writes ``bench/results/overhead_bo.md``. Targets: distances among 100 under 1 s,
acquisition with 100 trained under 2 s.

Memory, per size, in a separate pass (tracing allocations slows Python down, so it never
runs during the timed passes) and in a fresh process per size (``--memory-child N``), so the
numbers are that size's alone: the peak of the Python allocations (``tracemalloc``, NumPy
arrays included) during the distance matrix, the GP fit and the acquisition (each phase's
peak too), and the process's maximum resident set size (``resource.getrusage``), next to
its resident size before that work (interpreter, imports and the ``n`` networks).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from bench.simulate import machine, seed_arch, true_accuracy
from engine.nas import distance as K
from engine.nas.acquisition import optimize_acquisition
from engine.nas.gp import ArchitectureGP
from engine.nas.morphism import random_morph


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


MIB = 2**20


def _rss_mib() -> float:
    """This process's resident set size now (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return float("nan")


def _max_rss_mib() -> float:
    """This process's maximum resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def measure_memory(n: int, repeat: int = 0) -> dict:
    """Peak Python allocations (MiB) of the distance matrix, the GP fit and the acquisition
    for ``n`` trained networks, per phase and together, and the process's RSS before the work
    and its maximum after. Meant for a fresh process (:func:`memory_in_child`)."""
    archs = trained_networks(n + 1, seed=repeat)
    trained = archs[:n]
    scores = [true_accuracy(a) for a in trained]
    pairs = list(zip(trained, scores))
    gc.collect()
    out = {"rss_before_mib": _rss_mib()}
    tracemalloc.start()
    try:
        cache = K.DistanceCache()
        cache.add_many(trained)
        out["dist_peak_mib"] = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.reset_peak()
        model = ArchitectureGP(cache, prior_std=0.1).fit(trained, scores)
        out["fit_peak_mib"] = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.reset_peak()
        optimize_acquisition(pairs, model, np.random.default_rng(repeat))
        out["acq_peak_mib"] = tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()
    # reset_peak() keeps what is still allocated, so the largest phase peak is the overall one
    out["py_peak_mib"] = max(out["dist_peak_mib"], out["fit_peak_mib"], out["acq_peak_mib"])
    out["max_rss_mib"] = _max_rss_mib()
    return out


def memory_in_child(n: int) -> dict:
    """:func:`measure_memory` for ``n`` in a fresh Python process (same niceness)."""
    proc = subprocess.run([sys.executable, "-m", "bench.overhead_bo", "--memory-child", str(n)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead_bo", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100,200")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "overhead_bo.md"))
    parser.add_argument("--note", default="", help="a sentence about the conditions, added to the file")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(measure_memory(args.memory_child)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    header = machine()
    nice = os.nice(0)
    rows = []
    for n in sizes:
        runs = [measure(n, r) for r in range(args.repeats)]
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        med |= memory_in_child(n)
        rows.append((n, med))
        print(f"n={n}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    lines = [
        "# Bayesian-optimisation overhead per proposal",
        "",
        f"Machine: {header}; niceness {nice}.",
        "",
        *([f"Timings taken at niceness {nice}, beside other work on the machine"
           + (f" ({args.note})" if args.note else "") + ": they are upper bounds.", ""]
          if nice > 0 or args.note else []),
        f"Medians of {args.repeats} runs; wall-clock seconds, with this process's CPU seconds in brackets "
        "(the machine is shared: when its load is above its CPU count, wall time exceeds CPU time). "
        "Trained networks: distinct random morph chains (1-8 steps) of the seed CNN for 32x32x3 inputs. "
        "Acquisition: default schedule (T 1 -> 1e-4, decay 0.9, 8 children per expansion, at most "
        "2 morphisms from a trained network), no time cap. Memory (one run per size, in a fresh process, "
        "outside the timed runs): peak of the Python allocations traced by tracemalloc (NumPy arrays "
        "included) during distance matrix + GP fit + acquisition, with each phase's peak in brackets "
        "(distances / fit / acquisition; what a phase keeps counts in the later ones); the process's maximum "
        "resident set size (getrusage), with its size before that work (interpreter, imports, the networks) "
        "in brackets.",
        "",
        "| trained | distance matrix | + one trial (one row) | GP fit | acquisition | jitter used | proposal steps "
        "| peak Python memory, MiB | max RSS, MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in rows:
        lines.append(
            f"| {n} | {m['dist_wall']:.3f} ({m['dist_cpu']:.3f}) | {m['row_wall']:.4f} ({m['row_cpu']:.4f}) | "
            f"{m['fit_wall']:.3f} ({m['fit_cpu']:.3f}) | {m['acq_wall']:.3f} ({m['acq_cpu']:.3f}) | "
            f"{m['jitter']:.0e} | {m['steps']:.0f} | {m['py_peak_mib']:.1f} ({m['dist_peak_mib']:.1f} / "
            f"{m['fit_peak_mib']:.1f} / {m['acq_peak_mib']:.1f}) | {m['max_rss_mib']:.0f} "
            f"({m['rss_before_mib']:.0f}) |")
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
