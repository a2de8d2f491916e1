"""Does a morphed child profit from its parent's weights? ``python -m bench.inheritance``

    python -m bench.inheritance [DATA] [--epochs-parent 4] [--max-epochs 8] [--seed 0] [--repeats 1]
        [--kinds deeper-conv,...] [--merge]

DATA: a class-folder image set (default: fashion-mnist-small's train split in
``../shared/datasets`` relative to the repository, when present, else scikit-learn's digits
upscaled to 16x16). The split is a search's (``data.load(DATA).split(test=TEST_FRACTION,
val=VAL_FRACTION, seed=S)``); the test part is not used.

Per seed S:

1. The parent: the seed architecture trained ``--epochs-parent`` epochs (``engine.training.trainer.train``,
   patience larger than the epochs, so the only early-stopping effect is Keras restoring the
   weights of the best validation-loss epoch at the end). Its validation accuracy is measured
   with ``build_model`` + ``engine.training.evaluation.evaluate`` on the validation split.
2. For each morphism kind (deeper in the conv part, deeper in the dense head, wider conv,
   wider dense, add_skip, concat_skip) one child made by the engine's morphism functions
   (``engine.nas.morphism.MORPHISMS``; a kind with a part, e.g. deeper (conv), takes the first
   child of the right part over seeded random draws). Its validation accuracy *before any
   training* is measured the same way, along with the largest softmax difference from the
   parent on the validation images.
3. The child is trained ``--max-epochs`` epochs from the inherited weights, and the same
   architecture from freshly initialised weights (``init_weights`` of
   ``child.copy(with_weights=False)``), with the same training seed (same batch order) and
   patience larger than the epochs; the validation accuracy after every epoch is recorded.
   "Epochs to the parent's accuracy" is the first epoch (1-based, counted among trained
   epochs) whose validation accuracy is at least the parent's, or ``>M`` if none is.
   As a reference, the parent itself is trained ``--max-epochs`` more epochs the same way.

Writes ``bench/results/inheritance.md`` and ``bench/results/inheritance.json`` (raw numbers).
With ``--merge`` the runs already in the JSON file for other seeds are kept, so seeds can be
run one process at a time.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import datetime
import importlib
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "fashion-mnist-small" / "train"
RESULTS = ROOT / "bench" / "results"

#: (key, label, morphism function name, predicate on the recorded operation)
KINDS: tuple[tuple[str, str, str, Callable[[dict], bool]], ...] = (
    ("deeper-conv", "deeper (conv)", "deeper", lambda op: op["part"] == "conv"),
    ("deeper-dense", "deeper (dense)", "deeper", lambda op: op["part"] == "dense"),
    ("wider-conv", "wider (conv)", "wider", lambda op: op["kind"] == "conv"),
    ("wider-dense", "wider (dense)", "wider", lambda op: op["kind"] == "dense"),
    ("add_skip", "add_skip", "add_skip", lambda op: True),
    ("concat_skip", "concat_skip", "concat_skip", lambda op: True),
)
LABELS = {key: label for key, label, _, _ in KINDS}
ROW_FIELDS = ("kind", "label", "operation", "child_summary", "child_params", "parent_val_accuracy",
              "child_val_accuracy_before", "difference_points", "max_softmax_difference", "inherited_curve",
              "scratch_curve", "epochs_to_parent_inherited", "epochs_to_parent_scratch")
DRAWS = 200  # seeded random draws tried to find a child of the wanted part


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----- data -------------------------------------------------------------------------------
def load_split(data: str | None, seed: int) -> dict:
    """``{"name", "x_train", "y_train", "x_val", "y_val", "class_names"}`` split like a search."""
    from engine.search.prepare import TEST_FRACTION, VAL_FRACTION

    if data is None and DEFAULT_DATA.is_dir():
        data = str(DEFAULT_DATA)
    if data is not None:
        from engine.data import ingest as data_module

        ds = data_module.load(data)
        x, y, class_names = ds.images, ds.labels.astype(np.int64), list(ds.class_names)
        name = Path(data).resolve().parent.name + "/" + Path(data).name if Path(data).name == "train" else data
    else:
        from engine.data.dataset import stratified_split

        from tests.digits import digits_16px

        x, y = digits_16px(0)
        class_names = [str(i) for i in range(10)]
        name = "scikit-learn digits upscaled to 16x16"

        class _DS:  # the same stratified split as Dataset.split
            @staticmethod
            def split(test, val, seed):
                return stratified_split(y, test=test, val=val, seed=seed)
        ds = _DS()
    s = ds.split(test=TEST_FRACTION, val=VAL_FRACTION, seed=seed)
    return {"name": name, "x_train": x[s.train], "y_train": y[s.train], "x_val": x[s.val], "y_val": y[s.val],
            "class_names": class_names}


# ----- pieces -----------------------------------------------------------------------------
def make_child(parent, key: str, seed: int):
    """A child of ``parent`` by the morphism kind ``key`` (see :data:`KINDS`): the first one
    of the right part over the draws of ``default_rng([seed, draw])``."""
    from engine.nas import morphism

    _, label, fn, wanted = next(k for k in KINDS if k[0] == key)
    for draw in range(DRAWS):
        child = morphism.MORPHISMS[fn](parent, np.random.default_rng([seed, draw]))
        if child is not None and wanted(child.operations[-1]):
            return child
    raise RuntimeError(f"no {label} child of {parent.summary()} in {DRAWS} draws")


def measure(arch, x: np.ndarray, y: np.ndarray, class_names: list[str]) -> tuple[float, np.ndarray]:
    """(validation accuracy by :func:`engine.training.evaluation.evaluate`, softmax outputs) of ``arch``."""
    import keras

    from engine.training.model import build_model
    from engine.training.evaluation import evaluate, predict

    model = build_model(arch)
    accuracy = evaluate(model, x, y, class_names)["accuracy"]
    probs = predict(model, x)
    del model
    keras.backend.clear_session()
    return float(accuracy), probs


def curve(arch, d: dict, epochs: int, seed: int) -> tuple[list[float], object]:
    """Validation accuracy after each of ``epochs`` epochs of training ``arch`` (its weights
    where it has them), and the trained architecture. Patience is larger than the epochs:
    early stopping never ends training."""
    from engine.training.trainer import TrainConfig, train

    result = train(arch, d["x_train"], d["y_train"], d["x_val"], d["y_val"],
                   TrainConfig(max_epochs=epochs, patience=epochs + 1, seed=seed))
    if result.status != "ok":
        raise RuntimeError(f"training {arch.summary()} failed: {result.error}")
    return [float(a) for a in result.history["val_accuracy"]], result.architecture


def epochs_to(values: list[float], target: float) -> int | None:
    """First epoch (1-based) whose accuracy is at least ``target``; None if none is."""
    for k, v in enumerate(values, start=1):
        if v >= target - 1e-9:
            return k
    return None


def run_seed(d: dict, seed: int, parent_epochs: int, max_epochs: int, kinds: list[str] | None = None,
             reference: bool = True) -> dict:
    """One repetition: train the parent, then per kind measure the child before training and
    count the epochs to the parent's validation accuracy, inherited and from scratch."""
    from engine.nas.architecture import init_weights, seed_architecture
    from engine.nas.operations import describe

    started = time.monotonic()
    seed_arch = seed_architecture(d["x_train"].shape[1:], len(d["class_names"]))
    _, parent = curve(seed_arch, d, parent_epochs, seed)
    parent.id = "parent"
    parent_acc, parent_probs = measure(parent, d["x_val"], d["y_val"], d["class_names"])
    log(f"seed {seed}: parent {parent.summary()} trained {parent_epochs} epochs, val accuracy {100 * parent_acc:.2f} %")
    run: dict = {"seed": seed, "parent_epochs": parent_epochs, "max_epochs": max_epochs,
                 "parent_summary": parent.summary(), "parent_params": parent.n_params(),
                 "parent_val_accuracy": parent_acc, "n_train": int(len(d["y_train"])), "n_val": int(len(d["y_val"])),
                 "rows": []}
    if reference:
        cont, _ = curve(parent, d, max_epochs, seed)
        run["parent_continued_curve"] = cont
        run["epochs_to_parent_continued"] = epochs_to(cont, parent_acc)
        log(f"seed {seed}: parent continued {[round(100 * a, 1) for a in cont]}")
    for key in kinds or [k[0] for k in KINDS]:
        child = make_child(parent, key, seed)
        before, probs = measure(child, d["x_val"], d["y_val"], d["class_names"])
        inherited, _ = curve(child, d, max_epochs, seed)
        scratch, _ = curve(init_weights(child.copy(with_weights=False), seed=seed + 1), d, max_epochs, seed)
        row = {"kind": key, "label": LABELS[key], "operation": describe(child.operations[-1]),
               "child_summary": child.summary(), "child_params": child.n_params(),
               "parent_val_accuracy": parent_acc, "child_val_accuracy_before": before,
               "difference_points": 100 * (before - parent_acc),
               "max_softmax_difference": float(np.abs(probs - parent_probs).max()),
               "inherited_curve": inherited, "scratch_curve": scratch,
               "epochs_to_parent_inherited": epochs_to(inherited, parent_acc),
               "epochs_to_parent_scratch": epochs_to(scratch, parent_acc)}
        run["rows"].append(row)
        log(f"seed {seed}: {LABELS[key]} ({row['operation']}): before {100 * before:.2f} %, "
            f"inherited {[round(100 * a, 1) for a in inherited]}, scratch {[round(100 * a, 1) for a in scratch]}")
    run["seconds"] = time.monotonic() - started
    return run


# ----- report -----------------------------------------------------------------------------
def _epochs(n: int | None, m: int) -> str:
    return f">{m}" if n is None else str(n)


def row_holds(row: dict, m: int) -> bool:
    """Within 1 point before training, and fewer epochs to the parent's accuracy inherited
    than from scratch (``>M`` counts as M + 1; an inherited ``>M`` never holds)."""
    inh, scr = row["epochs_to_parent_inherited"], row["epochs_to_parent_scratch"]
    return abs(row["difference_points"]) <= 1.0 and inh is not None and inh < (scr if scr is not None else m + 1)


def machine(load_start: tuple[float, ...]) -> list[str]:
    import keras
    import tensorflow as tf

    cpu = "?"
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   platform.processor() or "?")
    from engine.training.device import device_name

    return [f"- Date: {datetime.date.today().isoformat()}",
            f"- Machine: {os.cpu_count()} CPUs ({cpu}), training on {device_name()}; Python "
            f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy "
            f"{np.__version__}; niceness {os.nice(0)}; load average {load_start[0]:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (the machine was shared with a timing benchmark; this one "
            f"measures accuracies and epochs, not seconds)"]


def report(runs: list[dict], data_name: str, header: list[str]) -> str:
    m = runs[0]["max_epochs"]
    pe = runs[0]["parent_epochs"]
    lines = ["# Weight inheritance by morphism (`python -m bench.inheritance`)", "", *header,
             f"- Data: {data_name}, a search's split (test {runs[0].get('test_fraction', 0.15):.2f}, validation "
             f"{runs[0].get('val_fraction', 0.15):.2f}, split seed = run seed): {runs[0]['n_train']:,} training / "
             f"{runs[0]['n_val']:,} validation images; the test part is not used",
             f"- Parent: {runs[0]['parent_summary']} ({runs[0]['parent_params']:,} parameters), trained {pe} epochs "
             f"(Adam 1e-3, batch 64; Keras restores the best validation-loss epoch's weights). Children trained "
             f"{m} epochs from the inherited weights and from fresh ones, same training seed, no early stop.",
             f"- Seeds: {', '.join(str(r['seed']) for r in runs)}; wall time per seed "
             f"{', '.join('%.0f min' % (r['seconds'] / 60) for r in runs)}", "",
             "Epochs to the parent's accuracy: first trained epoch (1..M) whose validation accuracy is at least "
             "the parent's; before training the child already computes the parent's function, so this counts "
             "how soon training gets it back there (or beyond) after it has started to move the weights.", ""]
    for r in runs:
        lines += [f"## Seed {r['seed']}: parent validation accuracy {100 * r['parent_val_accuracy']:.2f} %", "",
                  "| morphism | operation | child params | parent val acc | child before training | difference "
                  "(points) | max softmax diff | epochs to parent's acc, inherited | from scratch | val acc "
                  "per epoch, inherited | from scratch |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for row in r["rows"]:
            lines.append(
                f"| {row['label']} | {row['operation']} | {row['child_params']:,} | "
                f"{100 * row['parent_val_accuracy']:.2f} | {100 * row['child_val_accuracy_before']:.2f} | "
                f"{row['difference_points']:+.2f} | {row['max_softmax_difference']:.1e} | "
                f"{_epochs(row['epochs_to_parent_inherited'], m)} | {_epochs(row['epochs_to_parent_scratch'], m)} | "
                f"{' '.join(f'{100 * a:.1f}' for a in row['inherited_curve'])} | "
                f"{' '.join(f'{100 * a:.1f}' for a in row['scratch_curve'])} |")
        if "parent_continued_curve" in r:
            lines += ["", f"Reference, the parent itself trained {m} more epochs: "
                      f"{' '.join(f'{100 * a:.1f}' for a in r['parent_continued_curve'])} (first epoch at or above "
                      f"its own accuracy: {_epochs(r['epochs_to_parent_continued'], m)})."]
        lines.append("")
    if len(runs) > 1:
        lines += ["## Over the seeds", "",
                  "| morphism | largest difference before training (points) | epochs to parent's acc, inherited "
                  "(per seed) | from scratch (per seed) | mean val acc after epoch 1, inherited | from scratch | "
                  "mean best val acc in M epochs, inherited | from scratch |",
                  "|---|---:|---|---|---:|---:|---:|---:|"]
        for key, label, _, _ in KINDS:
            rows = [row for r in runs for row in r["rows"] if row["kind"] == key]
            if not rows:
                continue
            lines.append(
                f"| {label} | {max(abs(x['difference_points']) for x in rows):.2f} | "
                f"{', '.join(_epochs(x['epochs_to_parent_inherited'], m) for x in rows)} | "
                f"{', '.join(_epochs(x['epochs_to_parent_scratch'], m) for x in rows)} | "
                f"{100 * statistics.mean(x['inherited_curve'][0] for x in rows):.1f} | "
                f"{100 * statistics.mean(x['scratch_curve'][0] for x in rows):.1f} | "
                f"{100 * statistics.mean(max(x['inherited_curve']) for x in rows):.1f} | "
                f"{100 * statistics.mean(max(x['scratch_curve']) for x in rows):.1f} |")
        lines.append("")
    all_rows = [row for r in runs for row in r["rows"]]
    failed = [f"{row['label']} (seed {r['seed']})" for r in runs for row in r["rows"] if not row_holds(row, m)]
    worst = max(abs(row["difference_points"]) for row in all_rows)
    within = all(abs(row["difference_points"]) <= 1.0 for row in all_rows)
    faster = sum(1 for row in all_rows if row_holds({**row, "difference_points": 0.0}, m))
    lines += ["## Verdict", "",
              f"- Within 1 point of the parent before training: {'yes' if within else 'no'} for all "
              f"{len(all_rows)} children (largest difference {worst:.2f} points).",
              f"- Parent's accuracy reached in fewer epochs inherited than from scratch: {faster} of {len(all_rows)} "
              f"children.",
              f"- \"Each morphism starts within 1 point of its parent and reaches the parent's accuracy in fewer "
              f"epochs than from scratch\": **{'holds' if not failed else 'does not hold'}**"
              + ("." if not failed else f" (fails for {', '.join(failed)})."), ""]
    refs = [r for r in runs if "parent_continued_curve" in r]
    if refs:
        lines += [f"For reference, the parent trained on unchanged reached its own accuracy again after "
                  f"{', '.join(_epochs(r['epochs_to_parent_continued'], m) for r in refs)} epoch(s) (per seed): the "
                  "children's head start over training from scratch is the parent's training, which the morphism "
                  "carries over intact; it is not a gain of the morphism over simply training the parent on.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inheritance", description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", default=None, help=f"class-folder images (default {DEFAULT_DATA} if present)")
    p.add_argument("--epochs-parent", type=int, default=4)
    p.add_argument("--max-epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="seeds S, S+1, ... (one after another)")
    p.add_argument("--kinds", default=",".join(k[0] for k in KINDS))
    p.add_argument("--no-reference", action="store_true", help="skip training the parent on as a reference")
    p.add_argument("--merge", action="store_true", help="keep the JSON file's runs of other seeds")
    p.add_argument("--out", type=Path, default=RESULTS / "inheritance.md")
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(LABELS)
    if unknown:
        p.error(f"unknown kinds {sorted(unknown)}; expected some of {', '.join(LABELS)}")
    from engine.search.prepare import TEST_FRACTION, VAL_FRACTION
    # Everything the run needs, imported now: a module imported hours later could come from
    # a newer working tree than the ones already loaded.
    for module in ("engine.nas.architecture", "engine.nas.morphism", "engine.nas.surgery", "engine.training.trainer"):
        importlib.import_module(module)

    load_start = os.getloadavg()
    json_path = args.out.with_suffix(".json")
    runs: list[dict] = []
    name = None
    for seed in range(args.seed, args.seed + args.repeats):
        d = load_split(args.data, seed)
        name = d["name"]
        log(f"data: {name}, {len(d['y_train'])} train / {len(d['y_val'])} validation, seed {seed}")
        run = run_seed(d, seed, args.epochs_parent, args.max_epochs, kinds, reference=not args.no_reference)
        run |= {"data": name, "test_fraction": TEST_FRACTION, "val_fraction": VAL_FRACTION}
        runs.append(run)
    previous = {}
    if args.merge and json_path.exists():
        old = json.loads(json_path.read_text())
        previous = {r["seed"]: r for r in old.get("runs", []) if r.get("data") == name
                    and r["max_epochs"] == args.max_epochs and r["parent_epochs"] == args.epochs_parent}
    done = {r["seed"] for r in runs}
    runs = sorted([r for s, r in previous.items() if s not in done] + runs, key=lambda r: r["seed"])
    header = machine(load_start)
    text = report(runs, name, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    json_path.write_text(json.dumps({"machine": header, "runs": runs}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
