"""Step mode (issue #18): the search waits before each network it chose, shows the prediction,
and trains it on Continue; the budget clock stands still while it waits, and Stop still works."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from engine.search.config import SearchConfig
from engine.search.monitor import RunMonitor
from engine.search.folder import GO_AHEAD
from tests.helpers import FakeTrainer, app_at_page

FAKE_SEARCH = [sys.executable, "-m", "tests.fake_worker", "search"]


def test_the_snapshot_shows_what_waits_and_its_clock_stands_still_meanwhile(tmp_path):
    monitor = RunMonitor("20261202-120000-aaaaaa", tmp_path, SearchConfig(budget_s=60, step=True))
    monitor.handle({"type": "started", "elapsed_s": 5.0})
    proposal = {"mean": 0.8, "sigma": 0.05, "reason": "close to the best so far", "operations": []}
    monitor.handle({"type": "waiting", "trial_id": "3", "parent_id": "1", "proposal": proposal, "elapsed_s": 12.0})
    first = monitor.snapshot()
    assert first["step"] and first["waiting"] == {"trial_id": "3", "parent_id": "1", "proposal": proposal}
    time.sleep(0.3)
    assert monitor.snapshot()["elapsed_s"] == first["elapsed_s"] == 12.0, "the clock stood still"
    monitor.handle({"type": "continued", "trial_id": "3", "elapsed_s": 12.0, "stopped": False})
    time.sleep(0.2)
    after = monitor.snapshot()
    assert after["waiting"] is None and after["elapsed_s"] >= 12.2, "the clock runs again"


def test_the_tree_draws_the_network_that_waits_with_its_prediction(tmp_path):
    from engine.figures.tree import tree_figure

    monitor = RunMonitor("20261202-120000-aaaaaa", tmp_path, SearchConfig(budget_s=60, step=True))
    monitor.handle({"type": "started", "elapsed_s": 0.0})
    monitor.handle({"type": "trial_finished", "trial": {"id": "0", "parent_id": None, "status": "ok",
                                                        "val_accuracy": 0.7}})
    proposal = {"ancestor_id": "0", "operations": [], "mean": 0.8, "sigma": 0.05, "reason": "close to the best"}
    monitor.handle({"type": "waiting", "trial_id": "1", "parent_id": "0", "proposal": proposal, "elapsed_s": 3.0})
    fig = tree_figure(monitor.snapshot())
    traces = {t.name: t for t in fig.data}
    assert "in flight" not in traces and [c[0] for c in traces["waiting"].customdata] == ["1"]
    hover = traces["waiting"].hovertext[0]
    assert "waits for Continue" in hover and "predicted 80.0% ± 5.0%" in hover and "close to the best" in hover
    assert traces["waiting"].marker.symbol != traces["trained"].marker.symbol[0]  # a style of its own
    assert len(traces["proposed"].x) == 3  # the dotted edge from its parent
    monitor.handle({"type": "continued", "trial_id": "1", "elapsed_s": 3.0, "stopped": False})
    monitor.handle({"type": "trial_started", "trial_id": "1", "parent_id": "0", "max_epochs": 2, "proposal": proposal})
    traces = {t.name: t for t in tree_figure(monitor.snapshot()).data}
    assert "waiting" not in traces and [c[0] for c in traces["in flight"].customdata] == ["1"]


@pytest.fixture
def fake_trainer(monkeypatch):
    from engine.training import trainer

    fake = FakeTrainer()
    monkeypatch.setattr(trainer, "train", fake)
    return fake


def test_the_loop_waits_for_each_go_ahead_without_spending_budget_and_a_stop_ends_the_wait(tmp_path, fake_trainer):
    from engine.search.loop import run_search

    out, stop, events = tmp_path / "run", threading.Event(), []
    pause_s = 0.5

    def later(action) -> None:
        threading.Timer(pause_s, action).start()

    def on_event(event: dict) -> None:
        events.append(event)
        if event["type"] == "waiting" and event["trial_id"] == "1":  # a class thinks, then presses Continue
            later(lambda: (out / GO_AHEAD).write_text("1"))
        elif event["type"] == "waiting":  # at the next one, Stop
            later(stop.set)

    t0 = time.monotonic()
    summary = run_search("sample", out, SearchConfig(budget_s=60, searcher="bayesian", image_size=8, max_epochs=1,
                                                     max_trials=5, step=True), events=on_event, stop=stop)
    wall = time.monotonic() - t0
    kinds = [(e["type"], e.get("trial_id")) for e in events
             if e["type"] in ("waiting", "continued", "trial_started")]
    assert kinds == [("trial_started", "0"), ("waiting", "1"), ("continued", "1"), ("trial_started", "1"),
                     ("waiting", "2"), ("continued", "2")], "the first network starts at once; each chosen one waits"
    waiting = next(e for e in events if e["type"] == "waiting")
    assert waiting["proposal"]["mean"] is not None and waiting["proposal"]["reason"], "the prediction is shown"
    assert summary["status"] == "stopped" and summary["n_trials"] == 2, "Stop ended the wait: network 2 never trained"
    state = json.loads((out / "state.json").read_text())
    assert state["paused_s"] >= 2 * pause_s
    assert summary["wall_s"] <= wall - 2 * pause_s + 0.2, "time spent waiting is not budget time"


def _texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "success") for e in at.get(kind))


@pytest.mark.slow
def test_the_search_page_waits_until_continue_and_stop_works_while_it_waits(monkeypatch):
    """The Search page in step mode with tests/fake_worker.py's "search" worker (the real loop
    and worker, a stand-in trainer): the count of networks stays while the page waits for
    Continue, and grows after it."""
    import streamlit as st

    from engine.search import jobs

    monkeypatch.setattr(jobs, "WORKER", FAKE_SEARCH)
    monkeypatch.setenv("FAKE_EPOCH_S", "0.05")
    at = app_at_page("views/search.py", data="sample", size="8")
    at.number_input(key="budget_s").set_value(600)
    at.number_input(key="epochs").set_value(1)
    at.checkbox(key="step").check()
    at.button(key="start").click()
    at.run()

    def trained() -> int:
        return int({m.label: m.value for m in at.metric}.get("Networks trained", "0"))

    def rerun_until(check, what: str, within: float = 120) -> None:
        end = time.monotonic() + within
        while not check():
            assert not at.exception, at.exception
            assert time.monotonic() < end, f"waited in vain for {what}: {_texts(at)[-500:]}"
            time.sleep(0.3)
            at.run()

    rerun_until(lambda: "continue" in [b.key for b in at.button], "the search to wait for Continue")
    waiting_for = trained()
    assert waiting_for == 1 and "Why this one?" in _texts(at) and "The model predicts" in _texts(at)
    assert "budget clock stands still" in _texts(at)
    for _ in range(4):  # while it waits, nothing trains
        time.sleep(0.4)
        at.run()
        assert trained() == waiting_for and "continue" in [b.key for b in at.button]
    at.button(key="continue").click()
    at.run()
    rerun_until(lambda: trained() > waiting_for, "a network to train after Continue")
    rerun_until(lambda: "continue" in [b.key for b in at.button], "the next pause")
    at.button(key="stop").click()
    at.run()
    rerun_until(lambda: any("Stopped" in h.value for h in at.subheader), "Stop to end a waiting search")
    assert trained() == waiting_for + 1
    st.cache_resource.clear()
