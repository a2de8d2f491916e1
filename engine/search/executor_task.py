"""One trial as a worker trains it: the task, its outcome and the code that runs in the worker.

A :class:`TrialTask` holds everything a worker needs besides the data (which reaches each
worker once, when it starts): the realised network with its parent's weights, the trainer's
settings, the epochs and the search's deadline. :func:`run_task` trains it the way
:meth:`engine.search.trials.TrialRunner.train` does in the search's own process (the same
early end at the deadline: an epoch that would not fit is not started), sends "epoch" and
"batch" events through ``emit`` and returns a :class:`TrialOutcome`, which the search's
process records with :meth:`~engine.search.trials.TrialRunner.conclude`. Wall-clock times
(``time.time()``) cross processes and machines; the budget clock is rebuilt from ``t0_wall``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

LOST = "the worker training this trial was lost (its process ended)"


@dataclass
class TrialTask:
    """One trial to train: ``deadline`` is in budget seconds, ``t0_wall`` the wall-clock time at
    budget second 0, ``epoch_estimate_s`` the cost model's steady epoch time (None: unknown)."""

    trial_id: str
    architecture: Any
    config: Any
    max_epochs: int
    deadline: float
    t0_wall: float
    epoch_estimate_s: float | None = None

    def elapsed(self) -> float:
        return time.time() - self.t0_wall


@dataclass
class TrialOutcome:
    """What came back: the trainer's TrainResult (None when the worker was lost), the training
    seconds, each epoch's seconds, whether the deadline ended it, and the wall-clock start and end."""

    trial_id: str
    result: Any
    train_s: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    deadline_hit: bool = False
    started_wall: float = 0.0
    finished_wall: float = 0.0
    worker: str = ""


def run_task(trainer: Any, data: dict[str, np.ndarray], task: TrialTask, stop: Any,
             emit: Callable[[str, dict], None], worker: str = "") -> TrialOutcome:
    """Train ``task`` on ``data`` (x_train, y_train, x_val, y_val) until its epochs, early
    stopping, ``stop`` (anything with ``is_set()``: the run's stop or this trial's cancel) or its
    deadline; ``emit(type, payload)`` sends the trial's events."""
    trial_stop, deadline_hit = threading.Event(), threading.Event()
    marks = [time.monotonic()]
    started = time.time()

    def on_epoch(epoch: int, logs: dict | None = None) -> None:
        marks.append(time.monotonic())
        emit("epoch", {"trial_id": task.trial_id, "epoch": len(marks) - 1, "max_epochs": task.max_epochs,
                       "logs": dict(logs or {})})
        durations = np.diff(marks)
        if len(durations) > 1:
            steady = float(np.median(durations[1:]))
        else:  # the first epoch includes building and tracing the model
            steady = task.epoch_estimate_s if task.epoch_estimate_s is not None else float(durations[0])
        if len(durations) < task.max_epochs and task.elapsed() + steady > task.deadline:
            deadline_hit.set()  # the next epoch would not fit: end cleanly at this epoch
            trial_stop.set()

    def on_batch(batch: int, n_batches: int) -> None:
        emit("batch", {"trial_id": task.trial_id, "batch": batch + 1, "n_batches": n_batches})

    done = threading.Event()

    def watch() -> None:  # the run's stop, a cancel or the deadline end the trial within one batch
        while not done.wait(0.1):
            if stop.is_set():
                trial_stop.set()
                return
            if task.elapsed() > task.deadline:
                deadline_hit.set()
                trial_stop.set()
                return

    guard = threading.Thread(target=watch, name=f"sprout-deadline-{task.trial_id}", daemon=True)
    guard.start()
    try:
        result = trainer.train(task.architecture, data["x_train"], data["y_train"], data["x_val"], data["y_val"],
                               task.config, on_epoch=on_epoch, on_batch=on_batch, stop=trial_stop)
    finally:
        done.set()
        guard.join()
    train_s = time.monotonic() - marks[0]
    epoch_seconds = [round(b - a, 4) for a, b in zip(marks[:-1], marks[1:])]
    return TrialOutcome(task.trial_id, result, train_s, epoch_seconds, deadline_hit.is_set(), started, time.time(),
                        worker)


def lost_result(trainer_result_type: Any, arch: Any, seconds: float) -> Any:
    """A failed TrainResult for a trial whose worker was lost."""
    return trainer_result_type(architecture=arch, status="failed", error=LOST, out_of_memory=False, history={},
                               epochs=0, score=None, seconds=seconds)
