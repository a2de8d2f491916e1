"""Searches running in the background of the app: a process-wide, thread-safe registry.

A run is a ``threading.Thread`` that calls :func:`engine.search.run_search`; it never
imports or calls streamlit. The page reads :meth:`Registry.snapshot`, a plain JSON-able
dict deep-copied under a lock (format in docs/contracts.md). Runs left on disk by earlier
servers are listed too and read-only: their snapshot is rebuilt from the run folder.

Run ids are made here (UTC time + random hex), never taken from user input; a run id
given back to :meth:`snapshot`/:meth:`stop` is checked against that pattern before it
is used as a folder name.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import SproutError
from engine.run import RunFolder, is_run_folder, read_jsonl

log = logging.getLogger(__name__)

ACTIVE = ("starting", "running", "finishing")
MAX_LOG_LINES = 200
RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time + 6 random hex digits): sortable and unguessable."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise SproutError(f"there is no run named {str(run_id)[:80]!r}")
    return run_id


class RunMonitor:
    """The snapshot of one run, kept up to date from :func:`run_search` events."""

    def __init__(self, run_id: str, run_dir: Path, config=None, status: str = "starting"):
        from engine.kernel import DistanceCache

        self.lock = threading.Lock()
        self.cache = DistanceCache()
        self._ok_ids: list[str] = []
        self._clock: tuple[float, float] | None = None  # (elapsed at mark, monotonic at mark)
        self.run_dir = Path(run_dir)
        self.snap: dict = {
            "run_id": run_id, "status": status, "error": None,
            "searcher": getattr(config, "searcher", None), "device": None,
            "budget_s": getattr(config, "budget_s", None), "elapsed_s": 0.0,
            "class_names": [], "image_size": None, "channels": None,
            "trials": [], "distances": {"ids": [], "matrix": []}, "in_flight": None, "phase": None,
            "best": None, "final": None, "files": {"keras": None, "labels": None}, "log": [],
            "created": None, "run_dir": str(run_dir), "data": None, "recipe": None,
        }

    # ----- events (called from the run's thread) ------------------------------------------
    def handle(self, event: dict) -> None:
        with self.lock:
            getattr(self, "_on_" + event.get("type", ""), self._on_unknown)(event)

    def _on_unknown(self, event: dict) -> None:
        pass

    def _log(self, message: str) -> None:
        lines = self.snap["log"]
        lines.append(str(message))
        del lines[:-MAX_LOG_LINES]

    def _on_log(self, e: dict) -> None:
        self._log(e.get("message", ""))

    def _on_started(self, e: dict) -> None:
        s = self.snap
        for key in ("searcher", "device", "budget_s", "class_names", "image_size", "channels", "created", "recipe"):
            if e.get(key) is not None:
                s[key] = copy.deepcopy(e[key])
        s["data"] = {k: e.get(k) for k in ("n_train", "n_val", "n_test")}
        if s["status"] == "starting":
            s["status"] = "running"
        self._clock = (float(e.get("elapsed_s", 0.0)), time.monotonic())

    def _on_phase(self, e: dict) -> None:
        self.snap["phase"] = e["phase"]
        if e["phase"] == "final" and self.snap["status"] in ("starting", "running"):
            self.snap["status"] = "finishing"

    def _on_trial_started(self, e: dict) -> None:
        self.snap["in_flight"] = {
            "trial_id": e["trial_id"], "parent_id": e.get("parent_id"), "epoch": 0,
            "max_epochs": e.get("max_epochs"), "batch": 0, "n_batches": None,
            "proposal": copy.deepcopy(e.get("proposal")), "operations": copy.deepcopy(e.get("operations", [])),
            "description": e.get("description"), "logs": {},
        }

    def _on_epoch(self, e: dict) -> None:
        f = self.snap["in_flight"]
        if f is not None and f["trial_id"] == e["trial_id"]:
            f["epoch"], f["batch"], f["logs"] = e["epoch"], 0, dict(e.get("logs") or {})

    def _on_batch(self, e: dict) -> None:
        f = self.snap["in_flight"]
        if f is not None and f["trial_id"] == e["trial_id"]:
            f["batch"], f["n_batches"] = e["batch"], e["n_batches"]

    def _on_trial_finished(self, e: dict) -> None:
        trial = copy.deepcopy(e["trial"])
        s = self.snap
        s["trials"].append(trial)
        if s["in_flight"] is not None and s["in_flight"]["trial_id"] == trial["id"]:
            s["in_flight"] = None
        if trial.get("status") == "ok" and trial.get("architecture"):
            from engine.architecture import Architecture

            try:
                arch = Architecture.from_dict(trial["architecture"])
                arch.id = str(trial["id"])
                self.cache.add(arch)
                self._ok_ids.append(str(trial["id"]))
                s["distances"] = {"ids": list(self._ok_ids),
                                  "matrix": [[round(float(v), 6) for v in row] for row in self.cache.matrix(self._ok_ids)]}
            except (ValueError, KeyError) as exc:  # a damaged architecture must not break the page
                log.warning("trial %s: no distances (%s)", trial.get("id"), exc)
            if s["best"] is None or (trial.get("val_accuracy") or 0) > s["best"]["val_accuracy"]:
                s["best"] = {"trial_id": trial["id"], "val_accuracy": trial["val_accuracy"]}

    def _on_limits(self, e: dict) -> None:
        self.snap["limits"] = dict(e["limits"])

    def _on_final(self, e: dict) -> None:
        self.snap["final"] = copy.deepcopy(e["final"])
        self.snap["files"] = dict(e["files"])
        self.snap["in_flight"] = None

    def _on_finished(self, e: dict) -> None:
        summary = e.get("summary") or {}
        self.snap["in_flight"] = None
        if summary.get("wall_s") is not None:
            self.snap["elapsed_s"] = summary["wall_s"]
        self._clock = None
        if summary.get("status") in ("done", "stopped"):
            self.snap["status"] = summary["status"]
        if summary.get("final") and self.snap["final"] is None:
            self.snap["final"] = copy.deepcopy(summary["final"])
            self.snap["files"] = dict(summary.get("files") or self.snap["files"])

    # ----- called by the registry -------------------------------------------------------
    def set_status(self, status: str, error: str | None = None) -> None:
        with self.lock:
            self.snap["status"] = status
            if error is not None:
                self.snap["error"] = error
                self._log(f"error: {error}")
            if status not in ACTIVE:
                self.snap["in_flight"] = None
                if self._clock is not None:
                    self.snap["elapsed_s"] = self._clock[0] + time.monotonic() - self._clock[1]
                self._clock = None

    @property
    def status(self) -> str:
        with self.lock:
            return self.snap["status"]

    def snapshot(self) -> dict:
        with self.lock:
            snap = copy.deepcopy(self.snap)
            if self._clock is not None:
                snap["elapsed_s"] = round(self._clock[0] + time.monotonic() - self._clock[1], 3)
        return snap


def _status_of_disk_run(folder: RunFolder, state: dict | None, summary: dict | None) -> tuple[str, str | None]:
    if summary is not None and summary.get("status") in ("done", "stopped"):
        return summary["status"], None
    phase = (state or {}).get("phase")
    if phase == "failed":
        return "failed", (state or {}).get("error") or "the run failed"
    if _process_alive(state or {}):
        return "running", None
    return "stopped", "the run was interrupted before it finished (the server or process stopped)"


def _process_alive(state: dict) -> bool:
    """Whether the process that wrote ``state`` (another server, a CLI search) still runs."""
    pid, host = state.get("pid"), state.get("host")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return False  # this process's own runs are in the registry; others' elsewhere are unknowable
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def snapshot_from_disk(run_dir: Path, run_id: str | None = None) -> dict:
    """A snapshot rebuilt from a run folder alone (a run of an earlier server, or a CLI run)."""
    folder = RunFolder(run_dir)
    if not folder.exists():
        raise SproutError(f"{run_dir} is not a Sprout run folder")
    state = folder.read_state() or {}
    summary = folder.read_summary()
    dataset = folder.read_dataset() or {}
    config = state.get("config") or {}
    monitor = RunMonitor(run_id or folder.root.name, folder.root)
    m = monitor.snap
    m.update(searcher=config.get("searcher"), budget_s=config.get("budget_s"), device=state.get("device"),
             recipe=state.get("recipe"),
             created=state.get("created"), class_names=dataset.get("class_names", []),
             image_size=dataset.get("image_size"), channels=dataset.get("channels"),
             phase=state.get("phase") if state.get("phase") in ("seed", "search", "final") else None,
             elapsed_s=float(state.get("budget_used_s", 0.0)))
    if dataset.get("split"):
        m["data"] = {f"n_{k}": len(v) for k, v in dataset["split"].items()}
    for record in folder.read_trials():
        try:
            arch = folder.load_architecture(record["id"], weights=False).to_dict()
        except (OSError, ValueError, KeyError):
            arch = None
        monitor._on_trial_finished({"trial": {**record, "architecture": arch}})
    if state.get("limits"):
        m["limits"] = state["limits"]
    if summary is not None:
        monitor._on_finished({"summary": summary})
        m["files"] = {k: (v if v and Path(v).exists() else None) for k, v in (summary.get("files") or {}).items()}
        if m["files"].get("keras") is None and folder.model_path.exists():
            m["files"] = {"keras": str(folder.model_path), "labels": str(folder.labels_path)}
    status, error = _status_of_disk_run(folder, state, summary)
    m["status"], m["error"] = status, error
    m["log"] = [f"read from {folder.root} (a run of an earlier session; read-only)"]
    return monitor.snapshot()


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
        from engine.search import SearchConfig

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
            monitor = RunMonitor(run_id, run_dir, config)
            stop = threading.Event()
            thread = threading.Thread(target=self._work, name=f"sprout-run-{run_id}", daemon=True,
                                      args=(run_id, data_dir, run_dir, config, monitor, stop, resume_run_id is not None))
            self._jobs[run_id] = _Job(run_id, run_dir, config, monitor, thread, stop)
            self._disk_cache.pop(run_id, None)
            thread.start()
        return run_id

    def resume(self, run_id: str) -> str:
        """Continue a run on disk that was interrupted (e.g. by a server restart)."""
        from engine.search import SearchConfig

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
        from engine.search import run_search

        try:
            summary = run_search(data_dir, run_dir, config, events=monitor.handle, stop=stop, resume=resume)
            monitor.set_status(summary.get("status", "done") if summary.get("status") in ("done", "stopped") else "done")
        except SproutError as exc:
            monitor.set_status("failed", str(exc))
            _mark_failed(run_dir, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must end this run, not the server
            log.exception("run %s failed", run_id)
            message = f"internal error ({type(exc).__name__}: {exc})"
            monitor.set_status("failed", message)
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


def _disk_key(run_dir: Path) -> tuple:
    out = []
    for name in ("state.json", "trials.jsonl", "summary.json"):
        try:
            st = (run_dir / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _disk_listing(folder: RunFolder) -> dict:
    state = folder.read_state() or {}
    summary = folder.read_summary()
    status, _ = _status_of_disk_run(folder, state, summary)
    best = None
    if summary is not None and summary.get("best"):
        best = summary["best"].get("val_accuracy")
    else:
        scores = [r.get("val_accuracy") for r in read_jsonl(folder.trials_path) if r.get("status") == "ok"]
        best = max((s for s in scores if s is not None), default=None)
    return {"run_id": folder.root.name, "status": status, "created": state.get("created"),
            "best_val_accuracy": best, "searcher": (state.get("config") or {}).get("searcher"),
            "n_trials": (summary or {}).get("n_trials"),
            "test_accuracy": (summary or {}).get("test_accuracy"), "live": False}


def _mark_failed(run_dir: Path, message: str) -> None:
    """Record a failed run in its state.json (if it has one) so later servers list it as failed."""
    folder = RunFolder(run_dir)
    state = folder.read_state()
    if state is None:
        return
    try:
        folder.write_state({**state, "phase": "failed", "error": message})
    except OSError:
        pass
