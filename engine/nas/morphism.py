"""Network morphisms (DESIGN §3): children that compute their parent's function.

Each morphism takes ``(arch, rng, limits=None)`` and returns a child :class:`Architecture`
or ``None`` when nothing applies or every choice it tried breaks the limits (``None``
means the default :class:`Limits`). It makes its random choices, records them in a JSON-able
operation dict (formats in :mod:`engine.nas.surgery`) and applies it with
:func:`engine.nas.surgery.apply_op`, so :func:`apply` can replay a recorded path on the trained
ancestor and obtain the same child, weights included. Works on unweighted architectures
too (structure only), which is what the acquisition search does by the thousand.

The child has ``id=None``, ``parent_id`` = the nearest trained ancestor and ``operations``
= the path from it. The input architecture and its weight arrays are never modified.
:mod:`engine.nas.operations` puts the recorded operations in words.

>>> import numpy as np
>>> from engine.nas.architecture import seed_architecture
>>> child = deeper(seed_architecture((28, 28, 1), 10), np.random.default_rng(0))
>>> child.depth(), child.operations[-1]["op"]
(6, 'deeper')
"""

from __future__ import annotations

import numpy as np

from engine.nas.architecture import Architecture, Limits
from engine.nas.surgery import (Net, NotApplicable, apply_op, channel_groups, measure, nonnegative_nodes, skip_pools,
                            wider_plan)

KINDS = ("deeper", "wider", "add_skip", "concat_skip")
MAX_TRIES = 12  # random placements a morphism tries before giving up


def _attempt(arch: Architecture, op: dict, limits: Limits, net: Net) -> Architecture | None:
    try:
        return apply_op(arch, op, limits, net)
    except NotApplicable:
        return None


def _size(shape: tuple[int, ...]) -> int:
    size = 1
    for d in shape:
        size *= d
    return size


def deeper(arch: Architecture, rng: np.random.Generator, limits: Limits | None = None) -> Architecture | None:
    """Insert an identity Conv(1/3/5)+BN(+ReLU) in the conv part or an identity Dense(+ReLU)
    in the head, on a random main-chain edge. A ReLU is added only where its input is known
    to be non-negative."""
    limits = limits or Limits()
    net = Net(arch)
    params, act, depth = measure(arch, net.shapes)
    if depth >= limits.max_depth:
        return None
    nonneg = nonnegative_nodes(arch)
    sites = [(i, "conv") for i in range(net.gap)] + [(i, "dense") for i in range(net.gap, net.out)]
    first = arch.next_layer_id()
    for s in rng.permutation(len(sites))[:MAX_TRIES]:
        i, part = sites[s]
        layer = net.chain[i]
        src = net.output_node(layer.id)
        relu = src in nonneg
        n_new = (2 if part == "conv" else 1) + relu
        width, size = net.width(src), _size(net.shapes[src])
        op = {"op": "deeper", "after": layer.id, "after_kind": layer.kind, "part": part, "relu": bool(relu),
              "new_ids": list(range(first, first + n_new))}
        if act + 4 * n_new * size > limits.max_activation_bytes:
            continue
        if part == "dense":
            kernels = [1]
        else:
            k = int(rng.choice([1, 3, 5]))
            kernels = [k] + [s for s in (3, 1) if s < k]  # smaller kernels when the limits bite
        for k in kernels:
            added = k * k * width * width + (5 * width if part == "conv" else width)  # kernel, bias (+ BN)
            if params + added > limits.max_params:
                continue
            child = _attempt(arch, {**op, "kernel": k} if part == "conv" else op, limits, net)
            if child is not None:
                return child
    return None


def wider(arch: Architecture, rng: np.random.Generator, limits: Limits | None = None,
          outgoing: str = "zero") -> Architecture | None:
    """Add channels to a conv or hidden dense layer and to everything tied to it (its
    channel group, through adds and concats): new channels copy random existing ones (plus
    tiny noise); consumers read them with zero weights (``outgoing="zero"``) or share the
    copied channel's weights with it (``"split"``, Net2Net: the new channels learn from the
    first step). Layers whose widening the edit distance cannot see are never chosen."""
    limits = limits or Limits()
    net = Net(arch)
    params = measure(arch, net.shapes)[0]
    groups = channel_groups(arch)
    output_dense = net.chain[net.out].id
    candidates = [layer for layer in arch.layers if layer.kind in ("conv", "dense") and layer.id != output_dense]
    for c in rng.permutation(len(candidates))[:MAX_TRIES]:
        layer = candidates[c]
        width = net.width(layer.id)
        try:
            plan = wider_plan(net, groups, layer.id, [0])
        except NotApplicable:
            continue
        if not any(net.by_id[lid].role == "main" for lid in plan["out"]):
            # e.g. a concat skip's 1x1 projection: the child is at edit distance 0 from its
            # parent, always dropped as a duplicate, so the attempt would be wasted (issue 14, lever 2)
            continue
        # parameters per added channel, a lower bound: new output columns, new input rows, BN
        per_channel = 4 * len(plan["bn"])
        for lid in plan["out"]:
            per_channel += _kernel_area(net.by_id[lid]) * net.width(net.by_id[lid].inputs[0]) + 1
        for lid in plan["in"]:
            consumer = net.by_id[lid]
            per_channel += _kernel_area(consumer) * net.width(lid) * int(plan["in"][lid][1].sum())
        amounts = [width, width // 2, width // 4]
        start = int(rng.integers(0, 2))  # double, or add half the width
        for add in [a for a in amounts[start:] if a >= 1]:
            if params + add * per_channel > limits.max_params:
                continue
            op = {"op": "wider", "layer": layer.id, "kind": layer.kind, "add": int(add),
                  "sources": [int(j) for j in rng.choice(width, add, replace=False)],
                  "noise_seed": int(rng.integers(2**31))}
            if outgoing == "split":
                op["split"] = True
            child = _attempt(arch, op, limits, net)
            if child is not None:
                return child
    return None


def _kernel_area(layer) -> int:
    return layer.config["kernel"] ** 2 if layer.kind == "conv" else 1


def _skip(kind: str, arch: Architecture, rng: np.random.Generator, limits: Limits | None) -> Architecture | None:
    limits = limits or Limits()
    net = Net(arch)
    params, act, _ = measure(arch, net.shapes)
    merge = "add" if kind == "add_skip" else "concat"
    existing = {(layer.config.get("start"), layer.config.get("end")) for layer in arch.layers if layer.kind == merge}
    pairs = []
    for j in range(2, net.gap):
        for i in range(j - 1):
            a, b = net.chain[i].id, net.chain[j].id
            if (a, b) not in existing:
                pairs.append((a, b))
    first = arch.next_layer_id()
    tries = 0
    for p in rng.permutation(len(pairs)):
        a, b = pairs[p]
        pools = skip_pools(net, a, b)
        if pools is None:
            continue
        c_src, dst = net.width(net.output_node(a)), net.output_node(b)
        c_dst = net.width(dst)
        added = c_src * c_dst + c_dst + (c_dst * c_dst if merge == "concat" else 0)
        if params + added > limits.max_params or act + 8 * _size(net.shapes[dst]) > limits.max_activation_bytes:
            continue
        op = {"op": kind, "start": a, "end": b, "new_ids": list(range(first, first + len(pools) + 2))}
        child = _attempt(arch, op, limits, net)
        if child is not None:
            return child
        tries += 1
        if tries >= MAX_TRIES:
            break
    return None


def add_skip(arch: Architecture, rng: np.random.Generator, limits: Limits | None = None) -> Architecture | None:
    """Sum a zero-initialised 1x1-conv branch from main layer a into the output of main layer b
    (the branch repeats the poolings between them)."""
    return _skip("add_skip", arch, rng, limits)


def concat_skip(arch: Architecture, rng: np.random.Generator, limits: Limits | None = None) -> Architecture | None:
    """Concatenate a branch from main layer a with the output of main layer b, then project
    back to b's width with a 1x1 conv that is the identity on b's channels."""
    return _skip("concat_skip", arch, rng, limits)


MORPHISMS = {"deeper": deeper, "wider": wider, "add_skip": add_skip, "concat_skip": concat_skip}


def random_morph(arch: Architecture, rng: np.random.Generator, limits: Limits | None = None,
                 wider_outgoing: str = "zero") -> Architecture | None:
    """A child by one morphism; the kinds are tried in random order until one applies
    (``wider_outgoing``: see :func:`wider`)."""
    for k in rng.permutation(len(KINDS)):
        if KINDS[k] == "wider":
            child = wider(arch, rng, limits, wider_outgoing)
        else:
            child = MORPHISMS[KINDS[k]](arch, rng, limits)
        if child is not None:
            return child
    return None


def apply(arch: Architecture, operations: list[dict]) -> Architecture:
    """Replay recorded operations on ``arch`` (weighted or not): the same child, ids and
    weights included, as the morphisms that recorded them produced.

    Raises :class:`engine.nas.surgery.NotApplicable` (a ValueError) when an operation does not
    fit, e.g. when replayed on the wrong ancestor."""
    if not operations:
        return arch.copy()
    for op in operations:
        arch = apply_op(arch, op)
    return arch
