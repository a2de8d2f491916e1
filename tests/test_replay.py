"""Teaching views' engine parts, without TensorFlow: a run as it was at any moment
(engine.search.replay), the edits between two networks (engine.nas.edits) against the edit
distance, and the figures of the model's predictions and of two marked networks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.figures.teaching import edit_marks, gp_learning_figure, marked_pair, prediction_rows, running_mean
from engine.figures.tree import tree_figure
from engine.nas import edits as E
from engine.nas.architecture import seed_architecture
from engine.nas.distance import edit_distance
from engine.nas.morphism import MORPHISMS
from engine.search.replay import duration, epochs_done, is_replayable, moments, snapshot_at, trials_so_far
from tests.helpers import random_architectures
from tests.test_figures import make_snapshot


def finished_snapshot() -> dict:
    """test_figures' run, finished: no trial in flight, the final result in, 150 s used."""
    snap = make_snapshot()
    snap.update(status="done", in_flight=None, elapsed_s=150.0, phase=None)
    for t in snap["trials"]:
        t["epoch_seconds"] = [(t["finished_s"] - t["started_s"]) / 3] * 3 if t["status"] == "ok" else []
    return snap


# ----- snapshot_at ---------------------------------------------------------------------------
def test_moments_are_every_start_and_finish_and_the_end():
    snap = finished_snapshot()
    assert duration(snap) == 150.0
    assert moments(snap) == [0.0, 20.0, 35.0, 60.0, 90.0, 95.0, 130.0, 150.0]


@pytest.mark.parametrize("t, done, flying", [
    (0.0, [], "0"), (19.9, [], "0"), (20.0, ["0"], "1"), (61.0, ["0", "1", "2"], "3"),
    (94.0, ["0", "1", "2", "3"], "4"), (100.0, ["0", "1", "2", "3", "4"], "5"),
])
def test_snapshot_at_holds_the_trials_finished_by_then_and_the_one_in_flight(t, done, flying):
    snap = finished_snapshot()
    past = snapshot_at(snap, t)
    assert [tr["id"] for tr in past["trials"]] == done
    assert (past["in_flight"] or {}).get("trial_id") == flying
    assert past["status"] == "running" and past["final"] is None and past["elapsed_s"] == t
    ok = [tr["id"] for tr in past["trials"] if tr["status"] == "ok"]
    assert past["distances"]["ids"] == ok
    full = dict(zip(snap["distances"]["ids"], range(len(snap["distances"]["ids"]))))
    assert past["distances"]["matrix"] == [[snap["distances"]["matrix"][full[r]][full[c]] for c in ok] for r in ok]
    accs = {tr["id"]: tr["val_accuracy"] for tr in past["trials"] if tr["status"] == "ok"}
    assert (past["best"] or {}).get("trial_id") == (max(accs, key=accs.get) if accs else None)
    assert past["replay"] == {"t": t, "end": 150.0}
    assert len(snap["trials"]) == 6  # the finished snapshot is left as it was


def test_the_trial_in_flight_has_its_epochs_so_far_and_its_proposal():
    snap = finished_snapshot()
    flight = snapshot_at(snap, 60.0 + 21.0)["in_flight"]  # trial 3 trains 60-90 s, 10 s per epoch
    assert flight["trial_id"] == "3" and flight["parent_id"] == "2" and flight["epoch"] == 2
    assert flight["history"]["val_accuracy"] == snap["trials"][3]["history"]["val_accuracy"][:2]
    assert flight["proposal"]["mean"] == 0.80 and flight["proposal"]["reason"] == "high predicted accuracy"
    assert flight["proposal"]["operations"] == snap["trials"][3]["operations"]
    assert snapshot_at(snap, 0.0)["in_flight"]["proposal"] is None  # a seed network: nothing predicted
    past = snapshot_at(snap, 81.0)
    drawn = trials_so_far(past)
    assert [t["id"] for t in drawn] == ["0", "1", "2", "3"] and drawn[-1]["status"] == "training"
    assert trials_so_far(snapshot_at(snap, 60.5)) == snapshot_at(snap, 60.5)["trials"]  # no epoch ended yet


def test_after_the_last_trial_the_final_phase_and_at_the_end_the_run_as_it_finished():
    snap = finished_snapshot()
    final = snapshot_at(snap, 140.0)
    assert final["phase"] == "final" and final["in_flight"]["trial_id"] == "final" and final["final"] is None
    end = snapshot_at(snap, 1e9)
    assert end["status"] == "done" and end["final"] == snap["final"] and len(end["trials"]) == 6
    assert snapshot_at(snap, -5)["elapsed_s"] == 0.0


def test_the_tree_grows_with_time():
    snap = finished_snapshot()
    counts = [len(next(t for t in tree_figure(snapshot_at(snap, t)).data if t.name == "trained").customdata)
              for t in (25.0, 65.0, 140.0)]
    assert counts == [1, 3, 5]


def test_epochs_done_reads_epoch_times_or_shares_the_training_time():
    assert epochs_done({"epoch_seconds": [3.0, 1.0, 1.0]}, 3.5) == 1
    assert epochs_done({"epoch_seconds": [3.0, 1.0, 1.0]}, 5.0) == 3
    assert epochs_done({"epochs": 4, "seconds": 8.0}, 5.0) == 2
    assert epochs_done({"epochs": 4, "seconds": 8.0}, -1.0) == 0


def test_only_runs_that_are_over_and_trained_a_network_are_replayable():
    snap = finished_snapshot()
    assert is_replayable(snap)
    assert not is_replayable({**snap, "status": "running"})
    assert not is_replayable({**snap, "trials": [t for t in snap["trials"] if t["status"] != "ok"]})
    assert not is_replayable(None)


# ----- edits -----------------------------------------------------------------------------------
def test_edits_add_up_to_the_edit_distance():
    archs = random_architectures(10, seed=3, max_steps=6)
    for a, b in zip(archs, archs[1:] + archs[:1]):
        found = E.edits(a, b)
        assert E.total_cost(found) == pytest.approx(edit_distance(a, b), abs=1e-9)
        assert E.total_cost(E.edits(b, a)) == pytest.approx(edit_distance(b, a), abs=1e-9)
        assert all(e.cost > 0 for e in found)
    assert E.edits(archs[0], archs[0]) == []


def _grown(kind: str, arch=None, seed: int = 0):
    """``arch`` (the seed CNN by default) and its child by one ``kind`` morphism, and the op it recorded."""
    arch = arch or seed_architecture((16, 16, 1), 10)
    child = MORPHISMS[kind](arch, np.random.default_rng(seed))
    assert child is not None, kind
    return arch, child, child.operations[-1]


def test_a_widening_is_one_change_of_that_layer():
    seed, wide, op = _grown("wider")
    (edit,) = E.edits(seed, wide)
    layer = seed.layer(op["layer"])
    assert (edit.kind, edit.a, edit.b) == (E.CHANGE, layer.id, layer.id)
    if op["kind"] == "conv":
        old = layer.config["filters"]
        assert edit.cost == pytest.approx(op["add"] / (old + op["add"]) / 3)  # kernel and stride are the same
        assert f"{old} filters to conv" in edit.text and f"{old + op['add']} filters" in edit.text
    else:
        old = layer.config["units"]
        assert edit.cost == pytest.approx(op["add"] / (old + op["add"]))


def test_deepening_adds_exactly_the_new_layers_and_a_skip_is_one_added_skip():
    seed, deep, op = _grown("deeper")
    found = E.edits(seed, deep)
    assert {e.kind for e in found} == {E.ADD}
    # the layers added are the new ones (or, where a new block equals the one after it, that one)
    words = sorted(E.layer_words(deep.layer(e.b)) for e in found)
    assert words == sorted(E.layer_words(deep.layer(i)) for i in op["new_ids"])
    _, skipped, op = _grown("add_skip", deep)
    (edit,) = E.edits(deep, skipped)
    merge = next(layer for layer in skipped.layers if layer.kind == "add")
    assert (edit.kind, edit.a, edit.b, edit.cost) == (E.ADD_SKIP, None, merge.id, 1.0)
    index = {layer.id: i for i, layer in enumerate(skipped.main_chain())}
    assert f"skip (sum) from layer {index[op['start']] + 1} to layer {index[op['end']] + 1}" in edit.text
    assert [(e.kind, e.a) for e in E.edits(skipped, deep)] == [(E.REMOVE_SKIP, merge.id)]


def test_marks_colour_each_side_of_the_edits():
    seed, deep, _ = _grown("deeper")
    found = E.edits(seed, deep)
    marks_a, marks_b = edit_marks(found)
    assert marks_a == {} and set(marks_b) == {e.b for e in found}
    dot_a, dot_b = marked_pair(seed.to_dict(), deep.to_dict(), found)
    assert "penwidth=3.5" not in dot_a
    for lid in marks_b:
        line = next(line for line in dot_b.splitlines() if line.strip().startswith(f"n{lid} ["))
        assert "penwidth=3.5" in line


# ----- the model learns ----------------------------------------------------------------------
def test_prediction_rows_and_the_ucb_parts_in_the_hover():
    snap = finished_snapshot()
    snap["trials"][2]["prediction"]["beta"] = 2.576  # recorded; the others' beta is worked out
    rows = prediction_rows(snap)
    assert [r["id"] for r in rows] == ["2", "3", "5"]  # the seeds had no prediction, #4 failed
    for r in rows:
        assert r["beta"] == pytest.approx(2.576)
        assert r["error"] == pytest.approx(abs(r["real"] - r["mean"]))
    fig = gp_learning_figure(snap)
    pred = next(t for t in fig.data if t.name == "predicted (± 2σ)")
    assert list(pred.error_y.array) == pytest.approx([2 * r["sigma"] for r in rows])
    assert "UCB score 0.869 = mean 0.740 + β·σ 0.129" in pred.hovertext[0]
    avg = next(t for t in fig.data if t.name == "average error so far")
    assert list(avg.y) == pytest.approx(running_mean([r["error"] for r in rows]))
    assert running_mean([1.0, 0.0, 0.5]) == [1.0, 0.5, 0.5]
    assert not np.isnan(list(avg.y)).any()
