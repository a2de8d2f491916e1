"""Edit distance between networks (DESIGN §4). The distances become coordinates in
:mod:`engine.nas.embedding`, and the kernel between those is :mod:`engine.nas.kernel`.

Everything here works on the two structural views of an architecture:
``arch.main_chain()`` (layers with ``.kind`` and ``.config``) and
``arch.skip_connections()`` (``(start, end, "add"|"concat")`` indices into the main chain).
Pure NumPy (SciPy only for large skip matchings): no TensorFlow, no Keras.

Speed: an architecture is encoded once (a token per main-chain layer, the layer distances
between tokens precomputed), the Levenshtein recursion runs for a whole block of pairs at
once, and skip sets are matched a group of equal-sized pairs at a time. The 100 x 100
distance matrix takes a fraction of a second.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

MAX_ATTRS = 3

# Numeric attributes compared by the layer distance, per layer kind.
LAYER_ATTRS: dict[str, tuple[str, ...]] = {
    "conv": ("filters", "kernel", "stride"),
    "dense": ("units",),
    "dropout": ("rate",),
}
#: The layers that carry weights: with ``layers="weighted"`` only these count in D_l (issue 14,
#: lever 1), so a deeper step (conv + BN + ReLU) costs 1, not 3, against 0.17 for doubling a width.
WEIGHTED_KINDS = ("conv", "dense")
LAYER_VIEWS = ("all", "weighted")
_KIND_CODES: dict[str, int] = {}
_SKIP_TYPES = {"add": 0, "concat": 1}


def _kind_code(kind: str) -> int:
    """A stable small integer per layer kind (new kinds get the next free code)."""
    if kind not in _KIND_CODES:
        _KIND_CODES[kind] = len(_KIND_CODES)
    return _KIND_CODES[kind]


def layer_attrs(layer: Any) -> tuple[float, ...]:
    """The numeric attributes of ``layer`` that the layer distance compares (see
    :data:`LAYER_ATTRS`; other kinds have none). A tuple value such as (3, 3) counts by
    its first entry."""
    config = getattr(layer, "config", None) or {}
    values = [config[name] for name in LAYER_ATTRS.get(layer.kind, ()) if name in config]
    return tuple(float(v[0] if isinstance(v, (list, tuple)) else v) for v in values)


def _relative_gap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|x - y| / max(x, y) elementwise, 0 where both are 0 (inputs are non-negative)."""
    top = np.maximum(np.maximum(x, y), 1e-300)
    return np.abs(x - y) / top


def layer_distance(l1: Any, l2: Any) -> float:
    """Distance between two layers: 1 for different kinds, otherwise the mean over their
    numeric attributes of |x - y| / max(x, y) (0 when the kind has no attributes)."""
    if l1.kind != l2.kind:
        return 1.0
    a, b = layer_attrs(l1), layer_attrs(l2)
    if len(a) != len(b):
        raise ValueError(
            f"layers of kind {l1.kind!r} should have the same attributes; "
            f"received {len(a)} and {len(b)} numeric values"
        )
    if not a:
        return 0.0
    return float(np.mean(_relative_gap(np.array(a), np.array(b))))


class _Vocabulary:
    """Distinct layers (kind + attributes) seen so far as integer tokens, and the matrix of
    layer distances between tokens, rebuilt when new tokens appeared. Token 0 is padding
    (distance 1 to everything). The vocabulary only grows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[tuple[str, tuple[float, ...]], int] = {("", ()): 0}
        self._entries: list[tuple[str, tuple[float, ...]]] = [("", ())]
        self._cost = np.ones((1, 1))

    def token(self, kind: str, values: tuple[float, ...]) -> int:
        tok = self._index.get((kind, values))
        if tok is None:
            with self._lock:
                tok = self._index.setdefault((kind, values), len(self._entries))
                if tok == len(self._entries):
                    self._entries.append((kind, values))
        return tok

    @property
    def cost(self) -> np.ndarray:
        """Layer distances between all tokens so far, shape (n_tokens, n_tokens)."""
        if len(self._cost) == len(self._entries):
            return self._cost
        with self._lock:
            self._cost = self._build(self._entries[:])
            return self._cost

    @staticmethod
    def _build(entries: list[tuple[str, tuple[float, ...]]]) -> np.ndarray:
        kinds = np.array([_kind_code(k) if k else -1 for k, _ in entries])
        attrs = np.zeros((len(entries), MAX_ATTRS))
        for t, (_, values) in enumerate(entries):
            attrs[t, : len(values)] = values
        n_attrs = np.array([max(1, len(v)) for _, v in entries])
        gap = _relative_gap(attrs[:, None, :], attrs[None, :, :]).sum(-1) / n_attrs[:, None]
        cost = np.where(kinds[:, None] == kinds[None, :], gap, 1.0)
        cost[0, :] = cost[:, 0] = 1.0
        return cost


_VOCAB = _Vocabulary()


@dataclass(frozen=True)
class Encoding:
    """An architecture as arrays: what the edit distance needs, nothing more.

    ``tokens[i]`` identifies main-chain layer i by kind and attributes (see
    :class:`_Vocabulary`), ``skips`` is the sorted tuple of (start, span, type code) and
    ``key`` a hash of both, equal exactly when the edit distance is 0. ``weighted`` is the
    same architecture seen through its weight-carrying layers alone (:data:`WEIGHTED_KINDS`;
    skip indices count those layers), for ``layers="weighted"``; its key is the full one.
    """

    tokens: np.ndarray
    skips: tuple[tuple[int, int, int], ...]
    key: str = field(default="")
    weighted: "Encoding | None" = field(default=None, compare=False, repr=False)

    def view(self, layers: str) -> "Encoding":
        """The encoding the distance compares for ``layers`` ("all" or "weighted")."""
        if layers == "all":
            return self
        if layers != "weighted":
            raise ValueError(f"layers should be one of {', '.join(LAYER_VIEWS)}; received {layers!r}")
        return self.weighted if self.weighted is not None else self

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def encode(arch: Any) -> Encoding:
    """Encode ``arch`` (anything with ``main_chain()`` and ``skip_connections()``);
    an :class:`Encoding` is returned as it is."""
    if isinstance(arch, Encoding):
        return arch
    layers = [(layer.kind, layer_attrs(layer)[:MAX_ATTRS]) for layer in arch.main_chain()]
    tokens = np.array([_VOCAB.token(kind, values) for kind, values in layers], dtype=np.int64)
    skips = []
    for start, end, kind in arch.skip_connections():
        if kind not in _SKIP_TYPES:
            raise ValueError(f"skip connection type should be 'add' or 'concat'; received {kind!r}")
        if not 0 <= start < end:
            raise ValueError(f"skip connection should satisfy 0 <= start < end; received ({start}, {end})")
        skips.append((int(start), int(end - start), _SKIP_TYPES[kind]))
    skips_t = tuple(sorted(skips))
    key = hashlib.blake2b(repr((layers, skips_t)).encode(), digest_size=12).hexdigest()
    carries = np.array([kind in WEIGHTED_KINDS for kind, _ in layers], dtype=bool)
    ends = max((u + s for u, s, _ in skips_t), default=0) + 1  # (skips given without their layers too)
    count = np.cumsum(np.pad(carries, (0, max(0, ends - len(carries)))))  # index -> weighted layers up to it
    wskips = tuple(sorted((int(count[u]), int(count[u + s] - count[u]), t) for u, s, t in skips_t))
    return Encoding(tokens, skips_t, key, Encoding(tokens[carries], wskips, key))


def distance_key(arch: Any) -> str:
    """A hash that is equal for two architectures exactly when their edit distance is 0
    (same layer kinds and attributes along the main chain, same set of skips)."""
    return encode(arch).key


# ---------------------------------------------------------------- layer-sequence distance
def _pad(encs: Sequence[Encoding]) -> tuple[np.ndarray, np.ndarray]:
    """Stack token arrays, padded with token 0; returns (tokens, lengths)."""
    lengths = np.array([len(e) for e in encs], dtype=np.int64)
    tokens = np.zeros((len(encs), max(1, int(lengths.max(initial=0)))), dtype=np.int64)
    for r, e in enumerate(encs):
        tokens[r, : len(e)] = e.tokens
    return tokens, lengths


def layer_sequence_distances(rows: Sequence[Encoding], cols: Sequence[Encoding]) -> np.ndarray:
    """D_l for every pair: Levenshtein between main chains with insertion/deletion cost 1
    and substitution cost = layer distance. Returns an array of shape (len(rows), len(cols)).

    The dynamic programme advances one layer of the row chain at a time for all pairs
    together; within a step the insertion chain is a cumulative minimum, and substitution
    costs are a lookup in the token distance matrix.
    """
    out = np.zeros((len(rows), len(cols)))
    if not rows or not cols:
        return out
    ta, la = _pad(rows)
    tb, lb = _pad(cols)
    cost_m1 = _VOCAB.cost - 1.0
    # E[j] = D[j] - j turns the row recursion into E_i[j] = min(E_{i-1}[j] + 1,
    # E_{i-1}[j-1] + sub - 1, E_i[j-1]): two elementwise steps and a cumulative minimum.
    width = tb.shape[1]
    e = np.zeros((len(rows), len(cols), width + 1))
    out[la == 0] = lb[None, :]
    col_idx = np.arange(len(cols))
    for i in range(int(la.max())):
        cur = np.empty_like(e)
        cur[..., 0] = i + 1
        np.add(e[..., :-1], cost_m1[ta[:, i][:, None, None], tb[None, :, :]], out=cur[..., 1:])
        e += 1.0
        np.minimum(cur[..., 1:], e[..., 1:], out=cur[..., 1:])
        np.minimum.accumulate(cur, axis=-1, out=cur)
        e = cur
        done = np.nonzero(la == i + 1)[0]
        if done.size:
            out[done] = e[done][:, col_idx, lb] + lb[None, :]
    return out


# ---------------------------------------------------------------------- skip distance
PERM_MAX = 1000  # injections enumerated per pair before falling back to linear_sum_assignment
CHUNK = 1 << 21  # cost-tensor elements per vectorised block


def _skip_arrays(encs: Sequence[Encoding]) -> tuple[np.ndarray, np.ndarray]:
    """Skips stacked as floats, (n, k_max, 3), and the number of skips of each."""
    counts = np.array([len(e.skips) for e in encs], dtype=np.int64)
    arr = np.zeros((len(encs), max(1, int(counts.max(initial=0))), 3))
    for r, e in enumerate(encs):
        if e.skips:
            arr[r, : len(e.skips)] = e.skips
    return arr, counts


def _skip_costs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Skip distances between skip arrays a (r, i, 3) and b (c, j, 3), shape (r, c, i, j):
    1 for different types, else (|u1 - u2| + |s1 - s2|) / (max(u1, u2) + max(s1, s2))."""
    a = a[:, None, :, None, :]
    b = b[None, :, None, :, :]
    num = np.abs(a[..., 0] - b[..., 0]) + np.abs(a[..., 1] - b[..., 1])
    den = np.maximum(a[..., 0], b[..., 0]) + np.maximum(a[..., 1], b[..., 1])
    cost = num / np.maximum(den, 1e-300)
    return np.where(a[..., 2] == b[..., 2], cost, 1.0)


@functools.lru_cache(maxsize=None)
def _injections(m: int, k: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(m), k)))


def _matched(cost: np.ndarray) -> np.ndarray:
    """Optimal matching cost for a stack of (k, m) cost matrices with k <= m: shape (...).

    Up to PERM_MAX injections of the smaller set: all enumerated at once, vectorised over
    the stack; beyond that, ``linear_sum_assignment`` matrix by matrix."""
    k, m = cost.shape[-2:]
    if k == 1:
        return cost[..., 0, :].min(axis=-1)
    if math.perm(m, k) <= PERM_MAX:
        perms = _injections(m, k)
        return cost[..., np.arange(k), perms].sum(axis=-1).min(axis=-1)
    from scipy.optimize import linear_sum_assignment  # rarely needed; scipy is slow to import

    flat = cost.reshape(-1, k, m)
    out = np.empty(len(flat))
    for t, matrix in enumerate(flat):
        r, c = linear_sum_assignment(matrix)
        out[t] = matrix[r, c].sum()
    return out.reshape(cost.shape[:-2])


def skip_distances(rows: Sequence[Encoding], cols: Sequence[Encoding]) -> np.ndarray:
    """D_s for every pair (rows x cols): the cost of the optimal matching between the two
    skip sets (rectangular assignment) plus 1 per unmatched skip. Pairs are grouped by their
    numbers of skips and each group is matched at once (see :func:`_matched`)."""
    sa, na = _skip_arrays(rows)
    sb, nb = _skip_arrays(cols)
    out = (na[:, None] + nb[None, :]).astype(np.float64)  # right whenever one side has none
    for i in np.unique(na[na > 0]):
        r_idx = np.nonzero(na == i)[0]
        for j in np.unique(nb[nb > 0]):
            c_idx = np.nonzero(nb == j)[0]
            k, m = min(i, j), max(i, j)
            extra = math.perm(m, k) if 1 < k and math.perm(m, k) <= PERM_MAX else 1
            per_row = len(c_idx) * (i * j + extra * k)
            step = max(1, CHUNK // max(1, per_row))
            for lo in range(0, len(r_idx), step):
                rr = r_idx[lo: lo + step]
                cost = _skip_costs(sa[rr, :i], sb[c_idx, :j])
                if i > j:
                    cost = np.swapaxes(cost, -1, -2)
                out[np.ix_(rr, c_idx)] = _matched(cost) + (m - k)
    return out


def encoded_distances(rows: Sequence[Encoding], cols: Sequence[Encoding], lam: float = 1.0,
                      layers: str = "all") -> np.ndarray:
    """d = D_l + lam * D_s for every pair of encodings, shape (len(rows), len(cols)), over
    ``layers``: "all" main-chain layers or the "weighted" ones (see :meth:`Encoding.view`)."""
    rows, cols = [e.view(layers) for e in rows], [e.view(layers) for e in cols]
    return layer_sequence_distances(rows, cols) + lam * skip_distances(rows, cols)


def edit_distance(a: Any, b: Any, lam: float = 1.0) -> float:
    """Edit distance d(a, b) = D_l + lam * D_s between two architectures (DESIGN §4)."""
    return float(encoded_distances([encode(a)], [encode(b)], lam)[0, 0])


def pairwise_distances(archs_a: Sequence[Any], archs_b: Sequence[Any] | None = None,
                       lam: float = 1.0) -> np.ndarray:
    """Edit distances between two lists of architectures (or within one list)."""
    ea = [encode(a) for a in archs_a]
    if archs_b is not None:
        return encoded_distances(ea, [encode(b) for b in archs_b], lam)
    out = np.zeros((len(ea), len(ea)))
    for r in range(1, len(ea)):  # the layer part row by row, each against the rows before it
        out[r, :r] = layer_sequence_distances([ea[r]], ea[:r])[0]
    skips = skip_distances(ea, ea)
    return out + out.T + lam * 0.5 * (skips + skips.T)


# ---------------------------------------------------------------------- distance cache
def arch_key(arch: Any) -> str:
    """The cache key of an architecture: its id when trained, else its fingerprint."""
    arch_id = getattr(arch, "id", None)
    return str(arch_id) if arch_id else "fp:" + str(arch.fingerprint())


class DistanceCache:
    """A growing distance matrix over architectures, keyed by :func:`arch_key`.

    ``add`` computes one new row (against everything already cached), never the rest.
    ``layers``: which main-chain layers count (see :func:`encoded_distances`).
    """

    def __init__(self, lam: float = 1.0, layers: str = "all") -> None:
        if layers not in LAYER_VIEWS:
            raise ValueError(f"layers should be one of {', '.join(LAYER_VIEWS)}; received {layers!r}")
        self.lam = float(lam)
        self.layers = layers
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self._encodings: list[Encoding] = []
        self._matrix = np.zeros((0, 0))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, arch_or_key: Any) -> bool:
        key = arch_or_key if isinstance(arch_or_key, str) else arch_key(arch_or_key)
        return key in self._index

    def add(self, arch: Any) -> str:
        """Add ``arch`` if it is new (one new row of distances); return its key."""
        key = arch_key(arch)
        if key in self._index:
            return key
        enc = encode(arch)
        row = encoded_distances([enc], self._encodings, self.lam, self.layers)[0] if self.keys else np.zeros(0)
        n = len(self.keys)
        grown = np.zeros((n + 1, n + 1))
        grown[:n, :n] = self._matrix
        grown[n, :n] = row
        grown[:n, n] = row
        self._matrix = grown
        self._index[key] = n
        self.keys.append(key)
        self._encodings.append(enc)
        return key

    def add_many(self, archs: Iterable[Any]) -> list[str]:
        return [self.add(a) for a in archs]

    def indices(self, keys: Sequence[str]) -> np.ndarray:
        missing = [k for k in keys if k not in self._index]
        if missing:
            raise KeyError(f"architectures not in the distance cache: {missing[:5]}")
        return np.array([self._index[k] for k in keys], dtype=np.int64)

    def matrix(self, keys: Sequence[str] | None = None) -> np.ndarray:
        """The distance matrix among ``keys`` (all cached architectures by default)."""
        if keys is None:
            return self._matrix.copy()
        idx = self.indices(keys)
        return self._matrix[np.ix_(idx, idx)]

    def distances_to(self, candidates: Sequence[Any], keys: Sequence[str] | None = None) -> np.ndarray:
        """Distances from each candidate to the cached architectures ``keys`` (default all):
        a (len(candidates), len(keys)) block. Candidates are not added to the cache."""
        idx = np.arange(len(self.keys)) if keys is None else self.indices(keys)
        cols = [self._encodings[i] for i in idx]
        rows = [encode(c) for c in candidates]
        return encoded_distances(rows, cols, self.lam, self.layers)
