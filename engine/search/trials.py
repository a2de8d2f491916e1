"""One trial of a search: realise a proposal, train it against the clock, persist it.

:class:`TrialRunner` is the role that runs trials for the loop: it takes the run context
(:class:`engine.search.context.RunContext`) and the searcher explicitly, turns a proposal
into a network with its ancestor's weights, trains it with a watchdog that ends it at the
search's deadline or at a stop, and commits the result (trials.jsonl, the trial's folder,
state.json) before the next one starts. It keeps the run's history (the finished trials,
their records, the next id) and puts it back when a run is resumed. A trial that fails
(NaN, out of memory, a morphism that does not apply) is recorded as failed and the search
goes on; running out of memory also lowers the size limit for every later proposal, and
that lesson is saved.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from engine.nas.architecture import Architecture
from engine.nas.levers import WARMUP_STEPS, Levers
from engine.search.budget import flops
from engine.nas.operations import describe_all
from engine.nas.proposals import fraction_text
from engine.search import fidelity
from engine.search.context import RunContext
from engine.search.folder import append_jsonl
from engine.search.status import TrialStatus
from engine.search.trial import Trial

log = logging.getLogger("engine.search.loop")

OOM_SHRINK = 0.7              # after an out-of-memory trial: max_params = 70% of its size
MAX_CONSECUTIVE_FAILURES = 5  # this many trials in a row that fail end the search phase


class TrialRunner:
    """Runs one trial at a time in a run context and keeps the run's history (see the module docstring)."""

    def __init__(self, ctx: RunContext, searcher):
        self.ctx, self.searcher = ctx, searcher
        self.trials: list[Trial] = []
        self.records: list[dict] = []
        self.next_id = 0
        self.failures = 0             # trials in a row that failed
        self.stopped_by_user = False  # a trial ended by the run's stop
        self.full_epochs: int | None = None  # a grown network's epochs when time allows (set by the loop)
        self._subsets: dict[float, np.ndarray | None] = {}  # fidelity -> the training images' indices

    def best(self, allow_stopped: bool = True) -> Trial | None:
        """The trial with the best validation accuracy, among those trained on all the images when
        there are any (issue 22); with ``allow_stopped`` and no ``ok`` trial, the best stopped
        trial that has weights (a search stopped in its first trial)."""
        scored = [t for t in self.trials if t.score is not None]
        scored = [t for t in scored if fidelity.fidelity_of(t.record) >= 1.0] or scored
        if not scored and allow_stopped:
            scored = [t for t in self.trials if t.record.get("status") == TrialStatus.STOPPED
                      and t.record.get("val_accuracy") is not None
                      and (self.ctx.folder.trial_dir(t.id) / "weights.npz").exists()]
            if scored:
                return max(scored, key=lambda t: t.record["val_accuracy"])
        return max(scored, key=lambda t: t.score) if scored else None

    def add(self, record: dict, arch: Architecture | None, restored: bool = False) -> None:
        """Take a committed trial into the history, the searcher and the cost model."""
        self.records.append(record)
        score = record.get("val_accuracy") if record.get("status") == TrialStatus.OK else None
        if arch is not None:
            arch = arch.copy(with_weights=False)
            arch.id = record["id"]
            trial = Trial(record["id"], arch, score, record)
            if score is not None and record.get("promoted_from") is not None:
                # a promoted network's score on more images replaces its score on fewer (one GP row each)
                self.trials = [t for t in self.trials if t.id != str(record["promoted_from"])]
            self.trials.append(trial)
            self.searcher.observe(trial)
            if record.get("status") in (TrialStatus.OK, TrialStatus.STOPPED) and record.get("epoch_seconds"):
                self._observe_cost(arch, record)
        self.ctx.emit("trial_finished", trial={**record, "architecture": arch.to_dict() if arch else None},
                      restored=restored)

    def _observe_cost(self, arch: Architecture, record: dict) -> None:
        """Tell the cost model a trial's epochs, as epochs on all the training images."""
        seconds, trial_s = record["epoch_seconds"], record.get("trial_seconds", record["seconds"])
        share = fidelity.fidelity_of(record)
        if share < 1.0:
            data = self.ctx.train_data
            factor = fidelity.epoch_factor(share, len(data.y_train), len(data.y_val))
            full = fidelity.full_epochs(seconds, factor, self.ctx.cost.extra_s() if self.ctx.cost.known else 0.0)
            seconds, trial_s = full, trial_s + sum(full) - sum(seconds)
        self.ctx.cost.observe(flops(arch), seconds, trial_s)

    def subset(self, share: float) -> np.ndarray | None:
        """The indices of the training images a trial at fidelity ``share`` trains on (None: all),
        the same for every trial of the run at that fidelity."""
        if share not in self._subsets:
            self._subsets[share] = fidelity.subset_index(self.ctx.train_data.y_train, share, self.ctx.config.seed)
        return self._subsets[share]

    def restore(self, saved: dict) -> None:
        """Put back a resumed run's finished trials, searcher state and random state
        (``saved`` is its state.json); the trial in flight at the crash is dropped."""
        folder = self.ctx.folder
        folder.repair_trials()
        records = folder.read_trials()
        removed = folder.remove_uncommitted(r["id"] for r in records)
        if saved.get("searcher"):
            try:
                self.searcher.load_state_dict(saved["searcher"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("searcher state not restored: %s", exc)
        if saved.get("rng"):
            self.ctx.rng.bit_generator.state = saved["rng"]
        for record in records:
            try:
                arch = folder.load_architecture(record["id"], weights=False)
            except (OSError, ValueError, KeyError):
                arch = None
            self.add(record, arch, restored=True)
        self.next_id = max((int(r["id"]) for r in records), default=-1) + 1
        in_flight = saved.get("in_flight")
        self.ctx.say(f"resumed: {len(records)} finished trials kept"
                     + (f"; trial {in_flight['trial_id']} was in flight and is redone" if in_flight else "")
                     + (f" (removed unfinished {', '.join(removed)})" if removed and not in_flight else ""))

    def realise(self, proposal) -> tuple[Architecture | None, str | None]:
        """The proposal with weights: its trained ancestor's, morphed by the operations."""
        ctx = self.ctx
        try:
            with ctx.timings.timed("io_s"):
                ancestor = ctx.folder.load_architecture(proposal.ancestor_id)
                ancestor.id = str(proposal.ancestor_id)
            with ctx.timings.timed("building_s"):
                from engine.nas.morphism import apply

                arch = apply(ancestor, list(proposal.operations))
        except Exception as exc:  # noqa: BLE001 - a bad morphism is one failed trial, not a failed run
            log.exception("could not realise the proposal from trial %s", proposal.ancestor_id)
            return None, f"could not build the proposed network from trial {proposal.ancestor_id}: {exc}"
        if not ctx.limits.allows(arch):
            return None, (f"the proposed network ({arch.n_params():,} weights) is over the size limit "
                          f"({ctx.limits.max_params:,} weights, depth {ctx.limits.max_depth})")
        return arch, None

    def fail(self, arch, parent_id, operations, proposal, error) -> dict:
        """Commit a trial that could not be trained (its network could not be built or is too big);
        the caller counts it with :meth:`record_outcome`."""
        ctx = self.ctx
        trial_id = str(self.next_id)
        self.next_id += 1
        now = round(ctx.elapsed(), 3)
        share = fidelity.fraction_for(ctx.state.get("fidelities") or (1.0,), self.records, parent_id, proposal)
        record = self._record(trial_id, arch, parent_id, operations, proposal, status=TrialStatus.FAILED, error=error,
                              val_accuracy=None, history={}, epochs=0, seconds=0.0, started_s=now, fidelity=share)
        self._commit(record, arch.copy(with_weights=False) if arch is not None else None)
        ctx.say(self._progress_line(record))
        return record

    def record_outcome(self, record: dict) -> bool:
        """Count a committed trial in the run of failures (an ``ok`` trial ends the run; any other
        status extends it): True when the search phase must end, after
        :data:`MAX_CONSECUTIVE_FAILURES` trials in a row failed (said once, when the count reaches it)."""
        self.failures = 0 if record["status"] == TrialStatus.OK else self.failures + 1
        if self.failures == MAX_CONSECUTIVE_FAILURES:
            self.ctx.say(f"search ended early: {self.failures} trials in a row failed")
        return self.failures >= MAX_CONSECUTIVE_FAILURES

    def _record(self, trial_id, arch, parent_id, operations, proposal, **fields_) -> dict:
        ctx = self.ctx
        prediction = None
        if proposal is not None and proposal.mean is not None:
            prediction = {"mean": proposal.mean, "sigma": proposal.sigma, "ucb": proposal.ucb,
                          "beta": proposal.beta, "reason": proposal.reason}
        elif proposal is not None:
            prediction = {"mean": None, "sigma": None, "ucb": None, "reason": proposal.reason}
        record = {"id": trial_id, "parent_id": None if parent_id is None else str(parent_id),
                  "operations": list(operations), "description": describe_all(operations),
                  "summary": arch.summary() if arch is not None else None,
                  "n_params": int(arch.n_params()) if arch is not None else None,
                  "fingerprint": arch.fingerprint() if arch is not None else None,
                  "prediction": prediction}
        record.update(fields_)
        record.setdefault("finished_s", round(ctx.elapsed(), 3))
        return record

    def _commit(self, record: dict, arch: Architecture | None) -> None:
        ctx = self.ctx
        t = time.monotonic()
        if arch is not None:
            arch = arch.copy()
            arch.id, arch.parent_id, arch.operations = record["id"], record["parent_id"], list(record["operations"])
            ctx.folder.save_trial(record, arch)
        else:
            append_jsonl(ctx.folder.trials_path, record)
        ctx.timings.add("io_s", time.monotonic() - t)
        self.add(record, arch)
        ctx.save_state(in_flight=None, next_trial_id=self.next_id, searcher=self.searcher.state_dict(),
                       rng=ctx.rng.bit_generator.state, limits=ctx.limits.to_dict())

    def begin(self, parent_id, operations, proposal, max_epochs: int, share: float = 1.0) -> tuple[str, float]:
        """Give the next trial its id and announce it (state.json, "trial_started"): (id, start time).
        ``share``: the fidelity it trains at (the proposal's dict in the event carries it)."""
        ctx = self.ctx
        trial_id = str(self.next_id)
        self.next_id += 1
        started = ctx.elapsed()
        ctx.save_state(in_flight={"trial_id": trial_id, "parent_id": parent_id, "started_s": round(started, 3)})
        ctx.emit("trial_started", trial_id=trial_id, parent_id=None if parent_id is None else str(parent_id),
                 max_epochs=max_epochs,
                 proposal={**proposal.to_dict(), "fidelity": share} if proposal is not None else None,
                 operations=list(operations), description=_description(operations, proposal, share))
        return trial_id, started

    def train_config(self, max_epochs: int, parent_id, subset=None):
        """The trainer's settings for one trial under the run's levers (:mod:`engine.nas.levers`):
        how it is scored, and a ramp of the learning rate where it inherits trained weights
        (``warmup=children``, :data:`engine.nas.levers.WARMUP_STEPS` steps)."""
        levers = Levers.from_dict(self.ctx.config.levers)
        warmup = WARMUP_STEPS if levers.warmup == "children" and parent_id is not None else 0
        return self.ctx.train_config(max_epochs, score=levers.score, subset=subset, warmup_steps=warmup)

    def train(self, arch: Architecture, parent_id, operations, proposal, max_epochs: int, deadline: float) -> dict:
        """Train one trial until ``max_epochs``, early stopping, ``stop`` or ``deadline``; persist it."""
        ctx = self.ctx
        share = fidelity.fraction_for(ctx.state.get("fidelities") or (1.0,), self.records, parent_id, proposal)
        trial_id, started = self.begin(parent_id, operations, proposal, max_epochs, share)
        arch_flops = flops(arch)
        trial_stop = threading.Event()
        marks = [time.monotonic()]
        deadline_hit = threading.Event()

        def on_epoch(epoch: int, logs: dict | None = None) -> None:
            marks.append(time.monotonic())
            ctx.emit("epoch", trial_id=trial_id, epoch=len(marks) - 1, max_epochs=max_epochs, logs=dict(logs or {}))
            durations = np.diff(marks)
            if len(durations) > 1:
                steady = float(np.median(durations[1:]))
            else:  # the first epoch includes building and tracing the model
                steady = ctx.cost.epoch_s(arch_flops) if ctx.cost.known else float(durations[0])
            if len(durations) < max_epochs and ctx.elapsed() + steady > deadline:
                deadline_hit.set()  # the next epoch would not fit: end cleanly at this epoch
                trial_stop.set()
            ctx.save_state()

        def on_batch(batch: int, n_batches: int) -> None:
            ctx.emit("batch", trial_id=trial_id, batch=batch + 1, n_batches=n_batches)

        config = self.train_config(max_epochs, parent_id, subset=self.subset(share))
        t = time.monotonic()
        with ctx.watching(deadline, trial_stop, f"sprout-deadline-{trial_id}", deadline_hit):
            data = ctx.train_data
            result = ctx.trainer.train(arch, data.x_train, data.y_train, data.x_val, data.y_val, config,
                                       on_epoch=on_epoch, on_batch=on_batch, stop=trial_stop)
        train_s = time.monotonic() - t
        epoch_seconds = [round(b - a, 4) for a, b in zip(marks[:-1], marks[1:])]
        return self.conclude(trial_id, started, arch, parent_id, operations, proposal, max_epochs, result,
                             train_s, epoch_seconds, deadline_hit.is_set(), fidelity_fields(proposal, parent_id, share))

    def conclude(self, trial_id: str, started: float, arch: Architecture, parent_id, operations, proposal,
                 max_epochs: int, result, train_s: float, epoch_seconds: list[float], deadline_hit: bool,
                 extra: dict | None = None) -> dict:
        """Record and persist a trained trial: ``result`` is the trainer's TrainResult (wherever it
        trained), ``deadline_hit`` whether the search's deadline (not the user) ended it early,
        ``extra`` further fields for its record (where it trained)."""
        ctx = self.ctx
        ctx.timings.add("training_s", train_s)
        status, error = TrialStatus(result.status), result.error
        score = result.score
        truncated = False
        if status == TrialStatus.STOPPED and not ctx.stop.is_set() and deadline_hit:
            if result.epochs >= 1 and score is not None:
                # cut short by the time budget after whole epochs: a shorter trial, not a broken one
                status = TrialStatus.OK
                truncated = result.epochs < max_epochs  # the searcher may trust its score less (lever 5)
            else:
                error = "the time budget ran out before the first epoch ended"
        elif status == TrialStatus.STOPPED and ctx.stop.is_set():
            self.stopped_by_user = True
        if status == TrialStatus.OK and (score is None or not math.isfinite(float(score))):
            status, error = TrialStatus.FAILED, error or "no validation accuracy was measured"
        trained = (result.architecture if status in (TrialStatus.OK, TrialStatus.STOPPED)
                   else arch.copy(with_weights=False))
        if status == TrialStatus.STOPPED and (result.epochs < 1 or score is None):
            trained = arch.copy(with_weights=False)
        record = self._record(trial_id, trained, parent_id, operations, proposal, status=status, error=error,
                              out_of_memory=bool(getattr(result, "out_of_memory", False)),
                              val_accuracy=None if score is None else float(score),
                              history={k: [float(v) for v in vs] for k, vs in (result.history or {}).items()},
                              epochs=int(result.epochs), max_epochs=max_epochs, truncated=truncated,
                              short=bool(parent_id is not None and self.full_epochs and max_epochs < self.full_epochs),
                              full_epochs=self.full_epochs if parent_id is not None else None,
                              seconds=round(float(result.seconds), 3),
                              trial_seconds=round(train_s, 3), epoch_seconds=epoch_seconds,
                              started_s=round(started, 3), **{"fidelity": 1.0, **(extra or {})})
        if record["out_of_memory"]:
            self._lower_limits(arch)
        self._commit(record, trained)
        ctx.say(self._progress_line(record))
        return record

    def _lower_limits(self, arch: Architecture) -> None:
        ctx = self.ctx
        new = max(1000, int(OOM_SHRINK * arch.n_params()))
        if new < ctx.limits.max_params:
            ctx.limits.max_params = new
            self.searcher.limits = ctx.limits
            ctx.save_state(limits=ctx.limits.to_dict())  # the lesson survives a restart
            ctx.emit("limits", limits=ctx.limits.to_dict())
            ctx.say(f"out of memory: networks are now limited to {new:,} weights")

    def _progress_line(self, record: dict) -> str:
        best = self.best(allow_stopped=False)
        head = f"trial {record['id']}  {record['description']}"
        if fidelity.fidelity_of(record) < 1.0 and record.get("promoted_from") is None:  # a promotion says it
            head += f"  (on {fraction_text(fidelity.fidelity_of(record))} of the images)"
        if record["status"] == TrialStatus.OK:
            tail = f"val {record['val_accuracy']:.3f}" + (f"  (best {best.score:.3f})" if best else "")
        elif record["status"] == TrialStatus.STOPPED:
            tail = "stopped"
        else:
            tail = f"failed: {record['error']}"
        return f"{head}  {tail}  {record['seconds']:.1f} s"


def _description(operations, proposal, share: float) -> str:
    """A trial's description: its operations in words, or for a promotion what it continues on."""
    if getattr(proposal, "searcher", "") == fidelity.PROMOTION:
        return f"promoted: trained further on {fraction_text(share)} of the images"
    return describe_all(operations)


def fidelity_fields(proposal, parent_id, share: float) -> dict:
    """The record's fields on fidelity: the share of the training images it trained on and,
    for a promotion, the trial it continues, with a description saying so."""
    fields_ = {"fidelity": float(share)}
    if getattr(proposal, "searcher", "") == fidelity.PROMOTION:
        fields_.update(promoted_from=str(parent_id), description=_description([], proposal, share))
    return fields_
