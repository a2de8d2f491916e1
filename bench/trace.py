"""Why one searcher beat another: what each run of ``bench.compare`` actually did.

    python -m bench.trace /tmp/sprout-compare [--name trace-600s]

Reads the run folders ``<method>-<seed>`` that ``bench.compare --work`` left behind (only
their trials.jsonl and summary.json; nothing is trained) and reports, per method, the
numbers that explain a difference in final accuracy:

- trials and the median seconds a trial took (more, cheaper trials = more chances);
- how often a trial set a new best validation accuracy;
- the best trial's lineage depth and the epochs accumulated along its lineage: children
  inherit their parent's training, so a deep lineage is also a long training run;
- the share of trials whose parent was the incumbent (the best network when it was chosen);
- for the Gaussian process: how well its predicted mean ranked the trials it proposed
  (Spearman), its mean absolute error, and how many outcomes fell inside mean ± 2 sigma.

Writes ``bench/results/<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.compare import RESULTS


def read_trials(folder: Path) -> list[dict]:
    """The finished (status ok) trial records of one run folder, in the order they ran."""
    from engine.search.folder import read_jsonl  # the run folder's own reader: a torn last line is skipped

    return [r for r in read_jsonl(folder / "trials.jsonl")
            if r.get("status") == "ok" and r.get("val_accuracy") is not None]


def lineage(trials: list[dict], trial_id: str) -> list[dict]:
    """The trial ``trial_id`` and its ancestors, root first."""
    by_id = {t["id"]: t for t in trials}
    chain, cur = [], by_id.get(trial_id)
    while cur is not None:
        chain.append(cur)
        cur = by_id.get(cur.get("parent_id"))
    return chain[::-1]


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation of two equal-length lists (ties share their mean rank)."""
    if len(xs) < 3:
        return None

    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else None


def describe_run(folder: Path) -> dict:
    """The explaining numbers of one run folder (see the module docstring)."""
    trials = read_trials(folder)
    summary = json.loads((folder / "summary.json").read_text())
    new_best, from_incumbent, best_so_far, incumbent = 0, 0, -1.0, None
    for t in trials:
        if incumbent is not None and t.get("parent_id") == incumbent:
            from_incumbent += 1
        if t["val_accuracy"] > best_so_far:
            new_best += t["parent_id"] is not None  # the seed sets the first best by definition
            best_so_far, incumbent = t["val_accuracy"], t["id"]
    best = max(trials, key=lambda t: t["val_accuracy"])
    chain = lineage(trials, best["id"])
    predicted = [(t["prediction"]["mean"], t["prediction"]["sigma"], t["val_accuracy"]) for t in trials
                 if (t.get("prediction") or {}).get("mean") is not None]
    out = {"method": summary.get("searcher") or folder.name.rsplit("-", 1)[0], "seed": folder.name.rsplit("-", 1)[1],
           "trials": len(trials), "median_trial_s": statistics.median(t["seconds"] for t in trials),
           "new_best": new_best, "children": len(trials) - 1,
           "from_incumbent": from_incumbent, "best_depth": len(chain) - 1,
           "best_epochs": sum(t.get("epochs") or 0 for t in chain), "best_params": best.get("n_params"),
           "best_val": best["val_accuracy"], "test": summary.get("test_accuracy")}
    if predicted:
        means, sigmas, seen = zip(*predicted)
        out |= {"rho": spearman(list(means), list(seen)),
                "mae": statistics.mean(abs(m - y) for m, _, y in predicted),
                "covered": sum(abs(m - y) <= 2 * s for m, s, y in predicted) / len(predicted)}
    return out


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.mean(vals) if vals else None


def report(runs: list[dict], title: str) -> str:
    """A markdown table per method (means over seeds) and one row per run."""
    methods = list(dict.fromkeys(r["method"] for r in runs))
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    lines = [f"# {title}", "",
             "Means over seeds. *New best*: children that beat every earlier trial. *From incumbent*: "
             "children whose parent was the best network at the time. *Best lineage*: the best trial's number of "
             "morphisms from the seed and the epochs trained along that chain (inherited training). *GP*: rank "
             "correlation of predicted and observed validation accuracy over the proposals, mean absolute error, "
             "share inside mean ± 2 sigma.", "",
             "| method | trials | median trial s | new best / children | from incumbent | best lineage (steps, epochs) "
             "| best params | GP rho | GP error | GP ±2σ |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        rows = [r for r in runs if r["method"] == m]
        lines.append(f"| {m} | {fmt(_mean(rows, 'trials'), '.1f')} | {fmt(_mean(rows, 'median_trial_s'), '.1f')} | "
                     f"{fmt(_mean(rows, 'new_best'), '.1f')} / {fmt(_mean(rows, 'children'), '.1f')} | "
                     f"{fmt(_mean(rows, 'from_incumbent'), '.1f')} | {fmt(_mean(rows, 'best_depth'), '.1f')}, "
                     f"{fmt(_mean(rows, 'best_epochs'), '.0f')} | {fmt(_mean(rows, 'best_params'), ',.0f')} | "
                     f"{fmt(_mean(rows, 'rho'), '.2f')} | {fmt(_mean(rows, 'mae'), '.3f')} | "
                     f"{fmt(_mean(rows, 'covered'), '.0%')} |")
    lines += ["", "Per run:", "", "| method | seed | trials | new best | from incumbent | best steps | best epochs "
              "| best validation | held-out test | GP rho |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['method']} | {r['seed']} | {r['trials']} | {r['new_best']} | {r['from_incumbent']} | "
                     f"{r['best_depth']} | {r['best_epochs']} | {r['best_val']:.4f} | {fmt(r['test'], '.4f')} | "
                     f"{fmt(r.get('rho'), '.2f')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trace")
    p.add_argument("work", type=Path, help="the --work folder of a bench.compare run")
    p.add_argument("--name", default=None, help="write bench/results/<name>.md (default: print only)")
    a = p.parse_args(argv)
    folders = sorted(f for f in a.work.iterdir() if (f / "trials.jsonl").exists() and (f / "summary.json").exists())
    if not folders:
        raise SystemExit(f"No search run folders (with trials.jsonl and summary.json) in {a.work}.")
    runs = sorted((describe_run(f) for f in folders), key=lambda r: (r["method"], r["seed"]))
    md = report(runs, f"What the searches did ({a.work.name})")
    if a.name:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{a.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
