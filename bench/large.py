"""Large data sets (issue 22): the multi-fidelity search against the fixed CNN on 60,000 images.

    python -m bench.large [--data TRAIN_ZIP] [--test TEST_ZIP] [--budget 600] [--seeds 3 | --seeds 1,2] \
        [--fidelities 0.0625,0.25,1] [--no-fixed] [--add-to EARLIER.json] [--work DIR] [--out bench/results/large.md]

Per seed, one after another (never two at once: they would share the cores): a search of
``--data`` (fashion-mnist-full's train.zip by default) started the way the app starts one, through
a :class:`engine.search.jobs.Registry` in this process (the server) with the search in its worker
process, then the fixed CNN (``bench/fixed_cnn.py``) at the same budget of wall time; both best
models are scored on ``--test`` (test.zip, never seen by either). ``--seeds`` is a count (seeds
0..N-1) or a list; ``--add-to`` puts the seeds of an earlier run's JSON (same data, test and budget)
before these, so a benchmark of 3 seeds can be measured in more than one sitting. Reported: test accuracy of each
and the error ratio (search / fixed), trials per fidelity and their share of the search's wall
time, promotions, the GP's rank correlation (Spearman, predicted mean against the validation
accuracy measured) per fidelity, and the peak RSS of the server (this process) and the worker.
The data sets are decoded once before any clock starts (the ingest cache), as a user's second
search of a folder finds them. Writes ``--out`` and ``.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from engine.nas.levers import parse as parse_levers
from engine.training.recipe import parse_overrides

ROOT = Path(__file__).resolve().parent.parent
FULL = ROOT.parent / "shared" / "datasets" / "fashion-mnist-full"
OUT = ROOT / "bench" / "results" / "large.md"
MIN_TRIALS = 15        # issue 22: the search trains at least this many networks, at any fidelity
ERROR_RATIO = 0.95     # ... and its test error is at most this times the fixed CNN's on average


def warm_cache(*sources: Path) -> None:
    """Decode the data sets into the ingest cache in a separate process (not on any clock)."""
    code = "import sys\nfrom engine.data import ingest\nfor s in sys.argv[1:]:\n    ingest.load(s)\n"
    subprocess.run([sys.executable, "-c", code, *map(str, sources)], cwd=ROOT, check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def seed_list(text: str) -> list[int]:
    """``--seeds``: a count N (seeds 0..N-1) or a comma-separated list of seeds."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seeds or a list like 1,2; received {text!r}")
    return list(range(values[0])) if "," not in text else values


def earlier_results(path: Path, a: argparse.Namespace) -> list[dict]:
    """The per-seed results of an earlier run's JSON, checked to be of the same data, test and budget."""
    earlier = json.loads(Path(path).read_text())
    mine = {k: getattr(a, k, None) for k in ("fidelities", "recipe", "levers")}
    theirs = {k: earlier.get(k) for k in mine}
    same = (Path(earlier["data"]).resolve() == Path(a.data).resolve()
            and Path(earlier["test"]).resolve() == Path(a.test).resolve()
            and float(earlier["budget_s"]) == a.budget and mine == theirs)
    if not same:
        raise SystemExit(f"--add-to {path}: expected a run of {a.data}, {a.test}, {a.budget:g} s, {mine}; "
                         f"received {earlier['data']}, {earlier['test']}, {earlier['budget_s']:g} s, {theirs}")
    return list(earlier["results"])


def watch_rss(pid_of, stop: threading.Event, peaks: dict) -> None:
    """Keep the highest RSS (MB) of this process ("server") and of the worker ("worker") until ``stop``."""
    from engine.search import machine

    while not stop.is_set():
        peaks["server"] = max(peaks.get("server", 0.0), machine.rss_mb(os.getpid()) or 0.0)
        pid = pid_of()
        if pid is not None:
            peaks["worker"] = max(peaks.get("worker", 0.0), machine.rss_mb(pid) or 0.0)
        stop.wait(0.2)


def run_search(data: Path, budget: float, seed: int, work: Path, fidelities: list[float] | None,
               recipe: dict | None = None, levers: dict | None = None) -> dict:
    """One search through a registry, as the app runs it: its run folder, wall time and peak RSS."""
    from engine.search.config import SearchConfig
    from engine.search.jobs import Registry

    registry = Registry(work / "runs", max_active=1)
    peaks: dict = {}
    try:
        t0 = time.monotonic()
        run_id = registry.start(data, SearchConfig(budget_s=budget, seed=seed, fidelities=fidelities, recipe=recipe,
                                                    levers=levers))
        stop = threading.Event()
        watcher = threading.Thread(target=watch_rss, args=(lambda: registry.worker_pid(run_id), stop, peaks),
                                   daemon=True)
        watcher.start()
        registry.wait(run_id, budget * 2 + 300)
        wall = time.monotonic() - t0
        stop.set()
        watcher.join()
        status = registry.snapshot(run_id)["status"]
    finally:
        registry.close()
    return {"run_dir": str(work / "runs" / run_id), "wall_s": wall, "status": str(status),
            "server_peak_mb": peaks.get("server"), "worker_peak_mb": peaks.get("worker")}


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (None under 3 pairs or a constant side)."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)


def per_fidelity(records: list[dict], wall_s: float) -> list[dict]:
    """Per fidelity: trials, ok trials, promotions into it, share of the wall time its trials took,
    and the GP's rank correlation over its trials that had a prediction."""
    out = []
    for share in sorted({float(r.get("fidelity") or 1.0) for r in records}):
        at = [r for r in records if float(r.get("fidelity") or 1.0) == share]
        ok = [r for r in at if r.get("status") == "ok" and r.get("val_accuracy") is not None]
        predicted = [r for r in ok if (r.get("prediction") or {}).get("mean") is not None]
        out.append({"fidelity": share, "trials": len(at), "ok": len(ok),
                    "promoted_into": sum(1 for r in at if r.get("promoted_from") is not None),
                    "time_share": sum(float(r.get("trial_seconds") or r.get("seconds") or 0.0) for r in at) / wall_s,
                    "rank_correlation": spearman([r["prediction"]["mean"] for r in predicted],
                                                 [r["val_accuracy"] for r in predicted]),
                    "n_predicted": len(predicted)})
    return out


def commit() -> str | None:
    """The checkout's commit (short), for results measured in more than one sitting."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or None


def read_run(run_dir: Path) -> tuple[list[dict], dict, dict]:
    from engine.search.folder import read_jsonl

    return (read_jsonl(run_dir / "trials.jsonl"), json.loads((run_dir / "summary.json").read_text()),
            json.loads((run_dir / "state.json").read_text()))


def one_seed(a: argparse.Namespace, seed: int) -> dict:
    from bench.compare import run_one, test_folder_accuracy

    work = Path(a.work) / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    search = run_search(Path(a.data), a.budget, seed, work, a.fidelities, a.recipe, a.levers)
    run_dir = Path(search["run_dir"])
    records, summary, state = read_run(run_dir)
    result = {"seed": seed, "commit": commit(), "measured": time.strftime("%Y-%m-%d %H:%M"), **search,
              "fidelities": state.get("fidelities"), "trials": len(records),
              "n_ok": summary.get("n_ok"), "split_test_accuracy": summary.get("test_accuracy"),
              "test_accuracy": test_folder_accuracy(run_dir / "best_model.keras", a.test),
              "best": summary.get("best"), "per_fidelity": per_fidelity(records, search["wall_s"])}
    print(f"seed {seed}: search {result['status']}, {result['trials']} trials, test {result['test_accuracy']:.4f}, "
          f"wall {search['wall_s']:.0f} s, server {search['server_peak_mb'] or 0:.0f} MB, "
          f"worker {search['worker_peak_mb'] or 0:.0f} MB", flush=True)
    if not a.no_fixed:
        fixed = run_one("fixed", seed, str(a.data), a.budget, work / "fixed")
        fixed["test_folder_accuracy"] = test_folder_accuracy(work / "fixed" / "best_model.keras", a.test)
        result["fixed"] = {k: fixed.get(k) for k in ("test_accuracy", "test_folder_accuracy", "process_wall_s")}
        print(f"seed {seed}: fixed CNN test {fixed['test_folder_accuracy']:.4f}", flush=True)
    return result


def verdicts(results: list[dict]) -> list[str]:
    """The issue's three checks, in words (those that can be judged from what ran)."""
    lines = [f"- At least {MIN_TRIALS} networks per search: "
             + ("**yes**" if all(r["trials"] >= MIN_TRIALS for r in results) else "**no**")
             + f" ({', '.join(str(r['trials']) for r in results)})."]
    with_fixed = [r for r in results if r.get("fixed")]
    if with_fixed:
        beats = all(r["test_accuracy"] > r["fixed"]["test_folder_accuracy"] for r in with_fixed)
        ratios = [(1 - r["test_accuracy"]) / max(1e-9, 1 - r["fixed"]["test_folder_accuracy"]) for r in with_fixed]
        lines.append(f"- Search above the fixed CNN on every seed: **{'yes' if beats else 'no'}**.")
        lines.append(f"- Error ratio search / fixed, mean {statistics.mean(ratios):.3f} (at most {ERROR_RATIO}: "
                     f"**{'yes' if statistics.mean(ratios) <= ERROR_RATIO else 'no'}**).")
    return lines


def report(a: argparse.Namespace, results: list[dict], note: str) -> str:
    from engine.search import machine

    lines = ["# Large data sets: multi-fidelity search against the fixed CNN (issue 22)", "",
             f"Measured by `bench/large.py` on {time.strftime('%Y-%m-%d %H:%M')}: Linux {platform.release()}, "
             f"Python {platform.python_version()}, {machine.cpu_count()} cores. "
             f"Data `{os.path.relpath(a.data, ROOT)}`, "
             f"test `{os.path.relpath(a.test, ROOT)}`, {a.budget:g} s each, seeds {', '.join(map(str, a.seed_list))}"
             + (f", fidelities forced to {a.fidelities}" if a.fidelities else ", fidelities chosen by the recipe")
             + (f", recipe overrides {a.recipe}" if a.recipe else "")
             + (f", search options {a.levers}" if a.levers else "")
             + ".", ""]
    if note:
        lines += [note, ""]
    lines += verdicts(results) + ["", "| seed | search test | fixed test | trials (ok) | fidelities | best | wall s | "
                                  "server peak MB | worker peak MB | commit, measured |",
                                  "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        fixed = (r.get("fixed") or {}).get("test_folder_accuracy")
        lines.append(f"| {r['seed']} | {r['test_accuracy']:.4f} | {'–' if fixed is None else f'{fixed:.4f}'} | "
                     f"{r['trials']} ({r['n_ok']}) | {r['fidelities']} | {(r.get('best') or {}).get('trial_id')} | "
                     f"{r['wall_s']:.0f} | {r['server_peak_mb'] or 0:.0f} | {r['worker_peak_mb'] or 0:.0f} | "
                     f"{r.get('commit') or '–'}, {r.get('measured') or '–'} |")
    lines += ["", "Per fidelity (share of the training images):", "",
              "| seed | fidelity | trials (ok) | promoted into it | share of wall time | GP rank correlation (n) |",
              "|---|---|---|---|---|---|"]
    for r in results:
        for f in r["per_fidelity"]:
            rho = f["rank_correlation"]
            lines.append(f"| {r['seed']} | {f['fidelity']:g} | {f['trials']} ({f['ok']}) | {f['promoted_into']} | "
                         f"{f['time_share']:.0%} | {'–' if rho is None else f'{rho:+.2f}'} ({f['n_predicted']}) |")
    lines += ["", "Test accuracy on the test zip (10,000 images neither saw). GP rank correlation: Spearman between "
              "the predicted mean a trial was proposed with and the validation accuracy it reached, over that "
              "fidelity's trials (a promotion has no prediction). Peak RSS: the registry's process (the server) "
              "and the search's worker process, sampled every 0.2 s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(FULL / "train.zip"))
    p.add_argument("--test", default=str(FULL / "test.zip"))
    p.add_argument("--budget", type=float, default=600.0)
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], metavar="N | S1,S2,...")
    p.add_argument("--fidelities", type=lambda s: [float(x) for x in s.split(",")], default=None)
    p.add_argument("--recipe", type=parse_overrides, default=None, metavar="KEY=VALUE,...",
                   help="override the search's recipe, e.g. seed_epochs=1 (as `engine search --recipe`)")
    p.add_argument("--levers", type=parse_levers, default=None, metavar="KEY=VALUE,...",
                   help="search options (engine.nas.levers), e.g. seed=wide")
    p.add_argument("--no-fixed", action="store_true", help="the search alone (a smoke run)")
    p.add_argument("--note", default="", help="a line for the report (e.g. 'smoke run, not the benchmark')")
    p.add_argument("--add-to", type=Path, default=None, metavar="EARLIER.json",
                   help="report these seeds after those of an earlier run (same data, test and budget)")
    p.add_argument("--work", default=None)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    a.work = a.work or tempfile.mkdtemp(prefix="sprout-large-")
    earlier = earlier_results(a.add_to, a) if a.add_to else []
    a.seed_list = [r["seed"] for r in earlier] + [s for s in a.seeds if s not in {r["seed"] for r in earlier}]
    warm_cache(Path(a.data), Path(a.test))
    results = earlier + [one_seed(a, seed) for seed in a.seed_list[len(earlier):]]
    text = report(a, results, a.note)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    a.out.with_suffix(".json").write_text(json.dumps({"budget_s": a.budget, "data": a.data, "test": a.test,
                                                      "fidelities": a.fidelities, "recipe": a.recipe,
                                                      "levers": a.levers, "results": results}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
