"""The one line that names a run on every page (engine.search.labels), for runs in every state:
just created, running, done, stopped, failed, and a run folder holding only its state.json;
and the short numbers and device words the pages' metrics use."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from engine.nas.architecture import seed_architecture
from engine.search.folder import RunFolder
from engine.search.jobs import Registry
from engine.search.labels import data_name, device_parts, run_label, run_time, short_count
from engine.search.monitor import RunMonitor

RUN_ID = "20261202-055946-3276b2"
CREATED = "2026-12-02T05:59:46Z"
EMPTY_FIELD = re.compile(r"·\s*·|·\s*$|^\s*·")


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Labels show the server's local time: pin it to UTC so the expected times are plain."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _complete(label: str) -> list[str]:
    """The label's fields, after checking none is empty."""
    assert not EMPTY_FIELD.search(label), f"an empty field in {label!r}"
    fields = label.split(" · ")
    assert all(f.strip() == f and f for f in fields), fields
    return fields


def _state(phase: str = "search", source: str = "sample", **extra) -> dict:
    return {"format": 1, "config": {"searcher": "bayesian", "budget_s": 60.0, "seed": 0}, "created": CREATED,
            "data_source": source, "phase": phase, **extra}


def _trial(trial_id: str, acc: float | None, status: str = "ok") -> str:
    return json.dumps({"id": trial_id, "parent_id": None, "status": status, "val_accuracy": acc}) + "\n"


def _run_folder(root, run_id: str, state: dict | None, *, trials: list[str] = (), summary: dict | None = None,
                classes: list[str] | None = None) -> RunFolder:
    folder = RunFolder(root / run_id)
    folder.root.mkdir(parents=True)
    if state is not None:
        folder.write_state(state)
    if trials:
        folder.trials_path.write_text("".join(trials))
    if classes is not None:
        folder.write_dataset({"source": state.get("data_source") if state else None, "class_names": classes,
                              "image_size": 8, "channels": 1, "split": {"train": [0, 1], "val": [2], "test": [3]}})
    if summary is not None:
        folder.write_summary(summary)
    return folder


# ----- every state, from disk and from a live monitor ----------------------------------------
def test_a_run_folder_with_only_state_json_gets_a_complete_label(tmp_path):
    _run_folder(tmp_path, RUN_ID, _state())
    registry = Registry(tmp_path)
    (listing,) = registry.list_runs()
    for run in (listing, registry.snapshot(RUN_ID)):
        fields = _complete(run_label(run))
        # interrupted (no process, no summary): resumable; no accuracy yet
        assert fields == ["2 Dec 05:59", "sample digits", "bayesian", "interrupted"]


def test_done_stopped_and_failed_runs_on_disk(tmp_path):
    done_id, stopped_id, failed_id = (f"20261202-0{k}0000-00000{k}" for k in (6, 7, 8))
    _run_folder(tmp_path, done_id, _state("done", source=str(tmp_path / "uploads" / "20261202-055000-abcdef")),
                trials=[_trial("0", 0.9), _trial("1", 0.95)], classes=["cat", "dog", "fox", "owl", "yak"],
                summary={"status": "done", "best": {"trial_id": "1", "val_accuracy": 0.95}, "test_accuracy": 0.93,
                         "final": {"test_accuracy": 0.93}})
    _run_folder(tmp_path, stopped_id, _state("stopped", source=str(tmp_path / "pets")),
                trials=[_trial("0", 0.81), _trial("1", None, "failed")],
                summary={"status": "stopped", "best": {"trial_id": "0", "val_accuracy": 0.81}})
    _run_folder(tmp_path, failed_id, _state("failed", error="disk full"), trials=[_trial("0", 0.4)])
    registry = Registry(tmp_path)
    labels = {r["run_id"]: run_label(r) for r in registry.list_runs()}
    assert _complete(labels[done_id]) == ["2 Dec 05:59", "cat, dog, fox +2 more", "bayesian", "done", "test 93%"]
    assert _complete(labels[stopped_id]) == ["2 Dec 05:59", "pets", "bayesian", "stopped", "best 81%"]
    assert _complete(labels[failed_id]) == ["2 Dec 05:59", "sample digits", "bayesian", "failed", "best 40%"]
    # a snapshot reads the same (its best score needs the trials' architecture files, absent here)
    assert run_label(registry.snapshot(done_id)) == labels[done_id]
    for run_id in (stopped_id, failed_id):
        assert _complete(run_label(registry.snapshot(run_id))) == _complete(labels[run_id])[:4]


def test_a_run_of_another_live_process_reads_as_running(tmp_path):
    _run_folder(tmp_path, RUN_ID, _state(pid=os.getppid(), host=__import__("socket").gethostname()),
                trials=[_trial("0", 0.5)])
    (listing,) = Registry(tmp_path).list_runs()
    assert _complete(run_label(listing)) == ["2 Dec 05:59", "sample digits", "bayesian", "running", "best 50%"]


def test_a_live_run_from_just_created_to_done(tmp_path):
    class Config:
        searcher, budget_s = "random", 60.0

    monitor = RunMonitor(RUN_ID, tmp_path / RUN_ID, Config(), data_source="sample")
    # just created: no "started" event yet, so no start time but the id's (the same minute)
    assert _complete(run_label(monitor.snapshot())) == ["2 Dec 05:59", "sample digits", "random", "starting"]
    monitor.handle({"type": "started", "created": CREATED, "class_names": ["0", "1"], "searcher": "random"})
    arch = seed_architecture((8, 8, 1), 2).to_dict()
    monitor.handle({"type": "trial_finished", "trial": {"id": "0", "status": "ok", "val_accuracy": 0.875,
                                                        "architecture": arch}})
    assert _complete(run_label(monitor.snapshot()))[-2:] == ["running", "best 88%"]
    monitor.handle({"type": "finished", "summary": {"status": "done", "final": {"test_accuracy": 0.9}}})
    assert _complete(run_label(monitor.snapshot()))[-2:] == ["done", "test 90%"]


def test_a_label_from_almost_nothing_still_has_no_empty_field():
    assert _complete(run_label({"run_id": "not-a-stamp"})) == ["not-a-stamp"]
    assert _complete(run_label({})) == ["a search"]
    assert _complete(run_label({"run_id": RUN_ID, "searcher": "", "status": None, "class_names": [],
                                "data_source": "", "best_val_accuracy": None, "final": None}))


# ----- the parts ---------------------------------------------------------------------------
def test_time_prefers_created_and_falls_back_to_the_run_id():
    assert run_time({"created": "2026-01-05T23:04:00Z", "run_id": RUN_ID}) == "5 Jan 23:04"
    assert run_time({"created": "not a time", "run_id": RUN_ID}) == "2 Dec 05:59"
    assert run_time({"run_id": "20261399-999999-abcdef"}) is None


def test_data_names():
    assert data_name("sample", ["0", "1"]) == "sample digits"
    assert data_name("/x/uploads/20261202-055946-3276b2") == "uploaded images"
    assert data_name("/home/me/flowers.zip") == "flowers.zip"
    assert data_name(None, ["a", "b", "c"]) == "a, b, c"
    assert data_name(None, []) is None


def test_short_counts_fit_a_metric():
    assert [short_count(n) for n in (0, 843, 999, 1_234, 12_345, 99_960, 170_243, 999_999, 1_234_567)] == [
        "0", "843", "999", "1.2 k", "12.3 k", "100 k", "170 k", "1.0 M", "1.2 M"]
    assert short_count(None) == "–"
    assert all(len(short_count(10 ** k * 7.77)) <= 6 for k in range(12))


def test_device_parts():
    assert device_parts("GPU (NVIDIA H200) x2") == ("GPU", "NVIDIA H200 x2")
    assert device_parts("CPU (2 cores)") == ("CPU", "2 cores")
    assert device_parts("TPU") == ("TPU", None)
    assert device_parts(None) == ("–", None)
