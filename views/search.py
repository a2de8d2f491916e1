"""The Search page: start a search, and watch it happen (tree, distances, curves, the trial in flight)."""

import streamlit as st

from engine.errors import SproutError
from engine.figures.network import network_dot
from engine.figures.search import curves_figure, distance_heatmap, mds_figure, prediction_figure, progress_figure
from engine.figures.style import fmt_duration, ok_trials, trial_by_id
from engine.figures.tree import FINAL, selected_trial, tree_figure
from engine.nas.operations import describe_all
from engine.nas.proposals import fraction_text
from engine.search.labels import device_parts
from engine.search.status import FINISHED, RunStatus
from views.common import (
    chosen_size, data_label, empty_state, get_state, go, is_active, list_runs, load_report, page_button, registry,
    NEW_SEARCH, run_picker, set_state, snapshot, source_of, status_words,
)
from views.warmup import device_name

SEARCHERS = {
    "bayesian": "Smart (Bayesian): predicts which network to try next",
    "random": "Random: grows a random earlier network (for comparison)",
    "bfs": "Breadth-first: tries every small change in turn (for comparison)",
}
STARTS = {
    "auto": "Automatic: pretrained for colour photos, from scratch otherwise",
    "none": "From scratch",
    "file": "Pretrained, with weights from a file",
}
CHART_CONFIG = {"displayModeBar": False, "scrollZoom": False}
LIVE_REFRESH_S = 1.0  # how often the live view refreshes while a search runs

st.title("Search")
st.html('<p class="sprout-hero">Sprout tries network after network. Each new one grows out of an earlier one, '
        "keeps what it learnt, and is trained a little more. A prediction model chooses the most promising "
        "change each time.</p>")

token = get_state("data")
snap = run_picker("Search run")
active = is_active(snap)


# ----- start a new search ---------------------------------------------------------------
def start_form() -> None:
    if not token:
        empty_state("First choose your images: drop a folder or try the sample.", "Choose images", "data",
                    key="to_data")
        return
    # The form is drawn before the data's report is read: on a server's first visit that decodes the
    # images (0.1 s for the sample, seconds for a large upload), and Start need not wait for it.
    slot = st.empty()  # the form, or why these images cannot be used
    form = slot.container(border=True)
    with form:
        st.html('<span class="sprout-step">Step 3 · start the search</span>')
        about = st.empty()
        c1, c2 = st.columns([2, 3])
        minutes = c1.number_input("Time budget (minutes)", min_value=1, max_value=240, value=5, step=1,
                                  key="budget_min",
                                  help="The search, the final test and the export all fit in this time.")
        searcher = c2.selectbox("How to choose the next network", list(SEARCHERS), format_func=SEARCHERS.get,
                                key="searcher")
        with st.expander("Advanced settings"):
            a1, a2, a3 = st.columns(3)
            epochs = a1.number_input("Most epochs per network", min_value=0, max_value=50, value=0, key="epochs",
                                     help="An epoch is one pass over the training images. 0 (the default) lets "
                                          "Sprout choose from your images: more for the first network, fewer for "
                                          "networks that inherit trained weights.")
            seed = a2.number_input("Random seed", min_value=0, max_value=2**31 - 1, value=0, key="seed",
                                   help="The same seed, data and settings give the same split and choices.")
            budget_s = a3.number_input("…or a budget in seconds", min_value=0, max_value=4 * 3600, value=0, step=10,
                                       key="budget_s", help="For quick tries: overrides the minutes when above 0.")
            start = st.selectbox("How to start", list(STARTS), format_func=STARTS.get, key="start_kind",
                                 help="A network pretrained on ImageNet already sees edges, textures and shapes; "
                                      "Sprout then searches only the layers on top of it. Automatic uses it for "
                                      "colour photos of at least 64 pixels when its weights are cached or can be "
                                      "downloaded (once, into Sprout's cache); digits, scans and small images "
                                      "start from scratch. The search page says which start was taken and why.")
            weights = (st.text_input("Weights file (.weights.h5 or .keras) on this computer", key="weights_file")
                       if start == "file" else "")
            parallel = st.number_input("Parallel trials", min_value=0, max_value=16, value=0, key="parallel",
                                       help="How many networks train at once. 0 (the default) chooses: one per GPU, "
                                            "else one (on a CPU one network already uses every core).")
            step = st.checkbox("Step mode: pause before each network", key="step",
                               help="For a class: the search stops before training each network it chose and "
                                    "shows its prediction, so everyone can guess first; Continue trains it. "
                                    "The budget clock stands still while it waits.")
        device_line(snap.get("device") if snap else None)
        clicked = start_button()
    try:
        report, _ = load_report(token, chosen_size())
    except SproutError as exc:
        slot.error(f"These images cannot be used: {exc}", icon=":material/error:")
        return
    about.caption(f"Searching on {data_label(token, report)}, resized to "
                  f"{report['image_size']}×{report['image_size']} pixels.")
    with form:
        if clicked:
            from engine.search.loop import SearchConfig

            # A pretrained start sizes its input from the images (96-224 px) unless a size was picked.
            config = SearchConfig(budget_s=float(budget_s or minutes * 60), searcher=searcher, seed=int(seed),
                                  image_size=int(report["image_size"]) if start == "none" else chosen_size(),
                                  max_epochs=int(epochs) or None,
                                  pretrained=weights.strip() if start == "file" else start,
                                  workers=int(parallel) or None, step=bool(step))
            try:
                run_id = registry().start(source_of(token), config)
            except SproutError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            set_state("run", run_id)
            list_runs.clear()  # the new run is listed at once, with its label
            st.rerun()


def start_button() -> bool:
    """The Start button, as the submit button of a form that holds nothing else: Streamlit's page
    draws a form's submit button with its own code, while a plain st.button waits for the browser to
    fetch the button's code after that of every input above it (issue #20: 1.7 s against 0.8 s from
    the page's load event to a visible Start on busy cores, bench/results/app_latency.md). The inputs
    stay outside the form, so each change still reruns the page (the weights field appears when its
    start is chosen)."""
    with st.form("start_form", border=False):
        return st.form_submit_button("Start the search", type="primary", icon=":material/play_arrow:", key="start")


def device_line(known: str | None) -> None:
    """Where the search will run; TensorFlow may still be loading in the background, and the
    Start button does not wait for it: the line says so and fills in once it is known."""
    known = known or device_name()

    @st.fragment(run_every=None if known else 1.0)
    def line() -> None:
        name = known or device_name()
        st.caption(f":material/memory: Runs on: **{name}**" if name
                   else ":material/memory: Runs on: checking this computer…")

    line()


if not active:
    start_form()
if not snap:
    if token:
        st.caption("The tree of networks, their distances and accuracies will appear here while the search runs.")
    st.stop()


# ----- watch it --------------------------------------------------------------------------
def _select_from(key: str) -> None:
    trial = selected_trial(st.session_state.get(key))
    if trial is not None:
        st.session_state.selected = trial


def _cached(name: str, signature, build):
    """Rebuild a figure only when what it shows changed (keeps the chart and its state still)."""
    cache = st.session_state.setdefault("_fig_cache", {})
    hit = cache.get(name)
    if hit is None or hit[0] != signature:
        hit = cache[name] = (signature, build())
    return hit[1]


def status_row(snap: dict) -> None:
    trials = snap.get("trials", [])
    ok = ok_trials(snap)
    best = snap.get("best") or {}
    elapsed, budget = snap.get("elapsed_s") or 0.0, snap.get("budget_s") or 0.0
    head, stop_col = st.columns([5, 1], vertical_alignment="center")
    head.subheader(status_words(snap), anchor=False)
    run_controls(snap, stop_col)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(f"Time used (budget {fmt_duration(budget)})", fmt_duration(elapsed))
    failed = len(trials) - len(ok)
    # details go in the small line under a metric (delta, grey, no arrow) so values fit their column
    c2.metric("Networks trained", len(ok), delta=f"{failed} failed" if failed else None, delta_color="off",
              delta_arrow="off")
    c3.metric("Best validation accuracy",
              f"{best['val_accuracy']:.1%}" if best.get("val_accuracy") is not None else "–",
              help="Share of the held-back validation images the best network gets right.")
    kind, detail = device_parts(snap.get("device"))
    c4.metric("Device", kind, delta=detail, delta_color="off", delta_arrow="off", help=snap.get("device"))
    if budget and is_active(snap):
        st.progress(min(1.0, elapsed / budget), text=f"{fmt_duration(max(0.0, budget - elapsed))} left"
                    + (" · paused until Continue" if snap.get("waiting") else ""))
    recipe = snap.get("recipe")
    if recipe and recipe.get("reasons"):
        with st.expander("How each network is trained (chosen from your images)", icon=":material/tune:"):
            st.markdown("\n".join(f"- {reason[:1].upper() + reason[1:]}." for reason in recipe["reasons"])
                        + f"\n- The first network trains for up to {recipe.get('seed_epochs')} epochs; each grown "
                          f"network for up to {recipe.get('child_epochs')}, starting from its parent's weights."
                        + f"\n- At the end the best network trains {recipe.get('final_epochs')} more epochs on "
                          "the training and validation images together.")


def run_controls(snap: dict, column) -> None:
    """Stop (a second press ends it at once), Cancel for a queued search, Resume for an
    interrupted one, and what the run's status means."""
    status, run_id = snap.get("status"), snap["run_id"]
    if status == RunStatus.QUEUED:
        st.info(f"Other searches are using this server. This one is number **{snap.get('queue_position') or 1}** "
                "in the queue and starts by itself when a place is free.", icon=":material/hourglass_empty:")
        if column.button("Cancel", icon=":material/close:", key="cancel", help="Removes this search from the queue"):
            _control(lambda: registry().cancel(run_id))
            list_runs.clear()  # the cancelled run leaves the run picker at once
            st.rerun()
    elif is_active(snap):
        stopping = bool(snap.get("stopping"))
        if column.button("Stop now" if stopping else "Stop", icon=":material/stop:", key="stop",
                         help="Ends the search at once; the network in training is lost" if stopping
                         else "Stops now and keeps the best network so far"):
            _control(lambda: registry().stop(run_id))
            st.toast("Stopping… the best network so far is being tested and saved.", icon=":material/stop_circle:")
    elif status == RunStatus.INTERRUPTED:
        st.warning(snap.get("error") or "The search was interrupted before it finished.",
                   icon=":material/pause_circle:")
        if column.button("Resume", type="primary", icon=":material/play_arrow:", key="resume",
                         help="Continues from the last network that finished training"):
            if _control(lambda: registry().resume(run_id)):
                list_runs.clear()
                st.rerun()
    if is_active(snap) and st.button("New search", icon=":material/add:", key="new_search", type="tertiary",
                                     help="Start a search of your own; this one goes on (choose it again above)"):
        st.session_state[NEW_SEARCH] = True
        set_state("run", None)
        st.rerun()
    if status == RunStatus.FAILED and snap.get("error"):
        st.error(snap["error"], icon=":material/error:")
    elif status == RunStatus.STOPPED and snap.get("error"):
        st.warning(snap["error"], icon=":material/memory:")


def _control(action) -> bool:
    """Run a Stop / Cancel / Resume; a refusal is shown in words. True when it was done."""
    try:
        action()
    except SproutError as exc:
        st.error(str(exc), icon=":material/error:")
        return False
    return True


def in_flight_card(snap: dict) -> None:
    """A card for every network in training (several when trials run in parallel)."""
    for flight in snap.get("flying") or ([snap["in_flight"]] if snap.get("in_flight") else []):
        _flight_card(flight)


def _flight_card(flight: dict) -> None:
    with st.container(border=True):
        epoch, max_epochs = flight.get("epoch") or 0, flight.get("max_epochs") or 1
        batch, n_batches = flight.get("batch") or 0, flight.get("n_batches") or 0
        done = (epoch + (batch / n_batches if n_batches else 0)) / max_epochs if epoch < max_epochs else 1.0
        if flight.get("trial_id") == FINAL:
            st.markdown("**Last step: training the best network once more on all its images**")
            st.progress(min(1.0, done), text=f"epoch {min(epoch + 1, max_epochs)} of {max_epochs}")
            return
        parent = flight.get("parent_id")
        prop = flight.get("proposal") or {}
        what = describe_all(prop.get("operations"), none="")
        title = f"**Now training network #{flight.get('trial_id')}**"
        if prop.get("searcher") == "promotion":
            title += f" · #{parent} promoted"
        elif parent is not None:
            title += f" · grown from #{parent}" + (f": {what}" if what else "")
        else:
            title += " · a starting network"
        if float(prop.get("fidelity") or 1.0) < 1.0:
            title += f" · on {fraction_text(float(prop['fidelity']))} of the images"
        st.markdown(title)
        st.progress(min(1.0, done), text=f"epoch {min(epoch + 1, max_epochs)} of {max_epochs}"
                    + (f" · batch {batch} of {n_batches}" if n_batches else ""))
        if prop.get("reason") or prop.get("mean") is not None:
            bits = []
            if prop.get("mean") is not None:
                bits.append(f"predicted accuracy **{prop['mean']:.1%} ± {(prop.get('sigma') or 0):.1%}**")
            if prop.get("ucb") is not None:
                bits.append(f"optimistic score (UCB) **{prop['ucb']:.3f}**")
            st.markdown(f":material/lightbulb: **Why this one?** {prop.get('reason') or ''}  \n" + " · ".join(bits))


def waiting_card(snap: dict) -> None:
    """Step mode: the network chosen next, its prediction, and Continue (which trains it)."""
    waiting = snap.get("waiting")
    if not waiting or not is_active(snap):
        return
    prop = waiting.get("proposal") or {}
    with st.container(border=True):
        what = describe_all(prop.get("operations"), none="")
        st.markdown(f"**Next: network #{waiting.get('trial_id')}** · grown from #{waiting.get('parent_id')}"
                    + (f": {what}" if what else ""))
        if prop.get("mean") is not None:
            st.markdown(f":material/psychology: The model predicts **{prop['mean']:.1%} ± "
                        f"{(prop.get('sigma') or 0):.1%}** validation accuracy. What do you think?")
        else:
            st.markdown(":material/casino: This searcher makes no prediction. What do you think it will reach?")
        if prop.get("reason"):
            st.markdown(f":material/lightbulb: **Why this one?** {prop['reason']}")
        go_on, note = st.columns([1, 4], vertical_alignment="center")
        if go_on.button("Continue", type="primary", icon=":material/skip_next:", key="continue",
                        help="Trains this network; the search then pauses before the next one"):
            _control(lambda: registry().continue_step(snap["run_id"]))
        note.caption(":material/pause: Step mode: the search waits here, and the budget clock stands still "
                     "until you press Continue.")


def network_panel(snap: dict, trial_id: str | None) -> None:
    trial = trial_by_id(snap, trial_id)
    if trial is None:
        best = (snap.get("best") or {}).get("trial_id")
        trial = trial_by_id(snap, best)
        if trial is None:
            st.info("Click a network in the tree to see it drawn layer by layer.", icon=":material/touch_app:")
            return
        st.caption("Showing the best network; click another one in the tree.")
    st.subheader(f"Network #{trial['id']}", anchor=False)
    acc = trial.get("val_accuracy")
    facts = [f"{acc:.1%} validation accuracy" if acc is not None else f"{trial.get('status')}"]
    if trial.get("n_params") is not None:
        facts.append(f"{int(trial['n_params']):,} weights")
    if trial.get("seconds") is not None:
        facts.append(f"trained {fmt_duration(trial['seconds'])}")
    st.caption(" · ".join(facts))
    st.caption(f"`{trial.get('summary', '')}`")
    if trial.get("parent_id") is not None:
        st.caption(f"Grown from #{trial['parent_id']}: {trial.get('description') or 'changed'}")
    if trial.get("error"):
        st.warning(trial["error"], icon=":material/warning:")
    pred = trial.get("prediction") or {}
    if pred.get("reason"):
        st.caption(f":material/lightbulb: {pred['reason']}")
    arch = trial.get("architecture")
    if arch:
        with st.container(height=420, border=False):
            st.graphviz_chart(_cached("dot", (snap["run_id"], trial["id"]), lambda: network_dot(arch)))


@st.fragment(run_every=LIVE_REFRESH_S if active else None)
def live() -> None:
    run_id = get_state("run")
    snap = snapshot(run_id)
    if snap is None:
        st.rerun()
    if active and not is_active(snap):
        st.rerun()  # the run ended: redraw the whole page in its final state
    status_row(snap)
    waiting_card(snap)
    in_flight_card(snap)

    trials = snap.get("trials", [])
    flight = snap.get("in_flight") or {}
    selected = st.session_state.get("selected")
    tree_sig = (run_id, len(trials), flight.get("trial_id"), tuple(f["trial_id"] for f in snap.get("flying") or []),
                selected, (snap.get("best") or {}).get("trial_id"), (snap.get("waiting") or {}).get("trial_id"))

    left, right = st.columns([3, 2], gap="medium")
    with left:
        st.subheader("The tree of networks", anchor=False)
        st.caption("Each dot is a trained network, coloured by accuracy (★ = best). Lines show which network "
                   "it grew from; hover a line for the change. Click a dot to see that network.")
        st.plotly_chart(_cached("tree", tree_sig, lambda: tree_figure(snap, selected=selected)),
                        key="tree", on_select=lambda: _select_from("tree"), selection_mode="points",
                        config=CHART_CONFIG)
    with right:
        network_panel(snap, selected)

    view = st.segmented_control("Show", ["Accuracy", "Curves per network", "How different they are", "Predictions"],
                                default="Accuracy", key="view", label_visibility="collapsed")
    sig = (run_id, len(trials), selected)
    if view == "Curves per network":
        st.caption("Validation accuracy after each epoch, one line per network. The selected network is drawn "
                   "thick, with its training accuracy dashed.")
        st.plotly_chart(_cached("curves", sig, lambda: curves_figure(snap, highlight=selected)),
                        key="curves", config=CHART_CONFIG)
    elif view == "How different they are":
        st.caption("Sprout measures how many small changes turn one network into another (an *edit distance*). "
                   "Networks that are close tend to score alike: that is how it predicts untried ones.")
        h, m = st.columns(2)
        with h:
            st.markdown("**Distance between every pair**")
            st.plotly_chart(_cached("heat", sig[:2], lambda: distance_heatmap(snap)), key="heat",
                            config=CHART_CONFIG)
        with m:
            st.markdown("**A map of the networks** (close = similar)")
            st.plotly_chart(_cached("mds", sig, lambda: mds_figure(snap, selected=selected)), key="mds",
                            on_select=lambda: _select_from("mds"), selection_mode="points", config=CHART_CONFIG)
    elif view == "Predictions":
        st.caption("Before training a network, Sprout predicts its accuracy (± its uncertainty). Points near the "
                   "dashed line were good guesses.")
        st.plotly_chart(_cached("pred", sig[:2], lambda: prediction_figure(snap)), key="pred",
                        config=CHART_CONFIG)
    else:
        st.caption("Each network's validation accuracy when it finished, and the best so far.")
        st.plotly_chart(_cached("progress", sig[:2] + (round((snap.get("elapsed_s") or 0) / 15),),
                                lambda: progress_figure(snap)), key="progress", config=CHART_CONFIG)

    if snap.get("log"):
        with st.expander("Search log"):
            st.code("\n".join(snap["log"][-30:]), language=None)
    if snap.get("status") in FINISHED and snap.get("final"):
        st.success(f"Done! The best network scores **{snap['final']['test_accuracy']:.1%}** on test images "
                   "it never saw during the search.", icon=":material/celebration:")
        page_button("See the results", "results", key="to_results", icon=":material/emoji_events:")
        if st.button("Replay this search", key="to_replay", icon=":material/replay:"):
            st.session_state["replay_pick"] = run_id  # views/replay.py's chosen run
            go("replay")


live()
