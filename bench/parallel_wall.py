"""Side by side on this machine: 2 local workers with 1 thread each against 1 worker with all threads.

    python -m bench.parallel_wall [--budget 270] [--seeds 0] [--data ../shared/datasets/fashion-mnist-small/train]

Each (setting, seed) runs ``python -m engine search DATA --budget B --seed S`` in a fresh process,
as a user runs it, alternating the settings so that a change in the machine's load hits both:
``--workers 2`` (each worker's TensorFlow gets ``cpus / 2`` threads, engine.search.executor) and
``--workers 1`` (one network at a time, TensorFlow's own thread pools). Reported: networks
trained, trials per minute of the search phase's wall time, test accuracy, wall time. Rows are
kept in ``bench/results/parallel-wall.json``; the table goes into ``bench/results/parallel.md``
under its own heading (the simulated part, from ``bench.parallel``, is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "fashion-mnist-small" / "train"
HEADING = "## On this machine: 2 workers x 1 thread against 1 worker x 2 threads"


def run_one(data: Path, workers: int, budget: float, seed: int, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "engine", "search", str(data), "--budget", f"{budget:g}",
                           "--seed", str(seed), "--workers", str(workers), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the search failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
    span = max(t["finished_s"] for t in trials) - min(t["started_s"] for t in trials)
    return {"workers": workers, "budget": budget, "seed": seed, "wall_s": round(wall, 1), "n_trials": len(trials),
            "trials_per_min": round(60 * len(trials) / max(span, 1e-9), 2),
            "test_accuracy": summary.get("test_accuracy"), "load_avg_1min": round(load, 2)}


def section(rows: list[dict]) -> str:
    lines = [HEADING, "",
             f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
             f"{date.today().isoformat()}. Command: `python -m bench.parallel_wall --budget "
             f"{rows[0]['budget']:g}` (fashion-mnist-small; each run a fresh `python -m engine search`). "
             "Trials per minute over the span from the first trial's start to the last one's end.", "",
             "| setting | runs | networks trained (median) | trials per minute (median) | "
             "test accuracy (median, min) | wall s (median, max) | load average |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for workers in sorted({r["workers"] for r in rows}, reverse=True):
        rs = [r for r in rows if r["workers"] == workers]
        acc = [r["test_accuracy"] for r in rs if r["test_accuracy"] is not None]
        name = f"{workers} workers x {max(1, (os.cpu_count() or 1) // workers)} thread(s)"
        lines.append(f"| {name} | {len(rs)} | {statistics.median(r['n_trials'] for r in rs):g} | "
                     f"{statistics.median(r['trials_per_min'] for r in rs):.2f} | "
                     f"{statistics.median(acc):.3f}, {min(acc):.3f} | "
                     f"{statistics.median(r['wall_s'] for r in rs):.0f}, {max(r['wall_s'] for r in rs):.0f} | "
                     f"{statistics.median(r['load_avg_1min'] for r in rs):.1f} |")
    return "\n".join(lines) + "\n"


def put_section(path: Path, text: str) -> None:
    """Write ``text`` (starting with :data:`HEADING`) into ``path``, replacing an earlier one."""
    old = path.read_text() if path.exists() else ""
    keep = old.split(HEADING)[0].rstrip()
    path.write_text((keep + "\n\n" if keep else "") + text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parallel_wall", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=270)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/sprout-parallel-wall"))
    args = parser.parse_args(argv)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        for workers in (2, 1):
            row = run_one(args.data, workers, args.budget, seed, args.work / f"w{workers}-s{seed}")
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    (RESULTS / "parallel-wall.json").write_text(json.dumps(rows, indent=1) + "\n")
    put_section(RESULTS / "parallel.md", section(rows))
    print(section(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
