"""Where a search's time goes: the cost of training a network, and a stopwatch per kind of work.

:func:`flops` measures an architecture's forward pass in multiply-adds; :class:`CostModel`
turns the epochs already measured into seconds for a network not trained yet, which is how
the search fits trials, and the final phase, into the time budget; :class:`Timings` adds up
the seconds of training, evaluation, proposals, model building and file input/output.
"""

from __future__ import annotations

import datetime as _dt
import math
import time

import numpy as np

from engine.nas.architecture import Architecture


def flops(arch: Architecture) -> float:
    """Multiply-adds of one example's forward pass (a proxy for training time)."""
    return arch.flops()


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

    def flops_for(self, epoch_s: float, n_samples: int | None = None) -> float:
        """The flops of a network whose epoch would take ``epoch_s`` seconds (the inverse of
        :meth:`epoch_s`, scaled from the most recent trial); 0 when no time is given."""
        if epoch_s <= 0:
            return 0.0
        f, t, _ = self.obs[-1]
        scale = (n_samples or self.n_train) / self.n_train
        return max(f, 1.0) * (epoch_s / (t * scale)) ** (1.0 / self.EXPONENT)

    def extra_s(self) -> float:
        """Per-trial time outside steady epochs (model building, tracing, proposal, saving)."""
        return float(np.median([e for _, _, e in self.obs[-8:]]))


class Timings:
    """Seconds spent per kind of work in a run (summary.json's ``timings``)."""

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


def now_iso() -> str:
    """The current UTC time as ISO 8601 to the second, for run files."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
