"""The pretrained start (issue 19): choosing it, the trunk's weights (never downloaded here),
the feature cache, a head searched over it, the fine-tune, and the exported model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SproutError
from engine.nas.architecture import init_weights
from engine.search.config import SearchConfig
from engine.search.pretrained import AUTO_MIN_SIDE, Start, choose_start, head_architecture, trunk_size, views_for


@dataclass
class Report:
    """The fields of a DataReport that the choice reads."""

    channels: int = 3
    size_stats: dict = field(default_factory=lambda: {"width": {"median": 400.0}, "height": {"median": 300.0}})


def sized(side: float) -> Report:
    return Report(size_stats={"width": {"median": side}, "height": {"median": side}})


# ----- the choice ------------------------------------------------------------------------
def test_none_greyscale_and_small_images_start_from_scratch_and_say_why():
    assert choose_start("none", Report()).kind == "scratch"
    grey = choose_start("auto", Report(channels=1))
    assert grey.kind == "scratch" and "greyscale" in grey.reason
    small = choose_start("auto", sized(AUTO_MIN_SIDE - 1))
    assert small.kind == "scratch" and f"{AUTO_MIN_SIDE - 1:g} px" in small.reason


def test_auto_without_weights_falls_back_with_a_plain_message(monkeypatch):
    monkeypatch.setenv("SPROUT_WEIGHTS_URL", "none")
    off = choose_start("auto", Report())
    assert off.kind == "scratch" and "downloading is turned off" in off.reason and off.weights is None
    # offline: nothing listens on port 9 of this machine, so the download fails at once
    monkeypatch.setenv("SPROUT_WEIGHTS_URL", "http://127.0.0.1:9/weights.h5")
    offline = choose_start("auto", Report())
    assert offline.kind == "scratch" and "download from http://127.0.0.1:9/weights.h5 failed" in offline.reason


def test_auto_takes_cached_weights_from_sprout_home(monkeypatch):
    from engine.training import trunk

    monkeypatch.setenv("SPROUT_WEIGHTS_URL", "none")
    cached = trunk.weights_dir() / trunk.IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not read by the choice")
    start = choose_start("auto", Report(), gpu=False)
    assert start.kind == "pretrained" and start.source == "cache" and start.weights == str(cached)
    assert start.image_size == 128 and "128x128" in start.reason
    assert Start.from_dict(json.loads(json.dumps(start.to_dict()))) == start


def test_a_download_lands_in_sprout_home_whole(monkeypatch, tmp_path):
    import functools
    import http.server
    import threading

    from engine.training import trunk

    served = tmp_path / "served"
    served.mkdir()
    (served / "w.h5").write_bytes(b"weights" * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SPROUT_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}/w.h5")
        got = trunk.find_weights("auto")
    finally:
        server.shutdown()
    assert got.source == "download" and got.path == trunk.weights_dir() / trunk.IMAGENET_FILE
    assert got.path.read_bytes() == b"weights" * 1000
    assert [p.name for p in trunk.weights_dir().iterdir()] == [trunk.IMAGENET_FILE]  # no partial file left
    assert trunk.find_weights("auto").source == "cache"  # the next run finds it without the network


def test_trunk_size_follows_the_images_and_the_device():
    assert trunk_size(Report(), None, gpu=False) == 128
    assert trunk_size(Report(), None, gpu=True) == 224
    assert trunk_size(sized(100), None, gpu=True) == 96
    assert trunk_size(sized(40), None, gpu=True) == 96   # a named file may be used on small images: upsampled
    assert trunk_size(Report(), 40, gpu=False) == 40       # a size the user picked wins
    assert views_for(100, 10_000) == 3 and views_for(100_000, 10_000) == 0


def test_a_weights_path_that_is_missing_or_of_another_kind_is_refused(tmp_path):
    with pytest.raises(SproutError, match="does not exist"):
        SearchConfig(budget_s=10, pretrained=str(tmp_path / "trunk.weights.h5")).check()
    (tmp_path / "trunk.txt").write_text("x")
    with pytest.raises(SproutError, match=r"\.weights\.h5, \.h5 or \.keras"):
        SearchConfig(budget_s=10, pretrained=str(tmp_path / "trunk.txt")).check()
    with pytest.raises(SproutError, match="auto, none or the path"):
        SearchConfig(budget_s=10, pretrained=" ").check()


def test_cli_passes_pretrained_and_reports_a_missing_file(tmp_path, capsys):
    from engine.cli import build_parser, main

    args = build_parser().parse_args(["search", "sample", "--out", str(tmp_path / "r"), "--budget", "5",
                                      "--pretrained", "none"])
    assert args.pretrained == "none"
    code = main(["search", "sample", "--out", str(tmp_path / "r"), "--budget", "5",
                 "--pretrained", str(tmp_path / "missing.keras")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.keras" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


# ----- the head and the features -----------------------------------------------------------
def test_the_seed_head_grows_like_a_network_from_scratch():
    from engine.nas.distance import edit_distance
    from engine.nas.morphism import random_morph

    head = init_weights(head_architecture((3, 3, 576), 4), seed=0)
    assert head.summary() == "conv128k1 | dense4" and head.shapes()[head.layers[-1].id] == (4,)
    rng = np.random.default_rng(0)
    kinds, child = set(), head
    for _ in range(12):
        child = random_morph(child, rng) or child
        kinds.update(op["op"] for op in child.operations)
    assert {"deeper", "wider"} <= kinds and kinds & {"add_skip", "concat_skip"}
    assert edit_distance(head, child) > 0


def test_doctests():
    import doctest

    import engine.search.pretrained as module

    result = doctest.testmod(module)
    assert result.attempted >= 1 and result.failed == 0


def test_quantizer_codes_match_the_models_affine_map():
    from engine.training.features import Quantizer

    f = np.random.default_rng(0).normal(0.3, 1.0, (50, 2, 2, 8)).astype(np.float32)
    q = Quantizer.fit(f)
    codes = q.apply(f)
    assert codes.dtype == np.uint8 and codes.min() == 0 and codes.max() == 255
    unrounded = np.clip(f * q.scale + q.offset, 0.0, 1.0)  # what fused_model computes
    assert np.abs(codes / 255.0 - unrounded).max() <= 0.5 / 255 + 1e-6


# ----- the whole path, with a trunk file of our own -----------------------------------------
def own_trunk_file(path: Path) -> Path:
    """A trunk weights file made here: random weights with every BatchNorm's statistics set
    from one batch of random images (left at their initial values, they shrink the signal
    layer by layer and the untrained trunk gives every image the same features)."""
    import keras

    from engine.training.trunk import build_trunk

    trunk = build_trunk(32)
    for layer in trunk.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # the moving statistics become this batch's
    trunk(np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3)).astype(np.float32), training=True)
    trunk.save_weights(path)
    return path


@pytest.mark.slow
def test_pretrained_search_fine_tunes_and_exports_one_plain_model(images_dir, tmp_path):
    import keras

    from engine.search.loop import run_search
    from engine.training.evaluation import predict
    from engine.training.export import export, run_exported
    from engine.training.trunk import build_trunk

    weights = own_trunk_file(tmp_path / "trunk.weights.h5")
    lines: list[str] = []
    config = SearchConfig(budget_s=150, image_size=32, max_trials=2, max_epochs=2, pretrained=str(weights),
                          recipe={"final_epochs": 1})
    summary = run_search(images_dir, tmp_path / "run", config,
                         events=lambda e: lines.append(e["message"]) if e["type"] == "log" else None)
    run = tmp_path / "run"

    assert summary["status"] == "done" and summary["start"]["kind"] == "pretrained"
    assert any(line.startswith("recipe: the search starts from a pretrained MobileNetV3Small") for line in lines)
    assert any(line.startswith("features: the trunk's 1x1x576 feature map") for line in lines)
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    head = json.loads((run / "trials" / "0" / "architecture.json").read_text())
    assert head["input_shape"] == [1, 1, 576]  # the heads train on the cached feature map
    assert summary["fine_tuned"] and 1 <= summary["final_epochs"] <= 10  # 10x the recipe's final_epochs=1
    state = json.loads((run / "state.json").read_text())
    assert state["features"]["views"] == 3 and state["features"]["images"] > 24

    model = keras.models.load_model(run / "best_model.keras", safe_mode=True)
    assert model.input_shape == (None, 32, 32, 3) and model.get_layer("trunk") is not None
    split = json.loads((run / "dataset.json").read_text())["split"]["test"]
    from engine.data import ingest

    ds = ingest.load(images_dir, image_size=32, channels=3)
    probs = predict(model, ds.images[split])
    accuracy = float(np.mean(probs.argmax(axis=1) == ds.labels[split]))
    assert accuracy == pytest.approx(summary["test_accuracy"])  # plain Keras predicts what Sprout measured
    labels = json.loads((run / "labels.json").read_text())
    assert np.ptp(predict(model, ds.images)[:, 0]) > 1e-3  # the model tells images apart: the check below bites
    # TFLite goes through the SavedModel export (engine.training.export), so this covers both writers
    path = export(run / "best_model.keras", "tflite", tmp_path / "export", labels)
    np.testing.assert_allclose(run_exported(path, ds.images[split]), probs, atol=2e-4)
    # the fine-tune changed the trunk's top, not its frozen bottom
    before, after = build_trunk(32, weights), model.get_layer("trunk")
    changed = [not np.allclose(a, b) for a, b in zip(before.get_weights(), after.get_weights())]
    assert any(changed[-10:]) and not any(changed[:10])
    # a Sprout model holding the trunk is itself a weights file for the next run
    again = build_trunk(32, run / "best_model.keras")
    assert all(np.allclose(a, b) for a, b in zip(again.get_weights(), after.get_weights()))


def test_the_search_page_offers_the_start_and_names_a_missing_weights_file(tmp_path):
    import streamlit as st

    from tests.test_app import _app

    st.cache_resource.clear()
    at = _app()
    at.button(key="sample").click()
    at.run()
    at.button(key="to_search").click()
    at.run()
    assert at.selectbox(key="start_kind").value == "auto"
    at.selectbox(key="start_kind").set_value("file")
    at.run()
    at.text_input(key="weights_file").set_value(str(tmp_path / "mine.weights.h5"))
    at.button(key="start").click()
    at.run()
    assert not at.exception, at.exception
    assert any("mine.weights.h5" in e.value and "does not exist" in e.value for e in at.error), at.error
    assert not at.query_params.get("run")  # nothing started
    st.cache_resource.clear()
