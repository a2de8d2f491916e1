"""The search-quality levers of issue 14, each one switchable, so a benchmark can measure it alone.

A :class:`Levers` value names one choice per lever; its defaults are the search as it was before
the levers existed, except where a measurement decided otherwise (bench/results/levers2.md):
``spend`` ("Lever 8: spend the whole budget"), ``cost`` and ``wider`` ("Real data": 8 levers x 3
seeds at 270 s, the two ahead together with the most networks trained), and ``warmup``
(bench/results/levers3.md: +0.44 points held-out, ahead on 2 of 3 seeds). The CLI sets them with
``--search-option KEY=VALUE`` (``SearchConfig.levers`` holds them as a plain dict, saved in
state.json); ``bench.simulate`` passes the searcher's ones as ``bayesian:KEY=VALUE``.

- ``distance`` (lever 1): ``all`` main-chain layers count in the layer edit distance, or only the
  ``weighted`` ones (conv and dense): one deeper step then costs 1, not 2-3.
- ``score`` (lever 3): a trial's score is the mean validation accuracy of its ``last`` epochs, or
  that of the epoch whose weights are ``kept`` (and handed on to its children).
- ``truncated`` (lever 5): a trial cut short by the deadline enters the GP the ``same`` as the
  others, with extra ``noise`` (:data:`TRUNCATED_STD` per missing share of its epochs), or is left
  out (``exclude``).
- ``lineage`` (lever 6): the GP sees the architecture alone (``none``), also the log of the
  epochs its weights have trained in all (``epochs``), or models the ``gain`` of a network over
  its trained ancestor.
- ``expand`` (lever 7): the annealing makes ``attempts`` (8 random morphs, duplicates lost) at a
  node, or collects 8 new ``children`` and first expands every trained network once.
- ``cost`` (lever 8): the proposal maximises ``ucb``, or the optimistic gain over the best score
  per predicted training time (``gain_per_time``: flops relative to the best network's).
- ``spend`` (lever 8, second half; default ``all``): the search ends when no child fits its full
  epochs and the fine-tune trains at most 3x the recipe's epochs (``capped``, the search before),
  or children train fewer epochs (down to one) before the cost cap shrinks and the fine-tune takes
  every whole epoch the time left holds (``all``; a run with ``max_trials`` or ``max_epochs`` set
  keeps the capped fine-tune): :mod:`engine.search.loop`, :mod:`engine.search.final`.
- ``steps`` (issue 14's compare at 270 s): a proposal lies up to ``2`` morphisms from a trained
  network, or ``1``, as greedy growth's always do. The 5-seed compare found bayesian proposals 1.5-1.9
  morphisms from their parent, fewer networks trained than bfs (9.4 against 11.4) and bayesian
  behind by 0.5 points (bench/results/compare-270s-5seeds.md): a proposal two steps away costs more
  to train and is further from what the GP has seen.
- ``wider`` (lever 4b): a widened layer's new channels get ``zero`` outgoing weights, or the
  outgoing weights of the channel they copy are ``split`` between the copies (Net2Net).
- ``warmup`` (lever 4, training side; default ``children``): every trial starts at the full learning
  rate (``none``), or a network that inherits trained weights ramps it up over its first
  :data:`WARMUP_STEPS` steps (``children``): bench/results/inheritance-step.md found a concat skip's
  child 2 points below its parent after one step at the full rate.
- ``child_floor`` (issue 14's compare on a slow machine): where the budget's plan shortens grown
  networks' epochs, it goes down to one ``epoch``, or to the epochs of
  :data:`engine.search.plan.MIN_CHILD_STEPS` optimiser ``steps``.
- ``seed`` (issue 14's compare on a fast machine): the first network is the ``small`` CNN of
  DESIGN §2 (32/64/64 filters, a dense layer of 64), or as ``wide`` as the hand-built CNN a search
  must beat (32/64/128, 128; :data:`WIDE_SEED`). A 270 s search of fashion-mnist-small widened the
  small seed's first conv and its dense layer in most of its 22 trials (to 48 and 192): trials spent
  growing to a size a person would start at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

#: The extra standard deviation (accuracy units) of a truncated trial's score, per missing share
#: of its planned epochs. A first guess, not fitted: about the epoch-to-epoch jump of a trial's
#: validation accuracy under a cosine rate (2.6-2.8 points, bench/results/levers.md).
TRUNCATED_STD = 0.03

#: The steps over which a child's learning rate ramps up from 5% of its value (``warmup=children``,
#: at most a quarter of the trial's steps). Adam's first update moves each weight by the learning
#: rate times the sign of its gradient (m / sqrt(v) = g / |g|), and its first moment needs about
#: 1 / (1 - beta_1) = 10 batches before an update reflects how consistent a gradient is rather than
#: its sign; 20 steps is a third of an epoch of fashion-mnist-small. A first guess, not fitted.
WARMUP_STEPS = 20

CHOICES: dict[str, tuple[str, ...]] = {
    "distance": ("all", "weighted"),
    "score": ("last", "kept"),
    "truncated": ("same", "noise", "exclude"),
    "lineage": ("none", "epochs", "gain"),
    "expand": ("attempts", "children"),
    "cost": ("ucb", "gain_per_time"),
    "wider": ("zero", "split"),
    "spend": ("all", "capped"),
    "steps": ("2", "1"),
    "warmup": ("none", "children"),
    "child_floor": ("epoch", "steps"),
    "seed": ("small", "wide"),
}

#: The seed's conv filters (one per block while the map stays 3 pixels wide or more) and dense
#: units under ``seed=small`` and ``seed=wide``.
SMALL_SEED = ((32, 64, 64, 128), 64)
WIDE_SEED = ((32, 64, 128, 128), 128)

#: The levers the Bayesian searcher reads (the others act in training and in the morphisms).
SEARCHER_LEVERS = ("distance", "truncated", "lineage", "expand", "cost", "steps")


@dataclass(frozen=True)
class Levers:
    """One choice per lever (see the module docstring); the defaults are the search before issue 14
    but for ``spend``, ``cost``, ``wider`` and ``warmup``."""

    distance: str = "all"
    score: str = "last"
    truncated: str = "same"
    lineage: str = "none"
    expand: str = "attempts"
    cost: str = "gain_per_time"  # measured: bench/results/levers2.md, "Real data" (ahead on 3 of 3 seeds)
    wider: str = "split"  # measured: bench/results/levers2.md, "Real data" (ahead on 2 of 3 seeds)
    spend: str = "all"  # measured: bench/results/levers2.md, "Lever 8: spend the whole budget"
    steps: str = "2"
    warmup: str = "children"  # measured: bench/results/levers3.md (ahead on 2 of 3 seeds)
    child_floor: str = "epoch"
    seed: str = "small"

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"search option {name} should be one of {', '.join(allowed)}; received {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict | None) -> "Levers":
        """Levers from a dict of some of them (None or {}: the defaults); unknown names are an error."""
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in fields(Levers)})
        if unknown:
            raise ValueError(f"unknown search option {unknown[0]!r}; expected one of {', '.join(CHOICES)}")
        return Levers(**{k: str(v) for k, v in d.items()})

    def seed_shape(self) -> tuple[tuple[int, ...], int]:
        """The seed network's (conv filters, dense units) for the ``seed`` lever."""
        return WIDE_SEED if self.seed == "wide" else SMALL_SEED

    def changed(self) -> dict:
        """The levers set to something other than their default, as a dict."""
        default = Levers()
        return {k: v for k, v in self.to_dict().items() if getattr(default, k) != v}

    def searcher_params(self, searcher: str) -> dict:
        """Constructor parameters of ``searcher`` ("bayesian", "random" or "bfs") for these levers:
        every lever it reads, defaults included, so the defaults live here and nowhere else."""
        params = {"wider": self.wider}
        if searcher == "bayesian":
            params |= {k: getattr(self, k) for k in SEARCHER_LEVERS}
            params["max_steps"] = int(params.pop("steps"))
        return params


def parse(text: str) -> dict:
    """``"distance=weighted,score=kept"`` as ``{"distance": "weighted", "score": "kept"}`` (checked)."""
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected search options as key=value; received {part!r}")
        out[key.strip()] = value.strip()
    Levers.from_dict(out)
    return out
