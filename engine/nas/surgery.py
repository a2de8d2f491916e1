"""The surgery behind the morphisms: replay one recorded operation on an architecture.

:func:`apply_op` edits the layers of a copy of an architecture and, when it is weighted,
its weights (NumPy only, no TensorFlow), so that the child computes the same function as
the parent in inference mode. The random choices live in :mod:`engine.nas.morphism`; an
operation dict holds everything needed to redo them deterministically. Operation formats:

- ``{"op": "deeper", "after": id, "after_kind": kind, "part": "conv"|"dense", "kernel": 1|3|5
  (conv only), "relu": bool, "new_ids": [conv, bn(, relu)] | [dense(, relu)]}``
- ``{"op": "wider", "layer": id, "kind": "conv"|"dense", "add": k, "sources": [k channel
  indices], "noise_seed": int(, "split": true)}``: with ``split`` the consumers share each copied
  channel's weights among its copies (Net2Net) instead of reading the new ones with zeros
- ``{"op": "add_skip" | "concat_skip", "start": id, "end": id, "new_ids": [...]}``: new ids
  are the branch poolings, then the 1x1 conv and the add (add_skip) or the concat and the
  1x1 projection (concat_skip).

Parent weight arrays are never written to; every changed layer gets new arrays.
"""

from __future__ import annotations

import numpy as np

from engine.nas.architecture import BN_EPSILON, CHANNELWISE, Architecture, Layer, Limits

NOISE = 1e-4  # symmetry-breaking noise on copied channels, relative to the kernel's range
POOLS = ("maxpool", "avgpool")


class NotApplicable(ValueError):
    """The operation does not fit this architecture (or its result breaks the limits)."""


class Net:
    """Facts about one architecture that the morphisms consult, computed once."""

    def __init__(self, arch: Architecture):
        self.arch = arch
        self.chain = arch.main_chain()
        self.index = {layer.id: i for i, layer in enumerate(self.chain)}
        self.by_id = {layer.id: layer for layer in arch.layers}
        self.shapes = arch.shapes()
        kinds = [layer.kind for layer in self.chain]
        if "gap" not in kinds or len(kinds) < 3 or kinds[-1] != "softmax" or kinds[-2] != "dense":
            raise NotApplicable("expected a main chain with a global pooling and a dense + softmax output")
        self.gap = kinds.index("gap")  # conv part: main-chain indices < gap
        self.out = len(kinds) - 2  # index of the output dense
        self.consumers: dict[int, list[Layer]] = {}
        for layer in arch.layers:
            for node in dict.fromkeys(layer.inputs):
                self.consumers.setdefault(node, []).append(layer)

    def output_node(self, layer_id: int) -> int:
        i = self.index[layer_id]
        return layer_id if i + 1 == len(self.chain) else self.chain[i + 1].inputs[0]

    def width(self, node: int) -> int:
        return self.shapes[node][-1]


def nonnegative_nodes(arch: Architecture) -> set[int]:
    """Nodes whose values are never negative: the (rescaled) image, ReLU and softmax outputs,
    and poolings, dropout, adds and concats of such nodes."""
    nonneg = {0}
    for layer in arch.layers:
        if layer.kind in ("relu", "softmax") or (
                layer.kind in ("maxpool", "avgpool", "dropout", "gap", "add", "concat")
                and all(i in nonneg for i in layer.inputs)):
            nonneg.add(layer.id)
    return nonneg


def channel_groups(arch: Architecture) -> dict[int, int]:
    """Node -> group root. A group is a set of nodes whose channels correspond one to one:
    linked by channel-wise layers (bn, relu, poolings, dropout, gap) and by add."""
    parent = {0: 0}

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for layer in arch.layers:
        parent[layer.id] = layer.id
        if layer.kind in CHANNELWISE or layer.kind == "add":
            for i in layer.inputs:
                a, b = find(i), find(layer.id)
                if a != b:
                    parent[a] = b
    return {n: find(n) for n in parent}


def wider_plan(net: Net, groups: dict[int, int], layer_id: int, sources) -> dict:
    """How widening ``layer_id``'s channel group by ``len(sources)`` touches each layer.

    Returns ``{"out": {id: (index, new)}, "in": {id: (index, new)}, "bn": {id: index}}``:
    the producers whose output channels become ``old[..., index]`` (``new`` marks the added
    ones), the consumers whose input channels do (added ones get zero weights), and the BN
    layers whose parameters do. Raises :class:`NotApplicable` when the group cannot be widened.
    """
    members: dict[int, list[int]] = {}
    for node, root in groups.items():
        members.setdefault(root, []).append(node)
    width = net.width(layer_id)
    index = np.concatenate([np.arange(width), np.asarray(sources, dtype=np.int64)])
    new = np.arange(len(index)) >= width
    plan: dict = {"out": {}, "in": {}, "bn": {}}
    todo = [(groups[layer_id], index, new, None)]
    seen: dict[int, int] = {}
    output_dense = net.chain[net.out].id
    while todo:
        root, index, new, via = todo.pop()
        nodes = members[root]
        for n in nodes:
            kind = "input" if n == 0 else net.by_id[n].kind
            if kind in ("conv", "dense") and via is None and n != output_dense:
                plan["out"][n] = (index, new)
            elif kind == "bn":
                plan["bn"][n] = index
            elif not (kind in CHANNELWISE or kind == "add" or (kind == "concat" and n == via)):
                raise NotApplicable(f"layer {layer_id}: its channels are also produced by {kind} {n}")
        for n in nodes:
            for c in net.consumers.get(n, []):
                if c.kind in ("conv", "dense"):
                    plan["in"][c.id] = (index, new)
                elif c.kind == "concat":
                    if c.id in seen:
                        if seen[c.id] != root:
                            raise NotApplicable(f"concat {c.id} reads two widened groups")
                        continue
                    seen[c.id] = root
                    parts, marks, offset = [], [], 0
                    for s in c.inputs:
                        w = net.width(s)
                        if groups[s] == root:
                            parts.append(offset + index)
                            marks.append(new)
                        else:
                            parts.append(offset + np.arange(w))
                            marks.append(np.zeros(w, bool))
                        offset += w
                    todo.append((groups[c.id], np.concatenate(parts), np.concatenate(marks), c.id))
    return plan


def measure(arch: Architecture, shapes: dict[int, tuple[int, ...]]) -> tuple[int, int, int]:
    """``(n_params, activation_bytes, depth)`` of ``arch`` from its shapes, in one pass: the
    numbers :meth:`Limits.allows` checks (much faster than calling the three methods)."""
    activations = 0
    for shape in shapes.values():
        size = 1
        for d in shape:
            size *= d
        activations += size
    params = depth = 0
    for layer in arch.layers:
        kind = layer.kind
        if kind == "conv":
            k, f = layer.config["kernel"], layer.config["filters"]
            params += k * k * shapes[layer.inputs[0]][-1] * f + f
        elif kind == "dense":
            u = layer.config["units"]
            params += shapes[layer.inputs[0]][-1] * u + u
        elif kind == "bn":
            params += 4 * shapes[layer.inputs[0]][-1]
        else:
            continue
        depth += layer.role == "main" and kind in ("conv", "dense")
    return params, 4 * activations, depth


def within(limits: Limits, params: int, activation_bytes: int, depth: int) -> bool:
    return params <= limits.max_params and activation_bytes <= limits.max_activation_bytes and depth <= limits.max_depth


# ----- applying one operation -------------------------------------------------------

def apply_op(arch: Architecture, op: dict, limits: Limits | None = None, net: Net | None = None) -> Architecture:
    """The child of ``arch`` under the recorded operation ``op`` (structure, and weights when
    ``arch`` is weighted). With ``limits``, raises :class:`NotApplicable` before any weight
    work when the child would break them. ``net`` is ``Net(arch)`` when the caller has it."""
    layers = [Layer(layer.id, layer.kind, list(layer.inputs), dict(layer.config), layer.role) for layer in arch.layers]
    net = net or Net(arch)
    kind = op.get("op")
    if kind == "deeper":
        edit = _deeper(net, layers, op)
    elif kind == "wider":
        edit = _wider(net, layers, op)
    elif kind in ("add_skip", "concat_skip"):
        edit = _skip(net, layers, op)
    else:
        raise NotApplicable(f"expected an operation in deeper, wider, add_skip, concat_skip, received {kind!r}")
    child = Architecture(tuple(arch.input_shape), arch.n_classes, layers, None,
                         arch.id if arch.id else arch.parent_id, ([] if arch.id else list(arch.operations)) + [op])
    try:
        shapes = child.shapes()
    except (ValueError, KeyError, IndexError) as exc:
        raise NotApplicable(f"{kind} does not fit: {exc}") from exc
    if limits is not None and (not within(limits, *measure(child, shapes)) or child.flops() > limits.max_flops):
        raise NotApplicable(f"{kind}: the child breaks the limits")
    if arch.weights is not None:
        weights = {k: list(v) for k, v in arch.weights.items()}
        edit(weights)
        child.weights = weights
    return child


def _insert_before(layers: list[Layer], before_id: int, new: list[Layer]) -> None:
    pos = next(i for i, layer in enumerate(layers) if layer.id == before_id)
    layers[pos:pos] = new


def _fresh(net: Net, ids) -> list[int]:
    ids = [int(i) for i in ids]
    if any(i in net.by_id or i <= 0 for i in ids) or len(set(ids)) != len(ids):
        raise NotApplicable(f"new layer ids {ids} clash with the architecture's")
    return ids


def _main(net: Net, layer_id: int) -> int:
    if layer_id not in net.index:
        raise NotApplicable(f"layer {layer_id} is not on the main chain")
    return net.index[layer_id]


def _deeper(net: Net, layers: list[Layer], op: dict):
    i = _main(net, op["after"])
    part = op["part"]
    if part == "conv" and not i < net.gap or part == "dense" and not net.gap <= i < net.out:
        raise NotApplicable(f"cannot deepen the {part} part after layer {op['after']}")
    src = net.output_node(op["after"])
    width = net.width(src)
    ids = _fresh(net, op["new_ids"])
    if len(ids) != (2 if part == "conv" else 1) + bool(op["relu"]):
        raise NotApplicable(f"deeper: expected {len(ids)} new ids")
    if part == "conv":
        k = int(op["kernel"])
        if k not in (1, 3, 5):
            raise NotApplicable(f"deeper: expected a kernel of 1, 3 or 5, received {k}")
        new = [Layer(ids[0], "conv", [src], {"filters": width, "kernel": k, "stride": 1}),
               Layer(ids[1], "bn", [ids[0]])]
    else:
        new = [Layer(ids[0], "dense", [src], {"units": width})]
    if op["relu"]:
        new.append(Layer(ids[-1], "relu", [new[-1].id]))
    nxt = net.chain[i + 1].id
    _insert_before(layers, nxt, new)
    next(layer for layer in layers if layer.id == nxt).inputs[0] = new[-1].id

    def edit(weights: dict) -> None:
        eye = np.arange(width)
        if part == "conv":
            kernel = np.zeros((k, k, width, width), np.float32)
            kernel[k // 2, k // 2, eye, eye] = 1.0
            weights[ids[0]] = [kernel, np.zeros(width, np.float32)]
            weights[ids[1]] = [np.ones(width, np.float32), np.zeros(width, np.float32), np.zeros(width, np.float32),
                               np.full(width, 1.0 - BN_EPSILON, np.float32)]
        else:
            weights[ids[0]] = [np.eye(width, dtype=np.float32), np.zeros(width, np.float32)]
    return edit


def _wider(net: Net, layers: list[Layer], op: dict):
    layer_id, add = int(op["layer"]), int(op["add"])
    if (layer_id not in net.by_id or net.by_id[layer_id].kind not in ("conv", "dense")
            or layer_id == net.chain[net.out].id):
        raise NotApplicable(f"layer {layer_id} is not a conv or hidden dense layer")
    sources = np.asarray(op["sources"], dtype=np.int64)
    width = net.width(layer_id)
    if add < 1 or len(sources) != add or sources.min() < 0 or sources.max() >= width:
        raise NotApplicable(f"wider: expected {add} source channels below {width}")
    plan = wider_plan(net, channel_groups(net.arch), layer_id, sources)
    for layer in layers:
        if layer.id in plan["out"]:
            layer.config["filters" if layer.kind == "conv" else "units"] += add

    def edit(weights: dict) -> None:
        noise = np.random.default_rng(int(op["noise_seed"]))
        for layer in net.arch.layers:
            lid = layer.id
            if lid in plan["bn"]:
                weights[lid] = [w[plan["bn"][lid]] for w in weights[lid]]
            if lid not in plan["in"] and lid not in plan["out"]:
                continue
            kernel, bias = weights[lid]
            span = float(kernel.max() - kernel.min()) if kernel.size else 0.0
            if lid in plan["in"]:
                index, new = plan["in"][lid]
                kernel = kernel[..., index, :]
                if op.get("split"):  # each channel's copies share its outgoing weights: same sum
                    kernel = kernel / np.bincount(index)[index][:, None].astype(np.float32)
                else:
                    kernel[..., new, :] = 0.0
            if lid in plan["out"]:
                index, new = plan["out"][lid]
                kernel, bias = kernel[..., index], bias[index]
                shape = kernel[..., new].shape
                kernel[..., new] += (NOISE * span * noise.uniform(-1.0, 1.0, shape)).astype(np.float32)
            weights[lid] = [np.ascontiguousarray(kernel, np.float32), np.ascontiguousarray(bias, np.float32)]
    return edit


def skip_pools(net: Net, start: int, end: int) -> list[str] | None:
    """The poolings a skip from main layer ``start`` to ``end`` must repeat, or None when the
    pair cannot take a skip (not in the conv part, too close, a strided conv between)."""
    i, j = net.index.get(start), net.index.get(end)
    if i is None or j is None or not (j - i >= 2 and j < net.gap):
        return None
    pools = []
    for layer in net.chain[i + 1:j + 1]:
        if layer.kind in POOLS:
            pools.append(layer.kind)
        elif layer.kind == "conv" and layer.config.get("stride", 1) != 1:
            return None
    return pools


def _skip(net: Net, layers: list[Layer], op: dict):
    start, end, kind = int(op["start"]), int(op["end"]), op["op"]
    merge = "add" if kind == "add_skip" else "concat"
    pools = skip_pools(net, start, end)
    if pools is None:
        raise NotApplicable(f"no skip fits from layer {start} to layer {end}")
    if any(layer.kind == merge and layer.config.get("start") == start and layer.config.get("end") == end
           for layer in net.arch.layers):
        raise NotApplicable(f"a {merge} skip from layer {start} to layer {end} exists already")
    ids = _fresh(net, op["new_ids"])
    if len(ids) != len(pools) + 2:
        raise NotApplicable(f"{kind}: expected {len(pools) + 2} new ids, received {len(ids)}")
    src, dst = net.output_node(start), net.output_node(end)
    c_src, c_dst = net.width(src), net.width(dst)
    new, prev = [], src
    for lid, pool in zip(ids, pools):
        new.append(Layer(lid, pool, [prev], {}, "skip"))
        prev = lid
    span = {"start": start, "end": end}
    if merge == "add":
        new.append(Layer(ids[-2], "conv", [prev], {"filters": c_dst, "kernel": 1, "stride": 1}, "skip"))
        new.append(Layer(ids[-1], "add", [dst, ids[-2]], span, "skip"))
    else:
        new.append(Layer(ids[-2], "concat", [dst, prev], span, "skip"))
        new.append(Layer(ids[-1], "conv", [ids[-2]], {"filters": c_dst, "kernel": 1, "stride": 1}, "skip"))
    nxt = net.chain[net.index[end] + 1].id
    _insert_before(layers, nxt, new)
    next(layer for layer in layers if layer.id == nxt).inputs[0] = ids[-1]

    def edit(weights: dict) -> None:
        if merge == "add":
            weights[ids[-2]] = [np.zeros((1, 1, c_src, c_dst), np.float32), np.zeros(c_dst, np.float32)]
        else:
            kernel = np.zeros((1, 1, c_dst + c_src, c_dst), np.float32)
            kernel[0, 0, np.arange(c_dst), np.arange(c_dst)] = 1.0
            weights[ids[-1]] = [kernel, np.zeros(c_dst, np.float32)]
    return edit
