"""Issue 14's levers on real data, one at a time: the Bayesian search with one lever switched on.

    python -m bench.levers2 [DATA] [--test TEST_DATA] [--budget 270] [--seeds 0,1,2] \
        [--levers baseline,score=kept,distance=weighted,...] [--work /tmp/sprout-levers2]

Each (lever, seed) is one ``python -m engine search --searcher bayesian --seed SEED
--search-option LEVER`` in its own process, one after another (never two at once: they would
share the cores). A run's train/validation/test split comes from its seed, so every lever of a
seed searches on the same split. ``baseline`` switches nothing. Each finished run is appended
to ``<name>.json`` at once (a session cut short keeps its runs; a (lever, seed) already there is
run again only with ``--again``), and the table in ``<name>.md`` between the two
``levers2:rows`` markers is rewritten from all of them: per lever the held-out and test-folder
accuracy, trials, the share of the budget used and the wall time, and the held-out difference to
the baseline on the same seeds. The rest of ``<name>.md`` (what each lever changed, its
simulation result, the decision) is written by hand and kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from bench.compare import DEFAULT_DATA, RESULTS, best_so_far, machine, run_command, test_folder_accuracy

LEVERS = ("baseline", "score=kept", "distance=weighted", "truncated=noise", "truncated=exclude",
          "lineage=epochs", "lineage=gain", "expand=children", "cost=ucb", "wider=zero", "spend=capped",
          "steps=1", "warmup=none", "child_floor=steps", "seed=wide")
BEGIN, END = "<!-- levers2:rows -->", "<!-- /levers2:rows -->"


def run_one(lever: str, seed: int, data: str, budget: float, out: Path, test: str | None) -> dict:
    """One search with ``lever`` (``key=value``, or ``baseline``) in a fresh process: what it measured."""
    cmd = [sys.executable, "-m", "engine", "search", data, "--out", str(out), "--budget", str(budget),
           "--searcher", "bayesian", "--seed", str(seed)]
    if lever != "baseline":
        cmd += ["--search-option", lever]
    wall, summary = run_command(cmd, out)
    result = {"lever": lever, "seed": seed, "budget_s": budget, "process_wall_s": round(wall, 1),
              "wall_s": summary["wall_s"], "budget_share": summary["wall_s"] / budget,
              "test_accuracy": summary["test_accuracy"], "trials": summary["n_ok"],
              "short_trials": summary.get("n_short"), "final_epochs": summary.get("final_epochs"),
              "best_val_accuracy": (summary.get("best") or {}).get("val_accuracy"),
              "curve": best_so_far(out / "trials.jsonl")}
    if test:
        result["test_folder_accuracy"] = test_folder_accuracy(out / "best_model.keras", test)
    return result


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.4f}" if values else "–"


def rows_table(results: list[dict]) -> str:
    """The per-lever table: means over seeds, and held-out differences to the baseline's same seeds."""
    base = {r["seed"]: r["test_accuracy"] for r in results if r["lever"] == "baseline"}
    lines = ["| lever | seeds | held-out | test folder | vs baseline (held-out, same seeds) | trials "
             "| budget used | wall s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for lever in dict.fromkeys(r["lever"] for r in results):
        rs = sorted((r for r in results if r["lever"] == lever), key=lambda r: r["seed"])
        paired = [100 * (r["test_accuracy"] - base[r["seed"]]) for r in rs if r["seed"] in base]
        diff = "–" if lever == "baseline" or not paired else \
            f"{statistics.mean(paired):+.2f} points ({sum(d > 0 for d in paired)} of {len(paired)} ahead)"
        lines.append(f"| {lever} | {','.join(str(r['seed']) for r in rs)} | {_mean(r['test_accuracy'] for r in rs)} | "
                     f"{_mean(r.get('test_folder_accuracy') for r in rs)} | {diff} | "
                     f"{statistics.mean(r['trials'] for r in rs):.1f} | "
                     f"{statistics.median(r['budget_share'] for r in rs):.0%} | "
                     f"{statistics.median(r['wall_s'] for r in rs):.0f} |")
    return "\n".join(lines)


def write_md(path: Path, payload: dict) -> str:
    """Rewrite the generated part of ``path`` (between the markers; appended when absent)."""
    results = payload["results"]
    budgets = sorted({r["budget_s"] for r in results})
    block = "\n".join([BEGIN, "", f"Data `{payload['data']}`" + (f", test folder `{payload['test']}`" if payload.get(
        "test") else "") + f"; budget {', '.join(f'{b:g}' for b in budgets)} s; machine: {payload['machine']}.", "",
        rows_table(results), "", "Per run (held-out / test folder / trials / budget used):", ""]
        + [f"- {r['lever']} seed {r['seed']}: {r['test_accuracy']:.4f} / "
           + (f"{r['test_folder_accuracy']:.4f}" if r.get("test_folder_accuracy") is not None else "–")
           + f" / {r['trials']} / {r['budget_share']:.0%}" for r in results] + ["", END])
    text = path.read_text() if path.exists() else "# Issue 14's levers, one at a time\n\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    return block


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.levers2", description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    p.add_argument("--test", default=None,
                   help="a class-folder test set scored by each run's model (default: the test folder beside "
                        "the default data; 'none' for no test folder)")
    p.add_argument("--budget", type=float, default=270)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--levers", default=",".join(LEVERS), help="comma-separated key=value levers, or baseline")
    p.add_argument("--again", action="store_true", help="run a (lever, seed) again even when it is in the JSON")
    p.add_argument("--work", type=Path, default=Path("/tmp/sprout-levers2"))
    p.add_argument("--results", type=Path, default=RESULTS, help="where <name>.json and <name>.md are")
    p.add_argument("--name", default="levers2")
    a = p.parse_args(argv)
    test = a.test if a.test not in (None, "none") else None
    if a.test is None and a.data == str(DEFAULT_DATA):
        test = str(DEFAULT_DATA.parent / "test")
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    levers = [lever.strip() for lever in a.levers.split(",") if lever.strip()]
    json_path, md_path = a.results / f"{a.name}.json", a.results / f"{a.name}.md"
    payload = json.loads(json_path.read_text()) if json_path.exists() else {"results": []}
    payload |= {"data": a.data, "test": test}
    done = {(r["lever"], r["seed"], r["budget_s"]) for r in payload["results"]}
    a.results.mkdir(parents=True, exist_ok=True)
    for seed in seeds:  # seeds outermost: a load spike hurts every lever a little, not one a lot
        for lever in levers:
            if (lever, seed, a.budget) in done and not a.again:
                continue
            out = a.work / f"{lever.replace('=', '-')}-{seed}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_one(lever, seed, a.data, a.budget, out, test)
            print(f"{lever:22s} seed {seed}: held-out {r['test_accuracy']:.4f}"
                  + (f" / folder {r['test_folder_accuracy']:.4f}" if test else "")
                  + f", {r['trials']} trials, {r['budget_share']:.0%} of the budget", flush=True)
            payload["results"] = [x for x in payload["results"]
                                  if (x["lever"], x["seed"], x["budget_s"]) != (lever, seed, a.budget)] + [r]
            payload["machine"] = machine()
            json_path.write_text(json.dumps(payload, indent=1))
    if payload["results"]:
        print(write_md(md_path, {**payload, "machine": payload.get("machine", "not recorded")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
