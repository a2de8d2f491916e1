"""A race: two searchers on the same data, split, seed and budget, at the same time.

Both runs of a race are ordinary runs (each can be downloaded, resumed and replayed); what
links them is the race id in their configs (``SearchConfig.race``). The registry starts them
together, each with half of one place's cores (:meth:`engine.search.jobs.Registry.start_race`).
Plain functions; no TensorFlow.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from engine.errors import SproutError
from engine.search.config import SEARCHERS, SearchConfig
from engine.search.status import FINISHED

TIE = 0.005  # accuracies closer than half a point are a draw: the test split of a small set cannot tell them apart


def new_race_id() -> str:
    """A short random id shared by the two runs of one race."""
    return "race-" + secrets.token_hex(4)


def race_configs(config: SearchConfig, rival: str) -> tuple[SearchConfig, SearchConfig]:
    """The two runs' configs: ``config`` as given, and the same with ``rival``'s searcher; both
    carry one new race id. The same seed gives both the same split and the same first network."""
    if rival not in SEARCHERS:
        raise SproutError(f"unknown searcher {rival!r} to race against; expected bayesian, random or bfs")
    if rival == config.searcher:
        raise SproutError(f"a race needs two different searchers; received {rival!r} twice")
    race = new_race_id()
    return replace(config, race=race, step=False), replace(config, searcher=rival, race=race, step=False)


def races(listing: list[dict]) -> list[tuple[str, list[str]]]:
    """The races among ``listing`` (Registry.list_runs), newest first: (race id, its run ids in
    the order they were started)."""
    found: dict[str, list[str]] = {}
    for run in sorted(listing, key=lambda r: r["run_id"]):
        if run.get("race"):
            found.setdefault(str(run["race"]), []).append(run["run_id"])
    return sorted(found.items(), key=lambda kv: max(kv[1]), reverse=True)


def scores(first: dict, second: dict) -> tuple[list[float | None], str]:
    """What the two runs are judged by, and its name: their final networks' test accuracy
    (measured on the same held-out test images); where either has none (stopped before its
    final network was tested), the best validation accuracy of each."""
    snaps = (first, second)
    tests = [(s.get("final") or {}).get("test_accuracy") for s in snaps]
    if all(t is not None for t in tests):
        return [float(t) for t in tests], "test accuracy"
    best = [(s.get("best") or {}).get("val_accuracy") for s in snaps]
    return [None if b is None else float(b) for b in best], "validation accuracy"


def outcome(first: dict, second: dict, tie: float = TIE) -> dict | None:
    """Who won the race of the two snapshots, and by how much; None while either still runs or
    has nothing to judge. ``winner`` is 0 or 1 (the index of the snapshot), None for a draw;
    ``margin`` is the difference in accuracy (0.02 = 2 points); ``text`` says it in words."""
    if any(s.get("status") not in FINISHED for s in (first, second)):
        return None
    values, measure = scores(first, second)
    if any(v is None for v in values):
        return None
    margin = abs(values[0] - values[1])
    names = [str(s.get("searcher") or f"run {i + 1}") for i, s in enumerate((first, second))]
    result = {"winner": None, "margin": margin, "measure": measure, "scores": values}
    if margin < tie:
        return {**result, "text": f"A draw: {names[0]} {values[0]:.1%} and {names[1]} {values[1]:.1%} {measure}."}
    win = 0 if values[0] > values[1] else 1
    return {**result, "winner": win,
            "text": f"{names[win].capitalize()} won by {100 * margin:.1f} points of {measure}: "
                    f"{values[win]:.1%} against {names[1 - win]}'s {values[1 - win]:.1%}."}
