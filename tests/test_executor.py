"""Parallel trials (issue 17): the executors, the failure rule, what the snapshot, the tree and the
Search page show of several networks in training, and real searches with several trials at once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from engine.errors import SproutError
from engine.search.config import SearchConfig
from engine.search.executor import SharedArrays, attach, open_executor, worker_env
from engine.search.executor_task import TrialTask, run_task
from engine.search.folder import RunFolder
from engine.search.machine import cpu_count
from engine.search.monitor import RunMonitor
from engine.search.trials import MAX_CONSECUTIVE_FAILURES, TrialRunner
from tests.helpers import app_at_page

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


def test_failed_trials_in_a_row_end_the_search_and_one_that_trains_resets_the_count():
    said = []
    runner = TrialRunner(SimpleNamespace(say=said.append), searcher=None)
    n = MAX_CONSECUTIVE_FAILURES
    first = ["failed"] * (n - 1) + ["ok"] + ["stopped"] + ["failed"] * (n - 2)  # a stopped trial counts too
    assert not any(runner.record_outcome({"status": s}) for s in first)
    assert runner.record_outcome({"status": "failed"}) and runner.record_outcome({"status": "failed"})
    assert said == [f"search ended early: {n} trials in a row failed"]  # said once


def _grown(trial_id: str, mean: float) -> dict:
    """A "trial_started" event of a network grown from trial 0, with its prediction."""
    return {"type": "trial_started", "trial_id": trial_id, "parent_id": "0", "max_epochs": 2,
            "proposal": {"ancestor_id": "0", "operations": [], "mean": mean, "sigma": 0.05, "reason": "why"}}


def test_every_network_in_training_is_in_the_snapshot_and_the_tree(tmp_path):
    from engine.figures.tree import tree_figure

    monitor = RunMonitor("20261202-120000-aaaaaa", tmp_path, SearchConfig(budget_s=60, workers=2))
    monitor.handle({"type": "started", "elapsed_s": 0.0})
    monitor.handle({"type": "trial_finished", "trial": {"id": "0", "parent_id": None, "status": "ok",
                                                        "val_accuracy": 0.5}})
    monitor.handle(_grown("1", 0.6))
    monitor.handle(_grown("2", 0.7))
    monitor.handle({"type": "epoch", "trial_id": "1", "epoch": 1, "logs": {}})
    snap = monitor.snapshot()
    assert [(f["trial_id"], f["epoch"]) for f in snap["flying"]] == [("1", 1), ("2", 0)]  # each its own progress
    assert snap["in_flight"]["trial_id"] == "2"  # the one started last, for pages that show one
    fig = tree_figure(snap)
    training = next(t for t in fig.data if t.name == "in flight")
    assert [c[0] for c in training.customdata] == ["1", "2"]
    assert "predicted 60.0% ± 5.0%" in training.hovertext[0] and "predicted 70.0% ± 5.0%" in training.hovertext[1]
    assert len(next(t for t in fig.data if t.name == "proposed").x) == 2 * 3  # a dotted edge from #0 to each
    monitor.handle({"type": "trial_finished", "trial": {"id": "2", "parent_id": "0", "status": "ok",
                                                        "val_accuracy": 0.7}})
    snap = monitor.snapshot()
    assert [f["trial_id"] for f in snap["flying"]] == ["1"] and snap["in_flight"]["trial_id"] == "1"
    monitor.handle({"type": "finished", "summary": {"status": "done"}})
    assert monitor.snapshot()["flying"] == [] and monitor.snapshot()["in_flight"] is None


def test_the_search_page_shows_every_network_in_training(monkeypatch):
    """tests/fake_worker.py's "parallel" worker (no TensorFlow): trial 0 trained, trials 1 and 2
    training at once. The Search page has a Now-training card and a tree node for each."""
    import streamlit as st

    from engine import paths
    from engine.search import jobs

    monkeypatch.setattr(jobs, "WORKER", [sys.executable, "-m", "tests.fake_worker", "parallel"])
    at = app_at_page("views/search.py", data="sample", size="8")
    at.button(key="start").click()
    at.run()
    run_id = at.query_params["run"]

    def cards() -> list[str]:
        return [m.value for m in at.markdown if m.value.startswith("**Now training network #")]

    try:
        end = time.monotonic() + 60
        while len(cards()) < 2:
            assert not at.exception, at.exception
            assert time.monotonic() < end, f"two networks in training never showed: {cards()}"
            time.sleep(0.2)
            at.run()
        assert [c.split(" · ")[0] for c in cards()] == ["**Now training network #1**", "**Now training network #2**"]
        assert all("grown from #0" in c for c in cards())
        tree = next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.proto.id.endswith("-tree"))
        training = next(t for t in tree["data"] if t.get("name") == "in flight")
        assert [c[0] for c in training["customdata"]] == ["1", "2"]
    finally:
        (paths.runs_dir() / run_id / "release").write_text("")  # the stand-in search ends
    end = time.monotonic() + 30
    while not any("Finished" in h.value for h in at.subheader):
        assert time.monotonic() < end, [h.value for h in at.subheader]
        time.sleep(0.2)
        at.run()
    assert not cards() and not at.exception, at.exception
    st.cache_resource.clear()


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
    config = SearchConfig(**TINY, max_trials=3, workers=2)  # the first network, then two at once
    events = []
    summary = run_search("sample", tmp_path / run_id, config, events=events.append)
    assert summary["status"] == "done" and summary["n_trials"] == 3
    records = _check_parallel_run(tmp_path / run_id, 3)
    assert _overlapping(records), records
    assert len({r["worker"] for r in records if "worker" in r}) == 2
    epochs_of = {e["trial_id"] for e in events if e["type"] == "epoch"}
    assert {r["id"] for r in records if r["epochs"]} <= epochs_of  # the workers' events came through
    assert any(r["run_id"] == run_id for r in Registry(tmp_path).list_runs())  # the app lists it


def _the_app_shows(run_id: str, records: list[dict]) -> None:
    """The Results and Search pages of a finished run, opened from its address as a user does:
    every network in the tree, the test accuracy, the downloads, no exception."""
    import streamlit as st

    try:
        at = app_at_page("views/results.py", run=run_id)
        assert not at.exception, at.exception
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Networks tried"] == str(len(records)) and metrics["Test accuracy"].endswith("%"), metrics
        assert [d.proto.label for d in at.get("download_button")] == [
            "Keras (.keras)", "SavedModel (.zip)", "TFLite (.tflite)", "Class names (.json)"]
        at.switch_page("views/search.py")
        at.run()
        assert not at.exception, at.exception
        assert any("Finished" in h.value for h in at.subheader), [h.value for h in at.subheader]
        ok = [r["id"] for r in records if r["status"] == "ok"]
        assert {m.label: m.value for m in at.metric}["Networks trained"] == str(len(ok))
        tree = next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.proto.id.endswith("-tree"))
        drawn = {t["name"]: [c[0] for c in t["customdata"]]
                 for t in tree["data"] if t.get("name") in ("trained", "failed")}
        assert drawn["trained"] == ok  # every trained network is a node of the tree; failed ones are crosses
        assert sorted(sum(drawn.values(), []), key=int) == sorted((r["id"] for r in records), key=int)
    finally:
        st.cache_resource.clear()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'sprout[ray]')")
def test_ray_runs_trials_at_once_survives_a_killed_worker_and_the_app_shows_the_run(tmp_path, monkeypatch):
    from engine import paths
    from engine.search.jobs import new_run_id
    from engine.search.loop import run_search

    monkeypatch.setenv("SPROUT_HOME", str(tmp_path))  # the run in the app's runs folder, as the app's own are
    run_id = new_run_id()
    config = SearchConfig(**TINY, max_trials=4, workers=2, executor="ray")
    killed = {}

    def on_event(event):  # trials 1 and 2 train at once; kill the worker of trial 3 as soon as it starts
        if event["type"] == "trial_worker" and event["trial_id"] == "3" and not killed:
            killed.update(event)
            os.kill(event["pid"], signal.SIGKILL)

    summary = run_search("sample", paths.runs_dir() / run_id, config, events=on_event)
    assert killed, "trial 3 never reached a worker"
    assert summary["status"] == "done" and summary["n_trials"] == 4
    records = _check_parallel_run(paths.runs_dir() / run_id, 4)
    assert _overlapping(records), records
    third = next(r for r in records if r["id"] == "3")
    assert third["status"] == "ok" or "lost" in (third["error"] or ""), third  # retried once, or failed
    _the_app_shows(run_id, records)
