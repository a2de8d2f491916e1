"""The last phase of a search: fine-tune the best network, test it, save it, summarise.

:class:`FinalPhase` holds the methods of the search (``engine.search.loop._Search``) that run
once the search phase has ended, or at once after a stop: the best trial's network is
trained further on training + validation data (no early stopping; the learning rate is
annealed over all its epochs), evaluated once on the test split, saved as
``best_model.keras`` with ``labels.json``, and the run's ``summary.json`` is written. The
fine-tune is skipped after a stop, so a stopped search keeps its best network as trained.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from engine.nas.architecture import Architecture

from engine.search.budget import flops, now_iso
from engine.errors import SproutError
from engine.search.folder import LABELS, MODEL, SUMMARY, atomic_write_json, disk_errors
from engine.search.trial import Trial

FINAL_LR_FACTOR = 0.5         # fine-tune learning rate, relative to the search's
FINAL_EPOCHS_MAX_FACTOR = 3   # the fine-tune trains at most this many times the recipe's final epochs


class FinalPhase:
    """Mixin of ``engine.search.loop._Search``: the final phase (see the module docstring)."""

    def _final_phase(self) -> dict:
        self.save_state(phase="final", in_flight=None)
        self.emit("phase", phase="final")
        best = self.best_trial()
        stopped = self.stop.is_set() or self.stopped_by_user
        if best is None:
            if stopped:
                return self._finish(None, None, "stopped", fine_tuned=False, final_epochs=0)
            raise SproutError("no network finished training within the budget; give the search more time")
        with self.timings.timed("io_s"):
            arch = self.folder.load_architecture(best.id)
        fine_tuned, epochs_done = False, 0
        hard_end = 1.04 * self.budget
        if not stopped and self.cost.known:
            n_fit = len(self.y_train) + len(self.y_val)
            epoch = self.cost.epoch_s(flops(arch), n_fit)
            evaluate = 0.5 * self.cost.epoch_s(flops(arch), len(self.y_test)) + 3.0
            room = self.budget - self.elapsed() - evaluate - self.cost.extra_s()
            most = FINAL_EPOCHS_MAX_FACTOR * self.final_epochs(best)
            n = min(most, int(room // epoch)) if epoch > 0 else 0
            if n >= 1:
                arch, fine_tuned, epochs_done = self._fine_tune(arch, n, hard_end - evaluate)
        stopped = stopped or self.stop.is_set()  # a stop during the fine-tune counts too
        return self._finish(best, arch, "stopped" if stopped else "done", fine_tuned, epochs_done)

    def _fine_tune(self, arch: Architecture, epochs: int, deadline: float) -> tuple[Architecture, bool, int]:
        """Train the best network on train + validation for ``epochs`` epochs, no early stopping."""
        self.say(f"fine-tuning the best network on training + validation data for {epochs} epoch"
                 + ("s" if epochs != 1 else ""))
        x = np.concatenate([self.x_train, self.x_val])
        y = np.concatenate([self.y_train, self.y_val])
        base = self.trainer.TrainConfig()
        config = self.train_config(epochs, patience=epochs + 1, score_epochs=1,
                                   learning_rate=base.learning_rate * FINAL_LR_FACTOR)
        ft_stop, done = threading.Event(), threading.Event()

        def watchdog() -> None:
            while not done.is_set():
                if self.stop.is_set() or self.elapsed() > deadline:
                    ft_stop.set()
                    return
                done.wait(0.1)

        def on_epoch(epoch: int, logs: dict | None = None) -> None:
            self.emit("epoch", trial_id="final", epoch=epoch + 1, max_epochs=epochs, logs=dict(logs or {}))

        def on_batch(batch: int, n_batches: int) -> None:
            self.emit("batch", trial_id="final", batch=batch + 1, n_batches=n_batches)

        self.emit("trial_started", trial_id="final", parent_id=arch.id, max_epochs=epochs, proposal=None,
                  operations=[], description="fine-tune on training + validation data")
        guard = threading.Thread(target=watchdog, name="sprout-deadline-final", daemon=True)
        guard.start()
        t = time.monotonic()
        try:
            # The validation split is part of the training data here; it only fills the trainer's
            # validation slot. The test split is never passed.
            result = self.trainer.train(arch, x, y, self.x_val, self.y_val, config, on_epoch=on_epoch,
                                        on_batch=on_batch, stop=ft_stop)
        finally:
            done.set()
            guard.join()
        self.timings.add("training_s", time.monotonic() - t)
        if result.status in ("ok", "stopped") and result.epochs >= 1 and result.architecture.weights is not None:
            out = result.architecture
            out.id, out.parent_id, out.operations = arch.id, arch.parent_id, arch.operations
            return out, True, int(result.epochs)
        self.say(f"fine-tuning did not finish ({result.error or result.status}); keeping the searched weights")
        return arch, False, 0

    def _finish(self, best: Trial | None, arch: Architecture | None, status: str, fine_tuned: bool,
                final_epochs: int) -> dict:
        final, files = None, {"keras": None, "labels": None}
        if arch is not None:
            with self.timings.timed("building_s"):
                from engine.training.model import build_model  # TensorFlow only once a model is built

                model = build_model(arch)
            with self.timings.timed("evaluation_s"):
                final = self._evaluate(model)
            with self.timings.timed("io_s"):
                files = self._save_model(model)
            self.say(f"test accuracy {final['test_accuracy']:.3f} on {final['n']} images "
                     f"(trial {best.id}{', fine-tuned' if fine_tuned else ''}); model saved to {files['keras']}")
            self.emit("final", final=final, files=files)
        wall = self.elapsed()
        timings = {k: round(v, 3) for k, v in self.timings.t.items()}
        timings["other_s"] = round(max(0.0, wall - sum(self.timings.t.values())), 3)
        ok = [r for r in self.records if r.get("status") == "ok"]
        summary = {
            "format": "sprout-summary/1", "status": status, "searcher": self.config.searcher,
            "device": self.device, "budget_s": self.budget, "wall_s": round(wall, 3), "timings": timings,
            "n_trials": len(self.records), "n_ok": len(ok),
            "best": None if best is None else {
                "trial_id": best.id, "val_accuracy": best.record.get("val_accuracy"), "summary": best.record.get("summary"),
                "n_params": best.record.get("n_params"), "description": best.record.get("description")},
            "test_accuracy": final["test_accuracy"] if final else None,
            "final": final, "fine_tuned": fine_tuned, "final_epochs": final_epochs,
            "class_names": self.class_names, "image_size": self.image_size, "channels": self.channels,
            "files": files, "config": self.config.to_dict(), "finished": now_iso(),
        }
        atomic_write_json(self.folder.root / SUMMARY, summary)
        self.save_state(phase="done" if status == "done" else "stopped", in_flight=None)
        self.emit("finished", summary=summary)
        return summary

    def _evaluate(self, model) -> dict:
        probs = np.asarray(self.trainer.predict(model, self.x_test))  # one pass serves every number below
        result = self.trainer.scores(probs, self.y_test, self.class_names)
        pred = probs.argmax(axis=1)
        test_idx = self.split["test"]
        misclassified = [{"index": int(test_idx[i]), "path": self.dataset.paths[int(test_idx[i])],
                          "true": self.class_names[int(self.y_test[i])], "pred": self.class_names[int(pred[i])],
                          "confidence": round(float(probs[i, pred[i]]), 4)}
                         for i in np.flatnonzero(pred != self.y_test)]
        return {"test_accuracy": float(result["accuracy"]), "n": int(result.get("n", len(self.y_test))),
                "per_class": result.get("per_class"), "confusion": result.get("confusion"),
                "misclassified": misclassified}

    def _save_model(self, model) -> dict:
        root = self.folder.root
        tmp = root / ".best_model.tmp.keras"
        try:
            with disk_errors(root / MODEL):  # a full disk: one plain line, the previous model kept
                model.save(tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, root / MODEL)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_json(root / LABELS, list(self.class_names))  # engine.training.export's format: labels[i] is output i
        return {"keras": str((root / MODEL).resolve()), "labels": str((root / LABELS).resolve())}
