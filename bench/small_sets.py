"""Searches on small generated colour sets (issue 21): do the first networks learn?

    python -m bench.small_sets --label after [--budgets 120,300] [--seeds 0] \
        [--sets 2x120,5x60] [--recipe KEY=VALUE,...] [--work /tmp/small-sets]

Each set is drawn by ``bench.colour_shapes`` at 64 px with varied image sizes (sides
within +-25%, as photos come): ``CxN`` is the first C shapes with N images each for the
search (which splits them into training, validation and test parts itself) and N/2 more
each in a test folder the search never sees. Each (set, budget, seed) runs ``run_search``
(engine.search.loop) once, one after another in this process. Reported per run: trials
finished, epochs run and validation accuracy of the first three networks, the test
accuracy of the final network on the run's held-out split and on the test folder, wall
time. Rows are kept in ``bench/results/small-sets.json`` under ``--label`` (run once with
``--label before`` on the code before a change and once with ``--label after``), and
``bench/results/small-sets.md`` shows every label side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SIDE = 64
VARY = 0.25


def parse_sets(text: str) -> list[tuple[int, int]]:
    """``"2x120,5x60"`` as ``[(2, 120), (5, 60)]`` (classes, images per class)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        classes, sep, n = part.partition("x")
        if not sep or not classes.isdigit() or not n.isdigit():
            raise ValueError(f"expected sets like 2x120 (classes x images per class), received {part!r}")
        out.append((int(classes), int(n)))
    return out


def make_set(work: Path, classes: int, n: int, seed: int = 0) -> Path:
    """The folder of the set ``classes`` x ``n`` (made once): ``train/`` for the search, ``test/`` held out."""
    from bench.colour_shapes import write

    root = work / f"data-{classes}x{n}-s{seed}"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        write(root, n, max(10, n // 2), size=SIDE, seed=seed, classes=classes, vary=VARY)
        (root / "done").write_text("")
    return root


def first_trials(run: Path, k: int = 3) -> list[dict]:
    """Epochs run and validation accuracy of the first ``k`` trials of a run folder."""
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines() if line.strip()]
    return [{"epochs": r.get("epochs"), "val_accuracy": r.get("val_accuracy")} for r in records[:k]]


def folder_accuracy(summary: dict, test_dir: Path) -> float | None:
    """Accuracy of the run's saved model on the images of ``test_dir``."""
    path = (summary.get("files") or {}).get("keras")
    if not path:
        return None
    import keras
    import numpy as np

    from engine.data import ingest
    from engine.training.evaluation import predict

    model = keras.saving.load_model(path)
    data = ingest.load(test_dir, image_size=SIDE, channels=3)
    names = list(summary.get("class_names") or data.class_names)
    y = np.asarray([names.index(data.class_names[i]) for i in data.labels])
    return float(np.mean(predict(model, data.images).argmax(axis=1) == y))


def run_one(label: str, classes: int, n: int, budget: float, seed: int, work: Path, recipe: dict | None) -> dict:
    from engine.search.config import SearchConfig
    from engine.search.loop import run_search

    data = make_set(work, classes, n)
    out = work / f"run-{label}-{classes}x{n}-{int(budget)}s-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    summary = run_search(data / "train", out, SearchConfig(budget_s=budget, seed=seed, image_size=SIDE, recipe=recipe))
    wall = time.monotonic() - started
    return {"label": label, "set": f"{classes}x{n}", "budget": budget, "seed": seed, "trials": summary.get("n_ok"),
            "first": first_trials(out), "test_accuracy": summary.get("test_accuracy"),
            "folder_accuracy": folder_accuracy(summary, data / "test"), "wall_s": round(wall, 1)}


def _cell(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    """The markdown of ``rows``: one line per run, the labels of a (set, budget, seed) next to each other."""
    lines = [
        "# Small colour sets: the first networks and the final test accuracy (issue 21)", "",
        f"Data: `bench.colour_shapes` at {SIDE} px, image sides varied by +-{int(VARY * 100)}%; CxN = C classes "
        f"x N images for the search (it splits them itself), N/2 more each in a held-out test folder. "
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), load average at the end "
        f"{os.getloadavg()[0]:.2f}, {date.today()}.", "",
        "First three networks: epochs run / validation accuracy.", "",
        "| set | budget s | seed | label | trials | network 0 | network 1 | network 2 | test acc. (held-out split) "
        "| test acc. (test folder) | wall s |",
        "|---|---:|---:|---|---:|---|---|---|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["set"], r["budget"], r["seed"], r["label"] != "before", r["label"])):
        first = [f"{t['epochs']} / {_cell(t['val_accuracy'])}" for t in r["first"]] + ["–"] * (3 - len(r["first"]))
        lines.append(f"| {r['set']} | {r['budget']:g} | {r['seed']} | {r['label']} | {r['trials']} | "
                     + " | ".join(first) + f" | {_cell(r['test_accuracy'])} | {_cell(r['folder_accuracy'])} "
                     f"| {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.small_sets", description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True, help="names this code version in the table, e.g. before or after")
    p.add_argument("--budgets", default="120,300", help="seconds, comma-separated")
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--sets", default="2x120,5x60", help="CLASSESxIMAGES per class, comma-separated")
    p.add_argument("--recipe", default="", help="recipe overrides for every search, key=value,...")
    p.add_argument("--work", type=Path, default=Path("/tmp/small-sets"))
    p.add_argument("--results", type=Path, default=RESULTS / "small-sets.json")
    a = p.parse_args(argv)
    from engine.training.recipe import parse_overrides

    recipe = parse_overrides(a.recipe) or None
    a.work.mkdir(parents=True, exist_ok=True)
    rows = json.loads(a.results.read_text()) if a.results.exists() else []
    for classes, n in parse_sets(a.sets):
        for budget in (float(b) for b in a.budgets.split(",")):
            for seed in (int(s) for s in a.seeds.split(",")):
                row = run_one(a.label, classes, n, budget, seed, a.work, recipe)
                print(json.dumps(row), flush=True)
                key = (row["label"], row["set"], row["budget"], row["seed"])
                rows = [r for r in rows if (r["label"], r["set"], r["budget"], r["seed"]) != key] + [row]
                a.results.parent.mkdir(parents=True, exist_ok=True)
                a.results.write_text(json.dumps(rows, indent=1))
                a.results.with_suffix(".md").write_text(table(rows))
    print(f"wrote {a.results.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
