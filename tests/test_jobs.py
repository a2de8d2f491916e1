"""Background runs (engine.search.jobs): each in its own process; two at once, a queued third,
stop, snapshots, runs on disk (interrupted ones, and one whose process ends), the memory ceiling.

Real TensorFlow on the built-in digits at 8x8 with trial caps; the session's shared run
(conftest.py) is read back by a registry started afresh, as after a server restart. The queue
and the memory ceiling use tests/fake_worker.py's "hold" worker (no TensorFlow). A killed worker
and Resume: tests/test_app.py; a killed server, restarted, and Resume: tests/test_browser.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SproutError
from engine.search.jobs import RUN_ID_RE, Registry, new_run_id
from engine.search.folder import read_jsonl
from engine.search.loop import SearchConfig
from tests.helpers import FakeTrainer

HOLD = [sys.executable, "-m", "tests.fake_worker", "hold"]
DEAF = [sys.executable, "-m", "tests.fake_worker", "deaf"]

SNAPSHOT_KEYS = {"run_id", "status", "error", "searcher", "device", "budget_s", "elapsed_s", "class_names",
                 "image_size", "channels", "trials", "distances", "in_flight", "phase", "best", "final", "files", "log"}


def _config(**kw) -> SearchConfig:
    # a trial cap ends the search (the budget is generous for a busy machine); a short fine-tune
    base = dict(budget_s=300, searcher="random", seed=0, image_size=8, max_epochs=2, max_trials=3,
                recipe={"final_epochs": 1})
    base.update(kw)
    return SearchConfig(**base)


def _wait_for(predicate, timeout: float, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    registry = Registry(root, max_active=2)
    # two trials each: a seed and a child, so the distances are between different networks
    a = registry.start("sample", _config(searcher="random", seed=1, max_trials=2))
    b = registry.start("sample", _config(searcher="bfs", seed=2, max_trials=2))
    third = registry.start("sample", _config())
    queued = registry.snapshot(third)
    registry.cancel(third)
    live = [registry.snapshot(a)]
    # a snapshot while training shows the trial in flight with its progress
    in_flight = _wait_for(lambda: (registry.snapshot(a)["in_flight"] or {}).get("n_batches") and registry.snapshot(a),
                          90, 0.05)
    assert registry.wait(a, 180) and registry.wait(b, 180)
    yield registry, root, a, b, queued, live + [in_flight]
    registry.close()


@pytest.mark.slow
def test_a_third_run_waits_in_the_queue(two_runs):
    registry, root, _, _, queued, _ = two_runs
    assert queued["status"] == "queued" and queued["queue_position"] == 1 and queued["trials"] == []
    assert registry.queue() == [] and not (root / queued["run_id"]).exists(), "a cancelled run leaves nothing"


@pytest.mark.slow
def test_two_runs_at_once_do_not_mix(two_runs):
    registry, root, a, b, _, _ = two_runs
    assert a != b and RUN_ID_RE.match(a) and RUN_ID_RE.match(b)
    for run_id, searcher in ((a, "random"), (b, "bfs")):
        snap = registry.snapshot(run_id)
        assert snap["status"] == "done", snap["error"]
        assert snap["searcher"] == searcher and snap["run_id"] == run_id
        records = read_jsonl(root / run_id / "trials.jsonl")
        assert len(records) == 2 and records[1]["parent_id"] == "0"
        assert [t["id"] for t in snap["trials"]] == [r["id"] for r in records] == [str(i) for i in range(len(records))]
        for trial, record in zip(snap["trials"], records):
            assert trial["val_accuracy"] == record["val_accuracy"] and trial["fingerprint"] == record["fingerprint"]
            saved = json.loads((root / run_id / "trials" / record["id"] / "architecture.json").read_text())
            assert saved["layers"] == trial["architecture"]["layers"]
        ok = [r["id"] for r in records if r["status"] == "ok"]
        matrix = np.array(snap["distances"]["matrix"])
        assert snap["distances"]["ids"] == ok and matrix.shape == (len(ok), len(ok))
        assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 0)
        assert (matrix[~np.eye(len(ok), dtype=bool)] > 0).all(), "different networks are apart"
        assert snap["final"]["test_accuracy"] is not None and (root / run_id / "best_model.keras").exists()
        assert snap["files"]["keras"] == str(root / run_id / "best_model.keras")
        assert snap["best"]["trial_id"] in ok and snap["in_flight"] is None
    listed = {r["run_id"]: r for r in registry.list_runs()}
    assert {a, b} <= listed.keys() and listed[a]["status"] == "done" and listed[b]["searcher"] == "bfs"


@pytest.mark.slow
def test_snapshots_are_plain_json_and_copies(two_runs):
    registry, _, a, _, _, live = two_runs
    for snap in live + [registry.snapshot(a)]:
        assert SNAPSHOT_KEYS <= snap.keys()
        json.dumps(snap, allow_nan=False)
    first, in_flight = live
    assert first["status"] in ("starting", "running")
    progress = in_flight["in_flight"]
    assert progress["trial_id"] is not None and progress["n_batches"] > 0 and progress["max_epochs"] >= 1
    assert 0 <= progress["epoch"] <= progress["max_epochs"]
    snap = registry.snapshot(a)
    snap["trials"].clear()
    assert registry.snapshot(a)["trials"], "a snapshot is a copy"


@pytest.mark.slow
def test_a_restarted_server_lists_runs_from_disk_read_only(two_runs):
    registry, root, a, b, _, _ = two_runs
    fresh = Registry(root)
    listed = {r["run_id"]: r for r in fresh.list_runs()}
    assert {a, b} <= listed.keys()
    assert listed[a]["status"] == "done" and listed[a]["searcher"] == "random"
    assert listed[a]["best_val_accuracy"] == registry.snapshot(a)["best"]["val_accuracy"]
    old, rebuilt = registry.snapshot(a), fresh.snapshot(a)
    json.dumps(rebuilt, allow_nan=False)
    assert SNAPSHOT_KEYS <= rebuilt.keys() and rebuilt["status"] == "done"
    assert [t["id"] for t in rebuilt["trials"]] == [t["id"] for t in old["trials"]]
    assert rebuilt["distances"] == old["distances"]
    assert rebuilt["final"]["test_accuracy"] == old["final"]["test_accuracy"]
    assert rebuilt["class_names"] == old["class_names"] and rebuilt["image_size"] == 8
    fresh.stop(a)  # nothing runs here: a no-op


@pytest.mark.slow
def test_a_fresh_registry_rebuilds_a_finished_run_from_its_files(finished_run):
    registry = Registry(finished_run.root)
    [listed] = registry.list_runs()
    summary = json.loads((finished_run.out / "summary.json").read_text())
    assert listed["run_id"] == finished_run.run_id and listed["status"] == "done" and listed["live"] is False
    assert listed["searcher"] == "bayesian" and listed["best_val_accuracy"] == summary["best"]["val_accuracy"]
    snap = registry.snapshot(finished_run.run_id)
    json.dumps(snap, allow_nan=False)
    assert SNAPSHOT_KEYS <= snap.keys() and snap["status"] == "done" and snap["in_flight"] is None
    records = read_jsonl(finished_run.out / "trials.jsonl")
    assert [t["id"] for t in snap["trials"]] == [r["id"] for r in records]
    children = [t for t in snap["trials"] if t["parent_id"] is not None and t["status"] == "ok"]
    assert len(children) >= 2, "the checks of children below run over at least two"
    for trial in children:
        record = records[int(trial["id"])]
        assert trial["parent_id"] == record["parent_id"] and trial["fingerprint"] == record["fingerprint"]
        assert trial["operations"] == record["operations"] and trial["operations"]
    ok = [r["id"] for r in records if r["status"] == "ok"]
    matrix = np.array(snap["distances"]["matrix"])
    assert snap["distances"]["ids"] == ok and matrix.shape == (len(ok), len(ok))
    assert all(matrix[ok.index(t["id"]), ok.index(t["parent_id"])] > 0 for t in children), (
        "a child differs from its parent")
    assert snap["final"]["test_accuracy"] == summary["test_accuracy"] and snap["image_size"] == 8
    assert snap["best"]["trial_id"] == summary["best"]["trial_id"]
    assert snap["files"]["keras"] == str(finished_run.out / "best_model.keras")


@pytest.mark.slow
def test_stop_ends_a_run_within_2_s_with_a_usable_model(tmp_path):
    """Stop sends the worker SIGTERM: its trial ends within a batch, the best network so far is
    tested and saved, and the process is gone, all within 2 s of the press (strict)."""
    import keras

    registry = Registry(tmp_path / "runs")
    run_id = registry.start("sample", _config(budget_s=600, max_epochs=5, max_trials=None))
    _wait_for(lambda: any(t["status"] == "ok" for t in registry.snapshot(run_id)["trials"]), 150)
    _wait_for(lambda: (registry.snapshot(run_id)["in_flight"] or {}).get("n_batches"), 60, 0.05)
    t0 = time.monotonic()
    registry.stop(run_id)
    assert registry.snapshot(run_id)["stopping"] is True
    assert registry.wait(run_id, 60)
    took = time.monotonic() - t0
    snap = registry.snapshot(run_id)
    assert snap["status"] == "stopped" and snap["error"] is None, snap["log"][-5:]
    assert took < 2.0, f"the stopped search's process ended {took:.2f} s after Stop (limit 2 s)"
    assert any("stop requested" in line for line in snap["log"])
    model = keras.models.load_model(snap["files"]["keras"])
    assert model.predict(np.zeros((1, 8, 8, 1), np.uint8), verbose=0).shape == (1, 10)
    assert snap["final"]["test_accuracy"] is not None


def test_a_run_with_bad_data_fails_with_its_reason(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    registry = Registry(tmp_path / "runs")
    run_id = registry.start(empty, _config())
    assert registry.wait(run_id, 60)
    snap = registry.snapshot(run_id)
    assert snap["status"] == "failed" and snap["error"] and "\n" not in snap["error"]
    json.dumps(snap, allow_nan=False)


def test_bad_requests_are_refused(tmp_path):
    registry = Registry(tmp_path / "runs")
    for bad in ("../etc", "x", "", None, "20250101-000000-zzzzzz"):
        with pytest.raises(SproutError):
            registry.snapshot(bad)
    with pytest.raises(SproutError):
        registry.stop(new_run_id())
    with pytest.raises(SproutError, match="no data"):
        registry.start(tmp_path / "missing", _config())
    with pytest.raises(SproutError, match="budget"):
        registry.start("sample", _config(budget_s=0))
    assert registry.list_runs() == []
    assert RUN_ID_RE.match(new_run_id())


def _interrupted_run(root, monkeypatch):
    """A run folder as a server that died during trial 2 leaves it: two trials, no summary."""
    from engine.training import trainer
    from engine.files import atomic_write_json
    from engine.search.loop import run_search

    monkeypatch.setattr(trainer, "train", FakeTrainer())
    run_id = new_run_id()
    out = root / run_id
    run_search("sample", out, _config(budget_s=60, max_trials=4))
    for name in ("summary.json", "best_model.keras"):
        (out / name).unlink()
    lines = (out / "trials.jsonl").read_text().splitlines(keepends=True)
    (out / "trials.jsonl").write_text("".join(lines[:2]))
    state = json.loads((out / "state.json").read_text())
    state.update(phase="search", in_flight={"trial_id": "2", "parent_id": "0"}, pid=2**22 + 12345)
    atomic_write_json(out / "state.json", state)
    return run_id


def test_an_interrupted_run_on_disk_is_listed_as_interrupted(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    run_id = _interrupted_run(root, monkeypatch)
    registry = Registry(root)
    [listed] = registry.list_runs()
    assert listed["run_id"] == run_id and listed["status"] == "interrupted" and listed["live"] is False
    snap = registry.snapshot(run_id)
    assert snap["status"] == "interrupted" and "Resume" in snap["error"] and len(snap["trials"]) == 2


# ------------------------------------------------------------------ the queue, memory
def _wait_status(registry, run_id, status, timeout=30):
    return _wait_for(lambda: registry.snapshot(run_id)["status"] == status, timeout, 0.02)


def test_searches_beyond_max_active_queue_in_order_and_a_queued_one_can_be_cancelled(tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_MAX_ACTIVE", "1")
    root = tmp_path / "runs"
    registry = Registry(root, worker=HOLD)
    try:
        assert registry.max_active == 1
        ids = [registry.start("sample", _config(seed=k)) for k in range(4)]
        first, second, third, fourth = ids
        _wait_status(registry, first, "running")
        assert [registry.snapshot(r)["queue_position"] for r in ids] == [None, 1, 2, 3]
        assert [registry.snapshot(r)["status"] for r in ids[1:]] == ["queued"] * 3
        assert registry.queue() == [second, third, fourth]
        listed = {r["run_id"]: r for r in registry.list_runs()}
        assert listed[fourth]["status"] == "queued" and listed[fourth]["queue_position"] == 3

        registry.cancel(third)  # cancelling removes it; the ones behind move up
        with pytest.raises(SproutError):
            registry.snapshot(third)
        assert registry.queue() == [second, fourth] and registry.snapshot(fourth)["queue_position"] == 2
        with pytest.raises(SproutError, match="not waiting"):
            registry.cancel(first)

        (root / first / "release").write_text("")
        assert registry.wait(first, 30) and registry.snapshot(first)["status"] == "done"
        _wait_status(registry, second, "running")
        assert registry.snapshot(fourth)["status"] == "queued" and registry.snapshot(fourth)["queue_position"] == 1
        registry.stop(second)  # a stop reaches the worker as SIGTERM
        assert registry.wait(second, 30) and registry.snapshot(second)["status"] == "stopped"
        _wait_status(registry, fourth, "running")
        (root / fourth / "release").write_text("")
        assert registry.wait(fourth, 30) and registry.queue() == []
        assert not (root / third).exists()
    finally:
        registry.close()


def test_a_worker_over_its_memory_ceiling_is_stopped_with_a_plain_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_WORKER_MAX_RSS_MB", "1")  # any Python process is bigger
    registry = Registry(tmp_path / "runs", worker=HOLD)
    try:
        run_id = registry.start("sample", _config())
        assert registry.wait(run_id, 30)
        snap = registry.snapshot(run_id)
        assert snap["status"] == "stopped"
        assert "more than the 1 MB one search may use" in snap["error"] and "SPROUT_WORKER_MAX_RSS_MB" in snap["error"]
    finally:
        registry.close()


def test_a_worker_that_ignores_stop_is_ended_after_the_grace_and_a_second_stop_ends_one_at_once(tmp_path):
    registry = Registry(tmp_path / "runs", max_active=2, worker=DEAF)
    registry.stop_grace_s = 0.5
    try:
        deaf, twice = registry.start("sample", _config()), registry.start("sample", _config(seed=1))
        _wait_status(registry, deaf, "running")
        _wait_status(registry, twice, "running")
        registry.stop(deaf)
        assert not registry.wait(deaf, 0.3), "ended before its grace"
        assert registry.wait(deaf, 10)
        snap = registry.snapshot(deaf)
        assert snap["status"] == "interrupted" and "SIGKILL" in snap["error"]
        assert any("did not stop within 0.5 s" in line for line in snap["log"])
        t0 = time.monotonic()
        registry.stop(twice)
        registry.stop(twice)
        assert registry.wait(twice, 10) and time.monotonic() - t0 < 2
        snap = registry.snapshot(twice)
        assert snap["status"] == "interrupted" and "Network #0, in training, was lost" in snap["error"]
        assert any("stopped at once" in line for line in snap["log"])
    finally:
        registry.close()


def test_a_run_read_as_running_turns_interrupted_when_its_process_ends(tmp_path):
    """A run on disk whose process (another server's search) runs is listed as running; once that
    process is killed the run is interrupted, though the kill changed no file of it and the process
    is not reaped yet (a zombie, as an orphaned worker is until init reaps it: seconds in some
    containers). The whole path, a real server SIGKILLed and restarted: tests/test_browser.py."""
    root, run_id = tmp_path / "runs", new_run_id()
    other = subprocess.Popen(["sleep", "60"])
    try:
        (root / run_id).mkdir(parents=True)
        (root / run_id / "state.json").write_text(json.dumps(
            {"format": 1, "config": {"searcher": "random", "budget_s": 60}, "data_source": "sample",
             "phase": "search", "pid": other.pid, "host": socket.gethostname()}))
        registry = Registry(root)
        assert registry.snapshot(run_id)["status"] == "running" and registry.list_runs()[0]["status"] == "running"
        other.kill()  # not waited for: it stays a zombie
        stat = Path(f"/proc/{other.pid}/stat")
        _wait_for(lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z", 5, 0.02)
        snap = registry.snapshot(run_id)
        assert snap["status"] == "interrupted" and "Resume" in snap["error"]
        assert registry.list_runs()[0]["status"] == "interrupted"
    finally:
        other.kill()
        other.wait()


# ------------------------------------------------------------------ the machine's shares
def test_max_active_memory_ceiling_and_worker_env_come_from_the_environment_or_the_machine(monkeypatch):
    from engine.search import machine

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(machine, "cpu_count", lambda: 8)
    monkeypatch.delenv("SPROUT_MAX_ACTIVE", raising=False)
    assert machine.gpu_count() == 0 and machine.max_active() == 4      # one per 2 CPU cores
    monkeypatch.setattr(machine, "cpu_count", lambda: 1)
    assert machine.max_active() == 1                                   # at least one
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2,3")
    assert machine.gpu_count() == 3 and machine.max_active() == 3      # one per GPU
    env = machine.worker_env(1, 3, base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "2", "each worker its own GPU"
    monkeypatch.setenv("SPROUT_MAX_ACTIVE", "5")
    assert machine.max_active() == 5
    for bad in ("0", "two"):
        monkeypatch.setenv("SPROUT_MAX_ACTIVE", bad)
        with pytest.raises(SproutError, match="SPROUT_MAX_ACTIVE must be"):
            machine.max_active()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(machine, "cpu_count", lambda: 8)
    env = machine.worker_env(0, 2, base={})
    assert env["SPROUT_INTRA_OP_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in env
    assert machine.worker_env(0, 2, base={"SPROUT_INTRA_OP_THREADS": "3"})["SPROUT_INTRA_OP_THREADS"] == "3"
    monkeypatch.delenv("SPROUT_WORKER_MAX_RSS_MB", raising=False)
    monkeypatch.setattr(machine, "memory_mb", lambda: 10_000)
    assert machine.rss_ceiling_mb(2) == 4_000 and machine.rss_ceiling_mb(100) == machine.MIN_RSS_MB
    monkeypatch.setenv("SPROUT_WORKER_MAX_RSS_MB", "1234")
    assert machine.rss_ceiling_mb(2) == 1234
    assert machine.rss_mb(os.getpid()) > 1 and machine.rss_mb(2**22 + 12345) is None
