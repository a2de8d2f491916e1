"""Faults during a real search (issue #8): a full disk while saving, Stop pressed while the
acquisition is being optimised and during the final fine-tune. Memory over 100 trials is
measured by `python -m bench.memory` (bench/results/memory.md); tests/test_trainer.py keeps a short version.

Real TensorFlow on the built-in digits at 8x8 (``"sample"`` with ``image_size=8``: the
seed network is one conv block, so a trial takes a second or two). The disk-full fault is
injected at the operating-system call: once armed, ``os.write`` to a file of the run folder
writes part of what it was given and then fails with ENOSPC, as a full disk does.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import files
from engine.search import folder as runio
from engine.errors import DiskFullError, SproutError
from engine.search.loop import SearchConfig, run_search

STOP_WITHIN_S = 2.0


def _returned_within(seconds: float, limit: float = STOP_WITHIN_S) -> None:
    """The stop promise, strictly: run_search is back (best network tested and saved) in time."""
    assert seconds < limit, f"run_search returned {seconds:.2f} s after the stop (limit {limit:g} s)"


def _config(**kw) -> SearchConfig:
    # A one-epoch fine-tune recipe (at most 3 epochs): the faults happen before or during it.
    base = dict(budget_s=300, searcher="random", seed=0, image_size=8, max_epochs=1, recipe={"final_epochs": 1})
    base.update(kw)
    return SearchConfig(**base)


def _usable_model(out: Path) -> None:
    """best_model.keras loads in Keras safe mode and predicts probabilities for 10 digits."""
    import keras

    model = keras.models.load_model(out / "best_model.keras", safe_mode=True)
    probs = model.predict(np.zeros((2, 8, 8, 1), np.uint8), verbose=0)
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert json.loads((out / "labels.json").read_text()) == [str(d) for d in range(10)]


def _strict_lines(path: Path) -> list[dict]:
    """Every line of a jsonl file, each complete and strict JSON (no torn or garbled line)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the file ends in a torn line"
    return [json.loads(line) for line in text.splitlines()]


# ---------------------------------------------------------------------------- disk full
class DiskFills:
    """Stands in for ``os.write``: once ``armed``, a write to a file in ``folder`` (whose name
    is in ``names``, if given) writes half of its bytes, and the next one raises ENOSPC."""

    def __init__(self, folder: Path, names: set[str] | None = None):
        self.real = os.write
        self.folder, self.names = str(folder.resolve()), names
        self.armed = False
        self.partial: set[str] = set()
        self.failed: list[str] = []

    def __call__(self, fd: int, data) -> int:
        if self.armed:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if target.startswith(self.folder + os.sep) and (self.names is None or Path(target).name in self.names):
                if target not in self.partial and len(data) > 1:
                    self.partial.add(target)
                    return self.real(fd, bytes(data[: len(data) // 2]))
                self.failed.append(Path(target).name)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(fd, data)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to tell which file a write goes to")
@pytest.mark.parametrize("which", ["state.json", "trials.jsonl"])
def test_disk_full_while_saving_keeps_the_run_readable_and_resumable(tmp_path, monkeypatch, which):
    out = tmp_path / "run"
    fault = DiskFills(out, names={".state.tmp.json"} if which == "state.json" else {"trials.jsonl"})
    monkeypatch.setattr(os, "write", fault)

    def on_event(event):
        # state.json: the disk fills as soon as trial 0 is committed (its state update fails);
        # trials.jsonl: it fills while trial 1 trains, so trial 1's line cannot be written.
        if which == "state.json" and event["type"] == "trial_finished" and event["trial"]["id"] == "0":
            fault.armed = True
        if which == "trials.jsonl" and event["type"] == "trial_started" and event["trial_id"] == "1":
            fault.armed = True

    config = _config(max_trials=2)
    with pytest.raises(SproutError) as caught:
        run_search("sample", out, config, events=on_event)
    message = str(caught.value)
    assert isinstance(caught.value, DiskFullError) and isinstance(caught.value, OSError)
    assert "disk is full" in message and "no space left" in message and "\n" not in message
    assert caught.value.errno == errno.ENOSPC
    expected_name = "state.json" if which == "state.json" else "trials.jsonl"
    assert expected_name in message and fault.failed, (message, fault.failed)

    # The previous state.json and trials.jsonl still parse and hold the finished trial.
    state = json.loads((out / "state.json").read_text(encoding="utf-8"))
    assert state["format"] == runio.RUN_FORMAT and state["phase"] in ("seed", "search")
    before = _strict_lines(out / "trials.jsonl")
    assert [r["id"] for r in before] == ["0"] and before[0]["status"] == "ok"
    assert 0.0 <= before[0]["val_accuracy"] <= 1.0
    assert not list(out.glob(".*.tmp*")), "a temp file was left behind"
    assert not (out / "summary.json").exists()

    # Space is back: the run resumes, keeps trial 0 and finishes.
    fault.armed = False
    summary = run_search("sample", out, config, resume=True)
    assert summary["status"] == "done"
    records = _strict_lines(out / "trials.jsonl")
    assert [r["id"] for r in records] == ["0", "1"] and records[0] == before[0]
    _usable_model(out)


def test_disk_full_error_cleans_up_and_keeps_the_old_file(tmp_path, monkeypatch):
    """The helpers themselves: a full disk leaves the previous file, no temp file, no torn line."""
    state, trials = tmp_path / "state.json", tmp_path / "trials.jsonl"
    files.atomic_write_json(state, {"version": 1})
    runio.append_jsonl(trials, {"id": "0"})
    fault = DiskFills(tmp_path)
    fault.armed = True
    monkeypatch.setattr(os, "write", fault)
    with pytest.raises(DiskFullError, match=r"disk is full .* while writing state\.json"):
        files.atomic_write_json(state, {"version": 2, "padding": "x" * 10_000})
    with pytest.raises(DiskFullError, match=r"while writing trials\.jsonl"):
        runio.append_jsonl(trials, {"id": "1", "padding": "y" * 10_000})
    fault.armed = False
    assert json.loads(state.read_text()) == {"version": 1}
    assert _strict_lines(trials) == [{"id": "0"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "trials.jsonl"]
    # other errors stay what they are
    with pytest.raises(FileNotFoundError):
        files.atomic_write_json(tmp_path / "missing" / "x.json", {})


def test_disk_full_while_saving_a_trials_weights(tmp_path, monkeypatch):
    """Weights are written by Architecture.save (NumPy): a full disk there is a DiskFullError too,
    and the half-written trial folder is a leftover that resume removes."""
    from engine.nas.architecture import Architecture, init_weights, seed_architecture

    folder = runio.RunFolder(tmp_path / "run")
    folder.create()
    arch = init_weights(seed_architecture((8, 8, 1), 10), seed=0)
    real_save = Architecture.save

    def full_disk_save(self, where):
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / "weights.tmp.npz").write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    record = {"id": "0", "status": "ok"}
    monkeypatch.setattr(Architecture, "save", full_disk_save)
    with pytest.raises(DiskFullError, match="while writing weights.npz"):
        folder.save_trial(record, arch)
    assert folder.read_trials() == []
    monkeypatch.setattr(Architecture, "save", real_save)
    assert folder.remove_uncommitted([]) == ["0"]


def test_disk_full_while_saving_the_best_model_keeps_the_previous_one(tmp_path):
    """best_model.keras is written beside the run's files: a full disk gives DiskFullError,
    leaves the previous model in place and no temp file behind."""
    import keras

    from engine.nas.architecture import init_weights, seed_architecture

    from engine.training.model import build_model

    root = tmp_path / "run"
    root.mkdir()
    folder, names = runio.RunFolder(root), [str(d) for d in range(10)]
    model = build_model(init_weights(seed_architecture((8, 8, 1), 10), seed=0))
    folder.save_model(model, names)
    before = (root / "best_model.keras").read_bytes()

    class FullDisk(keras.Model):
        def save(self, path, **kw):
            Path(path).write_bytes(b"PK half a model")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskFullError, match="while writing best_model.keras"):
        folder.save_model(FullDisk(), names)
    assert (root / "best_model.keras").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["best_model.keras", "labels.json"]


# ---------------------------------------------------------------------------- stop
@pytest.mark.slow
def test_stop_during_the_acquisition_optimisation(tmp_path, monkeypatch):
    """Stop pressed while the Bayesian searcher optimises the acquisition: run_search returns
    within 2 s with the seed network evaluated and saved."""
    from engine.nas import searchers

    real_make = searchers.make_searcher
    times: dict[str, float] = {}
    in_propose = threading.Event()

    def make_slow_searcher(name, **kw):
        searcher = real_make(name, **kw)
        # An annealing that would run for minutes: many steps, no temperature floor, a long cap.
        slow = {"max_steps": 1000, "t_low": 1e-300, "decay": 0.99999}
        params = getattr(searcher, "params", {})
        params.update({k: v for k, v in slow.items() if k in params})
        real_propose = searcher.propose

        def propose(history, stop=None, time_cap_s=None):
            in_propose.set()
            try:
                return real_propose(history, stop=stop, time_cap_s=120.0)
            finally:
                times["propose_returned"] = time.monotonic()

        searcher.propose = propose
        return searcher

    monkeypatch.setattr(searchers, "make_searcher", make_slow_searcher)
    stop = threading.Event()

    def press_stop():
        if in_propose.wait(240):
            time.sleep(0.5)  # inside the annealing loop
            times["stop"] = time.monotonic()
            stop.set()

    presser = threading.Thread(target=press_stop, daemon=True)
    presser.start()
    out = tmp_path / "run"
    summary = run_search("sample", out, _config(searcher="bayesian"), stop=stop)
    returned = time.monotonic()
    presser.join(1)
    assert "stop" in times, "the searcher was never asked for a proposal"
    print(f"\nstop -> propose returned {times['propose_returned'] - times['stop']:.2f} s, "
          f"-> run_search returned {returned - times['stop']:.2f} s")
    assert times["propose_returned"] >= times["stop"], "the acquisition ended before Stop was pressed"
    assert times["propose_returned"] - times["stop"] < 1.0, "the acquisition did not notice the stop"
    assert summary["status"] == "stopped" and summary["best"]["trial_id"] == "0"
    assert [r["id"] for r in _strict_lines(out / "trials.jsonl")] == ["0"]
    assert summary["test_accuracy"] is not None and not summary["fine_tuned"]
    _usable_model(out)
    _returned_within(returned - times["stop"])


@pytest.mark.slow
def test_stop_during_the_final_fine_tune(tmp_path):
    """Stop pressed while the best network is being fine-tuned on train + validation:
    run_search returns within 2 s with a usable model."""
    stop = threading.Event()
    times: dict[str, float] = {}
    epochs_done: list[int] = []

    def on_event(event):
        if event["type"] == "trial_started" and event["trial_id"] == "final":
            times["fine_tune_started"] = time.monotonic()
        if event["type"] == "trial_started" and event["trial_id"] == "final":
            times["fine_tune_epochs"] = event["max_epochs"]
        if event["type"] == "epoch" and event.get("trial_id") == "final":
            epochs_done.append(event["epoch"])
        if event["type"] in ("batch", "epoch") and event.get("trial_id") == "final" and not stop.is_set():
            times["stop"] = time.monotonic()
            stop.set()

    out = tmp_path / "run"
    # One trial (the seed, 2 epochs), then the final phase fine-tunes it for 2 epochs.
    summary = run_search("sample", out, _config(max_trials=1, max_epochs=2), events=on_event, stop=stop)
    returned = time.monotonic()
    assert "fine_tune_started" in times and "stop" in times, f"the fine-tune did not run: {summary}"
    print(f"\nstop during the fine-tune -> run_search returned {returned - times['stop']:.2f} s "
          f"({len(epochs_done)} of {times['fine_tune_epochs']} fine-tune epochs done)")
    assert times["fine_tune_epochs"] >= 2 and len(epochs_done) < times["fine_tune_epochs"], \
        "the stop did not end the fine-tune"
    assert summary["status"] == "stopped" and summary["best"]["trial_id"] == "0"
    assert summary["test_accuracy"] is not None and summary["final_epochs"] == len(epochs_done)
    _usable_model(out)
    _returned_within(returned - times["stop"])

