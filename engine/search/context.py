"""What every part of one search shares: the run context.

The loop (:mod:`engine.search.loop`) builds one :class:`RunContext` once the data has
loaded and TensorFlow is up, and hands it explicitly to the roles that do the work: the
trial runner (:mod:`engine.search.trials`) and the finishing step (:mod:`engine.search.final`).
They read the configuration, data, recipe, cost model and limits from it, tell the time
with :meth:`RunContext.elapsed`, report through :meth:`RunContext.emit` and persist the
run's state through :meth:`RunContext.save_state`; nothing else is shared between them.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from engine.nas.architecture import Limits
from engine.search.budget import CostModel, Timings, now_iso
from engine.search.config import SearchConfig
from engine.search.folder import RunFolder
from engine.search.prepare import PreparedData

log = logging.getLogger("engine.search.loop")


@dataclass
class Events:
    """The run's event listener (see :func:`engine.search.loop.run_search`); a listener that
    raises is logged and ignored, so a broken page cannot end a search."""

    listener: Callable[[dict], None] | None = None

    def emit(self, type_: str, **payload) -> None:
        if self.listener is None:
            return
        try:
            self.listener({"type": type_, **payload})
        except Exception:  # noqa: BLE001 - a broken listener must not end the search
            log.exception("event listener failed on %s", type_)

    def say(self, message: str) -> None:
        """One line for people (a "log" event)."""
        self.emit("log", message=message)


@dataclass
class Clock:
    """Budget time: the seconds used by earlier sessions of the run plus this session's."""

    used_before: float = 0.0
    t0: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return self.used_before + time.monotonic() - self.t0


@dataclass
class RunContext:
    """One search's shared facts and services (see the module docstring).

    ``trainer`` is the :mod:`engine.training.trainer` module (imported once the data has
    loaded, since it brings TensorFlow); ``recipe`` an :class:`engine.training.recipe.Recipe`;
    ``state`` the dict saved as state.json; ``limits`` is shared with the searcher and lowered
    in place after an out-of-memory trial."""

    config: SearchConfig
    folder: RunFolder
    data: PreparedData
    trainer: Any
    device: str
    recipe: Any
    cost: CostModel
    limits: Limits
    timings: Timings
    clock: Clock
    events: Events
    stop: threading.Event
    state: dict
    rng: np.random.Generator
    child_epochs: int | None = None  # planned when the search phase starts (engine.search.plan)
    pretrained: Any = None  # engine.search.pretrained.PretrainedStart when the run searches a head over a trunk

    @property
    def budget(self) -> float:
        return float(self.config.budget_s)

    def elapsed(self) -> float:
        return self.clock.elapsed()

    @property
    def train_data(self) -> PreparedData:
        """What trials train on: the images, or a pretrained trunk's cached features of them."""
        return self.pretrained.features if self.pretrained is not None else self.data

    def emit(self, type_: str, **payload) -> None:
        self.events.emit(type_, **payload)

    def say(self, message: str) -> None:
        self.events.say(message)

    def save_state(self, **changes) -> None:
        """Update state.json with ``changes`` and the budget used and timings so far."""
        self.state.update(changes)
        self.state["budget_used_s"] = round(self.elapsed(), 3)
        self.state["timings"] = dict(self.timings.t)
        self.state["updated"] = now_iso()
        t = time.monotonic()
        self.folder.write_state(self.state)
        self.timings.add("io_s", time.monotonic() - t)

    @contextmanager
    def watching(self, deadline: float, stop: threading.Event, name: str, deadline_hit: threading.Event | None = None):
        """For the length of the with-block, a thread sets ``stop`` once the run's stop is set
        or the budget time passes ``deadline`` (then ``deadline_hit`` too, when given): how a
        trial or a fine-tune ends within one batch (the trainer looks at ``stop`` before each)."""
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                if self.stop.is_set():
                    stop.set()
                    return
                if self.elapsed() > deadline:
                    if deadline_hit is not None:
                        deadline_hit.set()
                    stop.set()
                    return
                done.wait(0.1)

        guard = threading.Thread(target=watch, name=name, daemon=True)
        guard.start()
        try:
            yield
        finally:
            done.set()
            guard.join()

    def train_config(self, max_epochs: int, **changes):
        """The trainer's settings for one training run under this run's recipe."""
        config = self.trainer.TrainConfig(max_epochs=max_epochs, batch_size=self.recipe.batch_size,
                                          augment=self.recipe.augment(), schedule=self.recipe.schedule,
                                          seed=int(self.rng.integers(2**31)))
        for key, value in changes.items():
            setattr(config, key, value)
        return config
