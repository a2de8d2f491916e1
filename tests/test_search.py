"""The search loop and its run folder (engine.search.loop, engine.search.folder).

Three kinds of tests: checks of the session's shared real search (conftest.py: TensorFlow,
the built-in digits at 8x8, four trials) that read its whole run folder; one real search run
to its time budget; and fast tests of the loop's logic (resume, out of memory, stop,
persistence) with a fake trainer that "trains" in a few milliseconds.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import files
from engine.search import folder as runio
from engine.nas.architecture import Architecture, seed_architecture
from engine.errors import SproutError
from engine.search.budget import CostModel, flops
from engine.search.loop import SearchConfig, run_search
from tests.helpers import FakeTrainer

TRIAL_KEYS = {"id", "parent_id", "operations", "description", "summary", "n_params", "status", "error",
              "val_accuracy", "history", "epochs", "seconds", "started_s", "finished_s", "prediction"}
RUN_FILES = ["trials.jsonl", "state.json", "dataset.json", "summary.json", "best_model.keras", "labels.json"]


# ------------------------------------------------------- the shared real search (conftest.py)
@pytest.mark.slow
def test_real_search_writes_every_file(finished_run):
    out = finished_run.out
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    records = runio.read_jsonl(out / "trials.jsonl")
    assert len(records) == finished_run.config["max_trials"]
    assert [r["id"] for r in records] == [str(i) for i in range(len(records))]
    for line in (out / "trials.jsonl").read_text().splitlines():
        record = json.loads(line)  # strict JSON: no NaN
        assert TRIAL_KEYS <= record.keys()
        folder = out / "trials" / record["id"]
        assert (folder / "architecture.json").is_file()
        if record["status"] == "ok":
            assert (folder / "weights.npz").is_file()
            assert 0.0 <= record["val_accuracy"] <= 1.0
            assert len(record["history"]["val_accuracy"]) == record["epochs"] >= 1
            arch = Architecture.load(folder)
            assert arch.id == record["id"] and arch.weights is not None
            assert arch.operations == record["operations"]
    assert records[0]["parent_id"] is None and records[0]["description"] == "seed architecture"
    proposed = [r for r in records[1:] if r["status"] == "ok"]
    assert len(proposed) >= 2, "the checks of proposals below run over at least two children"
    ids = [r["id"] for r in records]
    assert all(r["parent_id"] in ids[:ids.index(r["id"])] and r["operations"] for r in proposed)
    assert all(r["prediction"]["mean"] is not None for r in proposed), "bayesian proposals carry a prediction"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["n_trials"] == len(records)


@pytest.mark.slow
def test_real_search_model_loads_with_plain_keras(finished_run):
    import keras

    out, side = finished_run.out, finished_run.config["image_size"]
    model = keras.models.load_model(out / "best_model.keras")
    assert tuple(model.inputs[0].shape) == (None, side, side, 1)
    labels = json.loads((out / "labels.json").read_text())
    assert labels == [str(i) for i in range(10)]
    probs = model.predict(np.zeros((2, side, side, 1), np.uint8), verbose=0)
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


@pytest.mark.slow
def test_real_search_summary(finished_run):
    out = finished_run.out
    summary = json.loads((out / "summary.json").read_text())
    t = summary["timings"]
    assert set(t) == {"training_s", "evaluation_s", "proposal_s", "building_s", "io_s", "other_s"}
    assert all(v >= 0 for v in t.values())
    assert math.isclose(sum(t.values()), summary["wall_s"], rel_tol=0.02, abs_tol=0.5)
    assert summary["best"]["trial_id"] in {r["id"] for r in runio.read_jsonl(out / "trials.jsonl")}
    final = summary["final"]
    assert (0.0 <= summary["test_accuracy"] <= 1.0
            and final["n"] == len(json.loads((out / "dataset.json").read_text())["split"]["test"]))
    assert len(final["confusion"]) == 10 and set(final["per_class"]) == {str(i) for i in range(10)}
    assert sum(map(sum, final["confusion"])) == final["n"]
    n_wrong = round(final["n"] * (1 - summary["test_accuracy"]))
    assert len(final["misclassified"]) == n_wrong
    state = json.loads((out / "state.json").read_text())
    assert state["phase"] == "done" and state["in_flight"] is None and state["budget_used_s"] > 0
    assert {"max_params", "max_activation_bytes", "max_depth"} <= state["limits"].keys()


@pytest.mark.slow
def test_real_search_split_keeps_test_apart(finished_run):
    out = finished_run.out
    summary = json.loads((out / "summary.json").read_text())
    info = json.loads((out / "dataset.json").read_text())
    split = {k: set(v) for k, v in info["split"].items()}
    assert (not (split["train"] & split["test"]) and not (split["val"] & split["test"])
            and not (split["train"] & split["val"]))
    assert sum(len(v) for v in split.values()) == info["n_images"] == 1797
    assert abs(len(split["test"]) / 1797 - 0.15) < 0.01
    assert {m["index"] for m in summary["final"]["misclassified"]} <= split["test"]
    assert info["class_names"] == [str(i) for i in range(10)] and info["channels"] == 1
    assert info["image_size"] == finished_run.config["image_size"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_resuming_a_finished_run_returns_its_summary_and_changes_nothing(finished_run):
    before = _files(finished_run.out)
    summary = run_search("sample", finished_run.out, SearchConfig(**finished_run.config), resume=True)
    assert summary == json.loads(before["summary.json"])
    assert _files(finished_run.out) == before


@pytest.mark.slow
def test_bench_finetune_retunes_the_best_trial_and_leaves_the_run_alone(finished_run):
    from bench.finetune import report, tune_and_score

    out = finished_run.out
    summary = json.loads((out / "summary.json").read_text())
    before = _files(out)
    result = tune_and_score(out, [1], None)
    (row,) = result["rows"]
    assert result["best_trial"] == summary["best"]["trial_id"] and result["budget_s"] == finished_run.config["budget_s"]
    assert row["epochs"] == 1 and 0.0 <= row["held_out"] <= 1.0 and "folder" not in row
    assert _files(out) == before
    assert "| 1 | " in report([result], [1])


# --------------------------------------------------------------- the one run to its budget
@pytest.mark.slow
def test_a_real_search_keeps_its_time_budget(tmp_path):
    """The only test that runs a search until its budget ends: everything, the final model
    included, fits in the budget (10% over at most), and every kind of event is sent."""
    events: list[dict] = []
    budget = 30
    config = SearchConfig(budget_s=budget, searcher="bayesian", seed=0, image_size=8, max_epochs=2)
    t0 = time.monotonic()
    summary = run_search("sample", tmp_path / "run", config, events=events.append)
    wall = time.monotonic() - t0
    assert wall <= budget * 1.10, f"run_search took {wall:.1f} s for a {budget} s budget"
    assert summary["status"] == "done" and summary["wall_s"] <= budget * 1.10
    assert summary["n_trials"] >= 2, "the budget, not a cap, ended a search of several trials"
    kinds = {e["type"] for e in events}
    assert {"started", "phase", "trial_started", "epoch", "trial_finished", "final", "finished", "log"} <= kinds
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == json.loads(runio.to_json(summary))


# ------------------------------------------------------------------------- fake trainer
@pytest.fixture
def fake_trainer(monkeypatch):
    from engine.training import trainer

    fake = FakeTrainer()
    monkeypatch.setattr(trainer, "train", fake)
    return fake


def _config(**kw) -> SearchConfig:
    base = dict(budget_s=60, searcher="random", seed=1, image_size=8, max_epochs=2, max_trials=4)
    base.update(kw)
    return SearchConfig(**base)


def test_fake_search_trial_ids_parents_and_weights(tmp_path, fake_trainer):
    summary = run_search("sample", tmp_path / "run", _config())
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    assert [r["id"] for r in records] == ["0", "1", "2", "3"]
    assert summary["n_trials"] == 4 and summary["status"] == "done"
    # every proposal was realised from its trained ancestor's saved weights
    for record, arch in zip(records[1:], fake_trainer.calls[1:]):
        assert record["parent_id"] in {"0", "1", "2"} and int(record["parent_id"]) < int(record["id"])
        assert arch.weights is not None and arch.fingerprint() == record["fingerprint"]
    # the fine-tune trained on train + validation (never the test split)
    final_call = fake_trainer.calls[-1]
    assert final_call.fingerprint() == records[int(summary["best"]["trial_id"])]["fingerprint"]


def test_fake_bayesian_search_records_predictions(tmp_path, fake_trainer):
    events: list[dict] = []
    run_search("sample", tmp_path / "run", _config(searcher="bayesian", max_trials=4), events=events.append)
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    assert len(records) == 4 and records[0]["prediction"] is None
    for record in records[1:]:
        p = record["prediction"]
        assert p["ucb"] >= p["mean"] and p["sigma"] >= 0 and p["reason"]
        assert record["description"] and record["operations"] and record["parent_id"] is not None
    started = [e for e in events if e["type"] == "trial_started" and e["trial_id"] == "1"]
    assert started[0]["proposal"]["reason"] == records[1]["prediction"]["reason"]


def test_fake_search_out_of_memory_lowers_the_limit_and_persists_it(tmp_path, monkeypatch):
    from engine.training import trainer

    seed_params = seed_architecture((8, 8, 1), 10).n_params()
    fake = FakeTrainer(oom_over=seed_params)
    monkeypatch.setattr(trainer, "train", fake)
    events: list[dict] = []
    run_search("sample", tmp_path / "run", _config(searcher="random", max_trials=6), events=events.append)
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    oom = [r for r in records if r.get("out_of_memory")]
    assert oom, "a bigger network ran out of memory"
    assert oom[0]["status"] == "failed" and "memory" in oom[0]["error"]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["limits"]["max_params"] <= int(0.7 * oom[0]["n_params"])
    assert any(e["type"] == "limits" for e in events)
    # nothing over the lowered limit was trained after the lesson
    first = int(oom[0]["id"])
    limit = int(0.7 * oom[0]["n_params"])
    assert all(r["n_params"] <= limit for r in records[first + 1:] if r["status"] == "ok")


def test_fake_search_resume_after_a_crash(tmp_path, fake_trainer):
    out = tmp_path / "run"
    run_search("sample", out, _config(max_trials=3))
    before = runio.read_jsonl(out / "trials.jsonl")
    # Make it look like a kill -9 during trial 3: no summary, a half-written trial folder,
    # a torn trials.jsonl line, state.json still in the search phase with trial 3 in flight.
    (out / "summary.json").unlink()
    (out / "best_model.keras").unlink()
    (out / "trials" / "3").mkdir()
    (out / "trials" / "3" / "weights.tmp.npz").write_bytes(b"\x00" * 10)
    with open(out / "trials.jsonl", "a") as fh:
        fh.write('{"id": "3", "status": "o')
    state = json.loads((out / "state.json").read_text())
    state.update(phase="search", in_flight={"trial_id": "3", "parent_id": "0"}, budget_used_s=20.0)
    state["config"]["max_trials"] = 5
    files.atomic_write_json(out / "state.json", state)

    events: list[dict] = []
    summary = run_search("sample", out, _config(max_trials=99), events=events.append, resume=True)
    after = runio.read_jsonl(out / "trials.jsonl")
    assert after[:3] == before, "finished trials are kept as they were"
    assert [r["id"] for r in after] == ["0", "1", "2", "3", "4"]
    assert summary["status"] == "done" and (out / "best_model.keras").exists()
    assert summary["wall_s"] >= 20.0, "the budget used before the crash is counted"
    restored = [e for e in events if e["type"] == "trial_finished" and e.get("restored")]
    assert [e["trial"]["id"] for e in restored] == ["0", "1", "2"]
    # resuming a finished run does nothing and returns its summary
    again = run_search("sample", out, _config(), resume=True)
    assert again == json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_fake_search_stop_saves_the_best_model(tmp_path, monkeypatch):
    from engine.training import trainer

    fake = FakeTrainer(epoch_s=0.3)
    monkeypatch.setattr(trainer, "train", fake)
    stop = threading.Event()

    def on_event(event):
        if event["type"] == "trial_started" and event["trial_id"] == "2":
            stop.set()

    t0 = time.monotonic()
    summary = run_search("sample", tmp_path / "run", _config(max_trials=None, budget_s=120, max_epochs=8),
                         events=on_event, stop=stop)
    assert time.monotonic() - t0 < 30
    assert summary["status"] == "stopped" and summary["best"]["trial_id"] in ("0", "1")
    assert (tmp_path / "run" / "best_model.keras").exists()
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    assert records[-1]["id"] == "2" and records[-1]["status"] == "stopped"
    assert not summary["fine_tuned"]


def test_existing_run_folder_is_not_overwritten(tmp_path, fake_trainer):
    run_search("sample", tmp_path / "run", _config(max_trials=1))
    with pytest.raises(SproutError, match="already holds a search run") as caught:
        run_search("sample", tmp_path / "run", _config(max_trials=1))
    assert "--" not in str(caught.value), "engine errors do not name CLI flags"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SproutError, match="not empty"):
        run_search("sample", tmp_path / "other", _config(max_trials=1))


def test_bad_data_and_bad_config_raise_sprout_error(tmp_path):
    with pytest.raises(SproutError):
        run_search(tmp_path / "missing", tmp_path / "run", _config())
    with pytest.raises(SproutError, match="budget"):
        run_search("sample", tmp_path / "run2", _config(budget_s=-1))
    with pytest.raises(SproutError, match="searcher"):
        run_search("sample", tmp_path / "run3", _config(searcher="genetic"))
    # engine errors name fields, never the CLI's flags (engine.cli translates them)
    with pytest.raises(SproutError, match=r"^max_epochs must be at least 1; received 0$"):
        run_search("sample", tmp_path / "run4", _config(max_epochs=0))
    with pytest.raises(SproutError, match=r"^image_size must be between 8 and 512 pixels; received 600$"):
        run_search("sample", tmp_path / "run5", _config(image_size=600))


# ----------------------------------------------------------------------- persistence
def test_read_jsonl_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "t.jsonl"
    runio.append_jsonl(path, {"id": "0", "x": 1.5})
    runio.append_jsonl(path, {"id": "1", "x": float("nan")})
    with open(path, "a") as fh:
        fh.write('{"id": "2", "x"')
    records = runio.read_jsonl(path)
    assert records == [{"id": "0", "x": 1.5}, {"id": "1", "x": None}]
    assert runio.read_jsonl(tmp_path / "absent.jsonl") == []


def test_atomic_write_leaves_old_or_new(tmp_path):
    path = tmp_path / "state.json"
    files.atomic_write_json(path, {"a": 1})
    files.atomic_write_json(path, {"a": np.float32(2.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 2.5, "b": [0, 1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_cost_model_scales_with_flops():
    small = seed_architecture((28, 28, 1), 10)
    big = seed_architecture((28, 28, 1), 10, filters=(64, 128, 128, 256))
    assert flops(big) > 2 * flops(small)
    cost = CostModel(n_train=1000)
    assert not cost.known
    cost.observe(flops(small), [3.0, 1.0, 1.0], 6.0)  # 1 s after the epochs, 2 s of tracing
    assert cost.known and cost.epoch_s(flops(small)) == pytest.approx(1.0)
    ratio = flops(big) / flops(small)
    assert cost.epoch_s(flops(big)) == pytest.approx(ratio ** CostModel.EXPONENT)
    cost.observe(flops(big), [9.0, 4.0, 4.0], 18.0)  # 1 s after, 5 s of tracing
    assert cost.epoch_s(flops(big)) == pytest.approx(4.0), "a network already measured is estimated exactly"
    assert cost.epoch_s(flops(small)) == pytest.approx(1.0)
    assert cost.epoch_s(flops(small), n_samples=2000) == pytest.approx(2.0)
    assert cost.extra_s() == pytest.approx(4.5)


def test_cost_model_inverts_and_limits_cap_flops():
    from engine.nas.architecture import Limits

    small = seed_architecture((28, 28, 1), 10)
    big = seed_architecture((28, 28, 1), 10, filters=(64, 128, 128, 256))
    cost = CostModel(n_train=1000)
    cost.observe(flops(small), [3.0, 1.0, 1.0], 6.0)
    for seconds in (0.5, 1.0, 7.0):
        assert cost.epoch_s(cost.flops_for(seconds)) == pytest.approx(seconds)
    assert cost.flops_for(0.0) == 0.0 and cost.flops_for(-1.0) == 0.0
    capped = Limits(max_flops=int(flops(small)) + 1)
    assert capped.allows(small) and not capped.allows(big)
    assert Limits.from_dict(capped.to_dict()) == capped
    assert Limits.from_dict({"max_params": 10**6}).max_flops == Limits().max_flops  # states written before the cap


def test_a_short_budget_shortens_the_recipes_epochs_so_several_networks_train(tmp_path, monkeypatch):
    """engine.search.plan in a search: the seed keeps to its share, the grown networks train
    fewer epochs than the recipe's (an epoch here sleeps 0.1 s), and the run ends in budget."""
    from engine.training import trainer

    fake = FakeTrainer(epoch_s=0.1)
    monkeypatch.setattr(trainer, "train", fake)
    events: list[dict] = []
    budget = 8
    t0 = time.monotonic()
    summary = run_search("sample", tmp_path / "run", SearchConfig(budget_s=budget, searcher="random", seed=0,
                                                                  image_size=8), events=events.append)
    assert time.monotonic() - t0 <= budget * 1.10 and summary["status"] == "done"
    recipe = json.loads((tmp_path / "run" / "state.json").read_text())["recipe"]
    said = [e["message"] for e in events if e["type"] == "log"]
    planned = [m for m in said if m.startswith("budget: each grown network trains up to")]
    assert len(planned) == 1, said
    most = int(planned[0].split("up to ")[1].split(" ")[0])
    assert 1 <= most < recipe["child_epochs"]
    records = runio.read_jsonl(tmp_path / "run" / "trials.jsonl")
    assert len(records) >= 5, [len(r["history"]["loss"]) for r in records]
    assert all(len(r["history"]["loss"]) <= most for r in records[1:])
    assert fake.calls and len(records[0]["history"]["loss"]) <= recipe["seed_epochs"]
