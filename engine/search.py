"""The search loop (DESIGN §7): split, seed, propose -> realise -> train -> observe, final.

``run_search(data_source, out_dir, config)`` runs one search inside the time budget and
writes the run folder described in :mod:`engine.run`. The budget covers everything, data
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

import datetime as _dt
import logging
import math
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.architecture import Architecture, Limits, build_model, init_weights, seed_architecture
from engine.errors import SproutError
from engine.run import (DATASET, LABELS, MODEL, RUN_FORMAT, SUMMARY, RunFolder, atomic_write_json,
                        read_json)

log = logging.getLogger(__name__)

TEST_FRACTION = 0.15
VAL_FRACTION = 0.15
DEFAULT_MAX_EPOCHS = 6          # the seed's epochs (it learns from scratch)
DEFAULT_CHILD_EPOCHS = 3        # a proposal's epochs (it starts from its ancestor's weights)
FINAL_MAX_EPOCHS = 2          # fine-tune epochs on train + validation (at most the best trial's)
FINAL_LR_FACTOR = 0.5         # fine-tune learning rate, relative to the search's
ACQ_FRACTION = 0.03           # acquisition time cap, as a fraction of a trial's expected time
MAX_CONSECUTIVE_FAILURES = 5
OOM_SHRINK = 0.7              # after an out-of-memory trial: max_params = 70% of its size


@dataclass
class SearchConfig:
    """What to search: the contract's fields, plus optional extras (defaults keep the contract)."""

    budget_s: float
    searcher: str = "bayesian"
    seed: int = 0
    image_size: int | None = None
    max_epochs: int | None = None
    max_trials: int | None = None      # stop proposing after this many trials (None: budget only)
    batch_size: int | None = None      # None: the trainer's default

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "SearchConfig":
        names = {f.name for f in fields(SearchConfig)}
        return SearchConfig(**{k: v for k, v in d.items() if k in names})

    def check(self) -> None:
        if not (isinstance(self.budget_s, (int, float)) and math.isfinite(self.budget_s) and self.budget_s > 0):
            raise SproutError(f"the time budget must be a positive number of seconds; received {self.budget_s!r}")
        if self.searcher not in ("bayesian", "random", "bfs"):
            raise SproutError(f"unknown searcher {self.searcher!r}; expected bayesian, random or bfs")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise SproutError(f"--max-epochs must be at least 1; received {self.max_epochs}")
        if self.image_size is not None and not 8 <= self.image_size <= 512:
            raise SproutError(f"--image-size must be between 8 and 512 pixels; received {self.image_size}")
        if self.max_trials is not None and self.max_trials < 1:
            raise SproutError(f"max_trials must be at least 1; received {self.max_trials}")


@dataclass
class Trial:
    """A finished trial as the searchers see it: ``architecture`` is unweighted, with ``id`` set."""

    id: str
    architecture: Architecture
    score: float | None
    record: dict = field(default_factory=dict)


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


# --------------------------------------------------------------------------- cost model
def flops(arch: Architecture) -> float:
    """Multiply-adds of one example's forward pass (a proxy for training time)."""
    shapes = arch.shapes()
    total = float(np.prod(arch.input_shape))
    for layer in arch.layers:
        out = shapes[layer.id]
        cin = shapes[layer.inputs[0]][-1]
        if layer.kind == "conv":
            k = layer.config["kernel"]
            total += out[0] * out[1] * k * k * cin * layer.config["filters"]
        elif layer.kind == "dense":
            total += cin * layer.config["units"]
        else:
            total += float(np.prod(out)) * len(layer.inputs)
    return total


class CostModel:
    """Seconds per epoch of a network, scaled from the recent trial closest in flops.

    Time grows slower than flops (a fixed per-batch cost; bigger layers use the cores
    better): measured on 2 CPU cores, a network with 4.6x the flops took 2.4x the time,
    so the estimate scales by (flops ratio) ** EXPONENT, exact for a network already trained.
    """

    EXPONENT = 0.7

    def __init__(self, n_train: int):
        self.n_train = max(1, n_train)
        self.obs: list[tuple[float, float, float]] = []  # (flops, steady epoch s, extra s per trial)

    def observe(self, arch_flops: float, epoch_seconds: list[float], trial_seconds: float) -> None:
        if not epoch_seconds:
            return
        if len(epoch_seconds) > 1:
            steady = float(np.median(epoch_seconds[1:]))
        elif self.obs:  # one epoch: it holds the model building and tracing too
            steady = max(float(epoch_seconds[0]) - self.extra_s(), 0.25 * float(epoch_seconds[0]))
        else:
            steady = float(epoch_seconds[0])
        # building + tracing (the first epoch's excess) and what follows the last epoch;
        # not trial - n * steady, which would count the load's ups and downs as overhead
        extra = max(0.0, trial_seconds - sum(epoch_seconds)) + max(0.0, float(epoch_seconds[0]) - steady)
        self.obs.append((arch_flops, steady, extra))

    @property
    def known(self) -> bool:
        return bool(self.obs)

    def epoch_s(self, arch_flops: float, n_samples: int | None = None) -> float:
        recent = self.obs[-8:]
        # the closest in log-flops; the most recent of equals (the machine's load changes)
        f, t, _ = min(reversed(recent), key=lambda o: abs(math.log(max(arch_flops, 1.0) / max(o[0], 1.0))))
        scale = (n_samples or self.n_train) / self.n_train
        return t * (max(arch_flops, 1.0) / max(f, 1.0)) ** self.EXPONENT * scale

    def extra_s(self) -> float:
        """Per-trial time outside steady epochs (model building, tracing, proposal, saving)."""
        return float(np.median([e for _, _, e in self.obs[-8:]]))


class _Timings:
    KEYS = ("training_s", "evaluation_s", "proposal_s", "building_s", "io_s")

    def __init__(self, start: dict | None = None):
        self.t = {k: float((start or {}).get(k, 0.0)) for k in self.KEYS}

    def add(self, key: str, seconds: float) -> None:
        self.t[key] += seconds

    def timed(self, key: str):
        timings = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.monotonic()

            def __exit__(self, *exc):
                timings.add(key, time.monotonic() - self.t0)

        return _Ctx()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_operations(operations: list[dict]) -> str:
    if not operations:
        return "seed architecture"
    try:
        from engine.morphism import describe
    except ImportError:  # pragma: no cover - morphism is part of the engine
        from engine.searchers import describe_operation as describe
    return "; ".join(describe(op) for op in operations)


# ------------------------------------------------------------------------------ search
class _Search:
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
        self.state["updated"] = _now_iso()
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
            self.state = {"format": RUN_FORMAT, "config": self.config.to_dict(), "created": _now_iso(),
                          "data_source": str(self.source), "phase": "starting", "limits": Limits().to_dict()}
        self.config.check()
        self.budget = float(self.config.budget_s)
        self.limits = Limits.from_dict(self.state.get("limits") or Limits().to_dict())

        self._load_data(saved is not None)
        with self.timings.timed("building_s"):
            from engine import trainer  # TensorFlow is imported here
            from engine.searchers import make_searcher
        self.trainer = trainer
        self.device = self._device()
        self.searcher = make_searcher(self.config.searcher, seed=self.config.seed, limits=self.limits)
        self.rng = np.random.default_rng(self.config.seed)
        if saved is not None:
            self._restore(saved)
        self.state.update(device=self.device, pid=os.getpid(), host=socket.gethostname())
        self.save_state()
        self.emit("started", searcher=self.config.searcher, device=self.device, budget_s=self.budget,
                  elapsed_s=self.elapsed(), class_names=self.class_names, image_size=self.image_size,
                  channels=self.channels, n_train=len(self.y_train), n_val=len(self.y_val), n_test=len(self.y_test),
                  resumed=saved is not None, created=self.state.get("created"))

        if not any(t.score is not None for t in self.trials) and not self.stop.is_set():
            self._seed_phase()
        if any(t.score is not None for t in self.trials) and not self.stop.is_set():
            self._search_phase()
        return self._final_phase()

    # ----- data --------------------------------------------------------------------
    def _load_data(self, resuming: bool) -> None:
        from engine import data

        t = time.monotonic()
        info = self.folder.read_dataset() if resuming else None
        if resuming and info is None:
            raise SproutError(f"{self.folder.root} has no dataset.json; the run cannot be resumed")
        size = info["image_size"] if info else self.config.image_size
        channels = info["channels"] if info else "auto"
        source = self.source if self.source is not None else (info or {}).get("source")
        ds = data.load(source, image_size=size, channels=channels)
        if len(ds.class_names) < 2:
            raise SproutError("the data has fewer than two classes; a classifier needs at least two")
        if info is not None:
            same_hash = (info.get("report") or {}).get("content_hash") in (None, ds.report.content_hash)
            if info["class_names"] != list(ds.class_names) or info["n_images"] != len(ds.labels) or not same_hash:
                raise SproutError("the data changed since this run started (different classes or number of "
                                  "images); start a new run instead of resuming")
            split = {k: np.asarray(info["split"][k], dtype=np.int64) for k in ("train", "val", "test")}
        else:
            s = ds.split(test=TEST_FRACTION, val=VAL_FRACTION, seed=self.config.seed)
            split = {"train": s.train, "val": s.val, "test": s.test}
        if len(split["train"]) == 0 or len(split["val"]) == 0 or len(split["test"]) == 0:
            raise SproutError(f"too few images to split into training, validation and test sets "
                              f"({len(ds.labels)} images); each class needs at least 3")
        self.dataset, self.split = ds, split
        self.class_names = list(ds.class_names)
        self.image_size, self.channels = int(ds.images.shape[1]), int(ds.images.shape[3])
        labels = np.asarray(ds.labels, dtype=np.int32)
        self.x_train, self.y_train = ds.images[split["train"]], labels[split["train"]]
        self.x_val, self.y_val = ds.images[split["val"]], labels[split["val"]]
        self.x_test, self.y_test = ds.images[split["test"]], labels[split["test"]]
        self.cost = CostModel(len(self.y_train))
        if info is None:
            self.folder.create()
            self.folder.write_state(self.state)
            report = ds.report.to_dict()
            atomic_write_json(self.folder.root / DATASET, {
                "source": str(self.source), "report": report, "class_names": self.class_names,
                "image_size": self.image_size, "channels": self.channels, "n_images": int(len(ds.labels)),
                "split_seed": self.config.seed, "fractions": {"test": TEST_FRACTION, "val": VAL_FRACTION},
                "split": {k: v.tolist() for k, v in split.items()}})
        self.timings.add("io_s", time.monotonic() - t)
        self.say(f"data: {len(ds.labels)} images, {len(self.class_names)} classes, "
                 f"{self.image_size}x{self.image_size}x{self.channels}; split {len(self.y_train)} train / "
                 f"{len(self.y_val)} validation / {len(self.y_test)} test")

    def _device(self) -> str:
        try:
            return str(self.trainer.device_name())
        except Exception:  # noqa: BLE001
            return "unknown"

    # ----- resume ------------------------------------------------------------------
    def _restore(self, saved: dict) -> None:
        self.folder.repair_trials()
        records = self.folder.read_trials()
        removed = self.folder.remove_uncommitted(r["id"] for r in records)
        if saved.get("searcher"):
            try:
                self.searcher.load_state_dict(saved["searcher"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("searcher state not restored: %s", exc)
        if saved.get("rng"):
            self.rng.bit_generator.state = saved["rng"]
        for record in records:
            try:
                arch = self.folder.load_architecture(record["id"], weights=False)
            except (OSError, ValueError, KeyError):
                arch = None
            self._add_trial(record, arch, restored=True)
        self.next_id = max((int(r["id"]) for r in records), default=-1) + 1
        in_flight = saved.get("in_flight")
        self.say(f"resumed: {len(records)} finished trials kept"
                 + (f"; trial {in_flight['trial_id']} was in flight and is redone" if in_flight else "")
                 + (f" (removed unfinished {', '.join(removed)})" if removed and not in_flight else ""))

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
        return max(1, min(FINAL_MAX_EPOCHS, int(best.record.get("epochs") or 1)))

    def reserve_s(self) -> float:
        """Seconds to keep for the final phase: fine-tune + test evaluation + saving + margin."""
        margin = 0.02 * self.budget + 1.0
        best = self.best_trial()
        if best is None or not self.cost.known:
            return 0.15 * self.budget + margin
        n_fit = len(self.y_train) + len(self.y_val)
        epoch = self.cost.epoch_s(flops(best.architecture), n_fit)
        evaluate = 0.5 * self.cost.epoch_s(flops(best.architecture), len(self.y_test)) + 1.0
        return self.final_epochs(best) * epoch + self.cost.extra_s() + evaluate + 2.0 + margin

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
        """Epochs per trial: ``config.max_epochs`` when set; by default 6 for the seed (it
        learns from scratch) and 3 for networks that inherit trained weights."""
        if self.config.max_epochs:
            return int(self.config.max_epochs)
        return DEFAULT_MAX_EPOCHS if seed else DEFAULT_CHILD_EPOCHS

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
            try:
                with self.timings.timed("proposal_s"):
                    proposal = self.searcher.propose(self.trials, stop=self.stop, time_cap_s=cap)
            except SproutError as exc:
                self.say(f"search ended early: {exc}")
                break
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

    def _realise(self, proposal) -> tuple[Architecture | None, str | None]:
        """The proposal with weights: its trained ancestor's, morphed by the operations."""
        try:
            with self.timings.timed("io_s"):
                ancestor = self.folder.load_architecture(proposal.ancestor_id)
                ancestor.id = str(proposal.ancestor_id)
            with self.timings.timed("building_s"):
                from engine.morphism import apply

                arch = apply(ancestor, list(proposal.operations))
        except Exception as exc:  # noqa: BLE001 - a bad morphism is one failed trial, not a failed run
            log.exception("could not realise the proposal from trial %s", proposal.ancestor_id)
            return None, f"could not build the proposed network from trial {proposal.ancestor_id}: {exc}"
        if not self.limits.allows(arch):
            return None, (f"the proposed network ({arch.n_params():,} weights) is over the size limit "
                          f"({self.limits.max_params:,})")
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
            from engine.run import append_jsonl
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

        config = self.trainer.TrainConfig(max_epochs=max_epochs, seed=int(self.rng.integers(2**31)))
        if self.config.batch_size:
            config.batch_size = int(self.config.batch_size)
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

    # ----- final --------------------------------------------------------------------
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
            n = min(self.final_epochs(best), int(room // epoch)) if epoch > 0 else 0
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
        config = self.trainer.TrainConfig(max_epochs=epochs, patience=epochs + 1, score_epochs=1,
                                          learning_rate=base.learning_rate * FINAL_LR_FACTOR,
                                          seed=int(self.rng.integers(2**31)))
        if self.config.batch_size:
            config.batch_size = int(self.config.batch_size)
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
            "files": files, "config": self.config.to_dict(), "finished": _now_iso(),
        }
        atomic_write_json(self.folder.root / SUMMARY, summary)
        self.save_state(phase="done" if status == "done" else "stopped", in_flight=None)
        self.emit("finished", summary=summary)
        return summary

    def _evaluate(self, model) -> dict:
        result = self.trainer.evaluate(model, self.x_test, self.y_test, self.class_names)
        probs = np.asarray(self.trainer.predict(model, self.x_test))
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
        model.save(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, root / MODEL)
        atomic_write_json(root / LABELS, list(self.class_names))  # engine.export's format: labels[i] is output i
        return {"keras": str((root / MODEL).resolve()), "labels": str((root / LABELS).resolve())}


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
