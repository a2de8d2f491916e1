"""Issue 14's search-quality levers: each one switchable, its default the search as before."""

from __future__ import annotations


import numpy as np
import pytest

from engine.nas import distance as D
from engine.nas.acquisition import gain_per_cost, optimize_acquisition, relative_cost
from engine.nas.architecture import init_weights, seed_architecture
from engine.nas.gp import ArchitectureGP, GaussianProcess
from engine.nas.levers import TRUNCATED_STD, WARMUP_STEPS, Levers, parse
from engine.nas.lineage import LineageModel, cumulative_epochs, gp_data, truncated_share
from engine.nas.morphism import apply, concat_skip, deeper, wider
from engine.nas.searchers import make_searcher
from engine.nas.surgery import Net, apply_op
from bench.simulate import Trial
from engine.training.scoring import kept_epoch, kept_score
from tests.helpers import random_architectures, synthetic_accuracy




def small_seed():
    arch = seed_architecture((16, 16, 1), 4, filters=(8, 16, 16))
    arch.id = "0"
    return arch


# ----- options ------------------------------------------------------------------------
def test_levers_default_to_the_measured_choices_and_reject_unknown_names_and_values():
    # the search before issue 14 but for the levers bench/results/levers2.md decided on
    assert Levers().changed() == {}
    defaults = (Levers().cost, Levers().wider, Levers().spend, Levers().warmup)
    assert defaults == ("gain_per_time", "split", "all", "children")
    assert Levers().searcher_params("bayesian") == {
        "distance": "all", "truncated": "same", "lineage": "none", "expand": "attempts", "cost": "gain_per_time",
        "max_steps": 2, "wider": "split"}
    assert parse("distance=weighted, score=kept") == {"distance": "weighted", "score": "kept"}
    levers = Levers.from_dict({"distance": "weighted", "score": "kept", "wider": "zero", "cost": "ucb"})
    assert levers.changed() == {"distance": "weighted", "score": "kept", "wider": "zero", "cost": "ucb"}
    assert {k: v for k, v in levers.searcher_params("bayesian").items() if v != Levers().searcher_params(
        "bayesian")[k]} == {"distance": "weighted", "wider": "zero", "cost": "ucb"}
    assert levers.searcher_params("bfs") == {"wider": "zero"}  # the GP's levers are the Bayesian searcher's
    with pytest.raises(ValueError, match="unknown search option 'colour'"):
        Levers.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match="score should be one of last, kept; received 'best'"):
        parse("score=best")
    with pytest.raises(ValueError, match="key=value"):
        parse("score")


def test_search_config_and_the_command_line_carry_the_levers():
    from engine.cli import build_parser
    from engine.errors import SproutError
    from engine.search.config import SearchConfig

    args = build_parser().parse_args(["search", "sample", "--out", "x", "--budget", "20",
                                      "--search-option", "score=kept", "--search-option", "lineage=gain"])
    merged = {k: v for d in args.search_option for k, v in d.items()}
    assert merged == {"score": "kept", "lineage": "gain"}
    config = SearchConfig.from_dict(SearchConfig(budget_s=20, levers=merged).to_dict())
    assert config.levers == merged
    with pytest.raises(SproutError, match="search option truncated"):
        SearchConfig(budget_s=20, levers={"truncated": "sometimes"}).check()


# ----- lever 2: a change the distance cannot see is never made ------------------------
def test_widening_a_concat_skips_projection_is_invisible_and_wider_never_does_it():
    parent = concat_skip(small_seed(), np.random.default_rng(0))
    parent.id = "1"
    projection = next(layer for layer in parent.layers if layer.kind == "conv" and layer.role == "skip")
    width = Net(parent).width(projection.id)
    hidden = apply_op(parent, {"op": "wider", "layer": projection.id, "kind": "conv", "add": width,
                               "sources": list(range(width)), "noise_seed": 0})
    assert D.distance_key(hidden) == D.distance_key(parent)  # the problem: distance 0, a wasted attempt
    keys = set()
    for seed in range(60):
        child = wider(parent, np.random.default_rng(seed))
        assert child is not None and child.operations[-1]["layer"] != projection.id
        assert D.distance_key(child) != D.distance_key(parent)
        keys.add(child.operations[-1]["layer"])
    assert len(keys) >= 3  # the main chain's layers are still all candidates


# ----- lever 1: only weight-carrying layers count --------------------------------------
def test_weighted_distance_counts_a_deeper_step_as_one_layer_and_keeps_the_key():
    parent = small_seed()
    child = deeper(parent, np.random.default_rng(1))
    added = len(child.main_chain()) - len(parent.main_chain())
    assert added >= 2  # conv + BN (+ ReLU)
    e_p, e_c = D.encode(parent), D.encode(child)
    assert D.encoded_distances([e_p], [e_c])[0, 0] == pytest.approx(added)
    assert D.encoded_distances([e_p], [e_c], layers="weighted")[0, 0] == pytest.approx(1.0)
    assert e_c.view("weighted").key == e_c.key
    cache = D.DistanceCache(layers="weighted")
    cache.add(parent)
    assert cache.distances_to([child])[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="layers should be one of all, weighted"):
        D.DistanceCache(layers="some")


def test_weighted_view_renumbers_skips_by_weight_carrying_layers():
    arch = concat_skip(deeper(small_seed(), np.random.default_rng(2)), np.random.default_rng(3))
    enc = D.encode(arch)
    kinds = [layer.kind for layer in arch.main_chain()]
    (start, span, _), = enc.skips
    (w_start, w_span, _), = enc.view("weighted").skips
    carries = [k in D.WEIGHTED_KINDS for k in kinds]
    assert w_start == sum(carries[: start + 1])
    assert w_span == sum(carries[start + 1: start + span + 1])
    assert len(enc.view("weighted")) == sum(carries)


# ----- lever 3: the score of the kept weights --------------------------------------------
def test_kept_score_is_the_accuracy_of_the_epoch_whose_weights_are_kept():
    history = {"val_loss": [0.9, 0.5, 0.6, 0.5], "val_accuracy": [0.6, 0.8, 0.85, 0.83]}
    assert kept_epoch(history, finished=True) == 1  # the first lowest loss, as Keras restores it
    assert kept_score(history, finished=True) == 0.8
    assert kept_score(history, finished=False) == 0.83  # stopped: the last epoch's weights stay
    assert kept_score({"val_loss": [], "val_accuracy": []}, finished=True) is None


# ----- lever 5: truncated trials ---------------------------------------------------------
def test_extra_noise_makes_the_gp_trust_a_point_less():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0.80, 0.82, 0.70, 0.84])  # the third looks like a trial cut short
    plain = GaussianProcess(optimize=False, length_scale=1.5, noise=1e-4).fit(x, y)
    noisy = GaussianProcess(optimize=False, length_scale=1.5, noise=1e-4).fit(x, y, noise=[0, 0, 0.05 ** 2, 0])
    at = np.array([[2.0]])
    assert plain.predict(at)[0][0] == pytest.approx(0.70, abs=0.01)
    assert noisy.predict(at)[0][0] > plain.predict(at)[0][0] + 0.03
    with pytest.raises(ValueError, match="noise variance"):
        GaussianProcess().fit(x, y, noise=[0, 0, -1, 0])


def test_gp_data_gives_truncated_trials_noise_or_leaves_them_out():
    seed, kid = small_seed(), deeper(small_seed(), np.random.default_rng(0))
    kid.id = "1"
    trials = [Trial("0", seed, 0.8, {"epochs": 4, "max_epochs": 4}),
              Trial("1", kid, 0.7, {"parent_id": "0", "epochs": 1, "max_epochs": 4, "truncated": True})]
    assert truncated_share(trials[1]) == pytest.approx(0.75)
    assert gp_data(trials).noise is None
    noise = gp_data(trials, truncated="noise").noise
    assert noise[0] == 0 and noise[1] == pytest.approx((TRUNCATED_STD * 0.75) ** 2)
    assert [t.id for t in gp_data(trials, truncated="exclude").trials] == ["0"]


# ----- lever 6: lineage --------------------------------------------------------------------
def lineage_trials():
    archs = [small_seed()]
    rng = np.random.default_rng(0)
    for i in (1, 2):
        child = deeper(archs[-1], rng)
        child.id = str(i)
        archs.append(child)
    return [Trial("0", archs[0], 0.80, {"epochs": 6}),
            Trial("1", archs[1], 0.84, {"parent_id": "0", "epochs": 3}),
            Trial("2", archs[2], 0.85, {"parent_id": "1", "epochs": 2})]


def test_cumulative_epochs_and_gains_follow_the_parents():
    trials = lineage_trials()
    assert cumulative_epochs(trials) == {"0": 6, "1": 9, "2": 11}
    gain = gp_data(trials, lineage="gain")
    assert gain.targets == pytest.approx([0.0, 0.04, 0.01])
    assert gain.offsets(["1", "2"]) == pytest.approx([0.84, 0.85])
    epochs = gp_data(trials, lineage="epochs")
    assert epochs.features[:, 0] == pytest.approx(np.log2(1 + np.array([6, 9, 11])))
    assert epochs.candidate_features(["2"])[0, 0] == pytest.approx(np.log2(1 + 11 + 2.5))  # + the median child


def test_lineage_model_adds_the_ancestors_score_to_a_predicted_gain():
    trials = lineage_trials()
    data = gp_data(trials, lineage="gain")
    gp = ArchitectureGP(prior_std=0.1).fit([t.architecture for t in trials], data.targets)
    model = LineageModel(gp, data)
    child = deeper(trials[2].architecture, np.random.default_rng(5))
    mean, std = model.predict([child])
    assert mean[0] == pytest.approx(0.85 + gp.predict([child])[0][0])
    assert std[0] == pytest.approx(gp.predict([child])[1][0])


@pytest.mark.parametrize("params", [{"lineage": "gain"}, {"lineage": "epochs"}, {"truncated": "noise"},
                                    {"distance": "weighted"}, {"expand": "children"}, {"cost": "gain_per_time"},
                                    {"wider": "split"}, {"max_steps": 1}])
def test_bayesian_searcher_proposes_new_replayable_networks_with_each_lever(params):
    searcher = make_searcher("bayesian", seed=0, **params)
    trials = lineage_trials()
    for t in trials:
        searcher.observe(t)
    proposal = searcher.propose(trials)
    assert D.distance_key(proposal.architecture) not in {D.distance_key(t.architecture) for t in trials}
    ancestor = next(t.architecture for t in trials if t.id == proposal.ancestor_id)
    assert apply(ancestor, proposal.operations).fingerprint() == proposal.architecture.fingerprint()
    assert proposal.reason


# ----- lever 7: the annealing expands more roots ---------------------------------------------
class FlatModel:
    """The same prediction for every candidate."""

    def predict(self, encodings):
        return np.full(len(encodings), 0.8), np.full(len(encodings), 0.05)


def test_collecting_children_expands_every_trained_network():
    from engine.nas.morphism import random_morph

    archs = random_architectures(30, seed=3, max_steps=4)
    for i, arch in enumerate(archs):
        arch.id = str(i)
    trained = [(a, synthetic_accuracy(a)) for a in archs]
    expanded = {"attempts": set(), "children": set()}
    for mode, roots in expanded.items():
        def morph(arch, rng, limits=None, roots=roots):
            if arch.id:  # a trained network, not a candidate grown from one
                roots.add(arch.id)
            return random_morph(arch, rng, limits)

        optimize_acquisition(trained, FlatModel(), np.random.default_rng(0), morph=morph, expand=mode)
    assert expanded["children"] == {a.id for a in archs}
    assert len(expanded["attempts"]) < len(archs) / 2  # the problem: children's UCB crowds out the roots


class GrowingModel:
    """A prediction that rises with the size of the network: the further a candidate walks from its
    trained ancestor, the higher its bound, so the annealing's reach decides the proposal."""

    def predict(self, encodings):
        sizes = np.array([len(e.tokens) + len(e.skips) for e in encodings], dtype=float)
        return 0.5 + 0.01 * sizes, np.full(len(encodings), 0.05)


def test_one_step_proposals_are_a_single_morphism_from_a_trained_network():
    assert Levers.from_dict({"steps": "1"}).searcher_params("bayesian")["max_steps"] == 1
    make_searcher("bayesian", **Levers.from_dict({"steps": "1"}).searcher_params("bayesian"))  # it takes them
    lengths = {}
    for steps in (1, 2):
        lengths[steps] = [len(optimize_acquisition([(small_seed(), 0.75)], GrowingModel(), np.random.default_rng(s),
                                                   max_steps=steps).operations) for s in range(4)]
    assert set(lengths[1]) == {1}
    assert set(lengths[2]) == {2}  # the default walks two steps when the bound rises with them


# ----- lever 8: cost in the acquisition ---------------------------------------------------
def test_gain_per_time_prefers_the_cheaper_of_equal_promises_and_says_so():
    assert gain_per_cost(0.9, 0.85, 2.0) == pytest.approx(0.025)
    assert gain_per_cost(0.8, 0.85, 0.5) == 0.0
    seed = small_seed()
    assert relative_cost(seed, seed.flops()) == pytest.approx(1.0)
    proposal = optimize_acquisition([(seed, 0.75)], FlatModel(), np.random.default_rng(0), cost="gain_per_time")
    plain = optimize_acquisition([(seed, 0.75)], FlatModel(), np.random.default_rng(0))
    assert proposal.architecture.flops() < plain.architecture.flops()  # same candidates, the cheapest chosen
    assert "gain per second" in proposal.reason and "gain per second" not in plain.reason


# ----- lever 4b: Net2Net split of the outgoing weights ----------------------------------------
def test_split_wider_shares_each_copied_channels_outgoing_weights():
    from engine.nas.surgery import channel_groups, wider_plan

    parent = init_weights(small_seed(), seed=0)
    child = wider(parent, np.random.default_rng(0), outgoing="split")
    op = child.operations[-1]
    assert op["split"] is True
    zero = apply_op(parent, {k: v for k, v in op.items() if k != "split"})
    plan = wider_plan(Net(parent), channel_groups(parent), op["layer"], op["sources"])
    for consumer, (index, new) in plan["in"].items():
        split_k, zero_k = child.weights[consumer][0], zero.weights[consumer][0]
        assert np.all(zero_k[..., new, :] == 0)  # the default: the new channels are read with zeros
        assert np.any(split_k[..., new, :] != 0)  # split: they contribute from the first step
        # each original channel's copies together carry its original outgoing weights
        summed = np.zeros_like(parent.weights[consumer][0])
        np.add.at(np.moveaxis(summed, -2, 0), index, np.moveaxis(split_k, -2, 0))
        assert np.allclose(summed, parent.weights[consumer][0], atol=1e-6)


# ----- the benchmark's table ---------------------------------------------------------------
def test_levers2_table_compares_with_the_baseline_on_the_same_seeds_and_keeps_the_hand_written_part(tmp_path):
    from bench.levers2 import BEGIN, END, write_md

    def run(lever, seed, acc):
        return {"lever": lever, "seed": seed, "budget_s": 20.0, "wall_s": 19.0, "budget_share": 0.95,
                "test_accuracy": acc, "trials": 4}

    md = tmp_path / "levers2.md"
    md.write_text(f"# hand-written\n\nlever 1: simulate 17.0\n\n{BEGIN}\nold rows\n{END}\n\ntail\n")
    payload = {"data": "sample", "test": None, "machine": "test", "results": [
        run("baseline", 0, 0.80), run("baseline", 1, 0.90), run("score=kept", 0, 0.83), run("score=kept", 1, 0.89)]}
    write_md(md, payload)
    text = md.read_text()
    assert text.startswith("# hand-written\n\nlever 1: simulate 17.0\n") and text.endswith("tail\n")
    assert "old rows" not in text and text.count(BEGIN) == 1
    row = next(line for line in text.splitlines() if line.startswith("| score=kept"))
    assert "+1.00 points (1 of 2 ahead)" in row and "0.8600" in row and "95%" in row


def test_a_split_widening_says_so_in_words():
    from engine.nas.operations import describe

    op = {"op": "wider", "layer": 5, "kind": "conv", "add": 8, "sources": [], "noise_seed": 0}
    assert describe(op) == "widen conv 5 by 8 filters"
    assert describe({**op, "split": True}) == "widen conv 5 by 8 filters (sharing the copied ones' outgoing weights)"


# ----- lever 8 (second half): spend the whole budget -------------------------------------
def test_spend_defaults_to_all_and_a_short_trial_counts_as_missing_epochs():
    assert Levers().spend == "all" and Levers.from_dict({"spend": "capped"}).changed() == {"spend": "capped"}
    assert "spend" not in Levers.from_dict({"spend": "capped"}).searcher_params("bayesian")  # the loop's, not the GP's
    with pytest.raises(ValueError, match="spend should be one of all, capped"):
        parse("spend=some")
    arch = small_seed()
    short = Trial("2", arch, 0.8, {"parent_id": "1", "epochs": 1, "max_epochs": 1, "short": True, "full_epochs": 3})
    full = Trial("3", arch, 0.8, {"parent_id": "1", "epochs": 3, "max_epochs": 3, "short": False, "full_epochs": 3})
    assert truncated_share(short) == pytest.approx(2 / 3) and truncated_share(full) == 0.0


# ----- lever 4, training side: a ramp of the learning rate for networks that inherit weights ----
@pytest.mark.parametrize("warmup", ["none", "children"])
def test_warmup_ramps_the_rate_of_every_child_and_of_nothing_else(tmp_path, monkeypatch, warmup):
    from engine.search import folder
    from engine.search.loop import SearchConfig, run_search
    from engine.training import trainer
    from tests.helpers import FakeTrainer

    fake = FakeTrainer()
    monkeypatch.setattr(trainer, "train", fake)
    config = SearchConfig(budget_s=60, searcher="bayesian", seed=1, image_size=8, max_epochs=2, max_trials=4,
                          levers={"warmup": warmup})
    run_search("sample", tmp_path / "run", config)
    records = folder.read_jsonl(tmp_path / "run" / "trials.jsonl")
    assert len(records) == 4 and records[0]["parent_id"] is None and all(r["parent_id"] for r in records[1:])
    ramps = [c.warmup_steps for c in fake.configs]
    child = WARMUP_STEPS if warmup == "children" else 0
    assert ramps == [0, child, child, child, 0], ramps  # the seed, three children, the fine-tune


# ----- the seed's size ----------------------------------------------------------------------
@pytest.mark.parametrize("seed, expected", [("small", "conv32 conv64 conv64 | dense64 dense"),
                                            ("wide", "conv32 conv64 conv128 | dense128 dense")])
def test_the_seed_lever_sets_the_first_networks_width(tmp_path, monkeypatch, seed, expected):
    from engine.search import folder
    from engine.search.loop import SearchConfig, run_search
    from engine.training import trainer
    from tests.helpers import FakeTrainer

    monkeypatch.setattr(trainer, "train", FakeTrainer())
    config = SearchConfig(budget_s=60, searcher="bayesian", seed=1, image_size=32, max_epochs=2, max_trials=1,
                          levers={"seed": seed})
    run_search("sample", tmp_path / "run", config)
    first = folder.read_jsonl(tmp_path / "run" / "trials.jsonl")[0]
    assert first["parent_id"] is None and first["summary"].startswith(expected), first["summary"]
    assert Levers.from_dict({"seed": seed}).changed() == ({} if seed == "small" else {"seed": "wide"})
