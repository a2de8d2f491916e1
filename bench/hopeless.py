"""Learning-curve early stopping measured on recorded runs: which children a rule would have stopped.

    python -m bench.hopeless [RUN_FOLDER_GLOB ...] [--min-val 300] [--min-budget 60]

A rule stops a grown network after its first epoch when that epoch's validation accuracy is far
below its parent's score (:func:`hopeless`). Every run folder's trials.jsonl
holds each trial's per-epoch validation accuracy (``history``), its parent, its score and its
epochs' seconds, so the rule can be replayed without training: per margin, how many children it
would have stopped, how many of those ended above their parent, how many were the run's best
network or one of its ancestors (a lineage the rule would have cut), and the training time their
later epochs took (what stopping them would have freed). Identical trials.jsonl files (copies
of one run) count once; runs on fewer than ``--min-val`` validation images are left out (their
accuracy moves in steps of several points). ``--ratio`` replays the relative form of the rule
(the first epoch's error over K times the parent's error) instead.

The rule is not in the search: replayed on the recorded runs it stops children that became the
run's best network or one of its ancestors at every margin that frees a useful share of the
training time (bench/results/levers2.md, "Learning-curve early stopping").
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import sys
from pathlib import Path

MARGINS = (0.03, 0.05, 0.08, 0.10, 0.15, 0.20)
RATIOS = (1.5, 2.0, 3.0, 4.0)


def hopeless(first_epoch_accuracy: float, parent_score: float, margin: float, ratio: bool = False) -> bool:
    """Whether a grown network whose first epoch reached ``first_epoch_accuracy`` (validation) is
    too far below its parent's ``parent_score``: by more than ``margin`` (accuracy units), or with
    ``ratio`` an error more than ``margin`` times the parent's."""
    if ratio:
        return 1.0 - float(first_epoch_accuracy) > float(margin) * (1.0 - float(parent_score))
    return float(first_epoch_accuracy) < float(parent_score) - float(margin)


def load_runs(patterns: list[str], min_val: int, min_budget: float) -> list[dict]:
    """Run folders matching ``patterns`` with their records, validation size and budget (deduplicated)."""
    seen, runs = set(), []
    for pattern in patterns:
        for path in sorted(glob.glob(str(Path(pattern) / "trials.jsonl"), recursive=True)):
            text = Path(path).read_text()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            folder = Path(path).parent
            try:
                split = json.loads((folder / "dataset.json").read_text()).get("split", {})
                state = json.loads((folder / "state.json").read_text())
            except (OSError, ValueError):
                continue
            n_val, budget = len(split.get("val", [])), float(state.get("config", {}).get("budget_s", 0))
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            if n_val >= min_val and budget >= min_budget and len(records) >= 3:
                runs.append({"folder": str(folder), "records": records, "n_val": n_val, "budget_s": budget,
                             "data": state.get("data_source", "")})
    return runs


def children(run: dict) -> list[dict]:
    """The run's grown networks that trained 2 epochs or more, with what the rule needs."""
    by_id = {r["id"]: r for r in run["records"]}
    ok = [r for r in run["records"] if r.get("status") == "ok" and r.get("val_accuracy") is not None]
    if not ok:
        return []
    best = max(ok, key=lambda r: r["val_accuracy"])
    on_best_path, node = set(), best
    while node is not None:
        on_best_path.add(node["id"])
        node = by_id.get(node.get("parent_id"))
    out = []
    for r in ok:
        parent = by_id.get(r.get("parent_id"))
        curve = (r.get("history") or {}).get("val_accuracy") or []
        if parent is None or parent.get("val_accuracy") is None or len(curve) < 2:
            continue
        out.append({"first": curve[0], "parent": parent["val_accuracy"], "score": r["val_accuracy"],
                    "best": r["id"] == best["id"], "ancestor": r["id"] in on_best_path and r["id"] != best["id"],
                    "later_s": sum(r.get("epoch_seconds", [])[1:])})
    return out


def replay(runs: list[dict], margins=MARGINS, ratio: bool = False) -> list[dict]:
    """Per margin: children stopped, of those above their parent at the end, the run's best, an
    ancestor of it, and the training seconds freed against all the runs' training seconds."""
    kids = [c for run in runs for c in children(run)]
    total_s = sum(sum(r.get("epoch_seconds", [])) for run in runs for r in run["records"])
    rows = []
    for m in margins:
        stopped = [c for c in kids if hopeless(c["first"], c["parent"], m, ratio)]
        rows.append({"margin": m, "ratio": ratio, "children": len(kids), "stopped": len(stopped),
                     "above_parent": sum(c["score"] > c["parent"] for c in stopped),
                     "best": sum(c["best"] for c in stopped), "ancestor": sum(c["ancestor"] for c in stopped),
                     "freed_s": round(sum(c["later_s"] for c in stopped), 1), "train_s": round(total_s, 1)})
    return rows


def table(rows: list[dict]) -> str:
    rule = "error over K x the parent's after epoch 1: K" if rows and rows[0]["ratio"] else \
        "margin (points below the parent after epoch 1)"
    lines = [f"| {rule} | children stopped | of them ended above "
             "their parent | the run's best | an ancestor of the best | training time freed |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = r["freed_s"] / r["train_s"] if r["train_s"] else 0.0
        margin = f"{r['margin']:g}" if r["ratio"] else f"{100 * r['margin']:.0f}"
        lines.append(f"| {margin} | {r['stopped']} of {r['children']} | {r['above_parent']} | "
                     f"{r['best']} | {r['ancestor']} | {r['freed_s']:.0f} s ({share:.1%}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hopeless", description=__doc__.splitlines()[0])
    p.add_argument("patterns", nargs="*", default=["/tmp/**/"], help="run folders (globs, ** allowed)")
    p.add_argument("--min-val", type=int, default=300, help="least validation images of a run taken")
    p.add_argument("--min-budget", type=float, default=60.0, help="least budget (s) of a run taken")
    p.add_argument("--ratio", action="store_true", help="the relative rule: error over K x the parent's")
    a = p.parse_args(argv)
    runs = load_runs(a.patterns, a.min_val, a.min_budget)
    kinds = sorted({f"{Path(r['data']).parent.name or r['data']} {r['budget_s']:g} s" for r in runs})
    print(f"{len(runs)} runs: " + ", ".join(kinds))
    print(table(replay(runs, RATIOS if a.ratio else MARGINS, a.ratio)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
