"""The Race page: the smart searcher against random or breadth-first on the same images, split,
seed and budget, at the same time; their best-so-far curves on one chart, their trees side by
side, and who won."""

import streamlit as st

from engine.errors import SproutError
from engine.figures.race import race_figure
from engine.figures.style import fmt_duration, ok_trials
from engine.figures.tree import tree_figure
from engine.search.labels import SEPARATOR, data_name, run_time
from engine.search.race import outcome, races
from views.common import (
    chosen_size, data_label, empty_state, get_state, go, is_active, list_runs, load_report, registry, set_state,
    source_of, status_words,
)

RIVALS = {
    "random": "Random: grows a random earlier network",
    "bfs": "Breadth-first: tries every small change in turn",
}
CHART_CONFIG = {"displayModeBar": False, "scrollZoom": False}
RACE_KEY = "race_runs"  # session: the two run ids of the race on show

st.title("Race two searchers")
st.html('<p class="sprout-hero">Does a model of the search space beat guessing? The smart searcher (Bayesian) '
        "races random or breadth-first choices: the same images, the same split, the same seed, the same time, "
        "each on half of this computer.</p>")

token = get_state("data")


def _snapshot(run_id: str) -> dict | None:
    try:
        return registry().snapshot(run_id)
    except SproutError:
        return None


def _race_label(runs: list[dict]) -> str:
    """A race in words that stay the same while it runs (a select box's options must not change):
    when it started, the data, the two searchers."""
    first = runs[0]
    words = [run_time({"run_id": first["run_id"]}), data_name(first.get("data_source")),
             " against ".join(str(r.get("searcher") or "?") for r in runs)]
    return SEPARATOR.join(w for w in words if w)


def chosen_race() -> list[dict]:
    """The snapshots of the race on show: this tab's last one (or one picked), else the newest."""
    ids = st.session_state.get(RACE_KEY)
    listing = list_runs()
    by_id = {r["run_id"]: r for r in listing}
    # the smart searcher first (left, green) as the race was started: the two run ids, made in the same
    # second, would otherwise sort by their random suffixes
    found = {race: sorted(runs, key=lambda i: by_id[i].get("searcher") != "bayesian") for race, runs in races(listing)}
    current = next((race for race, runs in found.items() if runs == ids), None)
    if found and (current is not None or not ids):
        if current is not None and st.session_state.get("race_picker") != current:
            st.session_state["race_picker"] = current  # a race started here since the last pick

        def picked() -> None:
            st.session_state[RACE_KEY] = list(found[st.session_state["race_picker"]])

        pick = st.selectbox("Race", list(found), key="race_picker", on_change=picked,
                            format_func=lambda race: _race_label([by_id[i] for i in found[race]]))
        ids = st.session_state[RACE_KEY] = list(found[pick])
    return [s for s in (_snapshot(i) for i in ids or []) if s]


def start_form() -> None:
    if not token:
        empty_state("First choose your images: drop a folder or try the sample.", "Choose images", "data",
                    key="race_to_data")
        return
    try:
        report, _ = load_report(token, chosen_size())
    except SproutError as exc:
        st.error(f"These images cannot be used: {exc}", icon=":material/error:")
        return
    with st.container(border=True):
        if snaps:
            st.subheader("Start another race", anchor=False)
        st.caption(f"Racing on {data_label(token, report)}, resized to {report['image_size']}×{report['image_size']} "
                   "pixels.")
        c1, c2 = st.columns([2, 3])
        minutes = c1.number_input("Time budget of each (minutes)", min_value=1, max_value=60, value=3, step=1,
                                  key="race_budget_min")
        rival = c2.selectbox("Smart (Bayesian) against", list(RIVALS), format_func=RIVALS.get, key="race_rival")
        with st.expander("Advanced settings"):
            a1, a2, a3 = st.columns(3)
            epochs = a1.number_input("Most epochs per network", min_value=0, max_value=50, value=0,
                                     key="race_epochs", help="0 lets Sprout choose from your images.")
            seed = a2.number_input("Random seed", min_value=0, max_value=2**31 - 1, value=0, key="race_seed",
                                   help="Both searchers use it: the same split and the same first network.")
            budget_s = a3.number_input("…or a budget in seconds", min_value=0, max_value=3600, value=0, step=10,
                                       key="race_budget_s", help="Overrides the minutes when above 0.")
        if st.button("Start the race", type="primary", icon=":material/sports_score:", key="race_start"):
            from engine.search.config import SearchConfig

            # from scratch: the race is about choosing whole networks, and a pretrained start would load for both
            config = SearchConfig(budget_s=float(budget_s or minutes * 60), searcher="bayesian", seed=int(seed),
                                  image_size=int(report["image_size"]), max_epochs=int(epochs) or None,
                                  pretrained="none")
            try:
                ids = registry().start_race(source_of(token), config, rival)
            except SproutError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            st.session_state[RACE_KEY] = list(ids)
            list_runs.clear()
            st.rerun()


snaps = chosen_race()
racing = any(is_active(s) for s in snaps)
if len(snaps) != 2:
    start_form()
    st.stop()


def runner_column(snap: dict, colour: str, index: int) -> None:
    trials = ok_trials(snap)
    best = (snap.get("best") or {}).get("val_accuracy")
    st.subheader(f":{colour}[{snap.get('searcher')}]", anchor=False)
    st.caption(status_words(snap))
    if snap.get("status") == "failed" and snap.get("error"):
        st.error(snap["error"], icon=":material/error:")
    m1, m2 = st.columns(2)
    m1.metric("Networks trained", len(trials))
    m2.metric("Best validation accuracy", f"{best:.1%}" if best is not None else "–")
    st.plotly_chart(tree_figure(snap, height=380), key=f"race_tree_{index}", config=CHART_CONFIG)
    if st.button("Open in the Search page", key=f"race_open_{index}", type="tertiary",
                 icon=":material/open_in_new:", help="Its tree, distances and predictions, and its downloads"):
        set_state("run", snap["run_id"])
        go("search")


@st.fragment(run_every=1.0 if racing else None)
def live() -> None:
    fresh = [_snapshot(s["run_id"]) or s for s in snaps]
    if racing and not any(is_active(s) for s in fresh):
        st.rerun()  # the race ended: redraw the whole page, the start form included
    result = outcome(*fresh)
    if result is not None:
        trophy = ":material/emoji_events:" if result["winner"] is not None else ":material/handshake:"
        st.success(f"{trophy} **{result['text']}**", icon=":material/sports_score:")
    elif not any(is_active(s) for s in fresh):
        st.warning("No winner: a searcher ended without a trained network (its reason is below).",
                   icon=":material/warning:")
    elif any(is_active(s) for s in fresh):
        elapsed = max(float(s.get("elapsed_s") or 0) for s in fresh)
        head, stop = st.columns([5, 1], vertical_alignment="center")
        head.caption(f":material/timer: {fmt_duration(elapsed)} of {fmt_duration(fresh[0].get('budget_s'))} · "
                     "each searcher runs on half of this computer's cores")
        if stop.button("Stop both", icon=":material/stop:", key="race_stop"):
            for s in fresh:
                try:
                    registry().stop(s["run_id"])
                except SproutError as exc:
                    st.error(str(exc), icon=":material/error:")
    st.subheader("Best accuracy so far", anchor=False)
    st.plotly_chart(race_figure(*fresh), key="race_chart", config=CHART_CONFIG)
    columns = st.columns(2, gap="medium")
    for index, (snap, colour, column) in enumerate(zip(fresh, ("green", "orange"), columns)):
        with column:
            runner_column(snap, colour, index)


live()
if not racing:
    start_form()  # under the race on show
