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
- ``"waiting"`` (step mode): ``trial_id``, ``parent_id``, ``proposal`` (dict), ``elapsed_s``: the
  search waits for the server's go-ahead (:func:`wait_to_go_on`); ``"continued"``: ``trial_id``,
  ``elapsed_s``, ``stopped`` (the wait is over; the budget clock stood still while it lasted)
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

from engine.errors import SproutError
from engine.nas.architecture import Architecture, Limits, init_weights, seed_architecture
from engine.nas.levers import Levers
from engine.search.budget import CostModel, Timings, flops, now_iso
from engine.search import plan
from engine.search.config import SearchConfig
from engine.search.context import Clock, Events, RunContext
from engine.search.executor import open_executor
from engine.search.executor_loop import run_in_parallel
from engine.search.fidelity import epoch_share, next_step
from engine.search.final import FINAL_SHARE, final_epochs, finish
from engine.search.folder import GO_AHEAD, RUN_FORMAT, RunFolder
from engine.search import pretrained
from engine.search.prepare import device_name, prepare_data, run_recipe
from engine.search.status import Phase, TrialStatus
from engine.search.trials import TrialRunner

log = logging.getLogger(__name__)

ACQ_FRACTION = 0.03           # acquisition time cap, as a fraction of a trial's expected time
TRIAL_SHARE = 0.3             # a proposal must be able to train within this share of the search time left


def run_search(data_source: Any, out_dir: str | os.PathLike, config: SearchConfig,
               events: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
               resume: bool = False) -> dict:
    """Run a search into ``out_dir`` and return the summary dict (also in summary.json).

    ``resume=True`` continues the run in ``out_dir`` (its saved config wins): finished trials
    are kept, the one in flight at a crash is redone, the budget already used is counted.
    ``stop`` (a threading.Event) ends the search within one batch; the best trial so far is
    still evaluated on the test split and saved (summary status "stopped").
    """
    folder, channel = RunFolder(Path(out_dir)), Events(events)
    stop = stop or threading.Event()
    clock, timings = Clock(), Timings()
    saved = folder.read_state() if resume and folder.exists() else None
    if saved is not None:
        if saved.get("format") != RUN_FORMAT:
            raise SproutError(f"{folder.root} does not hold a Sprout run that can be resumed")
        config = SearchConfig.from_dict(saved["config"])
        summary = folder.read_summary()
        if saved.get("phase") in (Phase.DONE, Phase.STOPPED) and summary is not None:
            channel.say("this run is already finished")
            channel.emit("finished", summary=summary)
            return summary
        state = saved
        clock.used_before = float(saved.get("budget_used_s", 0.0))
        timings = Timings(saved.get("timings"))
    else:
        if resume and folder.exists():
            raise SproutError(f"{folder.root} holds a run without a readable state.json; it cannot be resumed")
        config.check()
        folder.check_new()  # created once the data has loaded
        state = {"format": RUN_FORMAT, "config": config.to_dict(), "created": now_iso(),
                 "data_source": str(data_source), "phase": Phase.STARTING, "limits": Limits().to_dict()}
    config.check()
    ctx, runner = _start(data_source, folder, config, state, clock, timings, channel, stop, saved)
    executor = None
    try:
        if not any(t.score is not None for t in runner.trials) and not stop.is_set():
            _seed_phase(ctx, runner)
        if any(t.score is not None for t in runner.trials) and not stop.is_set():
            # Workers start after the seed network: their start-up (TensorFlow's import) would slow it.
            # Step mode shows one prediction at a time, so it trains one network at a time.
            executor = None if config.step else open_executor(config, ctx.train_data)  # None: in this process
            _search_phase(ctx, runner, executor)
    finally:
        if executor is not None:
            executor.close()
    ctx.save_state(phase=Phase.FINAL, in_flight=None)
    ctx.emit("phase", phase=Phase.FINAL)
    return finish(ctx, runner.best(), runner.records, stopped_by_user=runner.stopped_by_user)


def _start(source, folder: RunFolder, config: SearchConfig, state: dict, clock: Clock, timings: Timings,
           events: Events, stop: threading.Event, saved: dict | None) -> tuple[RunContext, TrialRunner]:
    """Load the data, import the trainer, choose the recipe and (on resume) restore the
    trials: the run context and its trial runner, once the "started" event is sent."""
    limits = Limits.from_dict(state.get("limits") or Limits().to_dict())
    t = time.monotonic()
    data = prepare_data(folder, source, config, state, resuming=saved is not None)
    timings.add("io_s", time.monotonic() - t)
    events.say(data.describe())
    with timings.timed("building_s"):
        from engine.training import trainer  # TensorFlow is imported here
        from engine.nas.searchers import make_searcher
    device = device_name()
    searcher = make_searcher(config.searcher, seed=config.seed, limits=limits,
                             **Levers.from_dict(config.levers).searcher_params(config.searcher))
    rng = np.random.default_rng(config.seed)
    recipe = run_recipe(state, data, config, device, timings)
    pre = pretrained.begin(state, data, recipe, config.seed, events.say, timings)  # None: from scratch
    ctx = RunContext(config=config, folder=folder, data=data, trainer=trainer, device=device,
                     recipe=pre.head_recipe if pre else recipe,
                     cost=CostModel(len((pre.features if pre else data).y_train)), limits=limits, timings=timings,
                     clock=clock, events=events, stop=stop, state=state, rng=rng, pretrained=pre)
    runner = TrialRunner(ctx, searcher)
    if saved is not None:
        runner.restore(saved)
    state.update(device=device, pid=os.getpid(), host=socket.gethostname(), recipe=recipe.to_dict())
    ctx.save_state()
    ctx.emit("started", searcher=config.searcher, device=device, budget_s=ctx.budget,
             elapsed_s=ctx.elapsed(), class_names=data.class_names, image_size=data.image_size,
             channels=data.channels, n_train=len(data.y_train), n_val=len(data.y_val), n_test=len(data.y_test),
             resumed=saved is not None, created=state.get("created"), recipe=recipe.to_dict())
    if saved is None:
        for reason in recipe.reasons:
            ctx.say(f"recipe: {reason}")
    return ctx, runner


# ----- budget ----------------------------------------------------------------------
def max_epochs(ctx: RunContext, seed: bool = False) -> int:
    """Epochs per trial: ``config.max_epochs`` when set; else the recipe's, more for the
    seed (it learns from scratch) than for networks that inherit trained weights, and for
    those as many as the budget's plan allows (:func:`planned_child_epochs`)."""
    if ctx.config.max_epochs:
        return int(ctx.config.max_epochs)
    if seed:
        return int(ctx.recipe.seed_epochs)
    return int(ctx.child_epochs or ctx.recipe.child_epochs)


def planned_seed_epochs(ctx: RunContext, runner: TrialRunner, arch: Architecture) -> int:
    """The seed's epochs: the recipe's, fewer where they would take more than
    :data:`plan.SEED_SHARE` of the search time (estimated; nothing is timed yet)."""
    recipe = max_epochs(ctx, seed=True)
    if ctx.config.max_epochs:
        return recipe
    search_s = ctx.budget - ctx.elapsed() - reserve_s(ctx, runner)
    epoch = plan.prior_epoch_s(flops(arch), len(ctx.data.y_train), ctx.recipe.batch_size)
    n = plan.seed_epochs(recipe, search_s, epoch)
    if n < recipe:
        ctx.say(f"budget: the first network trains {n} of the recipe's {recipe} epochs, so that it takes "
                f"about {plan.SEED_SHARE:.0%} of the {ctx.budget:g} s at most and others can follow")
    return n


def planned_child_epochs(ctx: RunContext, runner: TrialRunner) -> int | None:
    """Each grown network's epochs for the rest of the search (None: the recipe's or the
    config's), from the seed's measured epochs and the search time left."""
    best = runner.best(allow_stopped=False)
    if ctx.config.max_epochs or not ctx.cost.known or best is None:
        return None
    recipe = int(ctx.recipe.child_epochs)
    left = search_deadline(ctx, runner) - ctx.elapsed()
    least = 1
    if Levers.from_dict(ctx.config.levers).child_floor == "steps":
        least = plan.least_child_epochs(len(ctx.train_data.y_train), ctx.recipe.batch_size)
    n = plan.child_epochs(recipe, left, plan.trials_to_go(len(runner.records)),
                          ctx.cost.epoch_s(flops(best.architecture)), ctx.cost.extra_s(), least)
    if n < recipe:
        ctx.say(f"budget: each grown network trains up to {n} of the recipe's {recipe} epochs, so that about "
                f"{plan.TARGET_TRIALS} networks fit in the {ctx.budget:g} s (they start from trained weights)")
    return n


def reserve_s(ctx: RunContext, runner: TrialRunner) -> float:
    """Seconds to keep for the final phase: fine-tune + test evaluation + saving + margin.

    The fine-tune gets at least its recipe's epochs and at least :data:`FINAL_SHARE` of the
    budget: more epochs on the best network, with the learning rate annealed over all of
    them, beat one more short trial at the end of a search (bench/results/levers.md)."""
    budget, cost, data = ctx.budget, ctx.cost, ctx.data
    margin = 0.02 * budget + 1.0
    best = runner.best()
    if best is None or not cost.known:
        return FINAL_SHARE * budget + margin
    n_fit = len(data.y_train) + len(data.y_val)
    epoch = cost.epoch_s(flops(best.architecture), n_fit)
    evaluate = 0.5 * cost.epoch_s(flops(best.architecture), len(data.y_test)) + 1.0
    tune = max(final_epochs(ctx.recipe) * epoch, FINAL_SHARE * budget)
    if ctx.pretrained is not None:  # the final phase fine-tunes the trunk's top on images, not the head alone
        tune, evaluate = ctx.pretrained.reserve_s(budget, n_fit, len(data.y_test))
    return tune + cost.extra_s() + evaluate + 2.0 + margin


def affordable_limits(ctx: RunContext, left: float, best_trial_s: float = 0.0, child_epoch_s: float = 0.0) -> Limits:
    """The run's limits plus a flops cap: a proposal must be able to train its epochs
    within :data:`TRIAL_SHARE` of the search time ``left`` (or twice ``best_trial_s``, a
    trial of the best network so far, where the time left holds that). Morphisms only grow networks
    and an expensive network late in a search trains for a fraction of its epochs (or
    squeezes out the final fine-tune); with the cap the acquisition picks among changes
    the remaining time can pay for, or the search ends and the time goes to the fine-tune.
    With ``child_epoch_s`` (an epoch of a typical child of the best network; lever ``spend=all``)
    the cap is set for the epochs such a child can still train in that time, down to one,
    so the epochs shrink before the cap does."""
    if not ctx.cost.known:
        return ctx.limits
    # Near the end a share of the time left no longer pays for even the best network so far:
    # then a network up to twice its cost still goes, where the time left holds it (at 60 s the
    # search otherwise stopped with a quarter of its time unused).
    allowed = max(TRIAL_SHARE * left, min(left, 2.0 * best_trial_s))
    epochs = max_epochs(ctx)
    if child_epoch_s > 0:
        epochs = plan.epochs_within(epochs, allowed - ctx.cost.extra_s(), child_epoch_s)
    epoch = (allowed - ctx.cost.extra_s()) / max(1, epochs)
    cap = int(min(ctx.limits.max_flops, ctx.cost.flops_for(epoch)))
    return replace(ctx.limits, max_flops=max(cap, 1))


def search_deadline(ctx: RunContext, runner: TrialRunner) -> float:
    """Budget time (elapsed seconds) at which the search phase must end."""
    return ctx.budget - reserve_s(ctx, runner)


# ----- phases ------------------------------------------------------------------------
def _halved(filters: tuple[int, ...], dense_units: int) -> tuple[tuple[int, ...], int]:
    """The seed's widths halved, 8 at the least: its retry after a size limit or running out of memory."""
    return tuple(max(8, f // 2) for f in filters), max(8, dense_units // 2)


def _seed_phase(ctx: RunContext, runner: TrialRunner) -> None:
    ctx.save_state(phase=Phase.SEED)
    ctx.emit("phase", phase=Phase.SEED)
    data = ctx.data
    n_classes = len(data.class_names)
    shape = (data.image_size, data.image_size, data.channels)
    filters, dense_units = Levers.from_dict(ctx.config.levers).seed_shape()
    for attempt in range(3):
        first = (ctx.pretrained.seed_architecture(n_classes, filters) if ctx.pretrained is not None
                else seed_architecture(shape, n_classes, filters=filters, dense_units=dense_units))
        arch = init_weights(first, seed=ctx.config.seed)
        if not ctx.limits.allows(arch) and attempt < 2:
            filters, dense_units = _halved(filters, dense_units)
            continue
        # The seed learns from scratch: give it up to 40% of the budget.
        deadline = min(ctx.elapsed() + 0.4 * ctx.budget, ctx.budget - reserve_s(ctx, runner))
        record = runner.train(arch, None, [], None, planned_seed_epochs(ctx, runner, arch), deadline)
        if record["status"] == TrialStatus.OK or ctx.stop.is_set():
            return
        if record.get("out_of_memory"):
            filters, dense_units = _halved(filters, dense_units)
            continue
        break
    if not any(t.score is not None for t in runner.trials) and not ctx.stop.is_set():
        last = runner.records[-1] if runner.records else {}
        if last.get("status") == TrialStatus.STOPPED:
            raise SproutError(f"the time budget of {ctx.budget:g} s ran out before the first network finished "
                              f"an epoch; give the search more time")
        raise SproutError(f"the first network could not be trained: {last.get('error') or 'unknown error'}")


def _search_phase(ctx: RunContext, runner: TrialRunner, executor: Any = None) -> None:
    ctx.save_state(phase=Phase.SEARCH)
    ctx.emit("phase", phase=Phase.SEARCH)
    ctx.child_epochs = planned_child_epochs(ctx, runner)
    runner.full_epochs = max_epochs(ctx)  # a grown network given fewer is recorded as short
    if executor is not None:  # several trials at once: engine.search.executor_loop
        run_in_parallel(ctx, runner, executor, lambda pending: _next_trial(ctx, runner, pending))
        return
    while not ctx.stop.is_set():
        # issue 22: a network due for promotion to more of the images goes before a new proposal
        step = next_step(ctx, runner, search_deadline(ctx, runner), max_epochs(ctx), lambda: _next_trial(ctx, runner))
        if step is None:
            break
        arch, proposal, n, deadline = step
        if ctx.config.step and not wait_to_go_on(ctx, str(runner.next_id), proposal):
            break
        record = runner.train(arch, proposal.ancestor_id, list(proposal.operations), proposal, n, deadline)
        if runner.record_outcome(record):
            break


def _next_trial(ctx: RunContext, runner: TrialRunner, pending: list | tuple = ()) -> tuple | None:
    """The next network to train (with its ancestor's weights), its proposal, its epochs and the
    search's deadline; None when the search ends here (the reason is said). ``pending``: the
    networks still training (proposed elsewhere, not to be proposed again)."""
    searcher, cost = runner.searcher, ctx.cost
    spend_all = Levers.from_dict(ctx.config.levers).spend == "all"
    while not ctx.stop.is_set():
        if ctx.config.max_trials is not None and len(runner.records) + len(pending) >= ctx.config.max_trials:
            ctx.say(f"trial cap of {ctx.config.max_trials} reached")
            return None
        best = runner.best(allow_stopped=False)
        deadline = search_deadline(ctx, runner)
        left = deadline - ctx.elapsed()
        if cost.known:
            epoch_best, extra = cost.epoch_s(flops(best.architecture)), cost.extra_s()
        else:
            epoch_best, extra = 0.0, 0.0
        if left <= extra + epoch_best * epoch_share(ctx):  # issue 22: a new network may train on part of the images
            ctx.say("the time budget is used up (the rest is kept for the final model)")
            return None
        expected_trial = extra + max_epochs(ctx) * epoch_best
        cap = float(min(max(0.2, ACQ_FRACTION * expected_trial), max(0.2, 0.25 * left)))
        searcher.limits = affordable_limits(ctx, left, expected_trial, plan.GROWTH * epoch_best if spend_all else 0.0)
        try:
            with ctx.timings.timed("proposal_s"):
                proposal = searcher.propose(runner.trials, stop=ctx.stop, time_cap_s=cap,
                                            **({"pending": list(pending)} if pending else {}))
        except SproutError as exc:
            ctx.say(f"search ended: {exc} (the time left goes to the final fine-tune)"
                    if searcher.limits.max_flops < ctx.limits.max_flops else f"search ended early: {exc}")
            return None
        finally:
            searcher.limits = ctx.limits
        if ctx.stop.is_set():
            return None
        arch, error = runner.realise(proposal)
        ops = list(proposal.operations)
        if arch is None:
            if runner.record_outcome(runner.fail(proposal.architecture, proposal.ancestor_id, ops, proposal, error)):
                return None
            continue
        epoch_s = cost.epoch_s(flops(arch)) * epoch_share(ctx) if cost.known else None
        left = deadline - ctx.elapsed()
        if epoch_s is not None:
            n = int((left - cost.extra_s()) // epoch_s)
            if n < 1:
                ctx.say("not enough time left for another trial")
                return None
            n = min(max_epochs(ctx), n)
        else:
            n = max_epochs(ctx)
        if n < max_epochs(ctx):
            proposal = _short(ctx, proposal, n, str(runner.next_id))
        return arch, proposal, n, deadline
    return None


def _short(ctx: RunContext, proposal, n: int, trial_id: str):
    """The proposal of a grown network that trains ``n`` of the usual epochs, its reason saying so."""
    full = max_epochs(ctx)
    why = (f"It trains {n} of the usual {full} epoch{'s' if full != 1 else ''}: that is what the search time "
           f"left holds, and it starts from its parent's trained weights.")
    ctx.say(f"budget: trial {trial_id} trains {n} of {full} epochs (the search time left)")
    return replace(proposal, reason=f"{proposal.reason} {why}".strip())


STEP_POLL_S = 0.1  # how often a search in step mode looks for the go-ahead


def wait_to_go_on(ctx: RunContext, trial_id: str, proposal) -> bool:
    """Step mode: wait before training ``trial_id`` until the run folder's go-ahead file
    (:data:`engine.search.folder.GO_AHEAD`) names it, or the run is stopped. The budget clock
    stands still meanwhile, so a class can take its time. True when the trial may start."""
    go_ahead, t0 = ctx.folder.root / GO_AHEAD, time.monotonic()
    ctx.emit("waiting", trial_id=trial_id, parent_id=str(proposal.ancestor_id), proposal=proposal.to_dict(),
             elapsed_s=ctx.elapsed())
    while not ctx.stop.is_set():
        try:
            if go_ahead.read_text().strip() == trial_id:
                break
        except OSError:
            pass  # not written yet
        ctx.stop.wait(STEP_POLL_S)
    paused = time.monotonic() - t0
    ctx.clock.t0 += paused  # the budget clock stood still
    ctx.state["paused_s"] = round(float(ctx.state.get("paused_s", 0.0)) + paused, 3)
    ctx.emit("continued", trial_id=trial_id, elapsed_s=ctx.elapsed(), stopped=ctx.stop.is_set())
    return not ctx.stop.is_set()
