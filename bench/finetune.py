"""How many epochs the final fine-tune should get: the same best network, tuned for longer.

    python -m bench.finetune RUN_FOLDER [RUN_FOLDER ...] --epochs 9,18,27 [--test TEST_DATA] [--name finetune]

For each finished search folder (from ``python -m engine search`` or ``bench.compare``),
the best trial's network is fine-tuned exactly as the search's final phase does it (on
training + validation data, the run's recipe, half the learning rate, annealed over all
its epochs) for each number of epochs asked, and scored on the run's held-out test split
and, when given, on a separate test folder. Nothing in the run folders is changed.

Why: the fine-tune is capped at a multiple of the recipe's final epochs, and a search that
ends early (no affordable proposal left) leaves the rest of its budget unused. This shows
what longer fine-tunes buy on the same network, without re-running whole searches.
Writes ``bench/results/<name>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench.compare import RESULTS, machine


def tune_and_score(folder: Path, epochs_list: list[int], test_data: str | None) -> dict:
    """Fine-tune the best trial of ``folder`` for each of ``epochs_list`` and score each result."""
    from engine.data import ingest as data
    from engine.training import trainer
    from engine.training.evaluation import evaluate
    from engine.training.model import build_model
    from engine.search.final import FINAL_LR_FACTOR
    from engine.training.recipe import Recipe
    from engine.search.folder import RunFolder

    run = RunFolder(folder)
    info, summary, state = run.read_dataset(), run.read_summary(), run.read_state()
    recipe = Recipe.from_dict(state["recipe"])
    ds = data.load(info["source"], image_size=info["image_size"], channels=info["channels"])
    labels = np.asarray(ds.labels, dtype=np.int32)
    part = {k: np.asarray(v, dtype=np.int64) for k, v in info["split"].items()}
    x = np.concatenate([ds.images[part["train"]], ds.images[part["val"]]])
    y = np.concatenate([labels[part["train"]], labels[part["val"]]])
    folder_set = data.load(test_data, image_size=info["image_size"], channels=info["channels"]) if test_data else None
    best_id = summary["best"]["trial_id"]
    rows = []
    for epochs in epochs_list:
        arch = run.load_architecture(best_id)
        config = trainer.TrainConfig(max_epochs=epochs, batch_size=recipe.batch_size, augment=recipe.augment(),
                                     schedule=recipe.schedule, patience=epochs + 1, score_epochs=1,
                                     learning_rate=trainer.TrainConfig().learning_rate * FINAL_LR_FACTOR, seed=0)
        t = time.monotonic()
        result = trainer.train(arch, x, y, ds.images[part["val"]], labels[part["val"]], config)
        seconds = time.monotonic() - t
        model = build_model(result.architecture)
        row = {"epochs": epochs, "seconds": seconds,
               "held_out": evaluate(model, ds.images[part["test"]], labels[part["test"]],
                                            ds.class_names)["accuracy"]}
        if folder_set is not None:
            row["folder"] = evaluate(model, folder_set.images, np.asarray(folder_set.labels),
                                             folder_set.class_names)["accuracy"]
        rows.append(row)
        print(f"{folder.name}: {epochs} epochs, {seconds:.0f} s, held-out {row['held_out']:.4f}"
              + (f", folder {row['folder']:.4f}" if "folder" in row else ""), flush=True)
    return {"run": folder.name, "best_trial": best_id, "search_wall_s": summary.get("wall_s"),
            "budget_s": summary.get("budget_s"), "searched_final_epochs": summary.get("final_epochs"), "rows": rows}


def report(runs: list[dict], epochs_list: list[int]) -> str:
    """Mean held-out and test-folder accuracy per number of fine-tune epochs, and per run."""
    lines = ["# Final fine-tune length: the same best network, tuned for longer", "",
             f"Machine: {machine()}.", "",
             "| fine-tune epochs | held-out (mean) | test folder (mean) | seconds (median) |", "|---:|---:|---:|---:|"]
    for e in epochs_list:
        rows = [r for run in runs for r in run["rows"] if r["epochs"] == e]
        folder = [r["folder"] for r in rows if "folder" in r]
        lines.append(f"| {e} | {statistics.mean(r['held_out'] for r in rows):.4f} | "
                     + (f"{statistics.mean(folder):.4f}" if folder else "–")
                     + f" | {statistics.median(r['seconds'] for r in rows):.0f} |")
    lines += ["", "| run | best trial | search wall s / budget | epochs in the search | "
              + " | ".join(f"{e} epochs (held-out / folder)" for e in epochs_list) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(epochs_list)]
    for run in runs:
        cells = [f"{r['held_out']:.4f} / " + (f"{r['folder']:.4f}" if "folder" in r else "–") for r in run["rows"]]
        lines.append(f"| {run['run']} | {run['best_trial']} | {run['search_wall_s']:.0f} / {run['budget_s']:.0f} | "
                     f"{run['searched_final_epochs']} | " + " | ".join(cells) + " |")
    lines += ["", "Each fine-tune starts from the best trial's saved weights, as the search's final phase does "
              "(training + validation data, the run's recipe, half the learning rate, cosine over all epochs, "
              "seed 0). Held-out: the run's own test split; folder: the separate test folder.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.finetune")
    p.add_argument("runs", nargs="+", type=Path, help="finished search run folders")
    p.add_argument("--epochs", default="9,18,27", help="comma-separated fine-tune lengths")
    p.add_argument("--test", default=None, help="a class-folder test set scored as well")
    p.add_argument("--name", default="finetune")
    a = p.parse_args(argv)
    epochs_list = [int(e) for e in a.epochs.split(",")]
    runs = [tune_and_score(f, epochs_list, a.test) for f in a.runs]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps({"epochs": epochs_list, "test": a.test, "runs": runs}, indent=1))
    md = report(runs, epochs_list)
    (RESULTS / f"{a.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
