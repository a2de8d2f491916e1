"""Simulated parallel search: trials started and rounds to reach the top 1% with k trials at once.

``python -m bench.parallel [--seeds 12] [--budget 60] [--workers 1,2,4,8] [--processes 2]``

The objective, noise, seed network and top-1% value are those of :mod:`bench.simulate`. k
trials train at once: each lasts a random time (log-normal, mean one "round", sd about 30%),
and whenever one ends its score is observed and a new proposal fills the free slot, made
while the other k - 1 trials are still pending (``propose(history, pending=...)``). For each
searcher spec and k the table gives the trials started when the first top-1% network finished
(the compute spent) and the rounds since the seed network finished (the wall time, in trial
lengths). Searcher specs as in bench.simulate: ``bayesian`` believes pending networks at their
predicted mean (kriging believer), ``bayesian:pending_mode=lie`` at the worst score so far,
``bayesian:pending_mode=ignore`` proposes as if nothing were pending (only exact duplicates
of pending networks are excluded). Writes ``bench/results/parallel.md``.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.parallel_wall import HEADING as WALL_HEADING
from bench.simulate import NOISE, Trial, _number, machine, seed_arch, top_percent_value, true_accuracy
from engine.errors import SproutError
from engine.nas.searchers import make_searcher

DURATION_SD = 0.3  # sigma of log trial length


def run_parallel(spec: str, k: int, seed: int, budget: int, threshold: float) -> dict:
    """One asynchronous search with ``k`` slots until a top-1% network finishes (or ``budget`` trials)."""
    name, _, opts = spec.partition(":")
    params = {key: _number(value) for key, _, value in (item.partition("=") for item in filter(None, opts.split(",")))}
    searcher = make_searcher(name, seed=seed, **params)
    noise, lengths = np.random.default_rng(10_000 + seed), np.random.default_rng(20_000 + seed)
    base = seed_arch()
    history = [Trial("0", base, true_accuracy(base) + noise.normal(0, NOISE))]
    searcher.observe(history[0])
    clock, started, running, reached, seconds = 0.0, 0, [], None, []
    while reached is None:
        while len(running) < k and started < budget:
            t = time.perf_counter()
            try:
                proposal = searcher.propose(history, pending=[arch for _, _, arch in running])
            except SproutError:  # every allowed change is used up
                break
            seconds.append(time.perf_counter() - t)
            started += 1
            arch = proposal.architecture.copy()
            arch.id = str(started)
            length = float(np.exp(lengths.normal(-DURATION_SD ** 2 / 2, DURATION_SD)))
            heapq.heappush(running, (clock + length, started, arch))
        if not running:
            break
        clock, _, arch = heapq.heappop(running)
        value = true_accuracy(arch)
        trial = Trial(arch.id, arch, value + noise.normal(0, NOISE))
        history.append(trial)
        searcher.observe(trial)
        if value >= threshold:
            reached = {"trials": started, "rounds": clock}
    best = max(true_accuracy(t.architecture) for t in history)
    return {"spec": spec, "k": k, "seed": seed, "reached": reached, "best": best, "seconds": seconds,
            "rounds_run": clock}


def _run_star(args):
    return run_parallel(*args)


def _mean_se(values: np.ndarray) -> str:
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.1f} ± {se:.1f}"


def report(results: list[dict], specs: list[str], ks: list[int], args, threshold: float, wall: float) -> str:
    lines = [
        "# Simulated parallel search: k trials at once",
        "",
        f"Machine: {machine()}.",
        "",
        "Objective, noise and top-1% value as in [simulate.md](simulate.md) (bench.simulate: synthetic accuracy "
        f"of depth, width and skips; top-1% value {threshold:.4f}). k trials train at once, each for a log-normal "
        f"time (mean 1 round, log-sd {DURATION_SD}); when one ends, its score is observed and the next proposal "
        f"is made while the other k - 1 are pending. Budget {args.budget} trials, {args.seeds} seeds "
        f"({args.first_seed}..{args.first_seed + args.seeds - 1}); a run that never reaches the value counts "
        f"as {args.budget} trials + 1 and the rounds it ran + 1. Command: `python -m bench.parallel "
        f"--seeds {args.seeds} --budget {args.budget} --workers {args.workers}`.",
        "",
        "- **trials**: trials started when the first top-1% network finished (the compute spent);",
        "- **rounds**: trial lengths from the seed network's end to then (the wall time).",
        "- `bayesian` believes each pending network at its predicted mean with no noise (kriging believer, the "
        "default); `pending_mode=lie` at the worst score so far (a constant lie); `pending_mode=ignore` proposes as "
        "if nothing were pending (exact duplicates of pending networks are still excluded).",
        "",
        "| searcher | k | trials ± s.e. | median trials | rounds ± s.e. | median rounds | reached | mean best value |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in specs:
        for k in ks:
            rows = [r for r in results if r["spec"] == spec and r["k"] == k]
            if not rows:
                continue
            trials = np.array([r["reached"]["trials"] if r["reached"] else args.budget + 1 for r in rows], float)
            rounds = np.array([r["reached"]["rounds"] if r["reached"] else r["rounds_run"] + 1 for r in rows], float)
            lines.append(f"| {spec} | {k} | {_mean_se(trials)} | {np.median(trials):.0f} | {_mean_se(rounds)} | "
                         f"{np.median(rounds):.1f} | {sum(r['reached'] is not None for r in rows)}/{len(rows)} | "
                         f"{np.mean([r['best'] for r in rows]):.4f} |")
    lines += ["", "With k = 1 nothing is ever pending, so the Bayesian variants are one run (shown once).",
              f"Wall time {wall:.0f} s with {args.processes} processes.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parallel", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated numbers of trials at once")
    parser.add_argument("--samples", type=int, default=3000, help="random chains for the top-1%% estimate")
    parser.add_argument("--depth", type=int, default=16, help="longest random chain for the top-1%% estimate")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--searchers", default="bayesian,bayesian:pending_mode=lie,bayesian:pending_mode=ignore,random",
                        help="comma-separated specs; options as name:key=value;key=value")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "parallel.md"))
    args = parser.parse_args(argv)
    specs = [s.replace(";", ",") for s in args.searchers.split(",") if s]
    ks = [int(k) for k in args.workers.split(",") if k]
    start = time.perf_counter()
    threshold, _ = top_percent_value(args.samples, args.depth)
    first_bayes = next((s for s in specs if s.startswith("bayesian")), None)
    jobs = [(spec, k, seed, args.budget, threshold)
            for seed in range(args.first_seed, args.first_seed + args.seeds) for k in ks for spec in specs
            if not (k == 1 and spec.startswith("bayesian") and spec != first_bayes)]
    results = []
    with ProcessPoolExecutor(args.processes) as pool:
        for res in pool.map(_run_star, jobs):
            results.append(res)
            print(f"{res['spec']:<32} k={res['k']} seed {res['seed']:>2}: {res['reached']}", file=sys.stderr)
    text = report(results, specs, ks, args, threshold, time.perf_counter() - start)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.exists() else ""
    wall = old[old.index(WALL_HEADING):] if WALL_HEADING in old else ""  # bench.parallel_wall's part stays
    out.write_text(text + ("\n" + wall if wall else ""))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
