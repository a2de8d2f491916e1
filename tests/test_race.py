"""Racing two searchers (issue #18): the two runs' configs, who won, the comparison chart, the
registry starting both at once in one place, and the Race page. No training here: the
registry and the page run tests/fake_worker.py's workers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from engine.errors import SproutError
from engine.figures.race import race_figure
from engine.search.config import SearchConfig
from engine.search.race import outcome, race_configs, races
from tests.helpers import app_at_page

HOLD = [sys.executable, "-m", "tests.fake_worker", "hold"]
QUICK = [sys.executable, "-m", "tests.fake_worker", "quick"]


def _snap(searcher: str, accs: list[float], status: str = "done", test: float | None = None,
          run_id: str = "20261202-120000-aaaaaa") -> dict:
    """A run snapshot whose networks finished a minute apart with these validation accuracies."""
    trials = [{"id": str(k), "parent_id": str(k - 1) if k else None, "status": "ok", "val_accuracy": a,
               "finished_s": 60.0 * (k + 1)} for k, a in enumerate(accs)]
    best = max(range(len(accs)), key=accs.__getitem__) if accs else None
    return {"run_id": run_id, "searcher": searcher, "status": status, "trials": trials, "budget_s": 300,
            "elapsed_s": 60.0 * len(accs) + 30, "best": None if best is None else
            {"trial_id": str(best), "val_accuracy": accs[best]},
            "final": None if test is None else {"test_accuracy": test}}


def test_a_race_is_two_configs_that_differ_only_in_the_searcher():
    config = SearchConfig(budget_s=90, seed=3, image_size=16, max_epochs=2, step=True)
    first, second = race_configs(config, "bfs")
    assert (first.searcher, second.searcher) == ("bayesian", "bfs")
    assert first.race and first.race == second.race and first.race != race_configs(config, "bfs")[0].race
    a, b = first.to_dict(), second.to_dict()
    assert {k for k in a if a[k] != b[k]} == {"searcher"}, "the same data split, seed, budget and settings"
    assert not first.step and not second.step, "a race never waits for Continue"
    for rival, words in (("bayesian", "two different searchers"), ("greedy", "unknown searcher")):
        with pytest.raises(SproutError, match=words):
            race_configs(config, rival)


def test_the_winner_is_named_by_test_accuracy_else_by_validation_accuracy():
    smart, rival = _snap("bayesian", [0.6, 0.8], test=0.91), _snap("random", [0.7, 0.75], test=0.87)
    won = outcome(smart, rival)
    assert won["winner"] == 0 and won["measure"] == "test accuracy" and won["margin"] == pytest.approx(0.04)
    assert won["text"] == "Bayesian won by 4.0 points of test accuracy: 91.0% against random's 87.0%."
    assert outcome(rival, smart)["winner"] == 1
    assert outcome(smart, {**rival, "status": "running"}) is None, "no winner while one still runs"
    # one was stopped before its final network was tested: both are judged by validation accuracy
    stopped = _snap("random", [0.7, 0.85], status="stopped")
    won = outcome(smart, stopped)
    assert won["winner"] == 1 and won["measure"] == "validation accuracy" and won["margin"] == pytest.approx(0.05)
    assert outcome(smart, _snap("random", [], status="stopped")) is None, "nothing to judge"
    draw = outcome(smart, _snap("bfs", [0.8], test=0.91))
    assert draw["winner"] is None and draw["text"].startswith("A draw")


def test_races_are_found_in_the_run_listing_newest_first():
    listing = [{"run_id": "20261202-100000-aaaaaa", "race": "race-1"},
               {"run_id": "20261202-100000-bbbbbb", "race": "race-1"},
               {"run_id": "20261202-110000-cccccc", "race": None},
               {"run_id": "20261202-120000-eeeeee", "race": "race-2"},
               {"run_id": "20261202-120000-dddddd", "race": "race-2"}]
    assert races(listing) == [("race-2", ["20261202-120000-dddddd", "20261202-120000-eeeeee"]),
                              ("race-1", ["20261202-100000-aaaaaa", "20261202-100000-bbbbbb"])]


def test_the_race_chart_draws_each_searchers_best_so_far_on_one_axis():
    fig = race_figure(_snap("bayesian", [0.5, 0.7, 0.6]), _snap("random", [0.4, 0.45]))
    lines = {t.name: t for t in fig.data}
    assert set(lines) == {"bayesian", "random"}
    assert list(lines["bayesian"].y) == [0.5, 0.7, 0.7, 0.7], "best so far, held to the run's time now"
    assert list(lines["bayesian"].x) == [1.0, 2.0, 3.0, 3.5] and list(lines["random"].x) == [1.0, 2.0, 2.5]
    assert lines["bayesian"].line.color != lines["random"].line.color
    lo, hi = fig.layout.yaxis.range
    assert 0 <= lo < 0.4 and 0.7 < hi <= 1.02, "the accuracy axis spans the curves, not below 0 or above 100%"
    empty = race_figure(_snap("bayesian", []), _snap("random", []))
    assert not empty.data and "drawn here" in empty.layout.annotations[0].text


def _proc_args(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _proc_env(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def test_a_race_starts_both_runs_at_once_in_one_place_each_on_half_the_cores(tmp_path, monkeypatch):
    from engine.search import machine
    from engine.search.jobs import Registry

    monkeypatch.setenv("SPROUT_MAX_ACTIVE", "1")
    for name in ("SPROUT_INTRA_OP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(machine, "cpu_count", lambda: 4)
    root = tmp_path / "runs"
    registry = Registry(root, worker=HOLD)
    try:
        config = SearchConfig(budget_s=120, seed=5, image_size=8)
        first, second = registry.start_race("sample", config, "random")
        later = registry.start("sample", config)
        pids = [registry.worker_pid(first), registry.worker_pid(second)]
        assert all(pids), "both runs of the race started, though one place is free"
        assert registry.queue() == [later], "the race takes the one place: a plain search waits"
        end = time.monotonic() + 30
        while any(registry.snapshot(r)["status"] != "running" for r in (first, second)):
            assert time.monotonic() < end, "the workers did not start"  # exec'd: /proc shows their own command
            time.sleep(0.05)
        configs = [json.loads(_proc_args(pid)[-1]) for pid in pids]
        assert [c["searcher"] for c in configs] == ["bayesian", "random"]
        assert configs[0]["race"] == configs[1]["race"] and configs[0]["seed"] == configs[1]["seed"] == 5
        assert [_proc_env(pid)["SPROUT_INTRA_OP_THREADS"] for pid in pids] == ["2", "2"], "half the 4 cores each"
        listed = {r["run_id"]: r.get("race") for r in registry.list_runs()}
        assert listed[first] == listed[second] == configs[0]["race"] and listed[later] is None
        assert registry.snapshot(second)["race"] == configs[0]["race"]
        for run_id in (first, second):
            (root / run_id / "release").write_text("")
        assert registry.wait(first, 30) and registry.wait(second, 30)
        end = time.monotonic() + 30
        while registry.worker_pid(later) is None:
            assert time.monotonic() < end, "the waiting search did not start after the race"
            time.sleep(0.05)
        (root / later / "release").write_text("")
        assert registry.wait(later, 30)
    finally:
        registry.close()


def test_the_race_page_shows_two_trees_one_comparison_chart_and_the_winner(monkeypatch):
    """The Race page with tests/fake_worker.py's "quick" worker: each run tells a three-network
    search in events (bayesian reaches 90% test accuracy, random 80%), no training."""
    import streamlit as st

    from engine.search import jobs

    monkeypatch.setattr(jobs, "WORKER", QUICK)
    at = app_at_page("views/race.py", data="sample", size="8")
    assert not at.exception, at.exception
    at.number_input(key="race_budget_s").set_value(60)
    at.selectbox(key="race_rival").set_value("random")
    at.button(key="race_start").click()
    at.run()
    end = time.monotonic() + 60
    while not at.success:
        assert not at.exception, at.exception
        assert time.monotonic() < end, [m.value for m in at.markdown]
        time.sleep(0.3)
        at.run()
    assert at.success[0].value.endswith("Bayesian won by 10.0 points of test accuracy: 90.0% against random's 80.0%.**")
    charts = {el.proto.id.split("-")[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}
    assert set(charts) == {"race_chart", "race_tree_0", "race_tree_1"}, set(charts)
    assert [t["name"] for t in charts["race_chart"]["data"]] == ["bayesian", "random"]
    for key in ("race_tree_0", "race_tree_1"):
        nodes = [t for t in charts[key]["data"] if t.get("name") == "trained"]
        assert len(nodes[0]["customdata"]) == 3, "each tree holds its run's three networks"
    heads = [h.value for h in at.subheader]
    assert heads.index(":green[bayesian]") + 1 == heads.index(":orange[random]"), heads
    assert heads[-1] == "Start another race" and at.button(key="race_start"), "a new race once this one is over"
    st.cache_resource.clear()
