"""Parallel trials (issue 17): the executors, and real searches with several trials at once."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading

import numpy as np
import pytest

from engine.errors import SproutError
from engine.search.config import SearchConfig
from engine.search.executor import SharedArrays, attach, open_executor, worker_env
from engine.search.executor_task import TrialTask, run_task
from engine.search.folder import RunFolder
from engine.search.machine import cpu_count

# The built-in digits at 8x8 with two epochs per trial: trials take seconds; the trial cap ends
# the search (the budget is generous: a busy machine still reaches it).
TINY = dict(budget_s=300, seed=0, image_size=8, max_epochs=2, recipe={"final_epochs": 1})


def test_shared_arrays_reach_another_reader_unchanged():
    arrays = {"x_train": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "y_train": np.array([1, 0])}
    shared = SharedArrays(arrays)
    try:
        seen, blocks = attach(shared.spec)
        for key, value in arrays.items():
            np.testing.assert_array_equal(seen[key], value)
            assert seen[key].dtype == value.dtype
        del seen
        for block in blocks:
            block.close()
    finally:
        shared.close()


def test_one_worker_means_no_executor_and_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert open_executor(SearchConfig(budget_s=10), None) is None  # one trial at a time, in the search's process
    assert open_executor(SearchConfig(budget_s=10, workers=1), None) is None
    monkeypatch.delenv("SPROUT_INTRA_OP_THREADS", raising=False)
    assert worker_env(1, 2) == {"SPROUT_INTRA_OP_THREADS": str(max(1, cpu_count() // 2))}  # a share of the cores
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert [worker_env(i, 2) for i in range(2)] == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "3"}]
    with pytest.raises(SproutError, match="workers must be at least 1; received 0"):
        SearchConfig(budget_s=10, workers=0).check()
    with pytest.raises(SproutError, match="executor must be local or ray; received 'slurm'"):
        SearchConfig(budget_s=10, executor="slurm").check()


class _FakeTrainer:
    """Two epochs, each calling back; stops when asked (as the real trainer does, within a batch)."""

    def train(self, arch, x, y, xv, yv, config, on_epoch=None, on_batch=None, stop=None):
        epochs = 0
        for epoch in range(2):
            if stop.is_set():
                break
            on_batch(0, 1)
            on_epoch(epoch, {"val_accuracy": 0.5})
            epochs += 1
        return {"epochs": epochs, "stopped": stop.is_set()}


def test_a_task_ends_at_its_deadline_and_reports_its_epochs():
    import time

    events = []
    data = {k: np.zeros(1) for k in ("x_train", "y_train", "x_val", "y_val")}
    task = TrialTask("3", None, None, max_epochs=2, deadline=100.0, t0_wall=time.time(), epoch_estimate_s=0.01)
    outcome = run_task(_FakeTrainer(), data, task, threading.Event(), lambda t, p: events.append((t, p)))
    assert outcome.result == {"epochs": 2, "stopped": False} and not outcome.deadline_hit
    assert [t for t, _ in events] == ["batch", "epoch", "batch", "epoch"] and len(outcome.epoch_seconds) == 2
    late = TrialTask("4", None, None, max_epochs=2, deadline=0.001, t0_wall=time.time(), epoch_estimate_s=5.0)
    outcome = run_task(_FakeTrainer(), data, late, threading.Event(), lambda t, p: None)
    assert outcome.deadline_hit and outcome.result["epochs"] == 1  # the second epoch would not fit


def _overlapping(records: list[dict]) -> bool:
    spans = [(r["worker_started_s"], r["worker_finished_s"]) for r in records if "worker_started_s" in r]
    return any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(spans) for b0, b1 in spans[i + 1:])


def _check_parallel_run(run_dir, n_trials):
    from engine.search.monitor import snapshot_from_disk

    records = RunFolder(run_dir).read_trials()
    assert sorted(int(r["id"]) for r in records) == list(range(n_trials))
    by_start = sorted(records, key=lambda r: (r["started_s"], int(r["id"])))
    assert [int(r["id"]) for r in by_start] == list(range(n_trials))  # ids in order of start
    assert all(r["started_s"] <= r["finished_s"] for r in records)
    snap = snapshot_from_disk(run_dir)
    assert snap["status"] == "done" and len(snap["trials"]) == n_trials and snap["final"]["test_accuracy"] > 0
    return records


@pytest.mark.slow
def test_two_local_workers_train_trials_at_once(tmp_path):
    from engine.search.jobs import Registry, new_run_id
    from engine.search.loop import run_search

    run_id = new_run_id()
    config = SearchConfig(**TINY, max_trials=5, workers=2)
    events = []
    summary = run_search("sample", tmp_path / run_id, config, events=events.append)
    assert summary["status"] == "done" and summary["n_trials"] == 5
    records = _check_parallel_run(tmp_path / run_id, 5)
    assert _overlapping(records), records
    assert len({r["worker"] for r in records if "worker" in r}) == 2
    epochs_of = {e["trial_id"] for e in events if e["type"] == "epoch"}
    assert {r["id"] for r in records if r["epochs"]} <= epochs_of  # the workers' events came through
    assert any(r["run_id"] == run_id for r in Registry(tmp_path).list_runs())  # the app lists it


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'sprout[ray]')")
def test_ray_runs_trials_at_once_and_survives_a_killed_worker(tmp_path):
    from engine.search.jobs import Registry, new_run_id
    from engine.search.loop import run_search

    run_id = new_run_id()
    config = SearchConfig(**TINY, max_trials=5, workers=2, executor="ray")
    killed = {}

    def on_event(event):  # kill the worker of trial 2 as soon as it starts training
        if event["type"] == "trial_worker" and event["trial_id"] == "2" and not killed:
            killed.update(event)
            os.kill(event["pid"], signal.SIGKILL)

    summary = run_search("sample", tmp_path / run_id, config, events=on_event)
    assert killed, "trial 2 never reached a worker"
    # Ray's start-up and the retried trial's fresh worker may leave the budget, not the cap, to end it
    assert summary["status"] == "done" and 3 <= summary["n_trials"] <= 5
    records = _check_parallel_run(tmp_path / run_id, summary["n_trials"])
    assert _overlapping(records), records
    second = next(r for r in records if r["id"] == "2")
    assert second["status"] == "ok" or "lost" in (second["error"] or ""), second  # retried once, or failed
    assert any(r["run_id"] == run_id for r in Registry(tmp_path).list_runs())
