"""The architecture IR: shapes, counts, identity, serialisation and the Keras bridge."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import doctest
import json

import numpy as np
import pytest

import engine.nas.architecture
import engine.nas.morphism
from engine.nas.architecture import Architecture, Layer, Limits, init_weights, seed_architecture
from engine.training.model import build_model, read_weights


def _with_skips() -> Architecture:
    """The 16x16 seed (ids 1..14, see tests/test_morphism.py) with an add and a concat skip."""
    arch = init_weights(seed_architecture((16, 16, 1), 10, filters=(16, 32), dense_units=32), seed=2)
    arch.id = "t1"
    return engine.nas.morphism.apply(arch, [
        {"op": "add_skip", "start": 3, "end": 7, "new_ids": [15, 16, 17]},
        {"op": "concat_skip", "start": 1, "end": 8, "new_ids": [18, 19, 20, 21]},
        {"op": "deeper", "after": 7, "after_kind": "relu", "part": "conv", "kernel": 5, "relu": False,
         "new_ids": [22, 23]},
    ])


def test_doctests():
    for module in (engine.nas.architecture, engine.nas.morphism):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


@pytest.mark.parametrize("shape, summary", [
    ((28, 28, 1), "conv32 conv64 conv64 | dense64 dense10"),
    ((32, 32, 3), "conv32 conv64 conv64 | dense64 dense10"),
    ((64, 64, 3), "conv32 conv64 conv64 conv128 | dense64 dense10"),
    ((8, 8, 1), "conv32 | dense64 dense10"),
    ((4, 4, 3), "conv32 | dense64 dense10"),
])
def test_seed_sizes(shape, summary):
    arch = seed_architecture(shape, 10)
    assert arch.summary() == summary
    shapes = arch.shapes()
    assert shapes[arch.main_chain()[-1].id] == (10,)
    assert min(s[0] for s in shapes.values() if len(s) == 3) >= 2


@pytest.mark.parametrize("shape, classes", [((3, 3, 1), 10), ((28, 28, 2), 10), ((28, 28, 1), 1)])
def test_seed_rejects_bad_requests(shape, classes):
    with pytest.raises(ValueError):
        seed_architecture(shape, classes)


def test_skips_and_output_nodes():
    arch = _with_skips()
    assert [layer.id for layer in arch.main_chain()] == [1, 2, 3, 4, 5, 6, 7, 22, 23, 8, 9, 10, 11, 12, 13, 14]
    index = {layer.id: i for i, layer in enumerate(arch.main_chain())}
    assert arch.skip_connections() == [(index[3], index[7], "add"), (index[1], index[8], "concat")]
    assert arch.output_node(7) == 17  # after the add
    assert arch.output_node(8) == 21  # after the concat's projection
    assert arch.output_node(14) == 14
    assert arch.layer(22).inputs == [17] and arch.layer(8).inputs == [23]
    assert arch.depth() == 5 and arch.summary() == "conv16 conv32 conv32k5 | dense32 dense10 | 2 skips"
    with pytest.raises(KeyError):
        arch.layer(99)


def test_n_params_matches_keras():
    import keras

    for arch in (seed_architecture((28, 28, 1), 10), _with_skips()):
        assert build_model(arch).count_params() == arch.n_params()
    keras.backend.clear_session()


def test_keras_weights_round_trip():
    import keras

    arch = _with_skips()
    model = build_model(arch)
    back = read_weights(arch, model)
    assert back.weights.keys() == arch.weights.keys() and back.to_dict() == arch.to_dict()
    for lid, ws in arch.weights.items():
        assert all(a.tobytes() == b.tobytes() for a, b in zip(ws, back.weights[lid], strict=True))
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    probs = np.asarray(model(images, training=False))
    assert probs.shape == (4, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    keras.backend.clear_session()


def test_identity_ignores_ids_not_structure():
    arch = _with_skips()
    shifted = arch.copy(with_weights=False)
    renumber = {layer.id: layer.id + 100 for layer in arch.layers}
    renumber[0] = 0
    shifted.layers = [Layer(renumber[layer.id], layer.kind, [renumber[i] for i in layer.inputs],
                            {k: renumber[v] if k in ("start", "end") else v for k, v in layer.config.items()},
                            layer.role)
                      for layer in arch.layers]
    assert shifted.fingerprint() == arch.fingerprint() and shifted.skip_connections() == arch.skip_connections()
    other = arch.copy()
    other.layer(5).config["filters"] = 33
    assert other.fingerprint() != arch.fingerprint()
    assert arch.layer(5).config["filters"] == 32  # copy() does not share layers
    assert other.weights[5][0] is arch.weights[5][0]  # ...but shares the (immutable) arrays


def test_serialisation(tmp_path):
    arch = _with_skips()
    again = Architecture.from_json(arch.to_json())
    assert again.to_dict() == arch.to_dict() and again.weights is None
    arch.save(tmp_path / "a")
    back = Architecture.load(tmp_path / "a")
    assert back.to_dict() == arch.to_dict()
    for lid, ws in arch.weights.items():
        assert all(a.tobytes() == b.tobytes() for a, b in zip(ws, back.weights[lid], strict=True))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["architecture.json", "weights.npz"]
    bare = arch.copy(with_weights=False)
    bare.save(tmp_path / "b")
    assert Architecture.load(tmp_path / "b").weights is None


def test_from_dict_validates():
    d = _with_skips().to_dict()
    with pytest.raises(ValueError):
        Architecture.from_dict({**d, "format": "other/1"})
    broken = json.loads(json.dumps(d))
    # layer 16: an add of 32 and 31 channels
    next(layer for layer in broken["layers"] if layer["id"] == 16)["config"]["filters"] = 31
    with pytest.raises(ValueError):
        Architecture.from_dict(broken)


def test_limits():
    arch = seed_architecture((28, 28, 1), 10)
    assert Limits().allows(arch)
    assert not Limits(max_params=arch.n_params() - 1).allows(arch)
    assert not Limits(max_depth=arch.depth() - 1).allows(arch)
    assert not Limits(max_activation_bytes=arch.activation_bytes() - 1).allows(arch)
    assert Limits.from_dict(json.loads(json.dumps(Limits(1, 2, 3).to_dict()))) == Limits(1, 2, 3)


def test_init_weights_keeps_existing():
    arch = _with_skips()
    again = init_weights(arch, seed=9)
    assert all(again.weights[k][0] is arch.weights[k][0] for k in arch.weights)
