"""The first minutes (issue 20): searches on the sample at short budgets, as a new user runs them.

    python -m bench.short_budgets --label after [--budgets 60,120,300] [--seeds 0,1,2] \
        [--code DIR] [--work /tmp/short-budgets]

Each (budget, seed) runs ``python -m engine search sample --budget B --seed S`` in a fresh
process, as the command line does (TensorFlow's import counts against the budget), with the
code in ``--code`` (default: this checkout; a worktree of an older commit measures "before").
With no ``--label`` it only rewrites the report from the rows kept. Runs go round-robin over
the budgets and labels given in one call, so a change in the machine's
load hits every column alike. Reported per run: networks trained, the most epochs a grown
network trained, test accuracy, wall time of the command. Rows are kept in
``bench/results/short-budgets.json`` under ``--label``; ``bench/results/short-budgets.md`` shows
the medians of every label side by side, with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def run_one(code: Path, budget: float, seed: int, out: Path) -> dict:
    """One CLI search of the sample; its row for the table."""
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "engine", "search", "sample", "--budget", f"{budget:g}",
                           "--seed", str(seed), "--out", str(out)], cwd=code, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the search failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
    epochs = [len((t.get("history") or {}).get("loss", [])) for t in trials]
    return {"budget": budget, "seed": seed, "wall_s": round(wall, 1), "n_trials": len(trials),
            "seed_epochs": epochs[0] if epochs else 0, "child_epochs_max": max(epochs[1:], default=0),
            "test_accuracy": summary.get("test_accuracy"), "load_avg_1min": round(load, 2)}


def table(rows_by_label: dict[str, list[dict]]) -> str:
    lines = ["| code | budget (s) | runs | networks trained (median, min) | test accuracy (median, min) | "
             "wall (median, max) | seed / grown epochs (median) | load average |",
             "|---|---|---|---|---|---|---|---|"]
    for label, rows in rows_by_label.items():
        for budget in sorted({r["budget"] for r in rows}):
            rs = [r for r in rows if r["budget"] == budget]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            lines.append(
                f"| {label} | {budget:g} | {len(rs)} | {med('n_trials'):g} ({min(r['n_trials'] for r in rs)}) | "
                f"{med('test_accuracy'):.3f} ({min(r['test_accuracy'] for r in rs):.3f}) | "
                f"{med('wall_s'):.1f} ({max(r['wall_s'] for r in rs):.1f}) | "
                f"{med('seed_epochs'):g} / {med('child_epochs_max'):g} | "
                f"{statistics.median(r['load_avg_1min'] for r in rs):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", action="append", default=[],
                        help="the code's name in the table; repeat with --code for several")
    parser.add_argument("--note", default="", help="a line for the report (e.g. how busy the machine was)")
    parser.add_argument("--code", action="append", default=None, help="checkout to run (one per --label)")
    parser.add_argument("--budgets", default="60,120,300")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", default="/tmp/short-budgets")
    args = parser.parse_args(argv)
    codes = [Path(c).resolve() for c in (args.code or [str(ROOT)] * len(args.label))]
    if len(codes) != len(args.label):
        parser.error(f"expected one --code per --label, received {len(codes)} and {len(args.label)}")
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    store = RESULTS / "short-budgets.json"
    saved = json.loads(store.read_text()) if store.exists() else {}
    for label in args.label:
        saved[label] = [r for r in saved.get(label, []) if r["budget"] not in budgets or r["seed"] not in seeds]
    work = Path(args.work)
    for seed in seeds:
        for budget in budgets:
            for label, code in zip(args.label, codes):
                row = run_one(code, budget, seed, work / f"{re.sub(r'[^A-Za-z0-9]+', '-', label)}-{budget:g}-{seed}")
                saved[label].append(row)
                print(label, row, flush=True)
                store.write_text(json.dumps(saved, indent=1))
    write_report(saved, args.note)


def write_report(saved: dict, note: str = "") -> None:
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}, {date.today().isoformat()}")
    (RESULTS / "short-budgets.md").write_text(
        "# Short budgets on the sample (issue 20)\n\n"
        "`python -m bench.short_budgets`: `python -m engine search sample --budget B --seed S`, each in a fresh "
        "process (TensorFlow's import counts). Networks trained include the first; wall is the whole command. "
        "Epochs: the first network's, and the most any grown network trained.\n\n"
        f"Machine: {machine}. {note}\n\n" + table(saved) + "\n")


if __name__ == "__main__":
    main()
