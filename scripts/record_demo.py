"""Re-record the demo search that the Replay page offers ("Watch a recorded search").

    .venv/bin/python scripts/record_demo.py [--networks 12] [--seed 0] [--image-size 16]

Runs a real search on the built-in sample as a user would (``python -m engine search``) in a
temporary folder. The number of networks ends it, not the clock (the budget is generous and
each grown network trains 2 epochs), so a busy machine records the same kind of tree as an idle
one: on a shared machine a clock-bound search of a few minutes trained only 2 to 4 networks.
It then copies into assets/demo-run/ only what a replay reads: trials.jsonl,
each trial's architecture.json, state.json, dataset.json, summary.json and labels.json (no
weights, no model, no machine-specific paths), under 2 MB. The previous recording is replaced
only once the new search has finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo-run"
MAX_BYTES = 2 * 2**20
KEPT = ("trials.jsonl", "dataset.json", "labels.json")
MACHINE_KEYS = ("pid", "host", "in_flight", "rng", "searcher", "updated")  # state.json keys a replay does not read


RECIPE = "seed_epochs=8,child_epochs=2,final_epochs=2"
BUDGET_S = 1800  # never reached: the search ends after --networks networks


def record(out: Path, networks: int, seed: int, image_size: int) -> None:
    """One search on the built-in sample into ``out`` (its own SPROUT_HOME beside it)."""
    env = {**os.environ, "SPROUT_HOME": str(out.parent / "home"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "SPROUT_WEIGHTS_URL": "none"}
    cmd = [sys.executable, "-m", "engine", "search", "sample", "--out", str(out), "--budget", str(BUDGET_S),
           "--searcher", "bayesian", "--seed", str(seed), "--image-size", str(image_size),
           "--max-trials", str(networks), "--recipe", RECIPE]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def slim(run: Path, dest: Path) -> int:
    """Copy what a replay reads from ``run`` to ``dest`` (a new folder); its size in bytes."""
    dest.mkdir(parents=True)
    for name in KEPT:
        shutil.copy2(run / name, dest / name)
    state = json.loads((run / "state.json").read_text())
    for key in MACHINE_KEYS:
        state.pop(key, None)
    (dest / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    summary = json.loads((run / "summary.json").read_text())
    summary.pop("files", None)  # paths on the recording machine
    (dest / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for trial in sorted((run / "trials").iterdir()):
        if (trial / "architecture.json").exists():
            (dest / "trials" / trial.name).mkdir(parents=True)
            shutil.copy2(trial / "architecture.json", dest / "trials" / trial.name / "architecture.json")
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=12, help="how many networks the search trains")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=16,
                        help="pixels per side (16: the app's choice for the sample)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sprout-demo-") as tmp:
        run, fresh = Path(tmp) / "run", Path(tmp) / "demo-run"
        record(run, args.networks, args.seed, args.image_size)
        size = slim(run, fresh)
        if size > MAX_BYTES:
            raise SystemExit(f"the demo would take {size:,} bytes; expected at most {MAX_BYTES:,}")
        shutil.rmtree(DEMO, ignore_errors=True)
        shutil.copytree(fresh, DEMO)
    trials = (DEMO / "trials.jsonl").read_text().count("\n")
    print(f"recorded {trials} networks into {DEMO.relative_to(ROOT)} ({size:,} bytes)")


if __name__ == "__main__":
    main()
