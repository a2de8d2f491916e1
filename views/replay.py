"""Replay a finished search as it happened (timeline and play), watch the prediction model
learn, and see what makes two networks far apart. Layout only: the moment is rebuilt by
engine.search.replay, the edits by engine.nas.edits, the figures by engine.figures."""

from pathlib import Path

import streamlit as st

from engine.figures.search import curves_figure, distance_heatmap, mds_figure
from engine.figures.style import fmt_duration, ok_trials, pct, trial_by_id
from engine.figures.teaching import gp_learning_figure, marked_pair
from engine.figures.tree import FINAL, tree_figure
from engine.nas.architecture import Architecture
from engine.nas.distance import edit_distance
from engine.nas.edits import edits
from engine.nas.operations import describe_all
from engine.search.labels import run_label
from engine.search.replay import duration, is_replayable, moments, snapshot_at, trials_so_far
from engine.search.status import ACTIVE
from views.common import list_runs, snapshot

DEMO = "demo"
DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo-run"
PICK = "replay_pick"       # session key of the chosen run (the Data page's button sets it to DEMO)
PLAYING = "replay_playing"
TICK_S = 0.5               # a playing replay moves on this often...
PLAY_TICKS = 60            # ...and crosses the whole search in this many steps (30 s)
CHART_CONFIG = {"displayModeBar": False, "scrollZoom": False}


@st.cache_data(show_spinner=False, max_entries=2)
def demo_snapshot(folder: str, stamp: float) -> dict:
    """The recorded demo run's snapshot, read from its folder (only read; ``stamp``: its mtime)."""
    from engine.search.monitor import snapshot_from_disk

    return snapshot_from_disk(Path(folder), run_id=DEMO)


def chosen_snapshot(pick: str | None) -> dict | None:
    if pick == DEMO:
        if not (DEMO_DIR / "trials.jsonl").exists():
            return None
        return demo_snapshot(str(DEMO_DIR), (DEMO_DIR / "trials.jsonl").stat().st_mtime)
    return snapshot(pick)


def run_choices() -> dict[str, str]:
    """Run id -> label, the recorded demo first, then finished runs newest first."""
    out = {DEMO: "Recorded demo: a search on the built-in digits"} if (DEMO_DIR / "trials.jsonl").exists() else {}
    runs = sorted(list_runs(), key=lambda r: str(r.get("created") or ""), reverse=True)
    for r in runs:
        if r.get("status") not in ACTIVE:
            out[r["run_id"]] = run_label(r)
    return out


st.title("Replay a search")
st.html('<p class="sprout-hero">Watch a finished search again, as it happened: drag the timeline or press '
        "Play. Every network, every prediction and every choice appears when it did.</p>")

choices = run_choices()
wanted = st.session_state.get(PICK)
if wanted and wanted not in choices:  # a run that finished seconds ago is not listed yet
    recent = snapshot(wanted)
    if is_replayable(recent):
        choices[wanted] = run_label(recent)
if not choices:
    st.info("Finished searches can be replayed here. Start one on the Search page.", icon=":material/replay:")
    st.stop()
if st.session_state.get(PICK) not in choices:
    st.session_state[PICK] = DEMO if DEMO in choices else next(iter(choices))
pick = st.selectbox("Search to replay", list(choices), format_func=choices.get, key=PICK)
full = chosen_snapshot(pick)
if not is_replayable(full):
    st.warning("This search trained no network, so there is nothing to replay.", icon=":material/info:")
    st.stop()
END = duration(full)
T_KEY = f"replay_t_{pick}"
if T_KEY not in st.session_state:
    st.session_state[T_KEY] = END


# ----- the timeline -----------------------------------------------------------------------
def _set_playing(on: bool) -> None:
    st.session_state[PLAYING] = on
    if on and st.session_state[T_KEY] >= END:
        st.session_state[T_KEY] = 0.0


def _jump(direction: int) -> None:
    """To the previous or next moment when something changed (a network started or finished)."""
    t = st.session_state[T_KEY]
    times = moments(full)
    later = [m for m in times if m > t + 1e-6]
    earlier = [m for m in times if m < t - 1e-6]
    st.session_state[T_KEY] = (later[0] if later else END) if direction > 0 else (earlier[-1] if earlier else 0.0)
    st.session_state[PLAYING] = False


def why_card(snap: dict) -> None:
    """The choice being trained at this moment and why (or the last one, between trials)."""
    flight = snap.get("in_flight") or {}
    with st.container(border=True):
        if flight.get("trial_id") == FINAL:
            st.markdown("**Last step: the best network trains once more on all its images**")
            return
        if flight:
            prop = flight.get("proposal") or {}
            head = f"**Now training network #{flight['trial_id']}**"
            head += (f" · epoch {flight.get('epoch', 0) + 1} of {flight.get('max_epochs')}"
                     if flight.get("max_epochs") else "")
            st.markdown(head)
            if flight.get("parent_id") is None:
                st.caption("A starting network: the search has nothing to predict from yet.")
                return
            st.caption(f"Grown from #{flight['parent_id']}: {describe_all(flight.get('operations'), none='changed')}")
            mean, sigma, ucb, beta = (prop.get(k) for k in ("mean", "sigma", "ucb", "beta"))
        elif (snap.get("replay") or {}).get("t", 0) >= END:
            best, final = snap.get("best") or {}, snap.get("final") or {}
            st.markdown(f"**The search is over.** The best network, #{best.get('trial_id')}, scored "
                        f"{pct(best.get('val_accuracy'))} on validation images"
                        + (f" and {pct(final['test_accuracy'])} on test images it never saw."
                           if final.get("test_accuracy") is not None else "."))
            st.caption("Drag the timeline back, or press Play, to see how it got there.")
            return
        else:
            last = (snap.get("trials") or [None])[-1]
            if last is None:
                st.markdown("**Getting ready:** reading the images and choosing how to train.")
                return
            pred = last.get("prediction") or {}
            st.markdown(f"**Network #{last['id']} has just finished: {pct(last.get('val_accuracy'))}**"
                        if last.get("status") == "ok" else f"**Network #{last['id']} {last.get('status')}**")
            st.caption("The search is choosing the next network.")
            prop, (mean, sigma, ucb, beta) = pred, (pred.get(k) for k in ("mean", "sigma", "ucb", "beta"))
        if prop.get("reason"):
            st.markdown(f":material/lightbulb: **Why this one?** {prop['reason']}")
        if mean is not None and ucb is not None:
            if beta is None and sigma:
                beta = (ucb - mean) / sigma
            st.caption(f"Predicted {pct(mean)} ± {pct(sigma)}. Optimistic score (UCB) {ucb:.3f} = "
                       f"mean {mean:.3f} + β·σ {ucb - mean:.3f}" + (f" (β = {beta:.2f})" if beta else ""))


TICKING = bool(st.session_state.get(PLAYING))  # the fragment's timer is set when the page runs


@st.fragment(run_every=TICK_S if TICKING else None)
def replay() -> None:
    if bool(st.session_state.get(PLAYING)) != TICKING:
        st.rerun()  # Play or Pause was pressed: the whole page again, to start or stop the timer
    if TICKING:
        t = min(END, st.session_state[T_KEY] + END / PLAY_TICKS)
        st.session_state[T_KEY] = min(END, round(t, 1))
        if t >= END:
            st.session_state[PLAYING] = False
            st.rerun()  # the whole page: the timer stops
    play, back, fwd, slider = st.columns([1.2, 0.7, 0.7, 8], vertical_alignment="bottom")
    if st.session_state.get(PLAYING):
        play.button("Pause", icon=":material/pause:", key="replay_pause", on_click=_set_playing, args=(False,))
    else:
        play.button("Play", icon=":material/play_arrow:", key="replay_play", type="primary", on_click=_set_playing,
                    args=(True,))
    back.button("Back", icon=":material/skip_previous:", key="replay_back", on_click=_jump, args=(-1,),
                help="Back to the previous moment a network started or finished")
    fwd.button("Next", icon=":material/skip_next:", key="replay_next", on_click=_jump, args=(1,),
               help="On to the next moment a network starts or finishes")
    t = slider.slider("Time since the search started", min_value=0.0, max_value=float(END), step=0.5,
                      key=T_KEY, format="%.1f s")
    snap = snapshot_at(full, t)
    ok = ok_trials(snap)
    best = snap.get("best") or {}
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Time (of {fmt_duration(END)})", fmt_duration(t))
    c2.metric("Networks trained", len(ok))
    c3.metric("Best validation accuracy", pct(best.get("val_accuracy")))
    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.subheader("The tree of networks", anchor=False)
        st.plotly_chart(tree_figure(snap), key="replay_tree", config=CHART_CONFIG)
    with right:
        why_card(snap)
    view = st.segmented_control("Show", ["Curves per network", "How different they are", "The model learns"],
                                default="The model learns", key="replay_view", label_visibility="collapsed")
    if view == "Curves per network":
        st.caption("Validation accuracy after each epoch, one line per network; the network in training is "
                   "drawn thick, with its training accuracy dashed.")
        flight = (snap.get("in_flight") or {}).get("trial_id")
        st.plotly_chart(curves_figure({**snap, "trials": trials_so_far(snap)}, highlight=flight),
                        key="replay_curves", config=CHART_CONFIG)
    elif view == "How different they are":
        h, m = st.columns(2)
        h.plotly_chart(distance_heatmap(snap), key="replay_heat", config=CHART_CONFIG)
        m.plotly_chart(mds_figure(snap), key="replay_mds", config=CHART_CONFIG)
    else:
        st.caption("Before training a network, the search's model predicts its accuracy (circle, ± 2σ); the "
                   "diamond is what it then reached. Below: how far off each prediction was, and the average so "
                   "far. The more networks it has seen, the better it guesses. Hover a prediction for its "
                   "optimistic score: mean + β·σ.")
        st.plotly_chart(gp_learning_figure(snap), key="replay_gp", config=CHART_CONFIG)


replay()


# ----- distance explained -------------------------------------------------------------------
st.divider()
st.subheader("How far apart are two networks?", anchor=False)
st.caption("The search measures the distance between two networks as the cost of the edits that turn one into "
           "the other: adding or removing a layer costs 1, changing a layer costs the relative change of its size "
           "(1 for a layer of another kind), and each skip connection added, removed or moved costs up to 1. "
           "Networks close together tend to score alike; that is how the model predicts untried ones.")
trained = [t for t in ok_trials(full) if t.get("architecture")]
if len(trained) < 2:
    st.info("Two trained networks are needed to compare.", icon=":material/info:")
    st.stop()
ids = [str(t["id"]) for t in trained]
best_id = str((full.get("best") or {}).get("trial_id", ids[-1]))
pa, pb = st.columns(2)
a_id = pa.selectbox("Network A", ids, index=0, key=f"dist_a_{pick}", format_func=lambda i: f"#{i}")
b_id = pb.selectbox("Network B", ids, index=ids.index(best_id) if best_id in ids else len(ids) - 1,
                    key=f"dist_b_{pick}", format_func=lambda i: f"#{i}")
arch_a = Architecture.from_dict(trial_by_id(full, a_id)["architecture"])
arch_b = Architecture.from_dict(trial_by_id(full, b_id)["architecture"])
found = edits(arch_a, arch_b)
st.metric("Edit distance", f"{edit_distance(arch_a, arch_b):.2f}",
          help="engine.nas.distance.edit_distance: the same number the search's model uses")
if not found:
    st.success("These two networks have the same layers and skip connections: distance 0.",
               icon=":material/check_circle:")
else:
    st.dataframe([{"edit": e.text, "cost": round(e.cost, 3)} for e in found], hide_index=True, width="stretch")
    st.caption(f"Outlined below: :red[coral] = only in A (removed), :green[green] = only in B (added), "
               f":orange[amber] = changed. {len(found)} edit{'s' if len(found) != 1 else ''}, costs adding up to "
               f"{sum(e.cost for e in found):.2f}.")
dot_a, dot_b = marked_pair(trial_by_id(full, a_id)["architecture"], trial_by_id(full, b_id)["architecture"], found,
                           (f"A: network #{a_id}", f"B: network #{b_id}"))
da, db = st.columns(2)
with da, st.container(height=520, border=False):
    st.graphviz_chart(dot_a)
with db, st.container(height=520, border=False):
    st.graphviz_chart(dot_b)
