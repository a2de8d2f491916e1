"""Searchers side by side: bayesian, random, bfs and the fixed CNN at equal wall time.

    python -m bench.compare [DATA] [--test TEST_DATA] --budget 600 --seeds 3 \
        [--methods bayesian,random,bfs,fixed] [--work /tmp/compare]

Each (method, seed) runs in its own process, one after another (never two at once: they
would share the 2 cores), on the same data and the same seeded train/validation/test split.
Reported per method: test accuracy mean ± sd (on the run's held-out test split, and on
TEST_DATA when given), trials completed, overhead share of wall time (everything but
training and evaluation), and best-so-far validation accuracy against time. Writes
``bench/results/compare-<budget>s.md`` and ``.json`` (raw numbers) and ``.html`` (figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "fashion-mnist-small" / "train"
RESULTS = ROOT / "bench" / "results"


def run_one(method: str, seed: int, data: str, budget: float, out: Path) -> dict:
    """Run one search (or the fixed CNN) in a fresh process and return what it measured."""
    if method == "fixed":
        cmd = [sys.executable, "-m", "bench.fixed_cnn", data, "--budget", str(budget), "--seed", str(seed), "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "engine", "search", data, "--out", str(out), "--budget", str(budget),
               "--searcher", method, "--seed", str(seed)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    result = {"method": method, "seed": seed, "process_wall_s": wall, "test_accuracy": summary["test_accuracy"]}
    if method == "fixed":
        result |= {"trials": 1, "overhead_share": None,
                   "curve": [[h["t"], max(x["val_accuracy"] for x in summary["history"][: i + 1])]
                             for i, h in enumerate(summary["history"])]}
    else:
        t = summary["timings"]
        busy = t.get("training_s", 0.0) + t.get("evaluation_s", 0.0)
        result |= {"trials": summary["n_ok"], "overhead_share": 1.0 - busy / summary["wall_s"],
                   "best_val_accuracy": (summary.get("best") or {}).get("val_accuracy"),
                   "curve": best_so_far(out / "trials.jsonl")}
    return result


def best_so_far(trials_jsonl: Path) -> list[list[float]]:
    """[(seconds since start, best validation accuracy so far)] over the finished trials."""
    points, best = [], 0.0
    for line in trials_jsonl.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("status") == "ok" and rec.get("val_accuracy") is not None:
            best = max(best, rec["val_accuracy"])
            points.append([rec.get("finished_s", 0.0), best])
    return points


def test_folder_accuracy(model_path: Path, test_data: str) -> float:
    out = subprocess.run([sys.executable, "-m", "engine", "evaluate", str(model_path), test_data], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(json.loads(out.stdout)["accuracy"])


def machine() -> str:
    import keras
    import numpy

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
            f"Keras {keras.__version__} ({keras.backend.backend()}), NumPy {numpy.__version__}, "
            f"load average at the end {load:.2f}, {date.today().isoformat()}")


def table(results: list[dict], methods: list[str], with_test_folder: bool) -> str:
    def ms(values):
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    head = "| method | test acc. (held-out split) |" + (" test acc. (test folder) |" if with_test_folder else "") + \
           " trials | overhead share | wall s (median) |\n|---|---|" + ("---|" if with_test_folder else "") + "---|---|---|\n"
    rows = []
    for m in methods:
        rs = [r for r in results if r["method"] == m]
        if not rs:
            continue
        rows.append(f"| {m} | {ms([r['test_accuracy'] for r in rs])} |"
                    + (f" {ms([r.get('test_folder_accuracy') for r in rs])} |" if with_test_folder else "")
                    + f" {statistics.mean(r['trials'] for r in rs):.1f} |"
                    + (f" {statistics.mean(r['overhead_share'] for r in rs):.1%} |" if rs[0]["overhead_share"] is not None else " – |")
                    + f" {statistics.median(r['process_wall_s'] for r in rs):.0f} |")
    return head + "\n".join(rows) + "\n"


def figure(results: list[dict], path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in results:
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line_shape="hv", name=f"{r['method']} seed {r['seed']}"))
    fig.update_layout(title="Best validation accuracy so far", xaxis_title="seconds", yaxis_title="validation accuracy")
    fig.write_html(path, include_plotlyjs="cdn")
    try:
        fig.write_image(path.with_suffix(".png"))
    except Exception:  # kaleido is optional
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare")
    p.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    p.add_argument("--test", default=None, help="a class-folder test set scored by each best model (e.g. .../test)")
    p.add_argument("--budget", type=float, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", default="bayesian,random,bfs,fixed")
    p.add_argument("--work", type=Path, default=Path("/tmp/sprout-compare"))
    p.add_argument("--name", default=None, help="results file stem (default compare-<budget>s)")
    a = p.parse_args(argv)
    methods = a.methods.split(",")
    results = []
    # Seeds outermost so a method's runs are spread over the session, not bunched together:
    # a load spike then hurts every method a little instead of one method a lot.
    for seed in range(a.seeds):
        for m in methods:
            out = a.work / f"{m}-{seed}"
            if out.exists():
                subprocess.run(["rm", "-rf", str(out)], check=True)
            r = run_one(m, seed, a.data, a.budget, out)
            if a.test:
                r["test_folder_accuracy"] = test_folder_accuracy(out / "best_model.keras", a.test)
            print(f"{m:9s} seed {seed}: test {r['test_accuracy']:.4f}"
                  + (f" / folder {r['test_folder_accuracy']:.4f}" if a.test else "")
                  + f", {r['trials']} trials, {r['process_wall_s']:.0f} s", flush=True)
            results.append(r)
    stem = a.name or f"compare-{int(a.budget)}s"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"data": a.data, "budget_s": a.budget, "results": results}, indent=1))
    figure(results, RESULTS / f"{stem}.html")
    md = (f"# Searchers at equal wall time ({int(a.budget)} s budget, {a.seeds} seeds)\n\n"
          f"Data: `{os.path.relpath(a.data, ROOT)}`" + (f", test folder `{os.path.relpath(a.test, ROOT)}`" if a.test else "")
          + f". Machine: {machine()}.\n\n" + table(results, methods, bool(a.test))
          + "\nOverhead share = 1 - (training + evaluation seconds) / wall seconds, from each run's summary.json.\n"
          f"Raw numbers: `{stem}.json`; best-so-far curves: `{stem}.html`.\n")
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
