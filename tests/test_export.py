"""engine.training.export: a trained seed network exported as .keras, a zipped SavedModel and
TFLite loads again (no custom objects) and predicts what the model in memory predicts,
on raw uint8 images."""

from __future__ import annotations

import json
import sys
import zipfile

import keras
import numpy as np
import pytest

from engine.training import export as ex
from engine.nas.architecture import seed_architecture
from engine.training.model import build_model
from engine.errors import SproutError
from engine.files import read_labels, write_labels
from engine.training.evaluation import predict
from engine.training.trainer import TrainConfig, train
from tests.digits import digits_8px

LABELS = [f"digit {d}" for d in range(10)]
needs_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow exports")


@pytest.fixture(scope="module")
def trained():
    """The seed trained for two epochs on digits (8x8 uint8), and 300 held-out images."""
    x, y = digits_8px(1)
    result = train(seed_architecture((8, 8, 1), 10), x[:1200], y[:1200], x[1200:1497], y[1200:1497],
                   TrainConfig(max_epochs=2, batch_size=32))
    assert result.status == "ok"
    model = build_model(result.architecture)
    images = x[1497:]
    return model, images, predict(model, images)


def _assert_same_predictions(expected: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == expected.shape
    agree = np.mean(np.argmax(got, 1) == np.argmax(expected, 1))
    assert agree >= 0.99, f"only {agree:.1%} of the predicted classes agree"
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_keras_export_loads_safely_and_predicts_the_same(trained, tmp_path):
    model, images, expected = trained
    path = ex.export(model, "keras", tmp_path / "out", LABELS)
    assert path == tmp_path / "out" / "model.keras" and path.is_file()
    assert json.loads((path.parent / "labels.json").read_text()) == LABELS
    assert read_labels(path.parent) == LABELS
    loaded = ex.load_model(path)  # safe_mode=True, no custom objects
    assert loaded.inputs[0].dtype == "uint8"
    _assert_same_predictions(expected, predict(loaded, images))
    _assert_same_predictions(expected, ex.run_exported(path, images))
    left = sorted(p.name for p in path.parent.iterdir())
    assert "model.keras" in left and not [n for n in left if n.startswith(".")], left  # no temporary file left


def test_a_keras_file_can_be_exported_again_by_path(trained, tmp_path):
    model, images, expected = trained
    first = ex.export(model, "keras", tmp_path / "a" / "best.keras", LABELS)
    assert first.name == "best.keras"
    second = ex.export(str(first), "tflite", tmp_path / "b", LABELS)
    assert second == tmp_path / "b" / "model.tflite"
    _assert_same_predictions(expected, ex.run_tflite(second, images))


@needs_tf
def test_savedmodel_export_is_a_zip_that_predicts_the_same(trained, tmp_path):
    model, images, expected = trained
    path = ex.export(model, "savedmodel", tmp_path, LABELS)
    assert path == tmp_path / "model.zip"
    with zipfile.ZipFile(path) as zf:
        assert "model/saved_model.pb" in zf.namelist()
    assert read_labels(tmp_path) == LABELS
    _assert_same_predictions(expected, ex.run_savedmodel(path, images))


@needs_tf
def test_tflite_export_takes_uint8_and_predicts_the_same(trained, tmp_path):
    model, images, expected = trained
    path = ex.export(model, "tflite", tmp_path / "edge.tflite", LABELS)
    assert path == tmp_path / "edge.tflite" and path.stat().st_size > 10_000
    interpreter = ex._interpreter(path)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    _assert_same_predictions(expected, ex.run_exported(path, images))
    _assert_same_predictions(expected[:1], ex.run_tflite(path, images[:1]))  # a batch of one works too


def test_labels_json_is_a_list_of_names_and_a_bad_one_is_a_plain_error(tmp_path):
    path = write_labels(tmp_path, LABELS)
    assert path == tmp_path / "labels.json" and json.loads(path.read_text()) == LABELS
    assert read_labels(tmp_path) == LABELS
    with pytest.raises(SproutError, match="no such file"):
        read_labels(tmp_path / "elsewhere")
    path.write_text('{"labels": ["a", "b"]}')
    with pytest.raises(SproutError, match="JSON list of class names; received dict"):
        read_labels(tmp_path)
    path.write_text('["a", ')
    with pytest.raises(SproutError, match="cannot be read"):
        read_labels(tmp_path)


def test_bad_requests_are_plain_errors(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(SproutError, match="format"):
        ex.export(model, "onnx", tmp_path, LABELS)
    with pytest.raises(SproutError, match="10 class names"):
        ex.export(model, "keras", tmp_path, LABELS[:3])
    with pytest.raises(SproutError, match="no model file"):
        ex.load_model(tmp_path / "missing.keras")
    with pytest.raises(SproutError, match=".keras, .zip"):
        ex.run_exported(tmp_path / "model.onnx", np.zeros((1, 8, 8, 1), np.uint8))


def test_savedmodel_without_tensorflow_is_a_plain_error(trained, tmp_path, monkeypatch):
    model, _, _ = trained
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    for fmt in ("savedmodel", "tflite"):
        with pytest.raises(SproutError, match="needs TensorFlow"):
            ex.export(model, fmt, tmp_path, LABELS)
    assert not list(tmp_path.glob("model.*"))
