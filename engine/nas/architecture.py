"""Architectures as plain data: the IR that morphisms edit and the kernel compares.

A network is a DAG. Node 0 is the (rescaled) input image; every layer reads the
outputs of earlier layers (``inputs``, node ids) and produces one node whose id is the
layer's own id, so nodes are tensors and layers are the edges between them. Add and
Concatenate are single layers with several inputs. Layers are kept in topological order.

Every layer has a *role*: ``"main"`` for the layers of the main chain (the path from
input to softmax that the edit distance compares) and ``"skip"`` for the machinery of a
skip connection (the branch's poolings, its 1x1 convolution, the merge layer and the
projection after a concatenation). A merge layer's config records the main-chain layers
the skip joins (``start``, ``end``), so skips survive insertions around them.

Weights, when the architecture is *weighted*, are NumPy arrays in Keras order per layer
id: conv ``[kernel (k, k, c_in, c_out), bias]``, bn ``[gamma, beta, moving_mean,
moving_variance]``, dense ``[kernel (n_in, n_out), bias]``. They are never modified in
place, so copies of an architecture may share them. This module needs no TensorFlow:
:mod:`engine.training.model` turns an architecture into a Keras model and back.

Example:

>>> arch = seed_architecture((28, 28, 1), n_classes=10)
>>> [layer.kind for layer in arch.main_chain()][:4]
['conv', 'bn', 'relu', 'maxpool']
>>> Architecture.from_json(arch.to_json()).fingerprint() == arch.fingerprint()
True
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.files import atomic_write, atomic_write_bytes

KINDS = ("conv", "bn", "relu", "maxpool", "avgpool", "gap", "dense", "dropout", "softmax", "add", "concat")
WEIGHTED = ("conv", "bn", "dense")
CHANNELWISE = ("bn", "relu", "maxpool", "avgpool", "dropout", "gap")
BN_EPSILON = 1e-3  # Keras' default; an identity BN needs moving variance 1 - epsilon


@dataclass
class Layer:
    """One layer of the DAG; its output is the node with the same id."""

    id: int
    kind: str
    inputs: list[int]
    config: dict = field(default_factory=dict)
    role: str = "main"

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "inputs": list(self.inputs), "config": dict(self.config),
                "role": self.role}

    @staticmethod
    def from_dict(d: dict) -> "Layer":
        return Layer(int(d["id"]), d["kind"], [int(i) for i in d["inputs"]], dict(d.get("config", {})),
                     d.get("role", "main"))


@dataclass
class Limits:
    """Bounds a morphism may not cross: the search lowers ``max_params`` after an out-of-memory trial."""

    max_params: int = 3_000_000
    max_activation_bytes: int = 16 * 2**20  # per example, float32, forward pass
    max_depth: int = 30  # conv + dense layers on the main chain
    max_flops: int = 10**15  # multiply-adds per example; the search lowers it as its time runs out

    def allows(self, arch: "Architecture") -> bool:
        return (arch.n_params() <= self.max_params and arch.activation_bytes() <= self.max_activation_bytes
                and arch.depth() <= self.max_depth and arch.flops() <= self.max_flops)

    def to_dict(self) -> dict:
        return {"max_params": self.max_params, "max_activation_bytes": self.max_activation_bytes,
                "max_depth": self.max_depth, "max_flops": self.max_flops}

    @staticmethod
    def from_dict(d: dict) -> "Limits":
        return Limits(**{k: int(v) for k, v in d.items()})


@dataclass
class Architecture:
    """A network as data: layers, optional weights, and where it came from.

    ``id`` is set once the network is a trial (trained); an untrained candidate has
    ``id=None`` and ``parent_id`` names its nearest trained ancestor, ``operations`` the
    morphisms that turn that ancestor into it.
    """

    input_shape: tuple[int, int, int]
    n_classes: int
    layers: list[Layer]
    id: str | None = None
    parent_id: str | None = None
    operations: list[dict] = field(default_factory=list)
    weights: dict[int, list[np.ndarray]] | None = None

    # ----- structure -------------------------------------------------------------
    def layer(self, layer_id: int) -> Layer:
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise KeyError(f"no layer with id {layer_id} (ids: {[layer.id for layer in self.layers]})")

    def consumers(self, node: int) -> list[Layer]:
        """The layers that read node ``node``."""
        return [layer for layer in self.layers if node in layer.inputs]

    def next_layer_id(self) -> int:
        return max((layer.id for layer in self.layers), default=0) + 1

    def main_chain(self) -> list[Layer]:
        """The main-chain layers from input to softmax, in order."""
        return [layer for layer in self.layers if layer.role == "main"]

    def skip_connections(self) -> list[tuple[int, int, str]]:
        """Each skip as (start index, end index, "add"|"concat"), indices into :meth:`main_chain`."""
        index = {layer.id: i for i, layer in enumerate(self.main_chain())}
        return [(index[layer.config["start"]], index[layer.config["end"]], layer.kind)
                for layer in self.layers if layer.kind in ("add", "concat")]

    def output_node(self, layer_id: int) -> int:
        """The node the next main-chain layer reads after main layer ``layer_id``
        (the layer's own output, or the last merge that a skip put after it)."""
        chain = self.main_chain()
        ids = [layer.id for layer in chain]
        i = ids.index(layer_id)
        if i + 1 == len(chain):
            return layer_id
        return chain[i + 1].inputs[0]

    def shapes(self) -> dict[int, tuple[int, ...]]:
        """Shape of every node without the batch axis: (H, W, C) or (units,)."""
        shapes: dict[int, tuple[int, ...]] = {0: tuple(self.input_shape)}
        for layer in self.layers:
            ins = [shapes[i] for i in layer.inputs]
            shapes[layer.id] = _output_shape(layer, ins, self.n_classes)
        return shapes

    def depth(self) -> int:
        return sum(1 for layer in self.main_chain() if layer.kind in ("conv", "dense"))

    def flops(self) -> float:
        """Multiply-adds of one example's forward pass (a proxy for training time)."""
        shapes = self.shapes()
        total = float(np.prod(self.input_shape))
        for layer in self.layers:
            out = shapes[layer.id]
            cin = shapes[layer.inputs[0]][-1]
            if layer.kind == "conv":
                k = layer.config["kernel"]
                total += out[0] * out[1] * k * k * cin * layer.config["filters"]
            elif layer.kind == "dense":
                total += cin * layer.config["units"]
            else:
                total += float(np.prod(out)) * len(layer.inputs)
        return total

    def n_params(self) -> int:
        """Number of weights, trainable or not, as Keras counts them."""
        shapes = self.shapes()
        total = 0
        for layer in self.layers:
            if layer.kind == "conv":
                k, cin = layer.config["kernel"], shapes[layer.inputs[0]][-1]
                total += k * k * cin * layer.config["filters"] + layer.config["filters"]
            elif layer.kind == "dense":
                total += shapes[layer.inputs[0]][-1] * layer.config["units"] + layer.config["units"]
            elif layer.kind == "bn":
                total += 4 * shapes[layer.inputs[0]][-1]
        return total

    def activation_bytes(self) -> int:
        """Estimated float32 activation memory of one example's forward pass (all nodes)."""
        return 4 * sum(int(np.prod(s)) for s in self.shapes().values())

    # ----- identity --------------------------------------------------------------
    def structure(self) -> dict:
        """The structure with layer ids renumbered by position: equal for equal networks."""
        renumber = {0: 0, **{layer.id: i + 1 for i, layer in enumerate(self.layers)}}
        layers = []
        for layer in self.layers:
            config = dict(layer.config)
            for key in ("start", "end"):
                if key in config:
                    config[key] = renumber[config[key]]
            layers.append([layer.kind, [renumber[i] for i in layer.inputs], config, layer.role])
        return {"input_shape": list(self.input_shape), "n_classes": self.n_classes, "layers": layers}

    def fingerprint(self) -> str:
        """A short hash of :meth:`structure`."""
        text = json.dumps(self.structure(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def summary(self) -> str:
        """A one-line description, e.g. ``conv32 conv64 conv64 | dense64 | 1 skip``."""
        chain = self.main_chain()
        convs = " ".join(f"conv{layer.config['filters']}"
                         + (f"k{layer.config['kernel']}" if layer.config["kernel"] != 3 else "")
                         for layer in chain if layer.kind == "conv")
        dense = " ".join(f"dense{layer.config['units']}" for layer in chain if layer.kind == "dense")
        n_skip = len(self.skip_connections())
        skips = f" | {n_skip} skip" + ("s" if n_skip != 1 else "") if n_skip else ""
        return f"{convs} | {dense}{skips}"

    def copy(self, with_weights: bool = True) -> "Architecture":
        """A deep copy of the structure; weight arrays are shared (they are never mutated)."""
        other = Architecture(tuple(self.input_shape), self.n_classes,
                             [Layer.from_dict(layer.to_dict()) for layer in self.layers],
                             self.id, self.parent_id, copy.deepcopy(self.operations), None)
        if with_weights and self.weights is not None:
            other.weights = {k: list(v) for k, v in self.weights.items()}
        return other

    # ----- serialisation ---------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "sprout-architecture/1", "id": self.id, "parent_id": self.parent_id,
                "input_shape": list(self.input_shape), "n_classes": self.n_classes,
                "operations": self.operations, "layers": [layer.to_dict() for layer in self.layers]}

    def to_json(self) -> str:
        """The structure and history as JSON; weights are saved beside it (see :meth:`save`)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @staticmethod
    def from_dict(d: dict) -> "Architecture":
        if d.get("format") != "sprout-architecture/1":
            raise ValueError("expected an architecture with format 'sprout-architecture/1', "
                             f"received {d.get('format')!r}")
        arch = Architecture(tuple(int(x) for x in d["input_shape"]), int(d["n_classes"]),
                            [Layer.from_dict(layer) for layer in d["layers"]], d.get("id"), d.get("parent_id"),
                            list(d.get("operations", [])))
        arch.shapes()  # validate
        return arch

    @staticmethod
    def from_json(text: str) -> "Architecture":
        return Architecture.from_dict(json.loads(text))

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``architecture.json`` and, when weighted, ``weights.npz`` into ``folder``, atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.weights is not None:
            arrays = {f"{lid}_{i}": w for lid, ws in self.weights.items() for i, w in enumerate(ws)}

            def write(tmp: Path) -> None:
                with open(tmp, "wb") as fh:  # a file object: np.savez adds no suffix to it
                    np.savez(fh, **arrays)

            atomic_write(folder / "weights.npz", write)
        elif (folder / "weights.npz").exists():
            (folder / "weights.npz").unlink()  # stale weights of another architecture must not be loaded with this one
        atomic_write_bytes(folder / "architecture.json", self.to_json().encode("utf-8"))

    @staticmethod
    def load(folder: str | os.PathLike) -> "Architecture":
        folder = Path(folder)
        arch = Architecture.from_json((folder / "architecture.json").read_text())
        if (folder / "weights.npz").exists():
            with np.load(folder / "weights.npz", allow_pickle=False) as npz:
                weights: dict[int, list[np.ndarray]] = {}
                for key in sorted(npz.files, key=lambda k: tuple(int(p) for p in k.split("_"))):
                    lid, _ = key.split("_")
                    weights.setdefault(int(lid), []).append(npz[key])
            arch.weights = weights
        return arch


def _output_shape(layer: Layer, ins: list[tuple[int, ...]], n_classes: int) -> tuple[int, ...]:
    kind, cfg = layer.kind, layer.config
    if kind not in KINDS:
        raise ValueError(f"layer {layer.id}: expected a kind in {KINDS}, received {kind!r}")
    x = ins[0]
    if kind == "conv":
        stride = cfg.get("stride", 1)
        return (-(-x[0] // stride), -(-x[1] // stride), cfg["filters"])
    if kind in ("maxpool", "avgpool"):
        if x[0] < 2 or x[1] < 2:
            raise ValueError(f"layer {layer.id}: cannot pool a {x[0]}x{x[1]} feature map")
        return (x[0] // 2, x[1] // 2, x[2])
    if kind == "gap":
        return (x[2],)
    if kind == "dense":
        return (cfg["units"],)
    if kind == "add":
        if any(s != x for s in ins):
            raise ValueError(f"layer {layer.id}: add needs equal shapes, received {ins}")
        return x
    if kind == "concat":
        if any(s[:-1] != x[:-1] for s in ins):
            raise ValueError(f"layer {layer.id}: concat needs equal spatial shapes, received {ins}")
        return (*x[:-1], sum(s[-1] for s in ins))
    if kind == "softmax" and x != (n_classes,):
        raise ValueError(f"softmax expects {n_classes} inputs, received {x}")
    return x


def seed_architecture(input_shape: tuple[int, int, int], n_classes: int, filters: tuple[int, ...] = (32, 64, 64, 128),
                      dense_units: int = 64, dropout: float = 0.25) -> Architecture:
    """A small CNN sized to the input (DESIGN §2).

    Blocks of Conv3x3 -> BN -> ReLU -> MaxPool are stacked while the feature map stays at
    least 3 pixels wide (at most ``len(filters)`` blocks), then GlobalAveragePooling ->
    Dense -> ReLU -> Dropout -> Dense(n_classes) -> softmax.

    >>> seed_architecture((28, 28, 1), 10).summary()
    'conv32 conv64 conv64 | dense64 dense10'
    """
    h, w, c = (int(v) for v in input_shape)
    if min(h, w) < 4 or c not in (1, 3):
        raise ValueError(f"expected an input of at least 4x4 pixels with 1 or 3 channels, received {input_shape}")
    if n_classes < 2:
        raise ValueError(f"expected at least 2 classes, received {n_classes}")
    layers: list[Layer] = []
    prev, side = 0, min(h, w)

    def add(kind: str, **config) -> None:
        nonlocal prev
        layers.append(Layer(len(layers) + 1, kind, [prev], config))
        prev = layers[-1].id

    for f in filters:
        if side // 2 < 3 and layers:
            break
        add("conv", filters=f, kernel=3, stride=1)
        add("bn")
        add("relu")
        if side // 2 >= 2:
            add("maxpool")
            side //= 2
    add("gap")
    add("dense", units=dense_units)
    add("relu")
    add("dropout", rate=dropout)
    add("dense", units=n_classes)
    add("softmax")
    return Architecture((h, w, c), n_classes, layers)


def init_weights(arch: Architecture, seed: int = 0) -> Architecture:
    """A copy of ``arch`` with fresh weights (Glorot-uniform kernels, zero biases, neutral BN)
    for the layers that have none yet."""
    rng = np.random.default_rng(seed)
    out = arch.copy()
    out.weights = dict(out.weights or {})
    shapes = arch.shapes()
    for layer in arch.layers:
        if layer.kind not in WEIGHTED or layer.id in out.weights:
            continue
        cin = shapes[layer.inputs[0]][-1]
        if layer.kind == "bn":
            out.weights[layer.id] = [np.ones(cin, np.float32), np.zeros(cin, np.float32),
                                     np.zeros(cin, np.float32), np.ones(cin, np.float32)]
            continue
        if layer.kind == "conv":
            k, cout = layer.config["kernel"], layer.config["filters"]
            shape, fan_in, fan_out = (k, k, cin, cout), k * k * cin, k * k * cout
        else:
            cout = layer.config["units"]
            shape, fan_in, fan_out = (cin, cout), cin, cout
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out.weights[layer.id] = [rng.uniform(-limit, limit, shape).astype(np.float32), np.zeros(cout, np.float32)]
    return out
