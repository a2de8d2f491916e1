"""The Replay page under Streamlit's AppTest, on the recorded demo run (assets/demo-run: no
training): one click from the first page, the timeline, Play, and the distance view, whose
distance and edits must be engine's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.nas.architecture import Architecture
from engine.nas.distance import edit_distance
from engine.nas.edits import edits, total_cost
from engine.search.monitor import snapshot_from_disk
from engine.search.replay import duration, moments, snapshot_at

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo-run"
PAGE = "views/replay.py"


@pytest.fixture(autouse=True)
def _fresh_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def demo() -> dict:
    return snapshot_from_disk(DEMO, run_id="demo")


def _replay_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def _trained_in_tree(at: AppTest) -> list[str]:
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        for trace in spec["data"]:
            if trace.get("name") == "trained":
                return [c[0] for c in trace["customdata"]]
    return []


def _arch(trial_id: str) -> Architecture:
    return Architecture.from_json((DEMO / "trials" / trial_id / "architecture.json").read_text())


def test_the_demo_is_small_and_holds_no_weights_or_machine_paths():
    files = [f for f in DEMO.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 2 * 2**20
    assert not [f for f in files if f.suffix in (".npz", ".keras")]
    assert all(key not in json.loads((DEMO / "state.json").read_text()) for key in ("pid", "host"))
    assert "files" not in json.loads((DEMO / "summary.json").read_text())


def test_watch_a_recorded_search_is_one_click_from_the_first_page(demo):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.button(key="watch_demo").click()
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Replay a search"
    assert at.selectbox(key="replay_pick").value == "demo"
    ok = [t["id"] for t in demo["trials"] if t["status"] == "ok"]
    assert len(ok) >= 3 and _trained_in_tree(at) == ok  # it opens at the end: the whole tree


def test_the_timeline_shows_the_run_as_it_was(demo):
    at = _replay_page()
    times = moments(demo)
    for t in (times[2], times[len(times) // 2], duration(demo)):
        at.slider(key="replay_t_demo").set_value(t)
        at.run()
        assert not at.exception, at.exception
        then = snapshot_at(demo, t)
        assert _trained_in_tree(at) == [tr["id"] for tr in then["trials"] if tr["status"] == "ok"]
        assert {m.label: m.value for m in at.metric}["Networks trained"] == str(len(_trained_in_tree(at)))
    # Play starts again from the beginning and moves on by itself
    at.button(key="replay_play").click()
    at.run()
    first = at.slider(key="replay_t_demo").value
    at.run()
    assert 0 < first < at.slider(key="replay_t_demo").value < duration(demo)
    at.button(key="replay_pause").click()
    at.run()
    assert at.button(key="replay_play")


def test_the_distance_view_shows_engines_distance_and_the_edits_between_two_networks(demo):
    at = _replay_page()
    ok = [t for t in demo["trials"] if t["status"] == "ok"]
    child = next(t for t in ok[1:] if t.get("parent_id") is not None)
    for a_id, b_id in ((ok[0]["id"], ok[-1]["id"]), (child["parent_id"], child["id"])):
        at.selectbox(key="dist_a_demo").set_value(a_id)
        at.selectbox(key="dist_b_demo").set_value(b_id)
        at.run()
        assert not at.exception, at.exception
        a, b = _arch(a_id), _arch(b_id)
        shown = {m.label: m.value for m in at.metric}["Edit distance"]
        assert shown == f"{edit_distance(a, b):.2f}" and float(shown) > 0
        table = at.dataframe[0].value
        expected = edits(a, b)
        assert list(table["edit"]) == [e.text for e in expected]
        assert total_cost(expected) == pytest.approx(edit_distance(a, b))
        assert list(table["cost"]) == pytest.approx([round(e.cost, 3) for e in expected])
        assert len(at.get("graphviz_chart")) == 2
