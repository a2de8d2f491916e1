"""The simulated search under a time budget: does training shorter children at the end pay?

    python -m bench.simulate_budget [--seconds 60] [--seeds 20] [--searchers bayesian,bayesian:spend=all]

:mod:`bench.simulate` counts proposals and knows no time. Here every trial costs time, in epochs of
the seed network: EXTRA_EPOCHS for building plus its epochs at (flops / the seed's) ** 0.7 each
(the search's cost model), and the search follows the loop's end rules (the cost cap of
:func:`engine.search.loop.affordable_limits`, the epochs that fit the time left). With ``spend=all``
in a spec the epochs shrink before the cap does (issue 14, lever 8). The landscape and the noise are
:mod:`bench.simulate`'s; a child trained fewer than its EPOCHS epochs is observed lower by the same
guess as a cut trial there (``--truncated-drop``). What the time a search leaves is worth to the
final fine-tune is not modelled: the table gives the share of the search time used instead.
Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from bench.simulate import EPOCHS, Training, _number, observe, seed_arch, true_accuracy
from engine.errors import SproutError
from engine.nas.architecture import Limits
from engine.nas.searchers import make_searcher
from engine.search import plan
from engine.search.budget import CostModel
from engine.search.loop import TRIAL_SHARE

#: A trial's time outside its epochs (building, tracing), in seed epochs.
EXTRA_EPOCHS = 1.0


def epoch_cost(arch, seed_flops: float) -> float:
    """An epoch of ``arch`` in seed epochs: flops ** CostModel.EXPONENT, as the search's cost model scales."""
    return (max(arch.flops(), 1.0) / seed_flops) ** CostModel.EXPONENT


def run_timed(spec: str, seed: int, seconds: float, time_cap_s: float | None, training: Training = Training()) -> dict:
    """One search under a time budget of ``seconds`` (in epochs of the seed network) with the search
    loop's end rules (:func:`engine.search.loop.affordable_limits`, its epochs per trial): trials
    cost EXTRA_EPOCHS + epochs x :func:`epoch_cost`; a child given fewer than its EPOCHS epochs is
    observed ``truncated_drop`` x the missing share lower (the same guess as a cut trial). The
    spec's ``spend=all`` lets the epochs shrink before the cost cap does (lever 8). Returns the best
    noise-free value trained, the trials, the short ones and the share of the time used."""
    name, _, opts = spec.partition(":")
    params = {key: _number(value) for key, _, value in (item.partition("=") for item in filter(None, opts.split(",")))}
    spend_all = params.pop("spend", "capped") == "all"
    searcher = make_searcher(name, seed=seed, **params)
    noise = np.random.default_rng(10_000 + seed)
    base = seed_arch()
    seed_flops = float(base.flops())
    history = [observe(base, None, training, noise)]
    searcher.observe(history[0])
    used, short = EXTRA_EPOCHS + 2 * EPOCHS, 0  # the seed trains twice a child's epochs
    while True:
        left = seconds - used
        best = max(history, key=lambda t: t.score)
        epoch_best = epoch_cost(best.architecture, seed_flops)
        if left <= EXTRA_EPOCHS + epoch_best:
            break
        allowed = max(TRIAL_SHARE * left, min(left, 2.0 * (EXTRA_EPOCHS + EPOCHS * epoch_best)))
        epochs = plan.epochs_within(EPOCHS, allowed - EXTRA_EPOCHS, plan.GROWTH * epoch_best) if spend_all else EPOCHS
        cap = seed_flops * max((allowed - EXTRA_EPOCHS) / epochs, 1e-9) ** (1.0 / CostModel.EXPONENT)
        searcher.limits = Limits(max_flops=int(cap))
        try:
            proposal = searcher.propose(history, time_cap_s=time_cap_s if name == "bayesian" else None)
        except SproutError:  # nothing fits the cap: the rest goes to the fine-tune
            break
        arch = proposal.architecture.copy()
        arch.id = str(len(history))
        n = min(EPOCHS, int((left - EXTRA_EPOCHS) // epoch_cost(arch, seed_flops)))
        if n < 1:
            break
        used += EXTRA_EPOCHS + n * epoch_cost(arch, seed_flops)
        trial = observe(arch, next(t for t in history if t.id == str(proposal.ancestor_id)), training, noise)
        if n < EPOCHS:
            short += 1
            trial.score -= training.truncated_drop * (1 - n / EPOCHS)
            trial.record.update(short=True, full_epochs=EPOCHS, max_epochs=n, epochs=n,
                                total_epochs=trial.record["total_epochs"] - EPOCHS + n)
        history.append(trial)
        searcher.observe(trial)
    return {"spec": spec, "seed": seed, "best": max(true_accuracy(t.architecture) for t in history),
            "trials": len(history), "short": short, "used": min(used, seconds) / seconds}


def timed_report(results: list[dict], specs: list[str], seconds: float) -> str:
    """The time-budget table: per searcher, the best value trained, trials, short ones, time used."""
    lines = [f"Time budget {seconds:g} seed epochs (the seed takes {EXTRA_EPOCHS + 2 * EPOCHS:g}); "
             f"{len({r['seed'] for r in results})} seeds.", "",
             "| searcher | best true value ± s.e. | trials | short trials | search time used (mean, min) |",
             "|---|---:|---:|---:|---:|"]
    for spec in specs:
        rows = [r for r in results if r["spec"] == spec]
        best = np.array([r["best"] for r in rows])
        se = best.std(ddof=1) / np.sqrt(len(best)) if len(best) > 1 else float("nan")
        lines.append(f"| {spec} | {best.mean():.4f} ± {se:.4f} | {np.mean([r['trials'] for r in rows]):.1f} | "
                     f"{np.mean([r['short'] for r in rows]):.1f} | {np.mean([r['used'] for r in rows]):.0%}, "
                     f"{min(r['used'] for r in rows):.0%} |")
    return "\n".join(lines)


def _run_star(args):
    return run_timed(*args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.simulate_budget", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="the search's time in seed epochs")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--time-cap", type=float, default=None, help="bayesian acquisition time cap (s)")
    p.add_argument("--truncated-drop", type=float, default=0.03,
                   help="observed score lost by a child per missing share of its epochs")
    p.add_argument("--searchers", default="bayesian,bayesian:spend=all")
    a = p.parse_args(argv)
    specs = [s.replace(";", ",") for s in a.searchers.split(",") if s]
    jobs = [(spec, seed, a.seconds, a.time_cap, Training(truncated_drop=a.truncated_drop))
            for seed in range(a.first_seed, a.first_seed + a.seeds) for spec in specs]
    with ProcessPoolExecutor(a.processes) as pool:
        print(timed_report(list(pool.map(_run_star, jobs)), specs, a.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
