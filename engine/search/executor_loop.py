"""The search phase with several trials at once (issue 17).

:func:`run_in_parallel` keeps up to ``executor.slots`` trials in flight: it asks for the next
network while the others still train (the searcher is told which are pending, so it does not
propose them again and, for the Bayesian searcher, believes them in its GP), gives each trial
its id in order of start, and records each one as it finishes, in the search's own process,
exactly as a trial trained here is recorded (:meth:`engine.search.trials.TrialRunner.conclude`):
the run folder, trials.jsonl, the events and resume do not change. The workers' "epoch" and
"batch" events are passed on as they come. At the run's stop every trial in flight is ended
within a batch; at the budget's end no new trial starts and those in flight end at their
deadline. A trial whose worker was lost is recorded as failed and the search goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from engine.search.budget import flops
from engine.search.context import RunContext
from engine.search.executor_task import TrialTask, lost_result
from engine.search.trials import TrialRunner

WAIT_S = 0.2  # how often the loop looks at the run's stop while trials train


@dataclass
class InFlight:
    """A trial that a worker trains: the network sent (with its parent's weights) and its proposal."""

    architecture: Any
    proposal: Any
    max_epochs: int
    started: float


def run_in_parallel(ctx: RunContext, runner: TrialRunner, executor: Any,
                    next_trial: Callable[[list], tuple | None]) -> None:
    """The search phase over ``executor`` (see the module docstring). ``next_trial(pending)``
    returns (network, proposal, epochs, deadline) or None when no further trial should start."""
    flying: dict[str, InFlight] = {}
    ending, cancelled = False, False

    def on_event(type_: str, payload: dict) -> None:
        ctx.emit(type_, **payload)
        if type_ == "epoch":
            ctx.save_state()  # the budget used so far, as a trial trained here saves it

    try:
        while True:
            while not ending and not ctx.stop.is_set() and len(flying) < executor.slots:
                step = next_trial([f.proposal.architecture for f in flying.values()])
                if step is None:
                    ending = True
                    break
                arch, proposal, n, deadline = step
                trial_id, started = runner.begin(proposal.ancestor_id, list(proposal.operations), proposal, n)
                epoch_s = ctx.cost.epoch_s(flops(arch)) if ctx.cost.known else None
                executor.submit(TrialTask(trial_id, arch, runner.train_config(n, proposal.ancestor_id), n, deadline,
                                          time.time() - ctx.elapsed(), epoch_s))
                flying[trial_id] = InFlight(arch, proposal, n, started)
            if ctx.stop.is_set() and not cancelled:
                for trial_id in flying:
                    executor.cancel(trial_id)
                cancelled = True
            if not flying:
                return
            for outcome in executor.wait_any(WAIT_S, on_event):
                trial = flying.pop(outcome.trial_id, None)
                if trial is None:
                    continue
                result = outcome.result
                if result is None:  # the worker was lost mid-trial: a failed trial, the search goes on
                    result = lost_result(ctx.trainer.TrainResult, trial.architecture.copy(with_weights=False),
                                         outcome.train_s)
                record = runner.conclude(outcome.trial_id, trial.started, trial.architecture,
                                         trial.proposal.ancestor_id, list(trial.proposal.operations), trial.proposal,
                                         trial.max_epochs, result, outcome.train_s, outcome.epoch_seconds,
                                         outcome.deadline_hit, where(ctx, outcome))
                if runner.record_outcome(record):
                    ending = True
    finally:
        for trial_id in flying:  # an error here: nothing keeps training after the search phase
            executor.cancel(trial_id)


def where(ctx: RunContext, outcome: Any) -> dict:
    """The record's fields on where and when (budget seconds) a worker trained the trial."""
    t0_wall = time.time() - ctx.elapsed()
    return {"worker": outcome.worker, "worker_started_s": round(outcome.started_wall - t0_wall, 3),
            "worker_finished_s": round(outcome.finished_wall - t0_wall, 3)}
