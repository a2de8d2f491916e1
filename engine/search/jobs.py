"""Searches running in the background of the app: each in its own process, watched by one
supervisor thread per server.

:meth:`Registry.start` queues a search; while fewer than ``max_active`` run, the next one in the
queue (first in, first out) starts as a child process (engine/search/worker.py), which appends
its events to a file in its run folder. The supervisor thread reads those events into the run's
:class:`~engine.search.monitor.RunMonitor`, notices a process that ended (done, failed, or
killed: "interrupted", resumable), kills one that does not answer a stop, and stops one that
uses more memory than its ceiling. The page reads :meth:`Registry.snapshot`, a plain JSON-able
dict copied under a lock (format in docs/contracts.md): a page rerun never waits for a worker.
Runs left on disk by earlier servers are listed too; their snapshot is rebuilt from the run folder.

Run ids are made here (UTC time + random hex), never taken from user input; a run id
given back to :meth:`snapshot`/:meth:`stop` is checked against that pattern before it
is used as a folder name.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import SproutError
from engine.files import atomic_write
from engine.search import machine
from engine.search.folder import GO_AHEAD, RunFolder, is_run_folder
from engine.search.monitor import RunMonitor, _disk_key, _disk_listing, interrupted_message, snapshot_from_disk
from engine.search.race import race_configs
from engine.search.status import FINISHED, RunStatus
from engine.search.worker import EVENTS, LOG

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
POLL_S = 0.1          # how often the supervisor reads the workers' events
STOP_GRACE_S = 20.0   # a worker still there this long after a stop is killed
RSS_EVERY_S = 1.0     # how often the supervisor reads each worker's memory
#: the command that runs one search (the run folder, data and config are added)
WORKER = [sys.executable, "-m", "engine.search.worker"]


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time + 6 random hex digits): sortable and unguessable."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise SproutError(f"there is no run named {str(run_id)[:80]!r}")
    return run_id


class _Job:
    """One search: queued (``proc`` None), running, or ended (``done`` set)."""

    def __init__(self, run_id: str, run_dir: Path, config, data_source, resume: bool, monitor: RunMonitor):
        self.run_id, self.run_dir, self.config = run_id, run_dir, config
        self.data_source, self.resume, self.monitor = data_source, resume, monitor
        self.proc: subprocess.Popen | None = None
        self.slot = 0
        self.offset, self.partial = 0, b""
        self.stop_at: float | None = None
        self.memory_note: str | None = None
        self.killed, self.rss_at = False, 0.0
        self.done = threading.Event()
        self.race = getattr(config, "race", None)  # a race's two runs share one place (slot)

    @property
    def running(self) -> bool:
        return self.proc is not None and not self.done.is_set()


class Registry:
    """Background searches of one server (the app keeps one in ``st.cache_resource``).

    ``max_active`` searches run at once (None: :func:`engine.search.machine.max_active`); more
    wait in a queue. ``worker`` is the command that runs one search (its arguments are added).
    """

    def __init__(self, runs_root: Path, max_active: int | None = None, worker: list[str] | None = None):
        self.runs_root = Path(runs_root)
        self.max_active = machine.max_active() if max_active is None else max(1, int(max_active))
        self.worker = list(worker or WORKER)
        self.rss_limit_mb = machine.rss_ceiling_mb(self.max_active)
        self.stop_grace_s = STOP_GRACE_S
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        self._disk_cache: dict[str, tuple[tuple, dict]] = {}
        self._wake = threading.Event()
        self._closed = False
        self._supervisor: threading.Thread | None = None

    # ----- starting and stopping ---------------------------------------------------------
    def start(self, data_dir: Path, config, *, resume_run_id: str | None = None) -> str:
        """Queue a search of ``data_dir`` (a folder, a zip or "sample") in a new run folder; return
        its id. It starts at once when fewer than ``max_active`` searches run."""
        from engine.search.config import SearchConfig

        if resume_run_id is None:
            if not isinstance(config, SearchConfig):
                raise SproutError("expected a SearchConfig")
            config = replace(config)
            config.check()
            if not (isinstance(data_dir, str) and data_dir == "sample") and not Path(data_dir).exists():
                raise SproutError(f"there is no data at {data_dir}")
        with self._lock:
            if self._closed:
                raise SproutError("the server is shutting down; no new search can start")
            run_id = resume_run_id or new_run_id()
            while resume_run_id is None and (run_id in self._jobs or (self.runs_root / run_id).exists()):
                run_id = new_run_id()
            run_dir = self.runs_root / run_id
            monitor = RunMonitor(run_id, run_dir, config, status=RunStatus.QUEUED, data_source=data_dir)
            self._jobs[run_id] = _Job(run_id, run_dir, config, data_dir, resume_run_id is not None, monitor)
            self._queue.append(run_id)
            self._disk_cache.pop(run_id, None)
            self._dispatch()
            self._ensure_supervisor()
        self._wake.set()
        return run_id

    def start_race(self, data_dir: Path, config, rival: str) -> tuple[str, str]:
        """Queue two searches of ``data_dir`` differing only in their searcher (engine.search.race): they
        start together in one place of ``max_active``, each with half its cores (the second joins the first's)."""
        return tuple(self.start(data_dir, c) for c in race_configs(config, rival))

    def continue_step(self, run_id: str) -> None:
        """Let a search in step mode train the network it waits with (engine.search.loop.wait_to_go_on)."""
        waiting = self.snapshot(run_id).get("waiting")
        if not waiting or self.worker_pid(run_id) is None:
            raise SproutError(f"expected run {run_id} to wait for Continue; it is not waiting")
        atomic_write(self.runs_root / run_id / GO_AHEAD, lambda tmp: tmp.write_text(str(waiting["trial_id"])))

    def resume(self, run_id: str) -> str:
        """Continue a run on disk that was interrupted (its process killed, a server restart)."""
        from engine.search.config import SearchConfig

        run_id = _check_run_id(run_id)
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None and not job.done.is_set():
                raise SproutError(f"run {run_id} is still running or waiting to run")
        folder = RunFolder(self.runs_root / run_id)
        state = folder.read_state()
        if state is None:
            raise SproutError(f"there is no run named {run_id!r} that can be resumed")
        if folder.read_summary() is not None:
            raise SproutError(f"run {run_id} has already finished")
        config = SearchConfig.from_dict(state["config"])
        return self.start(state.get("data_source"), config, resume_run_id=run_id)

    def stop(self, run_id: str) -> None:
        """Ask a run to stop: its trial ends within one batch and the best model so far is saved.
        A second stop ends its process at once (the trial in flight is lost; it can be resumed).
        A queued run is cancelled."""
        run_id = _check_run_id(run_id)
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None and job.proc is None and run_id in self._queue:
                self._cancel(job)
                return
        if job is None:
            if is_run_folder(self.runs_root / run_id):
                return  # a run of an earlier server: nothing is running here
            raise SproutError(f"there is no run named {run_id!r}")
        if not job.running:
            return
        if job.stop_at is None:
            job.stop_at = time.monotonic()
            self._signal(job, signal.SIGTERM)
            with job.monitor.lock:
                job.monitor.snap["stopping"] = True
                job.monitor._log("stop requested: finishing the current batch, then saving the best model so far")
        else:
            self._signal(job, signal.SIGKILL)
            with job.monitor.lock:
                job.monitor._log("stopped at once: the network in training is lost")

    def cancel(self, run_id: str) -> None:
        """Remove a queued run from the queue (it never started; nothing of it is kept)."""
        run_id = _check_run_id(run_id)
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or run_id not in self._queue:
                raise SproutError(f"run {run_id} is not waiting in the queue")
            self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        self._queue.remove(job.run_id)
        del self._jobs[job.run_id]
        job.monitor.set_status(RunStatus.STOPPED, None)
        job.done.set()
        self._number_queue()

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait for a run to end (a queued one: to run and end); True when it has."""
        with self._lock:
            job = self._jobs.get(_check_run_id(run_id))
        return True if job is None else job.done.wait(timeout)

    def worker_pid(self, run_id: str) -> int | None:
        """The process id of a run's worker while it runs (None when it does not)."""
        with self._lock:
            job = self._jobs.get(_check_run_id(run_id))
        return job.proc.pid if job is not None and job.running else None

    def queue(self) -> list[str]:
        """Run ids waiting for a place, first first."""
        with self._lock:
            return list(self._queue)

    def close(self) -> None:
        """End every worker at once and the supervisor (a server that shuts down; tests)."""
        with self._lock:
            self._closed = True
            jobs = [j for j in self._jobs.values() if j.running]
        for job in jobs:
            self._signal(job, signal.SIGKILL)
        self._wake.set()
        if self._supervisor is not None:
            self._supervisor.join(10)

    # ----- reading ------------------------------------------------------------------
    def snapshot(self, run_id: str) -> dict:
        """The run's current state as a plain JSON-able dict (a copy: safe to keep or change)."""
        run_id = _check_run_id(run_id)
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None:
            return job.monitor.snapshot()
        run_dir = self.runs_root / run_id
        if not is_run_folder(run_dir):
            raise SproutError(f"there is no run named {run_id!r}")
        key = _disk_key(run_dir)
        cached = self._disk_cache.get(run_id)
        # "running" comes from another process that was alive at the last read: its end (a kill)
        # changes no file, so it is checked again on every read
        if cached is None or cached[0] != key or cached[1]["status"] == RunStatus.RUNNING:
            cached = (key, snapshot_from_disk(run_dir, run_id))
            self._disk_cache[run_id] = cached
        return copy.deepcopy(cached[1])

    def list_runs(self) -> list[dict]:
        """Every run, newest first: this server's (queued ones included) and those found on disk."""
        out: dict[str, dict] = {}
        with self._lock:
            jobs = dict(self._jobs)
        for run_id, job in jobs.items():
            with job.monitor.lock:
                s = job.monitor.snap
                out[run_id] = {"run_id": run_id, "status": s["status"], "created": s.get("created"),
                               "best_val_accuracy": (s["best"] or {}).get("val_accuracy"),
                               "searcher": s.get("searcher"), "n_trials": len(s["trials"]),
                               "data_source": s.get("data_source"), "class_names": list(s["class_names"]),
                               "test_accuracy": (s["final"] or {}).get("test_accuracy"), "live": True,
                               "queue_position": s.get("queue_position"), "race": s.get("race")}
        if self.runs_root.is_dir():
            for folder in self.runs_root.iterdir():
                if folder.name in out or not RUN_ID_RE.match(folder.name) or not is_run_folder(folder):
                    continue
                try:
                    out[folder.name] = _disk_listing(RunFolder(folder))
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("unreadable run folder %s: %s", folder, exc)
        return sorted(out.values(), key=lambda r: r["run_id"], reverse=True)

    # ----- the supervisor (one thread; the lock guards _jobs and _queue) --------------
    def _ensure_supervisor(self) -> None:
        if self._supervisor is None or not self._supervisor.is_alive():
            self._supervisor = threading.Thread(target=self._supervise, name="sprout-supervisor", daemon=True)
            self._supervisor.start()

    def _supervise(self) -> None:
        while True:
            with self._lock:
                running = [j for j in self._jobs.values() if j.running]
                if self._closed and not running:
                    return
            for job in running:
                try:
                    self._follow(job)
                except Exception:  # noqa: BLE001 - one run's trouble must not end the watching of the others
                    log.exception("supervising run %s", job.run_id)
            with self._lock:
                self._dispatch()
                busy = any(j.running for j in self._jobs.values())
            self._wake.wait(POLL_S if busy else None)  # idle: asleep until start() or close()
            self._wake.clear()

    def _follow(self, job: _Job) -> None:
        code = job.proc.poll()
        self._read_events(job)
        if code is not None:
            self._ended(job, code)
            return
        now = time.monotonic()
        if job.stop_at is not None and now - job.stop_at > self.stop_grace_s and not job.killed:
            job.killed = True
            self._signal(job, signal.SIGKILL)
            with job.monitor.lock:
                job.monitor._log(f"the search did not stop within {self.stop_grace_s:g} s: its process was ended")
        if self.rss_limit_mb and now - job.rss_at >= RSS_EVERY_S:
            job.rss_at = now
            rss = machine.rss_mb(job.proc.pid)
            if rss is not None and rss > self.rss_limit_mb and job.memory_note is None:
                job.memory_note = (f"This search used {rss:,.0f} MB of memory, more than the "
                                   f"{self.rss_limit_mb:,} MB one search may use on this server "
                                   "(SPROUT_WORKER_MAX_RSS_MB), so it was stopped. Try smaller images.")
                job.stop_at = now
                self._signal(job, signal.SIGTERM)
                job.monitor.set_status(job.monitor.status, job.memory_note)

    def _read_events(self, job: _Job) -> None:
        try:
            with open(job.run_dir / EVENTS, "rb") as f:
                f.seek(job.offset)
                chunk = f.read()
        except OSError:
            return
        job.offset += len(chunk)
        lines = (job.partial + chunk).split(b"\n")
        job.partial = lines.pop()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("run %s: an unreadable event line", job.run_id)
                continue
            job.monitor.handle(event)

    def _ended(self, job: _Job, code: int) -> None:
        """The worker's process is gone: a summary or a failure came first, or it was lost."""
        monitor = job.monitor
        with monitor.lock:
            status, flight = monitor.snap["status"], monitor.snap["in_flight"]
            n_ok = len(monitor._ok_ids)
            if status not in FINISHED and status != RunStatus.FAILED:
                monitor._set_status(RunStatus.INTERRUPTED, interrupted_message(code, flight, n_ok, job.memory_note))
            monitor.snap["stopping"] = False
        job.done.set()
        self._wake.set()

    def _dispatch(self) -> None:
        """Start queued runs while there is room (the lock is held); a race's second run joins the first's slot."""
        while self._queue and not self._closed:
            running = [j for j in self._jobs.values() if j.running]
            job, used = self._jobs[self._queue[0]], {j.slot for j in running}
            partner = [j for j in running if job.race and j.race == job.race]
            if not partner and len(used) >= self.max_active:
                break
            self._queue.pop(0)
            job.slot = partner[0].slot if partner else min(s for s in range(self.max_active + 1) if s not in used)
            self._launch(job)
        self._number_queue()

    def _number_queue(self) -> None:
        for position, run_id in enumerate(self._queue, start=1):
            with self._jobs[run_id].monitor.lock:
                self._jobs[run_id].monitor.snap["queue_position"] = position

    def _launch(self, job: _Job) -> None:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / EVENTS).unlink(missing_ok=True)
        (job.run_dir / GO_AHEAD).unlink(missing_ok=True)  # a go-ahead of an earlier session is no longer meant
        args = [*self.worker, str(job.run_dir), str(job.data_source or ""), json.dumps(job.config.to_dict())]
        if job.resume:
            args.append("--resume")
        with job.monitor.lock:
            job.monitor.snap["queue_position"] = None
        try:
            with open(job.run_dir / LOG, "ab") as out:
                # a session of its own: a Ctrl-C meant for the server does not reach the search
                job.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            env=machine.worker_env(job.slot, self.max_active, 2 if job.race else 1),
                                            start_new_session=True)
        except OSError as exc:
            job.monitor.set_status(RunStatus.FAILED, f"the search process could not start ({exc})")
            job.done.set()
            return
        job.rss_at = time.monotonic()  # the first memory reading a second after the start
        job.monitor.set_status(RunStatus.STARTING)

    @staticmethod
    def _signal(job: _Job, sig: int) -> None:
        try:
            job.proc.send_signal(sig)
        except (OSError, AttributeError):
            pass  # it has just ended; the supervisor sees that
