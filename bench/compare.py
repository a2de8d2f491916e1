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


def run_command(cmd: list[str], out: Path) -> tuple[float, dict]:
    """Run one search command (in a fresh process, as a user does) whose run folder is ``out``:
    its wall time in seconds and the summary.json it wrote."""
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, json.loads((out / "summary.json").read_text())


def run_one(method: str, seed: int, data: str, budget: float, out: Path, recipe: str | None = None) -> dict:
    """Run one search (or the fixed CNN) in a fresh process and return what it measured.
    ``recipe`` (``"key=value,..."``) overrides the searches' training recipe."""
    if method == "fixed":
        cmd = [sys.executable, "-m", "bench.fixed_cnn", data, "--budget", str(budget), "--seed", str(seed),
               "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "engine", "search", data, "--out", str(out), "--budget", str(budget),
               "--searcher", method, "--seed", str(seed)] + (["--recipe", recipe] if recipe else [])
    wall, summary = run_command(cmd, out)
    result = {"method": method, "seed": seed, "process_wall_s": wall, "run_wall_s": summary.get("wall_s"),
              "test_accuracy": summary["test_accuracy"]}
    if method == "fixed":
        result |= {"trials": 1, "overhead_share": None, "best_val_accuracy": summary.get("best_val_accuracy"),
                   "curve": [[h["t"], max(x["val_accuracy"] for x in summary["history"][: i + 1])]
                             for i, h in enumerate(summary["history"])]}
    else:
        t = summary["timings"]
        busy = t.get("training_s", 0.0) + t.get("evaluation_s", 0.0)
        result |= {"trials": summary["n_ok"], "overhead_share": 1.0 - busy / summary["wall_s"],
                   "best_val_accuracy": (summary.get("best") or {}).get("val_accuracy"),
                   "curve": best_so_far(out / "trials.jsonl"),
                   "recipe": json.loads((out / "state.json").read_text()).get("recipe")}
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
    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, "
            f"Keras {keras.__version__} ({keras.backend.backend()}), NumPy {numpy.__version__}, "
            f"load average at the end {load:.2f}, {date.today().isoformat()}")


def budget_used(r: dict, budget_s: float) -> float:
    """The share of the budget a run used: the run's own wall time (search + final phase, from its
    summary.json), else the whole command's (with the process start)."""
    return (r.get("run_wall_s") or r["process_wall_s"]) / budget_s


def table(results: list[dict], methods: list[str], with_test_folder: bool, budget_s: float) -> str:
    def ms(values):
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    head = "| method | test acc. (held-out split) |" + (" test acc. (test folder) |" if with_test_folder else "") + \
           " trials | overhead share | wall s (median) | budget used (median, min-max) |\n|---|---|" + \
           ("---|" if with_test_folder else "") + "---|---|---|---|\n"
    rows = []
    for m in methods:
        rs = [r for r in results if r["method"] == m]
        if not rs:
            continue
        used = [budget_used(r, budget_s) for r in rs]
        rows.append(f"| {m} | {ms([r['test_accuracy'] for r in rs])} |"
                    + (f" {ms([r.get('test_folder_accuracy') for r in rs])} |" if with_test_folder else "")
                    + f" {statistics.mean(r['trials'] for r in rs):.1f} |"
                    + (f" {statistics.mean(r['overhead_share'] for r in rs):.1%} |"
                       if rs[0]["overhead_share"] is not None else " – |")
                    + f" {statistics.median(r['process_wall_s'] for r in rs):.0f} |"
                    + f" {statistics.median(used):.0%} ({min(used):.0%}-{max(used):.0%}) |")
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
    except Exception:  # noqa: BLE001 - kaleido is optional, and a missing or broken one only costs the PNG
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
    p.add_argument("--recipe", default=None, help="training recipe overrides for the searches, e.g. flip=false,shift=0")
    p.add_argument("--from-json", type=Path, default=None,
                   help="only rewrite the markdown and figure of an earlier run from its JSON")
    a = p.parse_args(argv)
    if a.from_json:
        print(rebuild(a.from_json))
        return 0
    methods = a.methods.split(",")
    results = []
    # Seeds outermost so a method's runs are spread over the session, not bunched together:
    # a load spike then hurts every method a little instead of one method a lot.
    for seed in range(a.seeds):
        for m in methods:
            out = a.work / f"{m}-{seed}"
            if out.exists():
                subprocess.run(["rm", "-rf", str(out)], check=True)
            r = run_one(m, seed, a.data, a.budget, out, a.recipe)
            if a.test:
                r["test_folder_accuracy"] = test_folder_accuracy(out / "best_model.keras", a.test)
            print(f"{m:9s} seed {seed}: test {r['test_accuracy']:.4f}"
                  + (f" / folder {r['test_folder_accuracy']:.4f}" if a.test else "")
                  + f", {r['trials']} trials, {r['process_wall_s']:.0f} s", flush=True)
            results.append(r)
            # Saved after every run so a 2-hour benchmark cut short still leaves its finished runs.
            payload = save(a, methods, results)
    print(write_report(payload, a.name or f"compare-{int(a.budget)}s"))
    return 0


def save(a: argparse.Namespace, methods: list[str], results: list[dict]) -> dict:
    """Write the raw numbers so far to ``<stem>.json`` and return them."""
    stem = a.name or f"compare-{int(a.budget)}s"
    payload = {"data": a.data, "test": a.test, "budget_s": a.budget, "seeds": a.seeds, "methods": methods,
               "recipe": a.recipe, "machine": machine(), "results": results,
               "complete": len(results) == a.seeds * len(methods)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    return payload


def verdict(results: list[dict], key: str, a: str, b: str) -> str | None:
    """``a``'s mean minus ``b``'s mean of ``key`` in points, with the per-seed wins."""
    ra = {r["seed"]: r.get(key) for r in results if r["method"] == a and r.get(key) is not None}
    rb = {r["seed"]: r.get(key) for r in results if r["method"] == b and r.get(key) is not None}
    if not ra or not rb:
        return None
    diff = 100 * (statistics.mean(ra.values()) - statistics.mean(rb.values()))
    seeds = sorted(set(ra) & set(rb))
    wins = sum(ra[s] > rb[s] for s in seeds)
    return f"{diff:+.2f} points ({'higher' if diff > 0 else 'NOT higher'}; ahead on {wins} of {len(seeds)} seeds)"


def write_report(payload: dict, stem: str) -> str:
    """Write ``<stem>.md`` and ``<stem>.html`` from the raw numbers and return the markdown."""
    results = payload["results"]
    methods = payload.get("methods") or list(dict.fromkeys(r["method"] for r in results))
    with_folder = any(r.get("test_folder_accuracy") is not None for r in results)
    figure(results, RESULTS / f"{stem}.html")
    data, test = payload["data"], payload.get("test")
    seeds = payload.get("seeds") or len({r["seed"] for r in results})
    lines = [f"# Searchers at equal wall time ({int(payload['budget_s'])} s budget, {seeds} seeds)", "",
             f"Data: `{os.path.relpath(data, ROOT) if os.path.sep in data else data}`"
             + (f", test folder `{os.path.relpath(test, ROOT)}`" if test else "")
             + (f", recipe overrides `{payload['recipe']}`" if payload.get("recipe") else "")
             + f". Machine: {payload.get('machine') or 'not recorded'}.", "",
             table(results, methods, with_folder, payload["budget_s"]), ""]
    if payload.get("complete") is False:
        lines[-1:-1] = ["", f"**Incomplete: {len(results)} of {seeds * len(methods)} runs finished.**"]
    for other in ("fixed", "random", "bfs"):
        if "bayesian" in methods and other in methods:
            for key, what in (("test_accuracy", "held-out split"), ("test_folder_accuracy", "test folder")):
                v = verdict(results, key, "bayesian", other)
                if v:
                    lines.append(f"- bayesian vs {other}, {what}: {v}")
    if payload.get("notes"):  # the analysis written after the run, kept in the JSON so a rebuild keeps it
        lines += ["", "## Reading this table", ""] + list(payload["notes"])
    lines += ["", "Per run:", "", "| method | seed | held-out | test folder | trials | best validation | wall s | "
              "budget used |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (methods.index(r["method"]) if r["method"] in methods else 99, r["seed"])):
        folder = r.get("test_folder_accuracy")
        best = r.get("best_val_accuracy")
        lines.append(f"| {r['method']} | {r['seed']} | {r['test_accuracy']:.4f} | "
                     + (f"{folder:.4f}" if folder is not None else "–") + f" | {r['trials']} | "
                     + (f"{best:.4f}" if best is not None else "–") + f" | {r['process_wall_s']:.0f} | "
                     + f"{budget_used(r, payload['budget_s']):.0%} |")
    lines += ["", "Held-out split: the 15% test part of the run's own split (never seen by the search); test folder: "
              "a separate labelled folder scored by each run's exported model. Overhead share = 1 - (training + "
              "evaluation seconds) / wall seconds, from each run's summary.json. The fixed CNN is "
              "`bench/fixed_cnn.py` (the issue's 32/64/128 network, best validation epoch kept). Wall s: the whole "
              "command, TensorFlow's start included; budget used: the run's own wall time (search + final phase, "
              "summary.json's wall_s) over the budget.",
              f"Raw numbers: `{stem}.json`; best-so-far curves: `{stem}.html`.", ""]
    md = "\n".join(lines)
    (RESULTS / f"{stem}.md").write_text(md)
    return md


def rebuild(json_path: Path) -> str:
    """Rewrite the markdown and figure of an earlier run from its JSON (``--from-json``)."""
    payload = json.loads(json_path.read_text())
    old_md = json_path.with_suffix(".md")
    if old_md.exists():  # JSON written before these keys existed: take them from the old report
        parts = old_md.read_text().split("\n\n")
        head = parts[1] if len(parts) > 1 else ""
        if not payload.get("machine") and "Machine: " in head:
            payload["machine"] = head.split("Machine: ", 1)[1].strip().rstrip(".")
        if not payload.get("test") and "test folder `" in head:
            payload["test"] = str((ROOT / head.split("test folder `", 1)[1].split("`", 1)[0]).resolve())
    return write_report(payload, json_path.stem)


if __name__ == "__main__":
    sys.exit(main())
