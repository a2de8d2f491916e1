"""A morphed child after its first training step: ``python -m bench.inheritance_step``

    python -m bench.inheritance_step [DATA] [--epochs-parent 4] [--seeds 0,1,2] [--out PATH]

Issue 14, point 4: a morphism keeps the parent's function in inference mode, but training starts
in training mode. There a BatchNorm layer inserted by ``deeper`` normalises with the batch's
statistics (the trainer gives it its input's statistics first: ``engine.training.batchnorm.
match_inputs``), and a ``wider`` layer's new channels read zero (or, with ``--wider split``, shared)
outgoing weights. ``bench.inheritance`` checks the child before training; this checks it after
one optimiser step, which is where a disrupted start would show.

Per seed: the parent (the seed architecture trained ``--epochs-parent`` epochs, as in
``bench.inheritance``), then the parent itself and one child per morphism kind (the six of
``bench.inheritance.KINDS``, and both ways of widening) each take exactly one step of the
engine's trainer (``engine.training.trainer.train`` on one batch of 64 training images, the same
batch for all, Adam at the trainer's 1e-3) and are scored on the validation images. An epoch
of one step is shorter than ``batchnorm.MAX_STEPS``, so the trainer recomputes BatchNorm's
statistics from training images before that validation, for the parent and the children alike.

The claim checked: after one step no child is more than 1 point below its parent's validation
accuracy (the parent before its step), and, to separate the morphism from the step, how far the
child is from the parent after the same step. Writes ``bench/results/inheritance-step.md`` and
its JSON. ``--rate-factor 0.05`` takes that step at 5% of the rate: the first step of a child
trained with ``--search-option warmup=children``, whose rate ramps up from there (the parent's
step too, so the two stay comparable).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.inheritance import KINDS, LABELS, RESULTS, load_split, log, machine, measure

STEP_BATCH = 64
#: The kinds measured: bench.inheritance's six, each wider kind both ways of handing on weights.
STEP_KINDS = tuple((key, wider) for key, *_ in KINDS for wider in (("zero", "split") if key.startswith("wider")
                                                                   else ("zero",)))


def make_child(parent, key: str, seed: int, wider: str):
    """A child of ``parent`` of kind ``key`` (see bench.inheritance.make_child), widened with
    ``wider`` outgoing weights where it widens."""
    from bench import inheritance
    from engine.nas import morphism

    if not key.startswith("wider") or wider == "zero":
        return inheritance.make_child(parent, key, seed)
    _, _, _, wanted = next(k for k in KINDS if k[0] == key)
    for draw in range(inheritance.DRAWS):
        child = morphism.wider(parent, np.random.default_rng([seed, draw]), outgoing=wider)
        if child is not None and wanted(child.operations[-1]):
            return child
    raise RuntimeError(f"no {LABELS[key]} child of {parent.summary()}")


def one_step(arch, d: dict, rows: np.ndarray, seed: int, rate_factor: float = 1.0) -> float:
    """Validation accuracy of ``arch`` after one step of the engine's trainer on ``rows`` of the
    training images, at ``rate_factor`` x the trainer's learning rate."""
    from engine.training.trainer import TrainConfig, train

    config = TrainConfig(max_epochs=1, patience=2, seed=seed, batch_size=STEP_BATCH, subset=rows)
    config.learning_rate *= rate_factor
    result = train(arch, d["x_train"], d["y_train"], d["x_val"], d["y_val"], config)
    if result.status != "ok":
        raise RuntimeError(f"training {arch.summary()} failed: {result.error}")
    return float(result.history["val_accuracy"][0])


def run_seed(d: dict, seed: int, parent_epochs: int, kinds=STEP_KINDS, rate_factor: float = 1.0) -> dict:
    """The parent, its step, and each child of ``kinds`` ((kind, wider) pairs) before and after its step."""
    from bench.inheritance import curve
    from engine.nas.architecture import seed_architecture
    from engine.nas.operations import describe

    started = time.monotonic()
    _, parent = curve(seed_architecture(d["x_train"].shape[1:], len(d["class_names"])), d, parent_epochs, seed)
    parent.id = "parent"
    rows = np.sort(np.random.default_rng(seed).choice(len(d["y_train"]), STEP_BATCH, replace=False))
    before, _ = measure(parent, d["x_val"], d["y_val"], d["class_names"])
    after = one_step(parent, d, rows, seed, rate_factor)
    log(f"seed {seed}: parent {100 * before:.2f} %, after one step {100 * after:.2f} %")
    run = {"seed": seed, "parent_epochs": parent_epochs, "rate_factor": rate_factor, "parent_summary": parent.summary(),
           "parent_val_accuracy": before, "parent_after_step": after, "n_train": int(len(d["y_train"])),
           "n_val": int(len(d["y_val"])), "rows": []}
    for key, wider in kinds:
        child = make_child(parent, key, seed, wider)
        child_before, _ = measure(child, d["x_val"], d["y_val"], d["class_names"])
        child_after = one_step(child, d, rows, seed, rate_factor)
        row = {"kind": key, "wider": wider, "label": LABELS[key] + (f", {wider} outgoing" if key.startswith("wider")
                                                                    else ""),
               "operation": describe(child.operations[-1]), "before": child_before, "after_step": child_after,
               "vs_parent": 100 * (child_after - before), "vs_parent_step": 100 * (child_after - after)}
        run["rows"].append(row)
        log(f"seed {seed}: {row['label']}: before {100 * child_before:.2f} %, after one step {100 * child_after:.2f} %")
    run["seconds"] = time.monotonic() - started
    return run


def report(runs: list[dict], name: str, header: list[str]) -> str:
    """The markdown report: per seed and kind, and the verdict."""
    factor = runs[0].get("rate_factor", 1.0)
    title = "" if factor == 1.0 else f", at {factor:g} x the learning rate (a warmed-up child's first step)"
    lines = [f"# A morphed child after one training step{title} (`python -m bench.inheritance_step`)", "", *header,
             f"- Data: {name}, a search's split: {runs[0]['n_train']:,} training / {runs[0]['n_val']:,} validation "
             f"images. Parent: {runs[0]['parent_summary']}, trained {runs[0]['parent_epochs']} epochs. One step: "
             f"the engine's trainer on one batch of {STEP_BATCH} training images (the same for the parent and "
             f"every child of a seed), Adam at {1e-3 * factor:g}; BatchNorm statistics "
             "recomputed from training images before validation (the trainer's rule for epochs this short).", "",
             "| seed | morphism | operation | parent | parent after its step | child before | child after its step "
             "| child after vs parent (points) | vs parent after its step |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        for row in r["rows"]:
            lines.append(f"| {r['seed']} | {row['label']} | {row['operation']} | {100 * r['parent_val_accuracy']:.2f} "
                         f"| {100 * r['parent_after_step']:.2f} | {100 * row['before']:.2f} | "
                         f"{100 * row['after_step']:.2f} | {row['vs_parent']:+.2f} | {row['vs_parent_step']:+.2f} |")
    rows = [row for r in runs for row in r["rows"]]
    below = [f"{row['label']} (seed {r['seed']}, {row['vs_parent']:+.2f})" for r in runs for row in r["rows"]
             if row["vs_parent"] < -1.0]
    worst = min(rows, key=lambda row: row["vs_parent"])
    lines += ["", "## Verdict", "",
              "- No child more than 1 point below its parent after one step: "
              f"**{'holds' if not below else 'does not hold'}**"
              + (f" (fails for {', '.join(below)})" if below else "")
              + f"; the lowest is {worst['label']} at {worst['vs_parent']:+.2f} points.",
              f"- Largest difference from the parent after the same step: "
              f"{max(abs(row['vs_parent_step']) for row in rows):.2f} points.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inheritance_step", description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", default=None, help="class-folder images (default: as bench.inheritance)")
    p.add_argument("--epochs-parent", type=int, default=4)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, default=RESULTS / "inheritance-step.md")
    p.add_argument("--rate-factor", type=float, default=1.0,
                   help="the step's learning rate as a share of the trainer's (0.05: a warmed-up child's first)")
    args = p.parse_args(argv)
    load_start = os.getloadavg()
    runs, name = [], ""
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        d = load_split(args.data, seed)
        name = d["name"]
        runs.append(run_seed(d, seed, args.epochs_parent, rate_factor=args.rate_factor))
    header = machine(load_start)
    text = report(runs, name, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"machine": header, "runs": runs}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
