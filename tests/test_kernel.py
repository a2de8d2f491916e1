"""Edit distance and its cache (engine.nas.distance), the Bourgain embedding (engine.nas.embedding)
and the RBF kernel with its gradient (engine.nas.kernel)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from engine.nas import distance as D
from engine.nas.architecture import seed_architecture
from engine.nas.embedding import BourgainEmbedding, make_embedding
from engine.nas.gp import cholesky_jitter
from engine.nas.kernel import RBF, sq_dists
from engine.nas.morphism import apply
from tests.helpers import random_architectures, random_chain


@dataclass(frozen=True)
class FakeLayer:
    kind: str
    config: dict = field(default_factory=dict)


@dataclass
class FakeArch:
    """A test double: just the two structural views the kernel reads."""

    layers: list
    skips: list = field(default_factory=list)
    id: str | None = None

    def main_chain(self):
        return list(self.layers)

    def skip_connections(self):
        return list(self.skips)

    def fingerprint(self):
        return repr((self.layers, sorted(self.skips)))


def conv(f, k=3, s=1):
    return FakeLayer("conv", {"filters": f, "kernel": k, "stride": s})


def reference_distance(a, b, lam=1.0):
    """Textbook edit distance: a cell-by-cell Levenshtein and an exhaustive skip matching."""
    x, y = a.main_chain(), b.main_chain()
    d = np.zeros((len(x) + 1, len(y) + 1))
    d[:, 0] = np.arange(len(x) + 1)
    d[0, :] = np.arange(len(y) + 1)
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + D.layer_distance(x[i - 1], y[j - 1]))

    def skips(arch):
        return [(u, e - u, t) for u, e, t in arch.skip_connections()]

    def cost(p, q):
        if p[2] != q[2]:
            return 1.0
        return (abs(p[0] - q[0]) + abs(p[1] - q[1])) / (max(p[0], q[0]) + max(p[1], q[1]))

    s1, s2 = skips(a), skips(b)
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    best = min((sum(cost(p, s2[j]) for p, j in zip(s1, perm))
                for perm in itertools.permutations(range(len(s2)), len(s1))), default=0.0)
    return d[-1, -1] + lam * (best + len(s2) - len(s1))


# -------------------------------------------------------------------------- layer distance
def test_layer_distance_follows_the_formula():
    assert D.layer_distance(conv(32), conv(64)) == pytest.approx((0.5 + 0 + 0) / 3)
    assert D.layer_distance(conv(32, 1), conv(32, 5)) == pytest.approx(0.8 / 3)
    assert D.layer_distance(FakeLayer("dense", {"units": 64}), FakeLayer("dense", {"units": 16})) == 0.75
    assert D.layer_distance(FakeLayer("bn"), FakeLayer("bn")) == 0.0
    assert D.layer_distance(FakeLayer("relu"), conv(32)) == 1.0
    assert D.layer_distance(FakeLayer("dropout", {"rate": 0.0}), FakeLayer("dropout", {"rate": 0.0})) == 0.0


def test_skip_set_distance_matches_an_exhaustive_search():
    rng = np.random.default_rng(1)
    for _ in range(200):
        s1 = [(int(rng.integers(0, 9)), int(rng.integers(1, 9)), int(rng.integers(2)))
              for _ in range(rng.integers(0, 5))]
        s2 = [(int(rng.integers(0, 9)), int(rng.integers(1, 9)), int(rng.integers(2)))
              for _ in range(rng.integers(0, 7))]
        a = FakeArch([], [(u, u + s, "add" if t == 0 else "concat") for u, s, t in s1])
        b = FakeArch([], [(u, u + s, "add" if t == 0 else "concat") for u, s, t in s2])
        assert D.edit_distance(a, b) == pytest.approx(reference_distance(a, b), abs=1e-12)


def test_edit_distance_on_a_test_double():
    a = FakeArch([conv(32), FakeLayer("relu"), FakeLayer("gap")])
    b = FakeArch([conv(64), FakeLayer("relu"), conv(32, 1), FakeLayer("relu"), FakeLayer("gap")], [(1, 3, "add")])
    # substitute conv32 -> conv64 (1/6), insert conv + relu (2), one unmatched skip (1)
    assert D.edit_distance(a, b) == pytest.approx(1 / 6 + 2 + 1)
    assert D.edit_distance(a, b, lam=0.5) == pytest.approx(1 / 6 + 2 + 0.5)


def test_rejects_malformed_skips():
    with pytest.raises(ValueError, match="'add' or 'concat'"):
        D.encode(FakeArch([conv(8)], [(0, 1, "mul")]))
    with pytest.raises(ValueError, match="start < end"):
        D.encode(FakeArch([conv(8)], [(2, 1, "add")]))


# ---------------------------------------------------------------- on real architectures
@pytest.fixture(scope="module")
def archs():
    return random_architectures(60, seed=0, max_steps=10)


def test_matches_the_textbook_definition(archs):
    rng = np.random.default_rng(2)
    fast = D.pairwise_distances(archs[:30])
    for _ in range(40):
        i, j = rng.integers(0, 30, size=2)
        assert fast[i, j] == pytest.approx(reference_distance(archs[i], archs[j]), abs=1e-9)


def test_zero_on_identical_architectures_and_symmetric(archs):
    base = seed_architecture((32, 32, 3), 10)
    assert D.edit_distance(base, seed_architecture((32, 32, 3), 10)) == 0.0
    replayed = apply(seed_architecture((32, 32, 3), 10), archs[5].operations)
    assert D.edit_distance(replayed, archs[5]) == 0.0
    d = D.pairwise_distances(archs)
    assert np.all(np.diag(d) == 0.0)
    assert np.array_equal(d, d.T)
    block = D.pairwise_distances(archs[:20], archs[:20])
    np.testing.assert_allclose(block, block.T, atol=1e-12)
    off = d[~np.eye(len(d), dtype=bool)]
    assert off.min() > 0  # the architectures are distinct


def test_triangle_inequality_holds_on_random_architectures(archs):
    d = D.pairwise_distances(archs)
    slack = d[:, :, None] + d[None, :, :] - d[:, None, :]  # d(i,j) + d(j,k) - d(i,k)
    assert slack.min() > -1e-9


def test_distance_grows_with_the_number_of_morphisms():
    rng = np.random.default_rng(3)
    base = seed_architecture((32, 32, 3), 10)
    base.id = "seed"
    steps = [0, 1, 2, 4, 8]
    mean = np.zeros(len(steps))
    n_chains = 25
    for _ in range(n_chains):
        arch, done = base, 0
        for s, target in enumerate(steps):
            arch = random_chain(arch, rng, target - done)
            done = target
            mean[s] += D.edit_distance(base, arch) / n_chains
    assert mean[0] == 0.0
    assert np.all(np.diff(mean) > 0), mean


def test_distance_key_is_equal_exactly_at_distance_zero(archs):
    rng = np.random.default_rng(4)
    base = seed_architecture((32, 32, 3), 10)
    base.id = "seed"
    # many short chains: plenty of exact repeats among them
    pool = [random_chain(base, rng, int(rng.integers(1, 3))) for _ in range(60)] + archs[:20]
    d = D.pairwise_distances(pool)
    keys = [D.distance_key(a) for a in pool]
    same = np.array([[ka == kb for kb in keys] for ka in keys])
    assert same.sum() > len(pool)  # there were repeats to test
    assert np.array_equal(same, d < 1e-9)


def test_distance_matrix_of_100_is_fast():
    archs = random_architectures(100, seed=5, max_steps=10)
    best = min(_timed(lambda: D.pairwise_distances(archs)) for _ in range(2))
    assert best < 1.0, f"100 x 100 distances took {best:.2f} s"


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------- distance cache
def test_cache_adds_one_row_per_architecture(archs, monkeypatch):
    cache = D.DistanceCache()
    for i, arch in enumerate(archs[:20]):
        arch = arch.copy()
        arch.id = f"t{i}"
        cache.add(arch)
    calls = []
    real = D.encoded_distances

    def spy(rows, cols, *args, **kwargs):
        calls.append((len(rows), len(cols)))
        return real(rows, cols, *args, **kwargs)

    monkeypatch.setattr(D, "encoded_distances", spy)
    new = archs[20].copy()
    new.id = "t20"
    assert cache.add(new) == "t20"
    assert calls == [(1, 20)]
    assert cache.add(new) == "t20" and len(calls) == 1  # already there: nothing computed
    np.testing.assert_allclose(cache.matrix(), real(*[[D.encode(a) for a in archs[:21]]] * 2), atol=1e-12)


def test_cache_keys_and_blocks(archs):
    cache = D.DistanceCache()
    named = []
    for i, arch in enumerate(archs[:10]):
        arch = arch.copy()
        arch.id = str(i)
        named.append(arch)
    cache.add_many(named)
    assert cache.keys == [str(i) for i in range(10)]
    untrained = archs[10]
    assert D.arch_key(untrained) == "fp:" + untrained.fingerprint()
    assert untrained not in cache and "3" in cache
    block = cache.distances_to(archs[10:15], ["2", "7", "0"])
    np.testing.assert_allclose(block, D.pairwise_distances(archs[10:15], [archs[2], archs[7], archs[0]]), atol=1e-12)
    np.testing.assert_allclose(cache.matrix(["7", "2"]), D.pairwise_distances([archs[7], archs[2]]), atol=1e-12)
    with pytest.raises(KeyError, match="not in the distance cache"):
        cache.matrix(["nope"])


# ----------------------------------------------------------------- embedding and kernel
def test_bourgain_embedding_is_the_same_map_for_trained_and_candidates(archs):
    trained, candidates = archs[:40], archs[40:]
    d_tt = D.pairwise_distances(trained)
    emb = BourgainEmbedding(seed=0).fit(d_tt)
    x_train = emb.transform(d_tt)
    np.testing.assert_array_equal(x_train, BourgainEmbedding(seed=0).fit_transform(d_tt))
    # a candidate identical to trained point 3 lands exactly on it
    x_copy = emb.transform(D.pairwise_distances([trained[3].copy()], trained))
    np.testing.assert_allclose(x_copy[0], x_train[3], atol=1e-12)
    # coordinates are min-distances to subsets: the scaled map is 1-Lipschitz
    x_cand = emb.transform(D.pairwise_distances(candidates, trained))
    d_ct = D.pairwise_distances(candidates, trained)
    gaps = np.sqrt(sq_dists(x_cand, x_train))
    assert np.all(gaps <= d_ct + 1e-9)
    assert emb.dim_ == len(emb.subsets_) and {len(s) for s in emb.subsets_} == {1, 2, 4, 8, 16, 32}
    with pytest.raises(ValueError, match="distances to the 40 fitted points"):
        emb.transform(np.zeros((2, 39)))


def test_landmark_embedding_is_the_singleton_level():
    d = D.pairwise_distances(random_architectures(12, seed=6))
    emb = make_embedding("landmark").fit(d)
    assert emb.dim_ == 12 and all(len(s) == 1 for s in emb.subsets_)
    np.testing.assert_allclose(emb.transform(d), d / np.sqrt(12))
    assert make_embedding("bourgain").fit(d).dim_ > 0
    with pytest.raises(ValueError, match="'landmark' or 'bourgain'"):
        make_embedding("mds")


@pytest.mark.parametrize("embedding", ["landmark", "bourgain"])
def test_kernel_matrix_of_200_random_architectures_is_positive_definite(embedding, archs200):
    x = make_embedding(embedding, seed=0).fit_transform(archs200)
    gaps = np.sqrt(sq_dists(x, x))
    for scale in (0.5, 1.0, 2.0):
        length = scale * float(np.median(gaps[gaps > 0]))
        kmat = RBF(length)(x)
        assert np.allclose(kmat, kmat.T) and np.all(np.diag(kmat) == 1.0)
        _, jitter = cholesky_jitter(kmat)
        assert jitter <= 1e-6, (scale, jitter)


@pytest.fixture(scope="module")
def archs200():
    """Distances among 200 distinct architectures from random morph chains."""
    return D.pairwise_distances(random_architectures(200, seed=7, max_steps=10))


def test_rbf_values():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    kernel = RBF(length_scale=5.0)
    k = kernel(x)
    assert k[0, 1] == pytest.approx(np.exp(-0.5)) and k[0, 0] == 1.0
    np.testing.assert_array_equal(kernel(x, x[::-1]), k[:, ::-1])
    np.testing.assert_array_equal(kernel.diag(x), np.diag(k))
    np.testing.assert_allclose(kernel.theta, [np.log(5.0)])
    assert kernel.with_theta(np.log([2.0])).length_scale == pytest.approx(2.0)
    np.testing.assert_allclose(RBF(1.0, (0.1, 10.0)).bounds, np.log([[0.1, 10.0]]))
    with pytest.raises(ValueError, match="length_scale should be > 0"):
        RBF(0.0)
    with pytest.raises(ValueError, match="expected Y=None when eval_gradient is True"):
        kernel(x, x, eval_gradient=True)


@pytest.mark.parametrize("length_scale", [0.3, 1.0, 4.0])
def test_rbf_gradient_matches_finite_differences(length_scale):
    x = np.random.default_rng(0).normal(size=(7, 3))
    kernel = RBF(length_scale)
    k, grad = kernel(x, eval_gradient=True)
    np.testing.assert_array_equal(k, kernel(x))
    assert grad.shape == (7, 7, 1)
    eps = 1e-6
    plus, minus = kernel.with_theta(kernel.theta + eps)(x), kernel.with_theta(kernel.theta - eps)(x)
    np.testing.assert_allclose(grad[:, :, 0], (plus - minus) / (2 * eps), atol=1e-8)
    assert np.abs(grad).max() > 1e-3  # the check compares something


@pytest.mark.parametrize("module", ["engine.nas.embedding", "engine.nas.kernel"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
