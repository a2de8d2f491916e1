"""Searches running in the background of the app: a process-wide, thread-safe registry.

A run is a ``threading.Thread`` that calls :func:`engine.search.loop.run_search`; it never
imports or calls streamlit. The page reads :meth:`Registry.snapshot`, a plain JSON-able
dict deep-copied under a lock (format in docs/contracts.md). Runs left on disk by earlier
servers are listed too and read-only: their snapshot is rebuilt from the run folder
(both kinds of snapshot are made by ``engine.search.monitor``).

Run ids are made here (UTC time + random hex), never taken from user input; a run id
given back to :meth:`snapshot`/:meth:`stop` is checked against that pattern before it
is used as a folder name.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import SproutError
from engine.search.folder import RunFolder, is_run_folder
from engine.search.monitor import RunMonitor, _disk_key, _disk_listing, snapshot_from_disk
from engine.search.status import FINISHED, Phase, RunStatus

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time + 6 random hex digits): sortable and unguessable."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise SproutError(f"there is no run named {str(run_id)[:80]!r}")
    return run_id


class _Job:
    def __init__(self, run_id: str, run_dir: Path, config, monitor: RunMonitor, thread: threading.Thread,
                 stop: threading.Event):
        self.run_id, self.run_dir, self.config = run_id, run_dir, config
        self.monitor, self.thread, self.stop = monitor, thread, stop


class Registry:
    """Background searches of one process (the app keeps one in ``st.cache_resource``).

    ``max_active`` searches may run at once; starting one more raises SproutError.
    """

    def __init__(self, runs_root: Path, max_active: int = 2):
        self.runs_root = Path(runs_root)
        self.max_active = int(max_active)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._disk_cache: dict[str, tuple[tuple, dict]] = {}

    # ----- starting and stopping ---------------------------------------------------------
    def start(self, data_dir: Path, config, *, resume_run_id: str | None = None) -> str:
        """Start a search of ``data_dir`` (a folder, a zip or "sample") in a new run folder; return its id."""
        from engine.search.loop import SearchConfig

        if resume_run_id is None:
            if not isinstance(config, SearchConfig):
                raise SproutError("expected a SearchConfig")
            config = replace(config)
            config.check()
            if not (isinstance(data_dir, str) and data_dir == "sample") and not Path(data_dir).exists():
                raise SproutError(f"there is no data at {data_dir}")
        with self._lock:
            active = [j for j in self._jobs.values() if j.thread.is_alive()]
            if len(active) >= self.max_active:
                n = len(active)
                raise SproutError(f"{_count(n)} already running; wait for one to finish or stop it.")
            if resume_run_id is not None:
                run_id = resume_run_id
            else:
                run_id = new_run_id()
                while run_id in self._jobs or (self.runs_root / run_id).exists():
                    run_id = new_run_id()
            run_dir = self.runs_root / run_id
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            monitor = RunMonitor(run_id, run_dir, config, data_source=data_dir)
            stop = threading.Event()
            thread = threading.Thread(target=self._work, name=f"sprout-run-{run_id}", daemon=True,
                                      args=(run_id, data_dir, run_dir, config, monitor, stop,
                                            resume_run_id is not None))
            self._jobs[run_id] = _Job(run_id, run_dir, config, monitor, thread, stop)
            self._disk_cache.pop(run_id, None)
            thread.start()
        return run_id

    def resume(self, run_id: str) -> str:
        """Continue a run on disk that was interrupted (e.g. by a server restart)."""
        from engine.search.loop import SearchConfig

        run_id = _check_run_id(run_id)
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None and job.thread.is_alive():
                raise SproutError(f"run {run_id} is still running")
        folder = RunFolder(self.runs_root / run_id)
        state = folder.read_state()
        if state is None:
            raise SproutError(f"there is no run named {run_id!r} that can be resumed")
        if folder.read_summary() is not None:
            raise SproutError(f"run {run_id} has already finished")
        config = SearchConfig.from_dict(state["config"])
        return self.start(state.get("data_source"), config, resume_run_id=run_id)

    @staticmethod
    def _work(run_id, data_dir, run_dir, config, monitor: RunMonitor, stop: threading.Event, resume: bool) -> None:
        from engine.search.loop import run_search

        try:
            summary = run_search(data_dir, run_dir, config, events=monitor.handle, stop=stop, resume=resume)
            status = summary.get("status")
            monitor.set_status(RunStatus(status) if status in FINISHED else RunStatus.DONE)
        except SproutError as exc:
            monitor.set_status(RunStatus.FAILED, str(exc))
            _mark_failed(run_dir, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must end this run, not the server
            log.exception("run %s failed", run_id)
            message = f"internal error ({type(exc).__name__}: {exc})"
            monitor.set_status(RunStatus.FAILED, message)
            _mark_failed(run_dir, message)

    def stop(self, run_id: str) -> None:
        """Ask a run to stop: its trial ends within one batch and the best model so far is saved."""
        run_id = _check_run_id(run_id)
        with self._lock:
            job = self._jobs.get(run_id)
        if job is None:
            if is_run_folder(self.runs_root / run_id):
                return  # a run of an earlier server: nothing is running here
            raise SproutError(f"there is no run named {run_id!r}")
        job.stop.set()
        with job.monitor.lock:
            job.monitor._log("stop requested: finishing the current batch, then saving the best model so far")

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait for a run's thread to end; True when it has."""
        with self._lock:
            job = self._jobs.get(_check_run_id(run_id))
        if job is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

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
        if cached is None or cached[0] != key:
            cached = (key, snapshot_from_disk(run_dir, run_id))
            self._disk_cache[run_id] = cached
        return copy.deepcopy(cached[1])

    def list_runs(self) -> list[dict]:
        """Every run, newest first: this server's and those found on disk."""
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
                               "test_accuracy": (s["final"] or {}).get("test_accuracy"), "live": True}
        if self.runs_root.is_dir():
            for folder in self.runs_root.iterdir():
                if folder.name in out or not RUN_ID_RE.match(folder.name) or not is_run_folder(folder):
                    continue
                try:
                    out[folder.name] = _disk_listing(RunFolder(folder))
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("unreadable run folder %s: %s", folder, exc)
        return sorted(out.values(), key=lambda r: r["run_id"], reverse=True)


def _count(n: int) -> str:
    words = {1: "One search is", 2: "Two searches are", 3: "Three searches are"}
    return words.get(n, f"{n} searches are")


def _mark_failed(run_dir: Path, message: str) -> None:
    """Record a failed run in its state.json (if it has one) so later servers list it as failed."""
    folder = RunFolder(run_dir)
    state = folder.read_state()
    if state is None:
        return
    try:
        folder.write_state({**state, "phase": Phase.FAILED, "error": message})
    except OSError:
        pass
