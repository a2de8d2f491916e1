"""The snapshot of one run, as the app's pages read it: kept up to date from a live run's
events, or rebuilt from a run folder alone (a run of an earlier server, or a CLI run).

:class:`RunMonitor` turns :func:`engine.search.loop.run_search` events into a plain JSON-able
dict (format in docs/contracts.md), under a lock; :func:`snapshot_from_disk` replays a run
folder's files through the same monitor, so both kinds of run look alike to the pages.
Runs on disk are read-only here.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

from engine.errors import SproutError
from engine.search.fidelity import best_record
from engine.search.folder import RunFolder, read_jsonl
from engine.search.status import ACTIVE, FINISHED, WORKING_PHASES, Phase, RunStatus, TrialStatus

log = logging.getLogger("engine.search.jobs")

MAX_LOG_LINES = 200
INTERRUPTED_ON_DISK = ("The search was interrupted before it finished (its process or the server stopped). "
                       "Resume continues from the last network that finished training.")


class RunMonitor:
    """The snapshot of one run, kept up to date from :func:`run_search` events."""

    def __init__(self, run_id: str, run_dir: Path, config=None, status: RunStatus = RunStatus.STARTING,
                 data_source=None):
        from engine.nas.distance import DistanceCache

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
            "trials": [], "distances": {"ids": [], "matrix": []}, "in_flight": None, "flying": [], "phase": None,
            "best": None, "final": None, "files": {"keras": None, "labels": None}, "log": [],
            "created": None, "run_dir": str(run_dir), "data": None, "recipe": None,
            "data_source": str(data_source) if data_source is not None else None,
            "queue_position": None, "stopping": False,
            "step": bool(getattr(config, "step", False)), "race": getattr(config, "race", None), "waiting": None,
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
        if s["status"] == RunStatus.STARTING:
            s["status"] = RunStatus.RUNNING
        self._clock = (float(e.get("elapsed_s", 0.0)), time.monotonic())

    def _on_phase(self, e: dict) -> None:
        self.snap["phase"] = e["phase"]
        if e["phase"] == Phase.FINAL and self.snap["status"] in (RunStatus.STARTING, RunStatus.RUNNING):
            self.snap["status"] = RunStatus.FINISHING

    def _flight(self, trial_id: str) -> dict | None:
        """The in-flight entry of ``trial_id``."""
        return next((f for f in self.snap["flying"] if f["trial_id"] == trial_id), None)

    def _set_flying(self, flying: list[dict]) -> None:
        """Every trial in training at once, in order of start (``flying``); ``in_flight``, the one
        started last, is derived here and nowhere else (pages and the registry that show one trial read it)."""
        self.snap["flying"] = flying
        self.snap["in_flight"] = flying[-1] if flying else None

    def _on_trial_started(self, e: dict) -> None:
        flight = {
            "trial_id": e["trial_id"], "parent_id": e.get("parent_id"), "epoch": 0,
            "max_epochs": e.get("max_epochs"), "batch": 0, "n_batches": None,
            "proposal": copy.deepcopy(e.get("proposal")), "operations": copy.deepcopy(e.get("operations", [])),
            "description": e.get("description"), "logs": {},
        }
        self._set_flying([f for f in self.snap["flying"] if f["trial_id"] != e["trial_id"]] + [flight])

    def _on_waiting(self, e: dict) -> None:
        """Step mode: the search waits for Continue; its budget clock stands still meanwhile."""
        self.snap["waiting"] = {"trial_id": e.get("trial_id"), "parent_id": e.get("parent_id"),
                                "proposal": copy.deepcopy(e.get("proposal"))}
        self.snap["elapsed_s"] = float(e.get("elapsed_s") or self.snap["elapsed_s"])
        self._clock = None

    def _on_continued(self, e: dict) -> None:
        self.snap["waiting"] = None
        self._clock = (float(e.get("elapsed_s") or self.snap["elapsed_s"]), time.monotonic())

    def _on_epoch(self, e: dict) -> None:
        f = self._flight(e["trial_id"])
        if f is not None:
            f["epoch"], f["batch"], f["logs"] = e["epoch"], 0, dict(e.get("logs") or {})

    def _on_batch(self, e: dict) -> None:
        f = self._flight(e["trial_id"])
        if f is not None:
            f["batch"], f["n_batches"] = e["batch"], e["n_batches"]

    def _on_trial_finished(self, e: dict) -> None:
        trial = copy.deepcopy(e["trial"])
        s = self.snap
        s["trials"].append(trial)
        self._set_flying([f for f in s["flying"] if f["trial_id"] != trial["id"]])
        if trial.get("status") == TrialStatus.OK and trial.get("architecture"):
            from engine.nas.architecture import Architecture

            try:
                arch = Architecture.from_dict(trial["architecture"])
                arch.id = str(trial["id"])
                self.cache.add(arch)
                self._ok_ids.append(str(trial["id"]))
                s["distances"] = {"ids": list(self._ok_ids),
                                  "matrix": [[round(float(v), 6) for v in row]
                                             for row in self.cache.matrix(self._ok_ids)]}
            except (ValueError, KeyError) as exc:  # a damaged architecture must not break the page
                log.warning("trial %s: no distances (%s)", trial.get("id"), exc)
            s["best"] = best_record(s["trials"])  # among those trained on all the images (issue 22)

    def _on_failed(self, e: dict) -> None:
        self._set_status(RunStatus.FAILED, e.get("error") or "the search failed")

    def _on_limits(self, e: dict) -> None:
        self.snap["limits"] = dict(e["limits"])

    def _on_final(self, e: dict) -> None:
        self.snap["waiting"] = None
        self.snap["final"] = copy.deepcopy(e["final"])
        self.snap["files"] = dict(e["files"])
        self._set_flying([])

    def _on_finished(self, e: dict) -> None:
        summary = e.get("summary") or {}
        self._set_flying([])
        if summary.get("wall_s") is not None:
            self.snap["elapsed_s"] = summary["wall_s"]
        self._clock = None
        if summary.get("status") in FINISHED:
            self.snap["status"] = RunStatus(summary["status"])
        if summary.get("final") and self.snap["final"] is None:
            self.snap["final"] = copy.deepcopy(summary["final"])
            self.snap["files"] = dict(summary.get("files") or self.snap["files"])

    # ----- called by the registry -------------------------------------------------------
    def set_status(self, status: RunStatus, error: str | None = None) -> None:
        """Set the run's status (and its error, logged)."""
        with self.lock:
            self._set_status(status, error)

    def _set_status(self, status: RunStatus, error: str | None = None) -> None:
        self.snap["status"] = status  # the caller holds the lock
        if error is not None:
            self.snap["error"] = error
            self._log(f"error: {error}")
        if status not in ACTIVE:
            self._set_flying([])
            self.snap["waiting"] = None
            if self._clock is not None:
                self.snap["elapsed_s"] = self._clock[0] + time.monotonic() - self._clock[1]
            self._clock = None

    @property
    def status(self) -> RunStatus:
        with self.lock:
            return self.snap["status"]

    def snapshot(self) -> dict:
        with self.lock:
            snap = copy.deepcopy(self.snap)
            if self._clock is not None:
                snap["elapsed_s"] = round(self._clock[0] + time.monotonic() - self._clock[1], 3)
        return snap


def _status_of_disk_run(folder: RunFolder, state: dict | None, summary: dict | None) -> tuple[RunStatus, str | None]:
    if summary is not None and summary.get("status") in FINISHED:
        return RunStatus(summary["status"]), None
    phase = (state or {}).get("phase")
    if phase == Phase.FAILED:
        return RunStatus.FAILED, (state or {}).get("error") or "the run failed"
    if _process_alive(state or {}):
        return RunStatus.RUNNING, None
    return RunStatus.INTERRUPTED, INTERRUPTED_ON_DISK


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
    return not _ended_unreaped(pid)


def _ended_unreaped(pid: int) -> bool:
    """Whether ``pid`` has ended but is not yet reaped (a zombie: state Z or X in /proc/PID/stat).

    A worker whose server was killed is adopted by init; until init reaps it (seconds in some
    containers, never under an init that does not reap) signal 0 still finds it, and the run
    would be listed as running, without Resume. Without /proc (not Linux): False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the command name, in parentheses, may itself hold spaces or parentheses: the state follows the last ")"
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def snapshot_from_disk(run_dir: Path, run_id: str | None = None) -> dict:
    """A snapshot rebuilt from a run folder alone (a run of an earlier server, or a CLI run)."""
    folder = RunFolder(run_dir)
    if not folder.exists():
        raise SproutError(f"{run_dir} is not a Sprout run folder")
    state = folder.read_state() or {}
    summary = folder.read_summary()
    dataset = folder.read_dataset() or {}
    config = state.get("config") or {}
    monitor = RunMonitor(run_id or folder.root.name, folder.root,
                         data_source=state.get("data_source") or dataset.get("source"))
    m = monitor.snap
    m.update(searcher=config.get("searcher"), budget_s=config.get("budget_s"), device=state.get("device"),
             recipe=state.get("recipe"), step=bool(config.get("step")), race=config.get("race"),
             created=state.get("created"), class_names=dataset.get("class_names", []),
             image_size=dataset.get("image_size"), channels=dataset.get("channels"),
             phase=state.get("phase") if state.get("phase") in WORKING_PHASES else None,
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
        scores = [r.get("val_accuracy") for r in read_jsonl(folder.trials_path) if r.get("status") == TrialStatus.OK]
        best = max((s for s in scores if s is not None), default=None)
    try:
        class_names = list((folder.read_dataset() or {}).get("class_names") or [])
    except (OSError, ValueError):  # a damaged dataset.json only costs the label its data name
        class_names = []
    return {"run_id": folder.root.name, "status": status, "created": state.get("created"),
            "best_val_accuracy": best, "searcher": (state.get("config") or {}).get("searcher"),
            "data_source": state.get("data_source"), "class_names": class_names,
            "n_trials": (summary or {}).get("n_trials"), "race": (state.get("config") or {}).get("race"),
            "test_accuracy": (summary or {}).get("test_accuracy"), "live": False}


def interrupted_message(code: int, flight: dict | None, n_ok: int, memory_note: str | None = None) -> str:
    """What people are told when a search's process ended without finishing."""
    if code < 0:
        try:
            how = f"was ended by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"was ended by signal {-code}"
    else:
        how = f"ended with status {code}"
    words = [memory_note] if memory_note else []
    words.append(f"The search's process {how} before it finished.")
    if flight and flight.get("trial_id") is not None:
        words.append(f"Network #{flight['trial_id']}, in training, was lost.")
    words.append(f"Resume continues from the {n_ok} network{'s' if n_ok != 1 else ''} that finished training."
                 if n_ok else "Resume starts it again.")
    return " ".join(words)
