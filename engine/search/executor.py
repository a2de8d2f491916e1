"""Where trials train: the executor interface and the local one (worker processes).

An :class:`Executor` trains several trials at once: ``submit`` a
:class:`~engine.search.executor_task.TrialTask` to a free slot, ``wait_any`` for finished
ones (their "epoch" and "batch" events are handed to a callback in the caller's thread on
the way), ``cancel`` one, ``close`` at the end. The search loop keeps ``slots`` trials in
flight (:mod:`engine.search.executor_loop`). With one slot there is no executor: trials train
in the search's own process, as they always did.

:class:`LocalExecutor` runs N worker processes (spawned, so none inherits a half-initialised
TensorFlow). The data reach them once, in shared memory; each task carries its network with the
parent's weights already applied. A worker that dies mid-trial is replaced and its trial comes
back as failed. :func:`default_workers`: one per GPU (each sees its own through
``CUDA_VISIBLE_DEVICES``), else one (TensorFlow already uses every core for one network).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, Callable, Protocol

import numpy as np

from engine.errors import SproutError
from engine.search.executor_task import TrialOutcome, TrialTask, run_task
from engine.search.machine import cpu_count, gpu_count

log = logging.getLogger("engine.search.loop")

EXECUTORS = ("local", "ray")
DATA_KEYS = ("x_train", "y_train", "x_val", "y_val")


class Executor(Protocol):
    slots: int

    def submit(self, task: TrialTask) -> None: ...

    def wait_any(self, timeout: float, on_event: Callable[[str, dict], None]) -> list[TrialOutcome]: ...

    def cancel(self, trial_id: str) -> None: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """Trials at once when the config does not say: one per GPU, else one."""
    return max(1, gpu_count())


def worker_env(index: int, n: int) -> dict[str, str]:
    """Environment for local worker ``index`` of ``n``: its own GPU where there are GPUs, else
    an equal share of the cores for TensorFlow's thread pool (unless the environment sets it)."""
    gpus = gpu_count()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        return {"CUDA_VISIBLE_DEVICES": ids[index % len(ids)]}
    if os.environ.get("SPROUT_INTRA_OP_THREADS"):
        return {}
    return {"SPROUT_INTRA_OP_THREADS": str(max(1, cpu_count() // n))}


class SharedArrays:
    """NumPy arrays copied once into shared memory; ``spec`` lets another process attach them."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.blocks, self.spec = [], {}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            block = shared_memory.SharedMemory(create=True, size=max(1, array.nbytes))
            np.ndarray(array.shape, array.dtype, buffer=block.buf)[...] = array
            self.blocks.append(block)
            self.spec[name] = (block.name, array.shape, array.dtype.str)

    def close(self) -> None:
        for block in self.blocks:
            block.close()
            block.unlink()
        self.blocks = []


def attach(spec: dict) -> tuple[dict[str, np.ndarray], list]:
    """The arrays of a :class:`SharedArrays` spec, and the blocks to keep open while they are used."""
    arrays, blocks = {}, []
    for name, (block_name, shape, dtype) in spec.items():
        block = shared_memory.SharedMemory(name=block_name)
        blocks.append(block)
        arrays[name] = np.ndarray(shape, np.dtype(dtype), buffer=block.buf)
    return arrays, blocks


def serve(name: str, inbox: Any, outbox: Any, run_stop: Any, cancel: Any, spec: dict, env: dict) -> None:
    """A local worker's life: attach the data, import the trainer, train tasks until ``None``."""
    os.environ.update(env)  # before TensorFlow is imported: its GPU and thread pool
    _end_with_parent(os.getppid())
    data, _blocks = attach(spec)
    from engine.training import trainer

    def emit(type_: str, payload: dict) -> None:
        outbox.put(("event", type_, payload))

    outbox.put(("ready", name, None))
    while True:
        task = inbox.get()
        if task is None:
            return
        emit("trial_worker", {"trial_id": task.trial_id, "worker": name, "pid": os.getpid()})
        outcome = run_task(trainer, data, task, _Either(run_stop, cancel), emit, worker=name)
        cancel.clear()  # before the outcome goes: the next task's cancel comes after it
        outbox.put(("done", name, outcome))


def _end_with_parent(parent: int) -> None:
    """A daemon thread that ends this worker once the search's process is gone (killed, say)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="sprout-worker-parent", daemon=True).start()


@dataclass
class _Either:
    """Set when either event is set (the run's stop or this worker's cancel)."""

    a: Any
    b: Any

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()


@dataclass
class _Worker:
    name: str
    process: Any
    inbox: Any
    cancel: Any
    task: TrialTask | None = None
    submitted_wall: float = 0.0


class LocalExecutor:
    """``n`` worker processes on this machine (see the module docstring)."""

    def __init__(self, n: int, data: dict[str, np.ndarray]):
        if n < 1:
            raise SproutError(f"workers must be at least 1; received {n}")
        self.slots = int(n)
        self._mp = mp.get_context("spawn")
        self._shared = SharedArrays({k: data[k] for k in DATA_KEYS})
        self._out = self._mp.Queue()
        self._run_stop = self._mp.Event()
        self._workers = [self._spawn(i) for i in range(self.slots)]

    def _spawn(self, index: int) -> _Worker:
        name = f"local-{index}"
        inbox, cancel = self._mp.Queue(), self._mp.Event()
        process = self._mp.Process(target=serve, name=f"sprout-{name}", daemon=True,
                                   args=(name, inbox, self._out, self._run_stop, cancel, self._shared.spec,
                                         worker_env(index, self.slots)))
        process.start()
        return _Worker(name, process, inbox, cancel)

    def busy(self) -> int:
        return sum(w.task is not None for w in self._workers)

    def submit(self, task: TrialTask) -> None:
        free = next((w for w in self._workers if w.task is None), None)
        if free is None:
            raise SproutError(f"expected a free worker for trial {task.trial_id}; all {self.slots} are busy")
        free.task, free.submitted_wall = task, time.time()
        free.inbox.put(task)

    def cancel(self, trial_id: str) -> None:
        for w in self._workers:
            if w.task is not None and w.task.trial_id == trial_id:
                w.cancel.set()

    def wait_any(self, timeout: float, on_event: Callable[[str, dict], None]) -> list[TrialOutcome]:
        """Finished trials (possibly none after ``timeout`` seconds); events go to ``on_event``."""
        done = self._drain(timeout, on_event)
        if not done:
            done = self._lost()
        return done

    def _drain(self, timeout: float, on_event: Callable[[str, dict], None]) -> list[TrialOutcome]:
        done, wait = [], timeout
        while True:
            try:
                kind, name, payload = self._out.get(timeout=wait) if wait > 0 else self._out.get_nowait()
            except queue.Empty:
                return done
            wait = 0.0
            if kind == "event":
                on_event(name, payload)
            elif kind == "done":
                worker = next((w for w in self._workers if w.name == name), None)
                if worker is not None:
                    worker.task = None
                done.append(payload)

    def _lost(self) -> list[TrialOutcome]:
        """Trials whose worker died: failed outcomes (the worker is replaced)."""
        lost = []
        for i, w in enumerate(self._workers):
            if w.task is not None and not w.process.is_alive():
                log.warning("worker %s ended during trial %s (exit code %s)", w.name, w.task.trial_id,
                            w.process.exitcode)
                lost.append(TrialOutcome(w.task.trial_id, None, time.time() - w.submitted_wall,
                                         started_wall=w.submitted_wall, finished_wall=time.time(), worker=w.name))
                self._workers[i] = self._spawn(i)
        return lost

    def close(self) -> None:
        """Stop every trial, end the workers and free the shared data."""
        self._run_stop.set()
        for w in self._workers:
            if w.process.is_alive():
                w.inbox.put(None)
        deadline = time.monotonic() + 5.0
        for w in self._workers:
            w.process.join(max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(1.0)
        self._shared.close()
        # Drop the queues and events now, so their semaphores are released before the process
        # ends (the command line ends with os._exit, which runs no finalisers).
        self._workers, self._out, self._run_stop = [], None, None


def open_executor(config: Any, data: Any) -> Executor | None:
    """The executor ``config`` asks for (``executor``, ``workers``, ``ray_address``) over the
    training arrays of ``data``; None where trials train one at a time in this process."""
    kind = getattr(config, "executor", "local") or "local"
    if kind not in EXECUTORS:
        raise SproutError(f"executor must be one of {', '.join(EXECUTORS)}; received {kind!r}")
    if kind == "ray":
        from engine.search.executor_ray import RayExecutor

        return RayExecutor(config.workers, {k: getattr(data, k) for k in DATA_KEYS},
                           address=getattr(config, "ray_address", None))
    n = config.workers or default_workers()
    return LocalExecutor(n, {k: getattr(data, k) for k in DATA_KEYS}) if n > 1 else None
