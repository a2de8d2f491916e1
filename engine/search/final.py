"""The finishing step of a search: fine-tune the best network, test it, save it, summarise.

:func:`finish` runs once the search phase has ended, or at once after a stop, with the run
context and the best trial given explicitly: the best trial's network is trained further on
training + validation data (no early stopping; the learning rate is annealed over all its
epochs), evaluated once on the test split, saved as ``best_model.keras`` with
``labels.json``, and the run's ``summary.json`` is written. The fine-tune is skipped after
a stop, so a stopped search keeps its best network as trained.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.errors import SproutError
from engine.nas.architecture import Architecture
from engine.nas.levers import Levers
from engine.search import plan
from engine.search.budget import flops, now_iso
from engine.search.context import RunContext
from engine.search.prepare import train_and_val
from engine.search.status import Phase, RunStatus, TrialStatus
from engine.search.trial import Trial

FINAL_LR_FACTOR = 0.5         # fine-tune learning rate, relative to the search's
FINAL_EPOCHS_MAX_FACTOR = 3   # the fine-tune trains at most this many times the recipe's final epochs (spend=capped)
FINAL_SHARE = 0.15            # budget share the search keeps for the fine-tune (at least its recipe epochs)


def final_epochs(recipe) -> int:
    """The fine-tune's planned epochs: the recipe's final epochs, at least one."""
    return max(1, int(recipe.final_epochs))


def finish(ctx: RunContext, best: Trial | None, records: list[dict], stopped_by_user: bool = False) -> dict:
    """Fine-tune (unless stopped), evaluate and save ``best``; write and return the summary.

    ``records`` are every trial's trials.jsonl records (for the counts); ``stopped_by_user``
    says a trial was ended by the run's stop even if the stop event is clear by now."""
    stopped = ctx.stop.is_set() or stopped_by_user
    if best is None:
        if stopped:
            return _summarise(ctx, None, None, records, RunStatus.STOPPED, fine_tuned=False, epochs=0)
        raise SproutError("no network finished training within the budget; give the search more time")
    with ctx.timings.timed("io_s"):
        arch = ctx.folder.load_architecture(best.id)
    if ctx.pretrained is not None:  # one model of the trunk and the best head (engine.search.pretrained)
        model, fine_tuned, epochs_done = ctx.pretrained.final_model(ctx, arch, stopped)
        status = RunStatus.STOPPED if stopped or ctx.stop.is_set() else RunStatus.DONE
        return _summarise(ctx, best, arch, records, status, fine_tuned, epochs_done, model=model)
    fine_tuned, epochs_done = False, 0
    hard_end = 1.04 * ctx.budget
    if not stopped and ctx.cost.known:
        data = ctx.data
        n_fit = len(data.y_train) + len(data.y_val)
        epoch = ctx.cost.epoch_s(flops(arch), n_fit)
        evaluate = 0.5 * ctx.cost.epoch_s(flops(arch), len(data.y_test)) + 3.0
        room = ctx.budget - ctx.elapsed() - evaluate - ctx.cost.extra_s()
        # lever spend=all: every whole epoch the time left holds (the rate anneals over all of them);
        # a run capped by hand in trials or epochs (the CLI's flags, tests) asked for short training
        spend_all = (Levers.from_dict(ctx.config.levers).spend == "all" and ctx.config.max_trials is None
                     and not ctx.config.max_epochs)
        most = None if spend_all else FINAL_EPOCHS_MAX_FACTOR * final_epochs(ctx.recipe)
        n = plan.fine_tune_epochs(room, epoch, most)
        if n >= 1:
            arch, fine_tuned, epochs_done = _fine_tune(ctx, arch, n, hard_end - evaluate)
    stopped = stopped or ctx.stop.is_set()  # a stop during the fine-tune counts too
    status = RunStatus.STOPPED if stopped else RunStatus.DONE
    return _summarise(ctx, best, arch, records, status, fine_tuned, epochs_done)


def _fine_tune(ctx: RunContext, arch: Architecture, epochs: int, deadline: float) -> tuple[Architecture, bool, int]:
    """Train the best network on train + validation for ``epochs`` epochs, no early stopping."""
    ctx.say(f"fine-tuning the best network on training + validation data for {epochs} epoch"
            + ("s" if epochs != 1 else ""))
    data = ctx.data
    x, y = train_and_val(data)  # a view of the run's one image array, not a copy (issue 22)
    base = ctx.trainer.TrainConfig()
    config = ctx.train_config(epochs, patience=epochs + 1, score_epochs=1,
                              learning_rate=base.learning_rate * FINAL_LR_FACTOR)
    ft_stop = threading.Event()

    def on_epoch(epoch: int, logs: dict | None = None) -> None:
        ctx.emit("epoch", trial_id="final", epoch=epoch + 1, max_epochs=epochs, logs=dict(logs or {}))

    def on_batch(batch: int, n_batches: int) -> None:
        ctx.emit("batch", trial_id="final", batch=batch + 1, n_batches=n_batches)

    ctx.emit("trial_started", trial_id="final", parent_id=arch.id, max_epochs=epochs, proposal=None,
             operations=[], description="fine-tune on training + validation data")
    t = time.monotonic()
    with ctx.watching(deadline, ft_stop, "sprout-deadline-final"):
        # The validation split is part of the training data here; it only fills the trainer's
        # validation slot. The test split is never passed.
        result = ctx.trainer.train(arch, x, y, data.x_val, data.y_val, config, on_epoch=on_epoch,
                                   on_batch=on_batch, stop=ft_stop)
    ctx.timings.add("training_s", time.monotonic() - t)
    if (result.status in (TrialStatus.OK, TrialStatus.STOPPED) and result.epochs >= 1
            and result.architecture.weights is not None):
        out = result.architecture
        out.id, out.parent_id, out.operations = arch.id, arch.parent_id, arch.operations
        return out, True, int(result.epochs)
    ctx.say(f"fine-tuning did not finish ({result.error or result.status}); keeping the searched weights")
    return arch, False, 0


def _summarise(ctx: RunContext, best: Trial | None, arch: Architecture | None, records: list[dict], status: RunStatus,
               fine_tuned: bool, epochs: int, model=None) -> dict:
    """Evaluate and save ``arch`` (when there is one; ``model`` when it is built already),
    then write summary.json and the final state."""
    final, files = None, {"keras": None, "labels": None}
    data = ctx.data
    if arch is not None and model is None:
        with ctx.timings.timed("building_s"):
            from engine.training.model import build_model  # TensorFlow only once a model is built

            model = build_model(arch)
    if model is not None:
        with ctx.timings.timed("evaluation_s"):
            final = _evaluate(ctx, model)
        with ctx.timings.timed("io_s"):
            files = ctx.folder.save_model(model, data.class_names)
        ctx.say(f"test accuracy {final['test_accuracy']:.3f} on {final['n']} images "
                f"(trial {best.id}{', fine-tuned' if fine_tuned else ''}); model saved to {files['keras']}")
        ctx.emit("final", final=final, files=files)
    wall = ctx.elapsed()
    timings = {k: round(v, 3) for k, v in ctx.timings.t.items()}
    timings["other_s"] = round(max(0.0, wall - sum(ctx.timings.t.values())), 3)
    ok = [r for r in records if r.get("status") == TrialStatus.OK]
    summary = {
        "format": "sprout-summary/1", "status": status, "searcher": ctx.config.searcher,
        "device": ctx.device, "budget_s": ctx.budget, "wall_s": round(wall, 3), "timings": timings,
        "n_trials": len(records), "n_ok": len(ok),
        "n_short": sum(bool(r.get("short")) for r in records),  # trained fewer epochs: the time left
        "best": None if best is None else {
            "trial_id": best.id, "val_accuracy": best.record.get("val_accuracy"), "summary": best.record.get("summary"),
            "n_params": best.record.get("n_params"), "description": best.record.get("description")},
        "test_accuracy": final["test_accuracy"] if final else None,
        "final": final, "fine_tuned": fine_tuned, "final_epochs": epochs,
        "class_names": data.class_names, "image_size": data.image_size, "channels": data.channels,
        "files": files, "config": ctx.config.to_dict(), "finished": now_iso(), "start": ctx.state.get("start"),
    }
    ctx.folder.write_summary(summary)
    ctx.save_state(phase=Phase.DONE if status == RunStatus.DONE else Phase.STOPPED, in_flight=None)
    ctx.emit("finished", summary=summary)
    return summary


def _evaluate(ctx: RunContext, model) -> dict:
    """Test accuracy, per class, confusion and the misclassified test images of ``model``."""
    from engine.training.evaluation import predict, scores  # TensorFlow: already loaded by the trainer

    data = ctx.data
    probs = np.asarray(predict(model, data.x_test))  # one pass serves every number below
    result = scores(probs, data.y_test, data.class_names)
    pred = probs.argmax(axis=1)
    test_idx = data.split["test"]
    misclassified = [{"index": int(test_idx[i]), "path": data.dataset.paths[int(test_idx[i])],
                      "true": data.class_names[int(data.y_test[i])], "pred": data.class_names[int(pred[i])],
                      "confidence": round(float(probs[i, pred[i]]), 4)}
                     for i in np.flatnonzero(pred != data.y_test)]
    return {"test_accuracy": float(result["accuracy"]), "n": int(result.get("n", len(data.y_test))),
            "per_class": result.get("per_class"), "confusion": result.get("confusion"),
            "misclassified": misclassified}
