"""A finished run as it was at any moment: the snapshot a page would have shown ``t`` seconds
after the run started, rebuilt from the finished snapshot alone.

Every trial records when it started and finished (``started_s``, ``finished_s``: seconds since
the run started) and how long each of its epochs took (``epoch_seconds``), so the tree, the
distances, the curves and the proposal in flight at ``t`` all follow from the final snapshot.
Pure functions on plain dicts (docs/contracts.md's snapshot): no files, no TensorFlow.
"""

from __future__ import annotations

from engine.search.fidelity import best_record
from engine.search.status import ACTIVE, Phase, RunStatus, TrialStatus

FINAL = "final"  # the in-flight id of the last fine-tune, as engine.figures.tree names it


def _finished_at(trial: dict, end: float) -> float:
    """When a trial finished; a record without a time counts as finished at the run's end."""
    value = trial.get("finished_s")
    return end if value is None else float(value)


def _started_at(trial: dict, end: float) -> float:
    value = trial.get("started_s")
    return _finished_at(trial, end) if value is None else float(value)


def duration(snapshot: dict) -> float:
    """How long the run took, in seconds: its recorded time used, or its last trial's end when later."""
    ends = [float(t["finished_s"]) for t in snapshot.get("trials", []) if t.get("finished_s") is not None]
    return max([float(snapshot.get("elapsed_s") or 0.0), *ends])


def moments(snapshot: dict) -> list[float]:
    """The times at which what a page shows changes: every trial's start and finish, and the
    run's end, sorted and without repeats."""
    end = duration(snapshot)
    times = {0.0, end}
    for t in snapshot.get("trials", []):
        times.add(_started_at(t, end))
        times.add(_finished_at(t, end))
    return sorted(times)


def epochs_done(trial: dict, seconds_in: float) -> int:
    """How many epochs of ``trial`` had ended ``seconds_in`` seconds after it started (from its
    recorded ``epoch_seconds``; without them, in proportion to its training time)."""
    if seconds_in <= 0:
        return 0
    durations = [float(s) for s in trial.get("epoch_seconds") or []]
    if durations:
        total, count = 0.0, 0
        for d in durations:
            total += d
            if total > seconds_in:
                break
            count += 1
        return count
    epochs, seconds = int(trial.get("epochs") or 0), float(trial.get("seconds") or 0.0)
    if not epochs or seconds <= 0:
        return 0
    return min(epochs, int(epochs * seconds_in / seconds))


def _partial_history(trial: dict, n_epochs: int) -> dict[str, list[float]]:
    return {k: list(v[:n_epochs]) for k, v in (trial.get("history") or {}).items()}


def _in_flight(trial: dict, t: float, end: float) -> dict:
    """The in-flight record (as :class:`engine.search.monitor.RunMonitor` keeps it) of a trial
    that was training at ``t``, with its proposal rebuilt from its recorded prediction."""
    prediction = trial.get("prediction") or {}
    proposal = None
    if trial.get("parent_id") is not None:
        proposal = {"ancestor_id": trial.get("parent_id"), "operations": list(trial.get("operations") or []),
                    **{k: prediction.get(k) for k in ("mean", "sigma", "ucb", "beta", "reason")}}
    done = epochs_done(trial, t - _started_at(trial, end))
    history = _partial_history(trial, done)
    return {"trial_id": trial["id"], "parent_id": trial.get("parent_id"), "epoch": done,
            "max_epochs": trial.get("max_epochs") or trial.get("epochs") or max(1, done),
            "batch": 0, "n_batches": None, "proposal": proposal,
            "operations": list(trial.get("operations") or []), "description": trial.get("description"),
            "logs": {k: v[-1] for k, v in history.items() if v}, "history": history}


def _distances_among(snapshot: dict, keep: set[str]) -> dict:
    dist = snapshot.get("distances") or {}
    ids = [str(i) for i in dist.get("ids", [])]
    matrix = dist.get("matrix") or []
    rows = [k for k, i in enumerate(ids) if i in keep]
    return {"ids": [ids[k] for k in rows], "matrix": [[matrix[r][c] for c in rows] for r in rows]}


def snapshot_at(snapshot: dict, t: float) -> dict:
    """The snapshot as it was ``t`` seconds after the run started.

    Trials are those finished by ``t`` (in order of finishing), the trial training at ``t`` is
    ``in_flight`` (its epochs so far, its proposal and the "why"), distances and the best trial are
    among the finished ones, and ``elapsed_s`` is ``t``. Before the end the run is ``running`` with
    no final result or files; from the end on it is the snapshot as given. ``replay`` holds
    ``{"t", "end"}``. Trial dicts are shared with ``snapshot``, and neither is changed.
    """
    end = duration(snapshot)
    t = min(max(0.0, float(t)), end)
    trials = snapshot.get("trials", [])
    if t >= end:
        return {**snapshot, "replay": {"t": end, "end": end}}
    done = sorted((tr for tr in trials if _finished_at(tr, end) <= t), key=lambda tr: _finished_at(tr, end))
    running = [tr for tr in trials if _started_at(tr, end) <= t < _finished_at(tr, end)]
    finished_ids = {str(tr["id"]) for tr in done}
    flight = _in_flight(running[0], t, end) if running else None
    last_trial_end = max((_finished_at(tr, end) for tr in trials), default=end)
    if flight is None and t >= last_trial_end and snapshot.get("final"):
        phase, flight = Phase.FINAL, {"trial_id": FINAL, "epoch": 0, "max_epochs": 1}
    elif not done:
        phase = Phase.SEED
    else:
        phase = Phase.SEARCH
    status = RunStatus.FINISHING if phase == Phase.FINAL else RunStatus.RUNNING
    return {**snapshot, "status": status, "error": None, "elapsed_s": t, "trials": done,
            "distances": _distances_among(snapshot, finished_ids), "in_flight": flight, "phase": phase,
            "best": best_record(done), "final": None, "files": {"keras": None, "labels": None}, "log": [],
            "stopping": False, "replay": {"t": t, "end": end}}


def trials_so_far(snapshot: dict) -> list[dict]:
    """The snapshot's trials and, when one is training, that one too with its epochs so far
    (status ``"training"``, no validation accuracy yet): what a chart of curves draws."""
    flight = snapshot.get("in_flight") or {}
    trials = list(snapshot.get("trials", []))
    if flight.get("history", {}).get("val_accuracy"):
        trials.append({"id": flight["trial_id"], "parent_id": flight.get("parent_id"), "status": "training",
                       "val_accuracy": None, "history": flight["history"], "epochs": flight.get("epoch")})
    return trials


def is_replayable(snapshot: dict | None) -> bool:
    """Whether a run can be replayed: it is over (done, stopped, failed or interrupted) and
    trained at least one network."""
    return bool(snapshot) and snapshot.get("status") not in ACTIVE and any(
        t.get("status") == TrialStatus.OK for t in snapshot.get("trials", []))
