"""The GPU check (issue 17): a search with one worker per GPU on data it makes, and what it did.

    python -m bench.gpu_check [--budget 300] [--work /tmp/sprout-gpu-check]

Makes a colour image set (:mod:`bench.colour_shapes`: 6 shapes, 1,200 training images at 32 px),
runs ``python -m engine search`` on it with ``--workers`` = the GPUs ``nvidia-smi -L`` lists, under
the Keras backend of the environment (``scripts/gpu-check.sh`` sets ``KERAS_BACKEND=jax``), and
writes networks trained, trials per minute, test accuracy and the device the search named to
``bench/results/gpu-check.md``. Run it where the device tool lends a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "gpu-check.md"


def gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (an empty list without one)."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listing.splitlines() if line.startswith("GPU")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300)
    parser.add_argument("--work", type=Path, default=Path("/tmp/sprout-gpu-check"))
    args = parser.parse_args(argv)
    found = gpus()
    if not found:
        print("no GPU: nvidia-smi lists none", file=sys.stderr)
        return 2
    data = args.work / "shapes"
    if not (data / "train").is_dir():
        subprocess.run([sys.executable, "-m", "bench.colour_shapes", str(data), "--train", "1200", "--test", "300",
                        "--size", "32"], cwd=ROOT, check=True)
    run = args.work / f"run-{int(time.time())}"
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "engine", "search", str(data / "train"), "--budget", f"{args.budget:g}",
           "--workers", str(len(found)), "--out", str(run)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    summary = json.loads((run / "summary.json").read_text())
    state = json.loads((run / "state.json").read_text())
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines() if line.strip()]
    span = max(t["finished_s"] for t in trials) - min(t["started_s"] for t in trials)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    text = "\n".join([
        "# GPU check", "",
        f"{date.today().isoformat()}; `bash scripts/gpu-check.sh` (KERAS_BACKEND={backend}, "
        f"budget {args.budget:g} s, {len(found)} worker(s), one per GPU).", "",
        "GPUs: " + "; ".join(found), f"Device the search named: {state.get('device')}", "",
        "| networks trained | trials per minute | test accuracy | wall s |", "|---:|---:|---:|---:|",
        f"| {len(trials)} | {60 * len(trials) / max(span, 1e-9):.1f} | {summary.get('test_accuracy')} "
        f"| {wall:.0f} |", ""])
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
