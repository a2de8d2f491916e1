"""One trial of a search: realise a proposal, train it against the clock, persist it.

:class:`TrialRunner` holds the methods of the search (``engine.search.loop._Search``) that turn
a proposal into a network with its ancestor's weights, train it with a watchdog that ends
it at the search's deadline or at a stop, and commit the result (trials.jsonl, the trial's
folder, state.json) before the next one starts. A trial that fails (NaN, out of memory, a
morphism that does not apply) is recorded as failed and the search goes on; running out
of memory also lowers the size limit for every later proposal, and that lesson is saved.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from engine.nas.architecture import Architecture
from engine.search.budget import flops

log = logging.getLogger("engine.search.loop")

OOM_SHRINK = 0.7              # after an out-of-memory trial: max_params = 70% of its size


def describe_operations(operations: list[dict]) -> str:
    """The morphisms of a trial in plain words, "; "-separated ("seed architecture" for none)."""
    from engine.nas.operations import describe_all

    return describe_all(operations)


class TrialRunner:
    """Mixin of ``engine.search.loop._Search``: one trial at a time (see the module docstring)."""

    def _realise(self, proposal) -> tuple[Architecture | None, str | None]:
        """The proposal with weights: its trained ancestor's, morphed by the operations."""
        try:
            with self.timings.timed("io_s"):
                ancestor = self.folder.load_architecture(proposal.ancestor_id)
                ancestor.id = str(proposal.ancestor_id)
            with self.timings.timed("building_s"):
                from engine.nas.morphism import apply

                arch = apply(ancestor, list(proposal.operations))
        except Exception as exc:  # noqa: BLE001 - a bad morphism is one failed trial, not a failed run
            log.exception("could not realise the proposal from trial %s", proposal.ancestor_id)
            return None, f"could not build the proposed network from trial {proposal.ancestor_id}: {exc}"
        if not self.limits.allows(arch):
            return None, (f"the proposed network ({arch.n_params():,} weights) is over the size limit "
                          f"({self.limits.max_params:,} weights, depth {self.limits.max_depth})")
        return arch, None

    def _failed_record(self, arch, parent_id, operations, proposal, error) -> dict:
        trial_id = str(self.next_id)
        self.next_id += 1
        now = round(self.elapsed(), 3)
        record = self._record(trial_id, arch, parent_id, operations, proposal, status="failed", error=error,
                              val_accuracy=None, history={}, epochs=0, seconds=0.0, started_s=now)
        self._commit(record, arch.copy(with_weights=False) if arch is not None else None)
        self.failures += 1
        self.say(self._progress_line(record))
        return record

    def _record(self, trial_id, arch, parent_id, operations, proposal, **fields_) -> dict:
        prediction = None
        if proposal is not None and proposal.mean is not None:
            prediction = {"mean": proposal.mean, "sigma": proposal.sigma, "ucb": proposal.ucb, "reason": proposal.reason}
        elif proposal is not None:
            prediction = {"mean": None, "sigma": None, "ucb": None, "reason": proposal.reason}
        record = {"id": trial_id, "parent_id": None if parent_id is None else str(parent_id),
                  "operations": list(operations), "description": describe_operations(list(operations)),
                  "summary": arch.summary() if arch is not None else None,
                  "n_params": int(arch.n_params()) if arch is not None else None,
                  "fingerprint": arch.fingerprint() if arch is not None else None,
                  "prediction": prediction}
        record.update(fields_)
        record.setdefault("finished_s", round(self.elapsed(), 3))
        return record

    def _commit(self, record: dict, arch: Architecture | None) -> None:
        t = time.monotonic()
        if arch is not None:
            arch = arch.copy()
            arch.id, arch.parent_id, arch.operations = record["id"], record["parent_id"], list(record["operations"])
            self.folder.save_trial(record, arch)
        else:
            from engine.search.folder import append_jsonl
            append_jsonl(self.folder.trials_path, record)
        self.timings.add("io_s", time.monotonic() - t)
        self._add_trial(record, arch)
        self.save_state(in_flight=None, next_trial_id=self.next_id, searcher=self.searcher.state_dict(),
                        rng=self.rng.bit_generator.state, limits=self.limits.to_dict())

    def _train_trial(self, arch: Architecture, parent_id, operations, proposal, max_epochs: int,
                     deadline: float) -> dict:
        """Train one trial until ``max_epochs``, early stopping, ``stop`` or ``deadline``; persist it."""
        trial_id = str(self.next_id)
        self.next_id += 1
        started = self.elapsed()
        self.save_state(in_flight={"trial_id": trial_id, "parent_id": parent_id, "started_s": round(started, 3)})
        self.emit("trial_started", trial_id=trial_id, parent_id=None if parent_id is None else str(parent_id),
                  max_epochs=max_epochs, proposal=proposal.to_dict() if proposal is not None else None,
                  operations=list(operations), description=describe_operations(list(operations)))
        arch_flops = flops(arch)
        trial_stop = threading.Event()
        done = threading.Event()
        marks = [time.monotonic()]
        deadline_hit = threading.Event()

        def watchdog() -> None:
            while not done.is_set():
                if self.stop.is_set():
                    trial_stop.set()
                    return
                if self.elapsed() > deadline:
                    deadline_hit.set()
                    trial_stop.set()
                    return
                done.wait(0.1)

        def on_epoch(epoch: int, logs: dict | None = None) -> None:
            marks.append(time.monotonic())
            self.emit("epoch", trial_id=trial_id, epoch=len(marks) - 1, max_epochs=max_epochs, logs=dict(logs or {}))
            durations = np.diff(marks)
            if len(durations) > 1:
                steady = float(np.median(durations[1:]))
            else:  # the first epoch includes building and tracing the model
                steady = self.cost.epoch_s(arch_flops) if self.cost.known else float(durations[0])
            if len(durations) < max_epochs and self.elapsed() + steady > deadline:
                deadline_hit.set()  # the next epoch would not fit: end cleanly at this epoch
                trial_stop.set()
            self.save_state()

        def on_batch(batch: int, n_batches: int) -> None:
            self.emit("batch", trial_id=trial_id, batch=batch + 1, n_batches=n_batches)

        config = self.train_config(max_epochs)
        guard = threading.Thread(target=watchdog, name=f"sprout-deadline-{trial_id}", daemon=True)
        guard.start()
        t = time.monotonic()
        try:
            result = self.trainer.train(arch, self.x_train, self.y_train, self.x_val, self.y_val, config,
                                        on_epoch=on_epoch, on_batch=on_batch, stop=trial_stop)
        finally:
            done.set()
            guard.join()
        train_s = time.monotonic() - t
        self.timings.add("training_s", train_s)
        epoch_seconds = [round(b - a, 4) for a, b in zip(marks[:-1], marks[1:])]

        status, error = result.status, result.error
        score = result.score
        if status == "stopped" and not self.stop.is_set() and deadline_hit.is_set():
            if result.epochs >= 1 and score is not None:
                status = "ok"  # cut short by the time budget after whole epochs: a shorter trial, not a broken one
            else:
                error = "the time budget ran out before the first epoch ended"
        elif status == "stopped" and self.stop.is_set():
            self.stopped_by_user = True
        if status == "ok" and (score is None or not math.isfinite(float(score))):
            status, error = "failed", error or "no validation accuracy was measured"
        trained = result.architecture if status in ("ok", "stopped") else arch.copy(with_weights=False)
        if status == "stopped" and (result.epochs < 1 or score is None):
            trained = arch.copy(with_weights=False)
        record = self._record(trial_id, trained, parent_id, operations, proposal, status=status, error=error,
                              out_of_memory=bool(getattr(result, "out_of_memory", False)),
                              val_accuracy=None if score is None else float(score),
                              history={k: [float(v) for v in vs] for k, vs in (result.history or {}).items()},
                              epochs=int(result.epochs), max_epochs=max_epochs, seconds=round(float(result.seconds), 3),
                              trial_seconds=round(train_s, 3), epoch_seconds=epoch_seconds,
                              started_s=round(started, 3))
        if record["out_of_memory"]:
            self._lower_limits(arch)
        self._commit(record, trained)
        self.say(self._progress_line(record))
        return record

    def _lower_limits(self, arch: Architecture) -> None:
        new = max(1000, int(OOM_SHRINK * arch.n_params()))
        if new < self.limits.max_params:
            self.limits.max_params = new
            self.searcher.limits = self.limits
            self.save_state(limits=self.limits.to_dict())  # the lesson survives a restart
            self.emit("limits", limits=self.limits.to_dict())
            self.say(f"out of memory: networks are now limited to {new:,} weights")

    def _progress_line(self, record: dict) -> str:
        best = self.best_trial(allow_stopped=False)
        head = f"trial {record['id']}  {record['description']}"
        if record["status"] == "ok":
            tail = f"val {record['val_accuracy']:.3f}" + (f"  (best {best.score:.3f})" if best else "")
        elif record["status"] == "stopped":
            tail = "stopped"
        else:
            tail = f"failed: {record['error']}"
        return f"{head}  {tail}  {record['seconds']:.1f} s"
