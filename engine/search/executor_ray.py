"""The Ray executor: each trial is a Ray task (``--executor ray [--ray-address ADDR]``).

Ray is optional (``pip install 'sprout[ray]'``); it is imported only here. With no address a
local Ray instance starts (and is shut down at the end); with one, the search joins that
cluster, whose nodes need Sprout installed (they do not share the run folder: everything a
trial needs travels through Ray's object store). The training arrays are put into the object
store once; each task carries its network with the parent's weights (bytes in the store) and
returns the trained one. Each task asks for ``num_cpus`` and, where the cluster has GPUs,
one GPU. A small actor (:class:`Hub`, no CPU) carries the trials' events back and the stop
and cancel flags out. A task whose worker dies is run once more by Ray (``max_retries=1``);
if that fails too, the trial comes back as failed and the search goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from engine.errors import SproutError
from engine.search.executor_task import TrialOutcome, TrialTask, run_task

RETRIES = 1


def _ray():
    try:
        import ray
    except ImportError:
        raise SproutError("the ray executor needs Ray, which is not installed: pip install 'sprout[ray]' "
                          "(or pip install ray)") from None
    return ray


class Hub:
    """Events from the tasks to the search, and stop/cancel flags from the search to the tasks."""

    def __init__(self) -> None:
        self.events: list = []
        self.cancelled: set = set()
        self.stopped = False

    def push(self, item) -> None:
        self.events.append(item)

    def pull(self) -> list:
        out, self.events = self.events, []
        return out

    def cancel(self, trial_id: str) -> None:
        self.cancelled.add(trial_id)

    def stop(self) -> None:
        self.stopped = True

    def is_cancelled(self, trial_id: str) -> bool:
        return self.stopped or trial_id in self.cancelled


class _RemoteFlag:
    """``is_set()`` for one trial, asking the hub at most every half second."""

    def __init__(self, hub: Any, trial_id: str, ray: Any) -> None:
        self.hub, self.trial_id, self.ray, self.last, self.value = hub, trial_id, ray, 0.0, False

    def is_set(self) -> bool:
        if not self.value and time.monotonic() - self.last > 0.5:
            self.last = time.monotonic()
            try:
                self.value = bool(self.ray.get(self.hub.is_cancelled.remote(self.trial_id), timeout=5))
            except Exception:  # noqa: BLE001 - an unreachable hub means the search is gone: stop
                self.value = True
        return self.value


def train_trial(task: TrialTask, data: dict, hub: Any) -> TrialOutcome:
    """A Ray task: train ``task`` on ``data`` in this Ray worker (see the module docstring)."""
    import ray

    from engine.training import trainer

    def emit(type_: str, payload: dict) -> None:
        hub.push.remote(("event", type_, payload))

    emit("trial_worker", {"trial_id": task.trial_id, "worker": f"ray-{os.getpid()}", "pid": os.getpid(),
                          "node": ray.util.get_node_ip_address()})

    return run_task(trainer, data, task, _RemoteFlag(hub, task.trial_id, ray), emit, worker=f"ray-{os.getpid()}")


class RayExecutor:
    """Trials as Ray tasks on a local Ray instance or a cluster (see the module docstring)."""

    def __init__(self, workers: int | None, data: dict, address: str | None = None, cpus_per_trial: int = 1):
        ray = self.ray = _ray()
        self.owns = not ray.is_initialized()
        if self.owns:
            # TensorFlow's thread pool follows the task's CPUs; it is set when the trainer is imported,
            # which unpickling a task's settings does, so it goes in the job's environment.
            env_vars = {"SPROUT_INTRA_OP_THREADS": os.environ.get("SPROUT_INTRA_OP_THREADS") or str(cpus_per_trial)}
            if address is None:  # a local instance: its workers import this checkout's engine
                root = str(Path(__file__).resolve().parents[2])
                env_vars["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
            env = {"env_vars": env_vars}
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=env,
                         configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - Ray's errors vary by version; say what failed
                raise SproutError(f"could not start or join Ray{' at ' + address if address else ''}: {exc}") from None
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        self.slots = int(workers or gpus or max(1, cpus // cpus_per_trial))
        self.gpus = 1 if gpus else 0
        self.cpus = cpus_per_trial
        self.hub = ray.remote(num_cpus=0)(Hub).remote()
        self.data_ref = ray.put({k: v for k, v in data.items()})  # once: every task reads it from the store
        self.remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=RETRIES)(train_trial)
        self.running: dict[Any, TrialTask] = {}  # object ref -> task
        self.submitted: dict[str, float] = {}

    def submit(self, task: TrialTask) -> None:
        if len(self.running) >= self.slots:
            raise SproutError(f"expected a free slot for trial {task.trial_id}; all {self.slots} are busy")
        ref = self.remote.remote(task, self.data_ref, self.hub)
        self.running[ref] = task
        self.submitted[task.trial_id] = time.time()

    def cancel(self, trial_id: str) -> None:
        self.hub.cancel.remote(trial_id)

    def _pull(self, on_event: Callable[[str, dict], None]) -> None:
        for _, name, payload in self.ray.get(self.hub.pull.remote()):
            on_event(name, payload)

    def wait_any(self, timeout: float, on_event: Callable[[str, dict], None]) -> list[TrialOutcome]:
        ready, rest = self.ray.wait(list(self.running), num_returns=1, timeout=timeout) if self.running else ([], [])
        if ready and rest:
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        if not self.running:
            time.sleep(timeout)
        self._pull(on_event)
        done = []
        for ref in ready:
            task = self.running.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the worker died twice (or the node is gone)
                started = self.submitted.get(task.trial_id, time.time())
                outcome = TrialOutcome(task.trial_id, None, time.time() - started, started_wall=started,
                                       finished_wall=time.time(), worker=type(exc).__name__)
            done.append(outcome)
        return done

    def close(self) -> None:
        try:
            self.hub.stop.remote()
            if self.running:
                self.ray.wait(list(self.running), num_returns=len(self.running), timeout=10)
        finally:
            if self.owns:
                self.ray.shutdown()
