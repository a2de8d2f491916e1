"""The search loop (DESIGN §7): split, seed, propose -> realise -> train -> observe, final.

``run_search(data_source, out_dir, config)`` runs one search inside the time budget and
writes the run folder described in :mod:`engine.search.folder`. The budget covers everything, data
loading and the final phase included: time for the final fine-tune and test evaluation is
reserved up front (estimated from measured epoch times), each trial's epochs are capped by
the time left, training is stopped at a deadline if an estimate was wrong, and the
acquisition gets a time cap of a few percent of a trial.

``events``, when given, is called with one plain dict per event (never from another
thread; exceptions it raises are logged and ignored). ``type`` is one of:

- ``"started"``: run_id-less run facts: searcher, device, budget_s, elapsed_s, class_names,
  image_size, channels, n_train, n_val, n_test, resumed, created
- ``"phase"``: ``phase`` ("seed" | "search" | "final")
- ``"log"``: ``message`` (one line for people)
- ``"trial_started"``: ``trial_id``, ``parent_id``, ``max_epochs``, ``proposal`` (dict | None)
- ``"epoch"``: ``trial_id``, ``epoch`` (1-based count done), ``logs``
- ``"batch"``: ``trial_id``, ``batch`` (1-based count done), ``n_batches``
- ``"trial_finished"``: ``trial``: the trials.jsonl record plus ``architecture`` (dict);
  also sent for every trial kept on resume, with ``restored: True``
- ``"limits"``: ``limits`` (after an out-of-memory trial lowered them)
- ``"final"``: ``final`` (test accuracy, per class, confusion, misclassified), ``files``
- ``"finished"``: ``summary``

The test split never reaches the searcher, the trainer's early stopping or the fine-tune.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.nas.architecture import Architecture, Limits, init_weights, seed_architecture
from engine.search.budget import CostModel, Timings as _Timings, flops, now_iso
from engine.search.config import SearchConfig
from engine.errors import SproutError
from engine.search.final import FINAL_EPOCHS_MAX_FACTOR, FINAL_LR_FACTOR, FinalPhase
from engine.search.prepare import TEST_FRACTION, VAL_FRACTION, Preparation
from engine.search.folder import RUN_FORMAT, RunFolder, read_json
from engine.search.trial import Trial
from engine.search.trials import OOM_SHRINK, TrialRunner, describe_operations

# Defined with the phase that uses them, and importable from here as before.
__all__ = ["SearchConfig", "Trial", "run_search", "read_labels", "CostModel", "flops", "TEST_FRACTION",
           "VAL_FRACTION", "FINAL_LR_FACTOR", "FINAL_EPOCHS_MAX_FACTOR", "OOM_SHRINK", "describe_operations"]

log = logging.getLogger(__name__)

ACQ_FRACTION = 0.03           # acquisition time cap, as a fraction of a trial's expected time
TRIAL_SHARE = 0.3             # a proposal must be able to train within this share of the search time left
FINAL_SHARE = 0.15            # budget share kept for the final fine-tune (at least its recipe epochs)
MAX_CONSECUTIVE_FAILURES = 5


def run_search(data_source: Any, out_dir: str | os.PathLike, config: SearchConfig,
               events: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
               resume: bool = False) -> dict:
    """Run a search into ``out_dir`` and return the summary dict (also in summary.json).

    ``resume=True`` continues the run in ``out_dir`` (its saved config wins): finished trials
    are kept, the one in flight at a crash is redone, the budget already used is counted.
    ``stop`` (a threading.Event) ends the search within one batch; the best trial so far is
    still evaluated on the test split and saved (summary status "stopped").
    """
    return _Search(data_source, Path(out_dir), config, events, stop or threading.Event(), resume).run()


# ------------------------------------------------------------------------------ search
class _Search(Preparation, TrialRunner, FinalPhase):
    """One search run (see :func:`run_search`); its phases live in the mixins' modules."""

    def __init__(self, source, out: Path, config: SearchConfig, events, stop: threading.Event, resume: bool):
        self.source, self.folder, self.config = source, RunFolder(out), config
        self._events, self.stop, self.resume = events, stop, resume
        self.t0 = time.monotonic()
        self.used_before = 0.0
        self.trials: list[Trial] = []
        self.records: list[dict] = []
        self.next_id = 0
        self.state: dict = {}
        self.failures = 0
        self.stopped_by_user = False

    # ----- clock and events ----------------------------------------------------------
    def elapsed(self) -> float:
        return self.used_before + time.monotonic() - self.t0

    def emit(self, type_: str, **payload) -> None:
        if self._events is None:
            return
        try:
            self._events({"type": type_, **payload})
        except Exception:  # noqa: BLE001 - a broken listener must not end the search
            log.exception("event listener failed on %s", type_)

    def say(self, message: str) -> None:
        self.emit("log", message=message)

    # ----- state -------------------------------------------------------------------
    def save_state(self, **changes) -> None:
        self.state.update(changes)
        self.state["budget_used_s"] = round(self.elapsed(), 3)
        self.state["timings"] = dict(self.timings.t)
        self.state["updated"] = now_iso()
        t = time.monotonic()
        self.folder.write_state(self.state)
        self.timings.add("io_s", time.monotonic() - t)

    # ----- main --------------------------------------------------------------------
    def run(self) -> dict:
        self.timings = _Timings()
        saved = self.folder.read_state() if self.resume and self.folder.exists() else None
        if saved is not None:
            if saved.get("format") != RUN_FORMAT:
                raise SproutError(f"{self.folder.root} does not hold a Sprout run that can be resumed")
            self.config = SearchConfig.from_dict(saved["config"])
            summary = self.folder.read_summary()
            if saved.get("phase") in ("done", "stopped") and summary is not None:
                self.say("this run is already finished")
                self.emit("finished", summary=summary)
                return summary
            self.state = saved
            self.used_before = float(saved.get("budget_used_s", 0.0))
            self.timings = _Timings(saved.get("timings"))
        else:
            if self.resume and self.folder.exists():
                raise SproutError(f"{self.folder.root} holds a run without a readable state.json; it cannot be resumed")
            self.config.check()
            self.folder.check_new()  # created once the data has loaded
            self.state = {"format": RUN_FORMAT, "config": self.config.to_dict(), "created": now_iso(),
                          "data_source": str(self.source), "phase": "starting", "limits": Limits().to_dict()}
        self.config.check()
        self.budget = float(self.config.budget_s)
        self.limits = Limits.from_dict(self.state.get("limits") or Limits().to_dict())

        self._load_data(saved is not None)
        with self.timings.timed("building_s"):
            from engine.training import trainer  # TensorFlow is imported here
            from engine.nas.searchers import make_searcher
        self.trainer = trainer
        self.device = self._device()
        self.searcher = make_searcher(self.config.searcher, seed=self.config.seed, limits=self.limits)
        self.rng = np.random.default_rng(self.config.seed)
        self.recipe = self._recipe()
        if saved is not None:
            self._restore(saved)
        self.state.update(device=self.device, pid=os.getpid(), host=socket.gethostname(), recipe=self.recipe.to_dict())
        self.save_state()
        self.emit("started", searcher=self.config.searcher, device=self.device, budget_s=self.budget,
                  elapsed_s=self.elapsed(), class_names=self.class_names, image_size=self.image_size,
                  channels=self.channels, n_train=len(self.y_train), n_val=len(self.y_val), n_test=len(self.y_test),
                  resumed=saved is not None, created=self.state.get("created"), recipe=self.recipe.to_dict())
        if saved is None:
            for reason in self.recipe.reasons:
                self.say(f"recipe: {reason}")

        if not any(t.score is not None for t in self.trials) and not self.stop.is_set():
            self._seed_phase()
        if any(t.score is not None for t in self.trials) and not self.stop.is_set():
            self._search_phase()
        return self._final_phase()

    def train_config(self, max_epochs: int, **changes):
        """The trainer's settings for one trial under this run's recipe."""
        config = self.trainer.TrainConfig(max_epochs=max_epochs, batch_size=self.recipe.batch_size,
                                          augment=self.recipe.augment(), schedule=self.recipe.schedule,
                                          seed=int(self.rng.integers(2**31)))
        for key, value in changes.items():
            setattr(config, key, value)
        return config

    def _add_trial(self, record: dict, arch: Architecture | None, restored: bool = False) -> None:
        self.records.append(record)
        score = record.get("val_accuracy") if record.get("status") == "ok" else None
        if arch is not None:
            arch = arch.copy(with_weights=False)
            arch.id = record["id"]
            trial = Trial(record["id"], arch, score, record)
            self.trials.append(trial)
            self.searcher.observe(trial)
            if record.get("status") in ("ok", "stopped") and record.get("epoch_seconds"):
                self.cost.observe(flops(arch), record["epoch_seconds"], record.get("trial_seconds", record["seconds"]))
        self.emit("trial_finished", trial={**record, "architecture": arch.to_dict() if arch else None},
                  restored=restored)

    # ----- budget ------------------------------------------------------------------
    def best_trial(self, allow_stopped: bool = True) -> Trial | None:
        scored = [t for t in self.trials if t.score is not None]
        if not scored and allow_stopped:
            scored = [t for t in self.trials if t.record.get("status") == "stopped"
                      and t.record.get("val_accuracy") is not None
                      and (self.folder.trial_dir(t.id) / "weights.npz").exists()]
            if scored:
                return max(scored, key=lambda t: t.record["val_accuracy"])
        return max(scored, key=lambda t: t.score) if scored else None

    def final_epochs(self, best: Trial) -> int:
        return max(1, int(self.recipe.final_epochs))

    def reserve_s(self) -> float:
        """Seconds to keep for the final phase: fine-tune + test evaluation + saving + margin.

        The fine-tune gets at least its recipe's epochs and at least :data:`FINAL_SHARE` of the
        budget: more epochs on the best network, with the learning rate annealed over all of
        them, beat one more short trial at the end of a search (bench/results/levers.md)."""
        margin = 0.02 * self.budget + 1.0
        best = self.best_trial()
        if best is None or not self.cost.known:
            return FINAL_SHARE * self.budget + margin
        n_fit = len(self.y_train) + len(self.y_val)
        epoch = self.cost.epoch_s(flops(best.architecture), n_fit)
        evaluate = 0.5 * self.cost.epoch_s(flops(best.architecture), len(self.y_test)) + 1.0
        tune = max(self.final_epochs(best) * epoch, FINAL_SHARE * self.budget)
        return tune + self.cost.extra_s() + evaluate + 2.0 + margin

    def affordable_limits(self, left: float) -> Limits:
        """The run's limits plus a flops cap: a proposal must be able to train its epochs
        within :data:`TRIAL_SHARE` of the search time ``left``. Morphisms only grow networks
        and an expensive network late in a search trains for a fraction of its epochs (or
        squeezes out the final fine-tune); with the cap the acquisition picks among changes
        the remaining time can pay for, or the search ends and the time goes to the fine-tune."""
        if not self.cost.known:
            return self.limits
        epoch = (TRIAL_SHARE * left - self.cost.extra_s()) / max(1, self.max_epochs())
        cap = int(min(self.limits.max_flops, self.cost.flops_for(epoch)))
        return replace(self.limits, max_flops=max(cap, 1))

    def search_deadline(self) -> float:
        """Budget time (elapsed seconds) at which the search phase must end."""
        return self.budget - self.reserve_s()

    # ----- phases --------------------------------------------------------------------
    def _seed_phase(self) -> None:
        self.save_state(phase="seed")
        self.emit("phase", phase="seed")
        n_classes = len(self.class_names)
        shape = (self.image_size, self.image_size, self.channels)
        filters = (32, 64, 64, 128)
        for attempt in range(3):
            arch = init_weights(seed_architecture(shape, n_classes, filters=filters), seed=self.config.seed)
            if not self.limits.allows(arch) and attempt < 2:
                filters = tuple(max(8, f // 2) for f in filters)
                continue
            # The seed learns from scratch: give it up to 40% of the budget.
            deadline = min(self.elapsed() + 0.4 * self.budget, self.budget - self.reserve_s())
            record = self._train_trial(arch, None, [], None, self.max_epochs(seed=True), deadline)
            if record["status"] == "ok" or self.stop.is_set():
                return
            if record.get("out_of_memory"):
                filters = tuple(max(8, f // 2) for f in filters)
                continue
            break
        if not any(t.score is not None for t in self.trials) and not self.stop.is_set():
            last = self.records[-1] if self.records else {}
            if last.get("status") == "stopped":
                raise SproutError(f"the time budget of {self.budget:g} s ran out before the first network finished "
                                  f"an epoch; give the search more time")
            raise SproutError(f"the first network could not be trained: {last.get('error') or 'unknown error'}")

    def max_epochs(self, seed: bool = False) -> int:
        """Epochs per trial: ``config.max_epochs`` when set; else the recipe's, more for the
        seed (it learns from scratch) than for networks that inherit trained weights."""
        if self.config.max_epochs:
            return int(self.config.max_epochs)
        return int(self.recipe.seed_epochs if seed else self.recipe.child_epochs)

    def _search_phase(self) -> None:
        self.save_state(phase="search")
        self.emit("phase", phase="search")
        while not self.stop.is_set():
            if self.config.max_trials is not None and len(self.records) >= self.config.max_trials:
                self.say(f"trial cap of {self.config.max_trials} reached")
                break
            best = self.best_trial(allow_stopped=False)
            deadline = self.search_deadline()
            left = deadline - self.elapsed()
            if self.cost.known:
                epoch_best, extra = self.cost.epoch_s(flops(best.architecture)), self.cost.extra_s()
            else:
                epoch_best, extra = 0.0, 0.0
            if left <= extra + epoch_best:
                self.say("the time budget is used up (the rest is kept for the final model)")
                break
            expected_trial = extra + self.max_epochs() * epoch_best
            cap = float(min(max(0.2, ACQ_FRACTION * expected_trial), max(0.2, 0.25 * left)))
            self.searcher.limits = self.affordable_limits(left)
            try:
                with self.timings.timed("proposal_s"):
                    proposal = self.searcher.propose(self.trials, stop=self.stop, time_cap_s=cap)
            except SproutError as exc:
                self.say(f"search ended: {exc} (the time left goes to the final fine-tune)"
                         if self.searcher.limits.max_flops < self.limits.max_flops else f"search ended early: {exc}")
                break
            finally:
                self.searcher.limits = self.limits
            if self.stop.is_set():
                break
            arch, error = self._realise(proposal)
            ops = list(proposal.operations)
            if arch is None:
                self._failed_record(proposal.architecture, proposal.ancestor_id, ops, proposal, error)
                if self.failures >= MAX_CONSECUTIVE_FAILURES:
                    self.say(f"search ended early: {self.failures} trials in a row failed")
                    break
                continue
            epoch_s = self.cost.epoch_s(flops(arch)) if self.cost.known else None
            left = deadline - self.elapsed()
            if epoch_s is not None:
                n = int((left - self.cost.extra_s()) // epoch_s)
                if n < 1:
                    self.say("not enough time left for another trial")
                    break
                n = min(self.max_epochs(), n)
            else:
                n = self.max_epochs()
            record = self._train_trial(arch, proposal.ancestor_id, ops, proposal, n, deadline)
            self.failures = 0 if record["status"] == "ok" else self.failures + 1
            if self.failures >= MAX_CONSECUTIVE_FAILURES:
                self.say(f"search ended early: {self.failures} trials in a row failed")
                break






def read_labels(path: str | os.PathLike) -> dict | None:
    """labels.json (a JSON list of class names, output order) as {"labels": [...]}, or None."""
    path = Path(path)
    if not path.exists():
        return None
    value = read_json(path)
    if isinstance(value, list):
        return {"labels": [str(v) for v in value]}
    if isinstance(value, dict) and isinstance(value.get("labels"), list):
        return value
    return None
