"""Architectures as Keras models: build one from the IR, and read trained weights back.

The only place where the IR of :mod:`engine.nas.architecture` meets Keras. Every layer is
a built-in Keras layer named ``<kind>_<id>``, so a saved model loads in plain Keras with
no custom objects, and weights move between the IR and a model by layer name.
"""

from __future__ import annotations

import numpy as np

from engine.training import device  # noqa: F401 - sets up the backend before Keras is first used
import keras  # noqa: E402

from engine.nas.architecture import BN_EPSILON, WEIGHTED, Architecture, Layer  # noqa: E402

#: BatchNormalization's moving-average momentum (Keras' default is 0.99).
#: A trial runs a few epochs; on a small data set that is a few dozen steps, after which
#: moving statistics with momentum 0.99 still weigh their initial values by 0.99**steps
#: (~50 % after 66 steps) and validation accuracy sits at chance (measured on digits:
#: 0.10 after 6 epochs with 0.99, 0.92 with 0.9). 0.9 is PyTorch's default; it is a
#: training setting only (the weights' format and inference are unchanged).
BN_MOMENTUM = 0.9


def keras_name(layer: Layer) -> str:
    return f"{layer.kind}_{layer.id}"


def build_model(arch: Architecture):
    """A Keras functional model of built-in layers only, with ``arch``'s weights when it has them.

    Its input is a batch of raw uint8 images of ``arch.input_shape``; Rescaling(1/255) is
    the first layer and a softmax over the classes the last, so an exported model needs no
    preprocessing and no custom objects.
    """
    image = keras.Input(shape=tuple(arch.input_shape), dtype="uint8", name="image")
    model = keras.Model(image, apply_layers(arch, keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)),
                        name="sprout")
    set_weights(model, arch)
    return model


def apply_layers(arch: Architecture, x):
    """The output tensor of ``arch``'s layers applied to ``x`` (node 0): the whole network
    after its input rescaling, or a head on a pretrained trunk's features."""
    nodes = {0: x}
    for layer in arch.layers:
        ins = [nodes[i] for i in layer.inputs]
        nodes[layer.id] = _keras_layer(layer)(ins if layer.kind in ("add", "concat") else ins[0])
    return nodes[arch.layers[-1].id]


def set_weights(model, arch: Architecture) -> None:
    """Give ``model``'s layers named after ``arch``'s layers the weights ``arch`` holds (if any)."""
    if arch.weights:
        for layer in arch.layers:
            if layer.id in arch.weights:
                model.get_layer(keras_name(layer)).set_weights(arch.weights[layer.id])


def _keras_layer(layer: Layer):
    L, cfg, name = keras.layers, layer.config, keras_name(layer)
    if layer.kind == "conv":
        return L.Conv2D(cfg["filters"], cfg["kernel"], strides=cfg.get("stride", 1), padding="same", name=name)
    if layer.kind == "bn":
        return L.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)
    if layer.kind == "dense":
        return L.Dense(cfg["units"], name=name)
    if layer.kind == "dropout":
        return L.Dropout(cfg["rate"], name=name)
    return {"relu": lambda: L.ReLU(name=name), "maxpool": lambda: L.MaxPooling2D(2, name=name),
            "avgpool": lambda: L.AveragePooling2D(2, name=name), "gap": lambda: L.GlobalAveragePooling2D(name=name),
            "softmax": lambda: L.Softmax(name=name), "add": lambda: L.Add(name=name),
            "concat": lambda: L.Concatenate(axis=-1, name=name)}[layer.kind]()


def read_weights(arch: Architecture, model) -> Architecture:
    """A copy of ``arch`` holding the weights of ``model`` (built by :func:`build_model`)."""
    out = arch.copy(with_weights=False)
    out.weights = {layer.id: [np.asarray(w, dtype=np.float32) for w in model.get_layer(keras_name(layer)).get_weights()]
                   for layer in arch.layers if layer.kind in WEIGHTED}
    return out
