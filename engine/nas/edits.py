"""The edits that turn one network into another, each with its share of the edit distance.

:func:`engine.nas.distance.edit_distance` is D_l + lam * D_s (DESIGN §4): a Levenshtein distance
between the two main chains (a layer added or removed costs 1, a layer changed costs the layer
distance) and an optimal matching between the two sets of skip connections (a matched pair costs
the skip distance, an unmatched skip 1). :func:`edits` follows one optimal way through both,
so its costs add up to the same number the Gaussian process uses; changes that cost nothing
(equal layers, equal skips) are left out. NumPy and SciPy only.

Positions are 1-based places on the main chain (input to softmax), as a person counts the
boxes of a drawing; ``a`` and ``b`` name the layers by their ids, for marking a drawing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.nas.distance import layer_distance

ADD, REMOVE, CHANGE = "add", "remove", "change"
ADD_SKIP, REMOVE_SKIP, CHANGE_SKIP = "add skip", "remove skip", "change skip"
KIND_WORDS = {"bn": "batch norm", "relu": "ReLU", "maxpool": "max pooling", "avgpool": "average pooling",
              "gap": "global average pooling", "softmax": "softmax", "dropout": "dropout"}
SKIP_WORDS = {"add": "sum", "concat": "concat"}


@dataclass(frozen=True)
class Edit:
    """One difference between network A and network B.

    ``kind``: add / remove / change (a main-chain layer) or add skip / remove skip / change skip;
    ``cost``: its part of the edit distance; ``a``, ``b``: the layer ids it concerns in A and in B
    (a skip by its merge layer; None on the side that lacks it); ``text``: the edit in words.
    """

    kind: str
    cost: float
    a: int | None
    b: int | None
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def layer_words(layer: Any) -> str:
    """A layer in a few words: ``conv 3×3, 32 filters``, ``dense, 64 units``, ``ReLU``."""
    cfg = getattr(layer, "config", None) or {}
    if layer.kind == "conv":
        k = cfg.get("kernel", 3)
        k = k[0] if isinstance(k, (list, tuple)) else k
        text = f"conv {k}×{k}, {cfg.get('filters', '?')} filters"
        return text + (f", stride {cfg['stride']}" if cfg.get("stride", 1) != 1 else "")
    if layer.kind == "dense":
        return f"dense, {cfg.get('units', '?')} units"
    if layer.kind == "dropout" and isinstance(cfg.get("rate"), (int, float)):
        return f"dropout {cfg['rate']:.0%}"
    return KIND_WORDS.get(layer.kind, layer.kind)


def _alignment(chain_a: list, chain_b: list) -> list[tuple[int | None, int | None, float]]:
    """One optimal Levenshtein alignment of two main chains as (index in A or None, index in
    B or None, cost) steps, substitution cost = layer distance, insertion and deletion 1."""
    n, m = len(chain_a), len(chain_b)
    sub = np.array([[layer_distance(x, y) for y in chain_b] for x in chain_a]).reshape(n, m)
    d = np.zeros((n + 1, m + 1))
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j - 1] + sub[i - 1, j - 1], d[i - 1, j] + 1, d[i, j - 1] + 1)
    steps: list[tuple[int | None, int | None, float]] = []
    i, j = n, m
    while i or j:  # walk back, preferring a substitution on ties (keeps like layers paired)
        if i and j and np.isclose(d[i, j], d[i - 1, j - 1] + sub[i - 1, j - 1]):
            steps.append((i - 1, j - 1, float(sub[i - 1, j - 1])))
            i, j = i - 1, j - 1
        elif i and np.isclose(d[i, j], d[i - 1, j] + 1):
            steps.append((i - 1, None, 1.0))
            i -= 1
        else:
            steps.append((None, j - 1, 1.0))
            j -= 1
    return steps[::-1]


def _skips(arch: Any) -> list[tuple[int, int, str, int]]:
    """Each skip as (start index, end index on the main chain, "add"|"concat", merge layer id)."""
    index = {layer.id: i for i, layer in enumerate(arch.main_chain())}
    return [(index[layer.config["start"]], index[layer.config["end"]], layer.kind, layer.id)
            for layer in arch.layers if layer.kind in ("add", "concat")]


def skip_cost(x: tuple, y: tuple) -> float:
    """The skip distance (DESIGN §4): 1 for different types, else (|u1 - u2| + |s1 - s2|) /
    (max(u1, u2) + max(s1, s2)) with u the start index and s the span (end - start)."""
    if x[2] != y[2]:
        return 1.0
    u1, s1, u2, s2 = x[0], x[1] - x[0], y[0], y[1] - y[0]
    return (abs(u1 - u2) + abs(s1 - s2)) / (max(u1, u2) + max(s1, s2))


def _skip_words(skip: tuple) -> str:
    return f"skip ({SKIP_WORDS.get(skip[2], skip[2])}) from layer {skip[0] + 1} to layer {skip[1] + 1}"


def _skip_edits(a: Any, b: Any, lam: float) -> list[Edit]:
    from scipy.optimize import linear_sum_assignment

    sa, sb = _skips(a), _skips(b)
    pairs: list[tuple[int, int]] = []
    if sa and sb:
        cost = np.array([[skip_cost(x, y) for y in sb] for x in sa])
        rows, cols = linear_sum_assignment(cost)
        pairs = list(zip(rows.tolist(), cols.tolist()))
    out = []
    for r, c in pairs:
        cost = skip_cost(sa[r], sb[c])
        if cost > 0:
            out.append(Edit(CHANGE_SKIP, lam * cost, sa[r][3], sb[c][3],
                            f"change {_skip_words(sa[r])} into {_skip_words(sb[c])}"))
    matched_a, matched_b = {r for r, _ in pairs}, {c for _, c in pairs}
    out += [Edit(REMOVE_SKIP, lam, s[3], None, f"remove the {_skip_words(s)}")
            for k, s in enumerate(sa) if k not in matched_a]
    out += [Edit(ADD_SKIP, lam, None, s[3], f"add a {_skip_words(s)}")
            for k, s in enumerate(sb) if k not in matched_b]
    return out


def edits(a: Any, b: Any, lam: float = 1.0) -> list[Edit]:
    """The edits that turn architecture ``a`` into ``b`` along one optimal path of the edit
    distance: layer changes in main-chain order, then skip changes. Their costs add up to
    :func:`engine.nas.distance.edit_distance` (a, b, lam); an empty list means distance 0."""
    chain_a, chain_b = a.main_chain(), b.main_chain()
    out = []
    for i, j, cost in _alignment(chain_a, chain_b):
        if i is not None and j is not None:
            if cost == 0:
                continue
            x, y = chain_a[i], chain_b[j]
            where = f"layer {i + 1}" if i == j else f"layer {i + 1} (layer {j + 1} in B)"
            out.append(Edit(CHANGE, cost, x.id, y.id, f"change {where} from {layer_words(x)} to {layer_words(y)}"))
        elif i is not None:
            out.append(Edit(REMOVE, cost, chain_a[i].id, None, f"remove layer {i + 1}, {layer_words(chain_a[i])}"))
        else:
            out.append(Edit(ADD, cost, None, chain_b[j].id, f"add layer {j + 1} of B, {layer_words(chain_b[j])}"))
    return out + _skip_edits(a, b, lam)


def total_cost(found: list[Edit]) -> float:
    """The edit distance that a list of edits adds up to."""
    return float(sum(e.cost for e in found))
