"""Figures from a handcrafted snapshot (docs/contracts.md) have the traces, nodes and edges
they should; network_dot draws every layer and the skip connections."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.figures.network import network_dot, skip_edges
from engine.figures.results import class_counts_figure, confusion_figure, per_class_figure, top_predictions_figure
from engine.figures.search import (classical_mds, curves_figure, distance_heatmap, mds_figure, prediction_figure,
                                   progress_figure)
from engine.figures.style import AMBER, accuracy_axis, fmt_duration, ok_trials, trial_by_id
from engine.figures.tree import selected_trial, short_label, tree_figure, tree_graph, tree_positions
from engine.nas.architecture import Architecture, Layer, seed_architecture
from engine.nas.operations import describe_all

CLASSES = ["cat", "dog", "fox"]
WIDER_5 = {"op": "wider", "layer": 5, "kind": "conv", "add": 64, "sources": [], "noise_seed": 0}
WIDER_1 = {"op": "wider", "layer": 1, "kind": "conv", "add": 16, "sources": [], "noise_seed": 0}
SKIP_7_11 = {"op": "add_skip", "start": 7, "end": 11}
SKIP_3_7 = {"op": "add_skip", "start": 3, "end": 7}
DEEPER_3 = {"op": "deeper", "after": 3, "after_kind": "relu", "part": "conv", "kernel": 3, "relu": True}
DEEPER_11 = {**DEEPER_3, "after": 11}


def _widened(arch: Architecture, layer_id: int, filters: int) -> Architecture:
    out = arch.copy(with_weights=False)
    out.layer(layer_id).config["filters"] = filters
    return out


def _with_skip(arch: Architecture, start: int, end: int, kind: str = "add") -> Architecture:
    """A skip from main layer ``start`` to ``end`` (one pooling between them) as the morphism builds it."""
    out = arch.copy(with_weights=False)
    nid = out.next_layer_id()
    width = out.shapes()[end][-1]
    branch = [Layer(nid, "maxpool", [start], {}, "skip"),
              Layer(nid + 1, "conv", [nid], {"filters": width, "kernel": 1, "stride": 1}, "skip"),
              Layer(nid + 2, kind, [end, nid + 1], {"start": start, "end": end}, "skip")]
    consumer = next(layer for layer in out.main_chain() if layer.inputs == [end])
    consumer.inputs = [nid + 2]
    at = [layer.id for layer in out.layers].index(end) + 1
    out.layers[at:at] = branch
    return out


def _trial(tid, parent, arch, acc, started, finished, ops=(), prediction=None, status="ok", epochs=3):
    description = describe_all(ops)
    val = None if acc is None else [round(acc - 0.06, 3), round(acc - 0.02, 3), acc][-epochs:]
    return {
        "id": tid, "parent_id": parent, "operations": list(ops),
        "description": description, "summary": arch.summary(), "n_params": arch.n_params(),
        "status": status, "error": None if status == "ok" else "loss became NaN", "val_accuracy": acc,
        "history": {} if acc is None else {"loss": [1.0, 0.8, 0.7], "accuracy": [0.5, 0.6, 0.7],
                                           "val_loss": [1.1, 0.9, 0.8], "val_accuracy": val},
        "epochs": 0 if acc is None else epochs, "seconds": finished - started, "started_s": started,
        "finished_s": finished, "prediction": prediction, "architecture": arch.to_dict(),
    }


def make_snapshot() -> dict:
    """A run part-way through: two seeds, four children (one with a skip, one failed), one in flight."""
    seed = seed_architecture((28, 28, 1), len(CLASSES))
    small = seed_architecture((28, 28, 1), len(CLASSES), filters=(16, 32))
    wide = _widened(seed, 5, 128)
    skip = _with_skip(wide, 7, 11)
    deep = _widened(skip, 1, 48)

    def pred(m, s):
        return {"mean": m, "sigma": s, "ucb": m + 2.576 * s, "reason": "high predicted accuracy"}

    trials = [
        _trial("0", None, seed, 0.71, 0, 20),
        _trial("1", None, small, 0.64, 20, 35),
        _trial("2", "0", wide, 0.78, 35, 60, [WIDER_5], pred(0.74, 0.05)),
        _trial("3", "2", skip, 0.83, 60, 90, [SKIP_7_11], pred(0.80, 0.06)),
        _trial("4", "1", small, None, 90, 95, [DEEPER_3], pred(0.70, 0.08), status="failed"),
        _trial("5", "3", deep, 0.81, 95, 130, [WIDER_1, SKIP_3_7], pred(0.85, 0.04)),
    ]
    ok = [t for t in trials if t["status"] == "ok"]
    rng = np.random.default_rng(0)
    m = rng.uniform(0.5, 4, (len(ok), len(ok)))
    m = np.round((m + m.T) / 2, 2)
    np.fill_diagonal(m, 0)
    return {
        "run_id": "20250101-120000-abcd", "status": "running", "error": None, "searcher": "bayesian",
        "device": "CPU (2 cores)", "budget_s": 300, "elapsed_s": 140, "class_names": CLASSES,
        "image_size": 28, "channels": 1, "trials": trials,
        "distances": {"ids": [t["id"] for t in ok], "matrix": m.tolist()},
        "in_flight": {"trial_id": "6", "epoch": 1, "max_epochs": 4, "batch": 3, "n_batches": 10, "parent_id": "3",
                      "proposal": {"ancestor_id": "3", "operations": [DEEPER_11],
                                   "mean": 0.86, "sigma": 0.05, "ucb": 0.989,
                                   "reason": "It adds a layer to the best network; predicted 86% ± 5%."}},
        "phase": "search", "best": {"trial_id": "3", "val_accuracy": 0.83},
        "final": {"test_accuracy": 0.8,
                  "per_class": {c: {"precision": 0.8, "recall": 0.75, "accuracy": 0.75, "n": 20} for c in CLASSES},
                  "confusion": [[15, 3, 2], [2, 16, 2], [1, 2, 17]],
                  "misclassified": [{"index": 4, "path": "cat/4.png", "true": "cat", "pred": "dog"}]},
        "files": {"keras": None, "labels": None}, "log": ["seed 0 trained"],
    }


@pytest.fixture
def snap():
    return make_snapshot()


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_tree_has_a_node_per_trial_and_an_edge_per_parent(snap):
    fig = tree_figure(snap, selected="2")
    trained, failed, flying = _trace(fig, "trained"), _trace(fig, "failed"), _trace(fig, "in flight")
    assert [c[0] for c in trained.customdata] == ["0", "1", "2", "3", "5"]
    assert [c[0] for c in failed.customdata] == ["4"]
    assert [c[0] for c in flying.customdata] == ["6"]
    assert list(trained.marker.color) == [0.71, 0.64, 0.78, 0.83, 0.81]
    # the best is a star, the selected one has a thick outline
    assert trained.marker.symbol[3] == "star" and trained.marker.symbol[0] == "circle"
    assert trained.marker.line.width[2] == 4
    # 4 real parent->child edges (seeds hang from a hidden root) + the dotted edge to the one in flight
    solid = _trace(fig, "morphism")
    assert len(solid.x) == 3 * 4
    assert len(_trace(fig, "proposed").x) == 3
    labels = list(_trace(fig, "edges").text)
    assert sorted(labels) == ["deeper", "deeper", "skip", "wider", "wider + skip"]
    hovers = " ".join(_trace(fig, "edges").hovertext)
    assert "add skip (sum) from layer 7 to layer 11" in hovers
    assert "deepen after relu 11 with a 3x3 conv + ReLU" in hovers   # the proposal in flight, in words


def test_tree_words_come_from_the_operations_not_the_description(snap):
    for t in snap["trials"]:
        t["description"] = "words from elsewhere"
    fig = tree_figure(snap)
    assert sorted(_trace(fig, "edges").text) == ["deeper", "deeper", "skip", "wider", "wider + skip"]
    hovers = " ".join(_trace(fig, "edges").hovertext) + " ".join(_trace(fig, "trained").hovertext)
    assert "widen conv 5 by 64 filters" in hovers and "words from elsewhere" not in hovers


def test_tree_layers_follow_depth(snap):
    g = tree_graph(snap)
    pos = tree_positions(g)
    assert pos["0"][1] == pos["1"][1] == -1        # seeds on the first row
    assert pos["2"][1] == -2 and pos["3"][1] == -3 and pos["5"][1] == -4 and pos["6"][1] == -4
    assert set(g.successors("3")) == {"5", "6"}


def test_tree_empty_and_selection():
    fig = tree_figure({"trials": []})
    assert not fig.data and "grows here" in fig.layout.annotations[0].text
    event = {"selection": {"points": [{"customdata": ["3"], "x": 0, "y": 0}]}}
    assert selected_trial(event) == "3"
    assert selected_trial({"selection": {"points": []}}) is None


def test_distance_heatmap_and_mds(snap):
    heat = distance_heatmap(snap)
    assert heat.data[0].type == "heatmap"
    assert list(heat.data[0].x) == ["#0", "#1", "#2", "#3", "#5"]
    mds = mds_figure(snap, selected="3")
    pts = mds.data[0]
    assert [c[0] for c in pts.customdata] == ["0", "1", "2", "3", "5"]
    assert list(pts.marker.color) == [0.71, 0.64, 0.78, 0.83, 0.81]


def test_classical_mds_recovers_euclidean_distances():
    pts = np.array([[0, 0], [3, 0], [0, 4], [3, 4], [1, 1]], float)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    xy = classical_mds(d)
    d2 = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.allclose(d, d2, atol=1e-8)
    assert classical_mds([[0.0]]).shape == (1, 2)
    assert classical_mds([[0, 2], [2, 0]]).tolist() in ([[1, 0], [-1, 0]], [[-1, 0], [1, 0]])


def test_curves_progress_and_predictions(snap):
    curves = curves_figure(snap, highlight="3")
    names = [t.name for t in curves.data]
    assert names == ["#0", "#1", "#2", "#3", "#3 train", "#5"]   # the failed trial has no curve
    assert list(_trace(curves, "#3").y) == [0.77, 0.81, 0.83]
    prog = progress_figure(snap)
    assert list(_trace(prog, "best so far").y) == [0.71, 0.71, 0.78, 0.83, 0.83, 0.83]
    assert [c[0] for c in _trace(prog, "each network").customdata] == ["0", "1", "2", "3", "5"]
    pred = prediction_figure(snap)
    pts = _trace(pred, "networks")
    assert list(pts.x) == [0.74, 0.80, 0.85] and list(pts.y) == [0.78, 0.83, 0.81]
    assert list(pts.error_x.array) == [0.05, 0.06, 0.04]
    lo, hi = prog.layout.yaxis.range
    assert lo <= 0.71 and hi >= 0.83 and hi - lo < 0.25  # the accuracies fill the chart
    lo, hi = curves.layout.yaxis.range
    assert 0 <= lo <= min(min(t.y) for t in curves.data) and max(max(t.y) for t in curves.data) <= hi <= 1.02


def test_one_network_does_not_stretch_the_accuracy_axis_past_zero_and_one():
    one = make_snapshot()
    one["trials"] = one["trials"][:1]
    for fig in (progress_figure(one), curves_figure(one)):
        lo, hi = fig.layout.yaxis.range
        assert 0.0 <= lo < 0.71 < hi <= 1.02 and hi - lo <= 0.2  # plotly alone spread it over -50% to 150%
    assert accuracy_axis([1.0, 1.0]) == pytest.approx([0.9425, 1.0075])


def test_results_figures(snap):
    conf = confusion_figure(snap["final"]["confusion"], CLASSES)
    assert conf.data[0].type == "heatmap" and list(conf.data[0].x) == CLASSES
    assert conf.data[0].text.tolist()[0] == [15, 3, 2]
    per = per_class_figure(snap["final"]["per_class"])
    assert [t.name for t in per.data] == ["precision", "recall"]
    counts = class_counts_figure({"cat": 40, "dog": 5})
    assert list(counts.data[0].y) == [40, 5] and counts.data[0].marker.color[1] == AMBER
    top = top_predictions_figure([0.1, 0.7, 0.2], CLASSES, top=2)
    assert list(top.data[0].y) == ["fox", "dog"] and list(top.data[0].x) == [0.2, 0.7]


def test_figures_tolerate_an_empty_run():
    empty = {"run_id": "x", "status": "starting", "trials": [], "distances": {"ids": [], "matrix": []},
             "in_flight": None, "best": None, "final": None}
    for fig in (tree_figure(empty), distance_heatmap(empty), mds_figure(empty),
                curves_figure(empty), progress_figure(empty), prediction_figure(empty)):
        assert fig.layout.annotations, "an empty chart says what will appear"


def test_tree_with_only_the_first_trial_in_flight():
    snap = {"trials": [], "in_flight": {"trial_id": "0", "parent_id": None, "epoch": 0, "max_epochs": 3,
                                        "proposal": None}}
    fig = tree_figure(snap)
    assert [c[0] for c in _trace(fig, "in flight").customdata] == ["0"]


def test_network_dot_draws_every_layer_and_the_skips(snap):
    arch = snap["trials"][3]["architecture"]          # trial 3 has an add skip 7 -> 11
    dot = network_dot(arch)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for layer in arch["layers"]:
        assert f"  n{layer['id']} [label=" in dot
    assert "Conv 3×3 · 32\\n28×28×32" in dot
    assert "Conv 1×1 · 64" in dot and "Add" in dot and "skip 7→11" in dot
    assert "Image\\n28×28×1" in dot and "Softmax" in dot
    # the branch: main 7 -> pool -> 1x1 conv -> add, and main 11 -> add; add -> next main layer
    skips = set(skip_edges(dot))
    add_id = next(layer["id"] for layer in arch["layers"] if layer["kind"] == "add")
    pool_id = add_id - 2
    assert {(7, pool_id), (pool_id, add_id - 1), (add_id - 1, add_id), (11, add_id), (add_id, 12)} <= skips
    # main-chain edges stay solid
    assert "  n1 -> n2;" in dot and (1, 2) not in skips
    n_edges = sum(len(layer["inputs"]) for layer in arch["layers"])
    assert dot.count("->") == n_edges


def test_network_dot_concat_and_plain():
    seed = seed_architecture((32, 32, 3), 4)
    plain = network_dot(seed.to_dict(), rankdir="LR", title="Best network")
    assert "rankdir=LR" in plain and 'label="Best network"' in plain and not skip_edges(plain)
    cat = _with_skip(seed, 3, 7, kind="concat")
    dot = network_dot(cat.to_dict())
    assert "Concatenate" in dot and "skip 3→7" in dot and len(skip_edges(dot)) == 5


def test_network_dot_escapes_and_survives_bad_shapes():
    bad = {"format": "sprout-architecture/1", "input_shape": [8, 8, 3], "n_classes": 2,
           "layers": [{"id": 1, "kind": "dense", "inputs": [0], "config": {"units": 2}, "role": "main"},
                      {"id": 2, "kind": "weird\"kind", "inputs": [1], "config": {}, "role": "main"}]}
    dot = network_dot(bad)
    assert 'weird\\"kind' in dot and "n1 -> n2" in dot


def test_helpers():
    assert short_label([WIDER_5, WIDER_1, SKIP_3_7]) == "wider + skip"
    assert short_label([{"op": "deeper"}, {"op": "concat_skip"}, {"op": "deeper"}]) == "deeper + skip"
    assert short_label([DEEPER_3, {"op": "prune_layer"}, WIDER_1]) == "deeper + prune layer…"
    assert short_label([]) == ""
    assert fmt_duration(75) == "1 min 15 s" and fmt_duration(5) == "5 s"
    assert fmt_duration(3700) == "1 h 01 min"
    snap = make_snapshot()
    assert trial_by_id(snap, 3)["id"] == "3"
    assert len(ok_trials(snap)) == 5


def test_the_snapshot_is_json_and_no_figure_modifies_it():
    snap = make_snapshot()
    text = json.dumps(snap)
    assert json.loads(text) == snap  # plain JSON data, as a run folder or the registry hands it over
    figures = [tree_figure(snap, selected="2"), distance_heatmap(snap), mds_figure(snap, selected="3"),
               curves_figure(snap, highlight="3"), progress_figure(snap), prediction_figure(snap),
               confusion_figure(snap["final"]["confusion"], snap["class_names"]),
               per_class_figure(snap["final"]["per_class"])]
    assert all(fig.data for fig in figures)
    tree_graph(snap)
    network_dot(snap["trials"][3]["architecture"])
    assert json.dumps(snap) == text
