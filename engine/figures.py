"""Pictures of a search: pure functions from a run snapshot (docs/contracts.md) to Plotly
figures, and from an architecture dict to Graphviz DOT source.

Nothing here imports streamlit or TensorFlow: every function takes plain data (the
snapshot dict that ``engine.jobs.Registry.snapshot`` returns, or a part of it) and returns
a ``plotly.graph_objects.Figure`` (or a DOT string), so the pages stay layout-only and the
pictures can be tested without a browser.

Clickable figures (the search tree, the MDS map) put the trial id of every point in
``customdata`` so ``st.plotly_chart(..., on_select="rerun")`` can tell which network was
clicked (:func:`selected_trial`).
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

import networkx as nx
import numpy as np
import plotly.graph_objects as go

# ----- one palette for the whole product ---------------------------------------------
GREEN = "#2f9e64"       # Sprout's green: primary actions, good results
DARK_GREEN = "#1b5e3c"
LEAF = "#8fd19e"
AMBER = "#f59f00"       # the trial in flight, warnings
CORAL = "#e8590c"       # low accuracy
GREY = "#adb5bd"        # failed or stopped trials
INK = "#243b30"         # text
GRID = "#e9ecef"
FONT = "Inter, 'Source Sans Pro', 'Segoe UI', sans-serif"
# Accuracy, low to high: coral -> amber -> leaf -> green.
ACCURACY_SCALE = [[0.0, CORAL], [0.35, "#fcc419"], [0.7, LEAF], [1.0, DARK_GREEN]]

ROOT = "__root__"
FINAL = "final"           # the in-flight id of the last fine-tune (not a node of the tree)
MAX_EDGE_LABELS = 40      # above this many edges the tree shows morphisms on hover only
MAX_CURVES = 60           # curves drawn in the per-epoch chart (the best ones, plus the highlighted)

KIND_STYLE = {  # kind -> (fill colour, display name)
    "input": ("#dee2e6", "Image"),
    "conv": ("#b2f2bb", "Conv"),
    "bn": ("#e7f5ff", "BatchNorm"),
    "relu": ("#fff3bf", "ReLU"),
    "maxpool": ("#d0ebff", "MaxPool 2×2"),
    "avgpool": ("#d0ebff", "AvgPool 2×2"),
    "gap": ("#d0ebff", "GlobalAvgPool"),
    "dense": ("#ffd8a8", "Dense"),
    "dropout": ("#f1f3f5", "Dropout"),
    "softmax": ("#ffc9c9", "Softmax"),
    "add": ("#eebefa", "Add"),
    "concat": ("#eebefa", "Concatenate"),
}


# ----- helpers ------------------------------------------------------------------------
def _layout(fig: go.Figure, height: int = 380, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        font=dict(family=FONT, color=INK, size=13),
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        hoverlabel=dict(font=dict(family=FONT)),
        **kwargs,
    )
    return fig


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def ok_trials(snapshot: dict) -> list[dict]:
    """The trials that trained successfully and have a validation accuracy."""
    return [t for t in snapshot.get("trials", []) if t.get("status") == "ok" and t.get("val_accuracy") is not None]


def trial_by_id(snapshot: dict, trial_id: str | None) -> dict | None:
    for t in snapshot.get("trials", []):
        if str(t.get("id")) == str(trial_id):
            return t
    return None


OP_WORDS = {"deeper": "deeper", "wider": "wider", "add_skip": "skip", "concat_skip": "skip"}
DESCRIPTION_WORDS = {"deepen": "deeper", "widen": "wider", "add": "skip"}


def short_label(description: str | None, operations: Sequence[dict] | None = None, max_len: int = 22) -> str:
    """A few words for an edge of the tree, one per kind of morphism: ``"wider + skip"``.

    Taken from the operations' ``op`` names when given, else from the first word of each
    ``;``-separated part of the description ("widen conv 5 ..." -> "wider")."""
    if operations:
        words = [OP_WORDS.get(str(op.get("op")), str(op.get("op"))) for op in operations if isinstance(op, dict)]
    else:
        words = [DESCRIPTION_WORDS.get(w, w) for w in (p.strip().split()[0] for p in (description or "").split(";")
                                                        if p.strip())]
    verbs = list(dict.fromkeys(w for w in words if w))
    text = " + ".join(verbs)
    return text if len(text) <= max_len else text[: max_len - 1] + "…"


def _accuracy_range(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo < 0.02:  # all about the same: do not exaggerate tiny differences
        mid = (lo + hi) / 2
        lo, hi = max(0.0, mid - 0.05), min(1.0, mid + 0.05)
    return lo, hi


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A blank chart that says what will appear there."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#868e96"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height)


def selected_trial(event: Any) -> str | None:
    """The trial id of the first clicked point in a ``st.plotly_chart(on_select=...)`` event."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        points = getattr(getattr(event, "selection", None), "points", None) or []
    for p in points or []:
        data = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if data not in (None, "", ROOT):
            return str(data)
    return None


# ----- the search tree ----------------------------------------------------------------
def tree_graph(snapshot: dict) -> nx.DiGraph:
    """Trials (and the trial in flight) as a directed tree under a virtual root.

    Node attributes: ``trial`` (the trial dict, or None for the one in flight) and
    ``in_flight``; edge attributes: ``description`` and ``operations`` (the morphisms that
    made the child).
    """
    g = nx.DiGraph()
    g.add_node(ROOT, trial=None, in_flight=False)
    trials = snapshot.get("trials", [])
    ids = {str(t["id"]) for t in trials}
    for t in trials:
        g.add_node(str(t["id"]), trial=t, in_flight=False)
    for t in trials:
        parent = t.get("parent_id")
        parent = str(parent) if parent is not None and str(parent) in ids else ROOT
        g.add_edge(parent, str(t["id"]), description=t.get("description") or "", operations=t.get("operations") or [])
    flight = snapshot.get("in_flight")
    if flight and flight.get("trial_id") not in (None, FINAL) and str(flight["trial_id"]) not in ids:
        fid = str(flight["trial_id"])
        parent = flight.get("parent_id")
        parent = str(parent) if parent is not None and str(parent) in ids else ROOT
        proposal = flight.get("proposal") or {}
        g.add_node(fid, trial=None, in_flight=True)
        ops = proposal.get("operations") or flight.get("operations") or []
        g.add_edge(parent, fid, description=flight.get("description") or operations_text(ops), operations=ops)
    return g


def operations_text(ops: Any) -> str:
    """The morphisms of a proposal in plain words (engine.morphism.describe)."""
    if not ops:
        return ""
    from engine.morphism import describe

    parts = []
    for op in ops:
        try:
            parts.append(describe(op))
        except (KeyError, TypeError):
            parts.append(str(op.get("op", "change")) if isinstance(op, dict) else str(op))
    return "; ".join(p for p in parts if p)


def tree_positions(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Top-down layered positions (networkx ``bfs_layout``): depth on y (root at top)."""
    if g.number_of_nodes() == 1:
        return {ROOT: (0.0, 0.0)}
    pos = nx.bfs_layout(g.to_undirected(as_view=True), ROOT, align="horizontal")
    depth = nx.single_source_shortest_path_length(g, ROOT)
    out = {}
    for node, (x, _y) in pos.items():
        out[node] = (float(x), -float(depth.get(node, 0)))
    return out


def tree_figure(snapshot: dict, selected: str | None = None, height: int = 440) -> go.Figure:
    """The tree of architectures: one node per trial coloured by validation accuracy, an edge
    from each parent to the child its morphisms made (labelled with them), the trial in flight
    as a dashed amber node, the best trial as a star. ``customdata`` holds trial ids."""
    g = tree_graph(snapshot)
    if g.number_of_nodes() == 1:
        return empty_figure("The tree of networks grows here once the first one is trained.", height)
    pos = tree_positions(g)
    best = (snapshot.get("best") or {}).get("trial_id")
    best = str(best) if best is not None else None
    fig = go.Figure()

    # edges (the virtual root's edges are not drawn: seed networks start the tree)
    ex, ey, fx, fy = [], [], [], []
    mid_x, mid_y, mid_text, mid_hover = [], [], [], []
    real_edges = [(u, v, d) for u, v, d in g.edges(data=True) if u != ROOT]
    for u, v, d in real_edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        xs, ys = (fx, fy) if g.nodes[v]["in_flight"] else (ex, ey)
        xs += [x0, x1, None]
        ys += [y0, y1, None]
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        mid_text.append(short_label(d["description"], d.get("operations")))
        mid_hover.append(f"<b>#{u} → #{v}</b><br>{html.escape(d['description'] or 'changed')}")
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#ced4da", width=2),
                             hoverinfo="skip", name="morphism", showlegend=False))
    if fx:
        fig.add_trace(go.Scatter(x=fx, y=fy, mode="lines", line=dict(color=AMBER, width=2, dash="dot"),
                                 hoverinfo="skip", name="proposed", showlegend=False))
    if real_edges:
        show_text = len(real_edges) <= MAX_EDGE_LABELS
        fig.add_trace(go.Scatter(
            x=mid_x, y=mid_y, mode="markers+text" if show_text else "markers",
            text=mid_text if show_text else None, textfont=dict(size=10, color="#868e96"),
            textposition="middle right",
            marker=dict(size=7, color="#ced4da", symbol="diamond"), hovertext=mid_hover,
            hovertemplate="%{hovertext}<extra></extra>", name="edges", showlegend=False))

    # trained nodes, coloured by accuracy
    oks = [n for n in g.nodes if n != ROOT and not g.nodes[n]["in_flight"]
           and (g.nodes[n]["trial"] or {}).get("status") == "ok" and g.nodes[n]["trial"].get("val_accuracy") is not None]
    bad = [n for n in g.nodes if n != ROOT and not g.nodes[n]["in_flight"] and n not in oks]
    accs = [g.nodes[n]["trial"]["val_accuracy"] for n in oks]
    lo, hi = _accuracy_range(accs)
    if oks:
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in oks], y=[pos[n][1] for n in oks], mode="markers+text",
            text=[f"#{n}" for n in oks], textposition="top center", textfont=dict(size=11),
            customdata=[[n] for n in oks],
            hovertext=[_trial_hover(g.nodes[n]["trial"]) for n in oks],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(
                size=[26 if n == best else 20 for n in oks],
                symbol=["star" if n == best else "circle" for n in oks],
                color=accs, colorscale=ACCURACY_SCALE, cmin=lo, cmax=hi, showscale=True,
                colorbar=dict(title=dict(text="val acc"), tickformat=".0%", thickness=12, len=0.8),
                line=dict(width=[4 if n == selected else 1.5 for n in oks],
                          color=[INK if n == selected else "white" for n in oks]),
            ),
            name="trained", showlegend=False))
    if bad:
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in bad], y=[pos[n][1] for n in bad], mode="markers+text",
            text=[f"#{n}" for n in bad], textposition="top center", textfont=dict(size=11, color="#868e96"),
            customdata=[[n] for n in bad],
            hovertext=[_trial_hover(g.nodes[n]["trial"]) for n in bad],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=16, symbol="x", color=GREY, line=dict(width=1, color="white")),
            name="failed", showlegend=False))
    flying = [n for n in g.nodes if g.nodes[n]["in_flight"]]
    if flying:
        flight = snapshot.get("in_flight") or {}
        prop = flight.get("proposal") or {}
        hover = f"<b>Trial #{flying[0]} · training now</b>"
        if prop.get("mean") is not None:
            hover += f"<br>predicted {_pct(prop.get('mean'))} ± {_pct(prop.get('sigma'))}"
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in flying], y=[pos[n][1] for n in flying], mode="markers+text",
            text=[f"#{n} training…" for n in flying], textposition="bottom center",
            textfont=dict(size=11, color=AMBER), customdata=[[n] for n in flying],
            hovertext=[hover] * len(flying), hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=20, color="white", line=dict(width=2.5, color=AMBER)),
            name="in flight", showlegend=False))

    ys = [p[1] for n, p in pos.items() if n != ROOT]
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, range=[min(ys) - 0.6, max(ys) + 0.5] if ys else None)
    return _layout(fig, height=height, uirevision="tree", clickmode="event+select", dragmode="pan",
                   hovermode="closest")


def _trial_hover(t: dict) -> str:
    head = f"<b>Trial #{t['id']}</b>"
    if t.get("status") == "ok":
        head += f" · {_pct(t.get('val_accuracy'))} val accuracy"
    else:
        head += f" · {t.get('status', '?')}" + (f": {html.escape(str(t['error']))}" if t.get("error") else "")
    lines = [head]
    if t.get("summary"):
        lines.append(html.escape(str(t["summary"])))
    if t.get("parent_id") is not None:
        lines.append(f"from #{t['parent_id']}: {html.escape(t.get('description') or 'changed')}")
    else:
        lines.append("a starting network")
    bits = []
    if t.get("n_params") is not None:
        bits.append(f"{int(t['n_params']):,} weights")
    if t.get("epochs") is not None:
        bits.append(f"{t['epochs']} epochs")
    if t.get("seconds") is not None:
        bits.append(f"{t['seconds']:.0f} s")
    if bits:
        lines.append(" · ".join(bits))
    return "<br>".join(lines)


# ----- kernel distances ---------------------------------------------------------------
def distance_heatmap(snapshot: dict, height: int = 360) -> go.Figure:
    """Edit distances between trained networks (0 = the same network)."""
    dist = snapshot.get("distances") or {}
    ids, matrix = [str(i) for i in dist.get("ids", [])], dist.get("matrix") or []
    if len(ids) < 2:
        return empty_figure("Distances appear once two networks are trained.", height)
    labels = [f"#{i}" for i in ids]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale="YlGnBu", reversescale=True,
        colorbar=dict(title=dict(text="distance"), thickness=12),
        hovertemplate="%{y} ↔ %{x}<br>edit distance %{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", type="category")
    fig.update_xaxes(constrain="domain", type="category")
    return _layout(fig, height=height)


def classical_mds(matrix: Sequence[Sequence[float]], dims: int = 2) -> np.ndarray:
    """Points in ``dims`` dimensions whose distances approximate ``matrix`` (Torgerson's
    classical MDS; negative eigenvalues of a non-Euclidean distance are clipped)."""
    d = np.asarray(matrix, dtype=float)
    n = d.shape[0]
    if n == 0:
        return np.zeros((0, dims))
    j = np.eye(n) - np.ones((n, n)) / n
    b = -0.5 * j @ (d ** 2) @ j
    vals, vecs = np.linalg.eigh((b + b.T) / 2)
    order = np.argsort(vals)[::-1][:dims]
    coords = vecs[:, order] * np.sqrt(np.clip(vals[order], 0, None))
    if coords.shape[1] < dims:
        coords = np.hstack([coords, np.zeros((n, dims - coords.shape[1]))])
    # fix the sign so the picture does not flip between refreshes
    for k in range(dims):
        col = coords[:, k]
        if col.size and col[np.argmax(np.abs(col))] < 0:
            coords[:, k] = -col
    return coords


def mds_figure(snapshot: dict, selected: str | None = None, height: int = 360) -> go.Figure:
    """A map of the trained networks: close points are similar networks (classical MDS of the
    edit distances), coloured by validation accuracy."""
    dist = snapshot.get("distances") or {}
    ids, matrix = [str(i) for i in dist.get("ids", [])], dist.get("matrix") or []
    if len(ids) < 2:
        return empty_figure("The map appears once two networks are trained.", height)
    xy = classical_mds(matrix)
    trials = {str(t["id"]): t for t in snapshot.get("trials", [])}
    accs = [(trials.get(i) or {}).get("val_accuracy") for i in ids]
    known = [a for a in accs if a is not None]
    lo, hi = _accuracy_range(known)
    best = str((snapshot.get("best") or {}).get("trial_id"))
    fig = go.Figure(go.Scatter(
        x=xy[:, 0], y=xy[:, 1], mode="markers+text", text=[f"#{i}" for i in ids], textposition="top center",
        customdata=[[i] for i in ids],
        hovertext=[_trial_hover(trials[i]) if i in trials else f"#{i}" for i in ids],
        hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(size=[22 if i == best else 16 for i in ids], symbol=["star" if i == best else "circle" for i in ids],
                    color=[a if a is not None else lo for a in accs], colorscale=ACCURACY_SCALE, cmin=lo, cmax=hi,
                    showscale=True, colorbar=dict(title=dict(text="val acc"), tickformat=".0%", thickness=12),
                    line=dict(width=[4 if i == selected else 1.5 for i in ids],
                              color=[INK if i == selected else "white" for i in ids]))))
    fig.update_xaxes(showticklabels=False, zeroline=False, gridcolor=GRID, title="")
    fig.update_yaxes(showticklabels=False, zeroline=False, gridcolor=GRID, title="", scaleanchor="x")
    return _layout(fig, height=height, uirevision="mds", clickmode="event+select", hovermode="closest")


# ----- accuracy over epochs and time --------------------------------------------------
def curves_figure(snapshot: dict, highlight: str | None = None, height: int = 340) -> go.Figure:
    """Validation accuracy per epoch, one line per trial (the highlighted trial also shows its
    training accuracy, dashed)."""
    trials = [t for t in snapshot.get("trials", []) if (t.get("history") or {}).get("val_accuracy")]
    if not trials:
        return empty_figure("Accuracy curves appear after the first epoch.", height)
    best = str((snapshot.get("best") or {}).get("trial_id"))
    if len(trials) > MAX_CURVES:
        keep = sorted(trials, key=lambda t: t.get("val_accuracy") or 0, reverse=True)[:MAX_CURVES]
        keep_ids = {str(t["id"]) for t in keep} | {str(highlight), best}
        trials = [t for t in trials if str(t["id"]) in keep_ids]
    accs = [t.get("val_accuracy") for t in trials if t.get("val_accuracy") is not None]
    lo, hi = _accuracy_range(accs)
    fig = go.Figure()
    for t in trials:
        tid = str(t["id"])
        val = t["history"]["val_accuracy"]
        strong = tid == str(highlight)
        colour = _scale_colour(t.get("val_accuracy"), lo, hi) if t.get("status") == "ok" else GREY
        fig.add_trace(go.Scatter(
            x=list(range(1, len(val) + 1)), y=val, mode="lines+markers", name=f"#{tid}",
            line=dict(color=INK if strong else colour, width=4 if strong else 1.6),
            marker=dict(size=7 if strong else 4), opacity=1.0 if strong or highlight is None else 0.45,
            hovertemplate=f"#{tid} · epoch %{{x}}<br>val accuracy %{{y:.1%}}<extra></extra>"))
        if strong and t["history"].get("accuracy"):
            tr = t["history"]["accuracy"]
            fig.add_trace(go.Scatter(
                x=list(range(1, len(tr) + 1)), y=tr, mode="lines", name=f"#{tid} train",
                line=dict(color=INK, width=2, dash="dash"),
                hovertemplate=f"#{tid} · epoch %{{x}}<br>train accuracy %{{y:.1%}}<extra></extra>"))
    fig.update_xaxes(title="epoch", dtick=1, gridcolor=GRID)
    fig.update_yaxes(title="validation accuracy", tickformat=".0%", gridcolor=GRID)
    return _layout(fig, height=height, showlegend=len(trials) <= 12, uirevision="curves",
                   legend=dict(orientation="h", y=-0.25))


def _scale_colour(value: float | None, lo: float, hi: float) -> str:
    if value is None:
        return GREY
    f = 0.5 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    for (f0, c0), (f1, c1) in zip(ACCURACY_SCALE, ACCURACY_SCALE[1:]):
        if f <= f1:
            w = 0.0 if f1 == f0 else (f - f0) / (f1 - f0)
            a = [int(c0[k:k + 2], 16) for k in (1, 3, 5)]
            b = [int(c1[k:k + 2], 16) for k in (1, 3, 5)]
            return "#" + "".join(f"{round(x + (y - x) * w):02x}" for x, y in zip(a, b))
    return ACCURACY_SCALE[-1][1]


def progress_figure(snapshot: dict, height: int = 300) -> go.Figure:
    """Each trained network's validation accuracy at the time it finished, and the best so far."""
    done = sorted((t for t in ok_trials(snapshot) if t.get("finished_s") is not None), key=lambda t: t["finished_s"])
    if not done:
        return empty_figure("The best accuracy so far is plotted here as networks finish.", height)
    minutes = [t["finished_s"] / 60 for t in done]
    accs = [t["val_accuracy"] for t in done]
    best = list(np.maximum.accumulate(accs))
    end = max(minutes[-1], (snapshot.get("elapsed_s") or 0) / 60)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=minutes + [end], y=best + [best[-1]], mode="lines",
                             line=dict(color=GREEN, width=3, shape="hv"),
                             name="best so far", hovertemplate="best so far %{y:.1%}<extra></extra>"))
    fig.add_trace(go.Scatter(x=minutes, y=accs, mode="markers", name="each network",
                             marker=dict(size=9, color=LEAF, line=dict(color=DARK_GREEN, width=1)),
                             customdata=[[str(t["id"])] for t in done],
                             text=[f"#{t['id']}" for t in done],
                             hovertemplate="%{text} · %{y:.1%} after %{x:.1f} min<extra></extra>"))
    budget = snapshot.get("budget_s")
    if budget:
        fig.add_vline(x=budget / 60, line=dict(color=GREY, dash="dot"), annotation_text="budget",
                      annotation_position="top left")
    fig.update_xaxes(title="minutes since start", gridcolor=GRID, rangemode="tozero")
    fig.update_yaxes(title="validation accuracy", tickformat=".0%", gridcolor=GRID)
    return _layout(fig, height=height, legend=dict(orientation="h", y=-0.3), uirevision="progress")


def prediction_figure(snapshot: dict, height: int = 340) -> go.Figure:
    """What the Gaussian process predicted for each proposed network (± one sigma) against the
    accuracy it really reached: points near the diagonal are good guesses."""
    rows = [t for t in ok_trials(snapshot) if (t.get("prediction") or {}).get("mean") is not None]
    if not rows:
        return empty_figure("Predictions appear once the search starts choosing networks itself.", height)
    pred = [t["prediction"]["mean"] for t in rows]
    sig = [t["prediction"].get("sigma") or 0.0 for t in rows]
    real = [t["val_accuracy"] for t in rows]
    lo = max(0.0, min(min(p - s for p, s in zip(pred, sig)), min(real)) - 0.05)
    hi = min(1.05, max(max(p + s for p, s in zip(pred, sig)), max(real)) + 0.05)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color=GREY, dash="dash"),
                             name="perfect guess", hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=pred, y=real, mode="markers+text", text=[f"#{t['id']}" for t in rows], textposition="top right",
        error_x=dict(type="data", array=sig, color=LEAF, thickness=1.5),
        marker=dict(size=10, color=GREEN, line=dict(color="white", width=1)), name="networks",
        customdata=[[str(t["id"]), t["prediction"].get("ucb")] for t in rows],
        hovertemplate="%{text}<br>predicted %{x:.1%} ± %{error_x.array:.1%}<br>real %{y:.1%}<extra></extra>"))
    fig.update_xaxes(title="predicted accuracy (± sigma)", tickformat=".0%", range=[lo, hi], gridcolor=GRID)
    fig.update_yaxes(title="real validation accuracy", tickformat=".0%", range=[lo, hi], gridcolor=GRID)
    return _layout(fig, height=height, showlegend=False)


# ----- results ------------------------------------------------------------------------
def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str], height: int | None = None) -> go.Figure:
    """Counts of test images by true class (rows) and predicted class (columns); colour is the
    share of the row, so small classes are as visible as big ones."""
    z = np.asarray(confusion, dtype=float)
    if z.size == 0:
        return empty_figure("No test images were scored.")
    share = z / np.maximum(z.sum(axis=1, keepdims=True), 1)
    names = [str(c) for c in class_names]
    counts = z.astype(int)
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, zmin=0, zmax=1, colorscale=[[0, "#f8f9fa"], [0.3, LEAF], [1, DARK_GREEN]],
        text=counts, texttemplate="%{text}", customdata=counts,
        colorbar=dict(title=dict(text="share"), tickformat=".0%", thickness=12),
        hovertemplate="true %{y}, predicted %{x}<br>%{customdata} images (%{z:.0%} of %{y})<extra></extra>"))
    fig.update_xaxes(title="predicted", type="category", tickangle=-35)
    fig.update_yaxes(title="true", type="category", autorange="reversed")
    return _layout(fig, height=height or max(320, 40 * len(names) + 120))


def per_class_figure(per_class: dict, height: int = 320) -> go.Figure:
    """Precision and recall per class, side by side."""
    if not per_class:
        return empty_figure("No per-class scores yet.", height)
    names = list(per_class)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[per_class[n].get("precision") for n in names], name="precision",
                         marker_color=GREEN, hovertemplate="%{x}: precision %{y:.1%}<extra></extra>"))
    fig.add_trace(go.Bar(x=names, y=[per_class[n].get("recall") for n in names], name="recall",
                         marker_color=LEAF, hovertemplate="%{x}: recall %{y:.1%}<extra></extra>"))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], gridcolor=GRID)
    fig.update_xaxes(type="category", tickangle=-35)
    return _layout(fig, height=height, barmode="group", legend=dict(orientation="h", y=1.12))


def class_counts_figure(counts: dict, few: int = 10, height: int = 300) -> go.Figure:
    """Images per class; classes with fewer than ``few`` images are amber."""
    if not counts:
        return empty_figure("No images found yet.", height)
    names = list(counts)
    values = [int(counts[n]) for n in names]
    colours = [AMBER if v < few else GREEN for v in values]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=colours, text=values, textposition="outside",
                           hovertemplate="%{x}: %{y} images<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-35 if len(names) > 6 else 0)
    fig.update_yaxes(title="images", gridcolor=GRID, range=[0, max(values) * 1.18 + 1])
    return _layout(fig, height=height, showlegend=False)


def top_predictions_figure(probabilities: Sequence[float], class_names: Sequence[str], top: int = 5,
                           height: int | None = None) -> go.Figure:
    """The ``top`` most likely classes as horizontal bars, the most likely on top."""
    p = np.asarray(probabilities, dtype=float).ravel()
    order = list(np.argsort(p)[::-1][:top])
    names = [str(class_names[i]) for i in order][::-1]
    vals = [float(p[i]) for i in order][::-1]
    colours = [LEAF] * (len(vals) - 1) + [GREEN] if vals else []
    fig = go.Figure(go.Bar(x=vals, y=names, orientation="h", marker_color=colours,
                           text=[f"{v:.0%}" for v in vals], textposition="outside",
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_xaxes(range=[0, 1.15], tickformat=".0%", gridcolor=GRID)
    fig.update_yaxes(type="category")
    return _layout(fig, height=height or 60 + 44 * len(vals), showlegend=False)


# ----- one network, layer by layer (Graphviz DOT) ------------------------------------
def layer_label(layer: dict, shape: Sequence[int] | None = None) -> str:
    """What a box in the network drawing says, e.g. ``Conv 3×3 · 32`` and the output shape."""
    kind, cfg = layer.get("kind", "?"), layer.get("config") or {}
    name = KIND_STYLE.get(kind, ("#f1f3f5", kind))[1]
    if kind == "conv":
        k = cfg.get("kernel", 3)
        text = f"Conv {k}×{k} · {cfg.get('filters', '?')}"
        if cfg.get("stride", 1) != 1:
            text += f" /{cfg['stride']}"
    elif kind == "dense":
        text = f"Dense · {cfg.get('units', '?')}"
    elif kind == "dropout":
        text = f"Dropout {cfg.get('rate', 0):.0%}" if isinstance(cfg.get("rate"), (int, float)) else "Dropout"
    else:
        text = name
    if shape:
        text += "\n" + "×".join(str(int(s)) for s in shape)
    return text


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def network_dot(arch: dict, rankdir: str = "TB", title: str | None = None) -> str:
    """Graphviz DOT source drawing one network layer by layer, for ``st.graphviz_chart``.

    ``arch`` is ``Architecture.to_dict()``. Main-chain layers are joined by solid arrows;
    the layers of skip connections (their poolings, 1x1 convolutions, the Add/Concatenate
    merge) are drawn with dashed purple arrows, and each merge notes which main-chain layers
    the skip joins.
    """
    layers = list(arch.get("layers") or [])
    shapes: dict[int, tuple[int, ...]] = {}
    try:
        from engine.architecture import Architecture

        shapes = Architecture.from_dict(arch).shapes()
    except Exception:  # a drawing must not fail on a shape it cannot work out
        in_shape = arch.get("input_shape")
        shapes = {0: tuple(in_shape)} if in_shape else {}
    roles = {int(l["id"]): l.get("role", "main") for l in layers}
    lines = [
        "digraph network {",
        f'  graph [rankdir={rankdir}, nodesep=0.25, ranksep=0.22, bgcolor="transparent", fontname="Helvetica"'
        + (f', label="{_dot_escape(title)}", labelloc=t, fontsize=14' if title else "") + "];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, height=0.32, margin="0.12,0.04", '
        f'color="#868e96", fontcolor="{INK}"];',
        '  edge [color="#868e96", arrowsize=0.6];',
    ]
    in_shape = shapes.get(0) or tuple(arch.get("input_shape") or ())
    in_label = "Image" + ("\n" + "×".join(str(int(s)) for s in in_shape) if in_shape else "")
    lines.append(f'  n0 [label="{_dot_escape(in_label)}", fillcolor="{KIND_STYLE["input"][0]}", shape=oval];')
    for layer in layers:
        lid, kind = int(layer["id"]), layer.get("kind", "?")
        fill = KIND_STYLE.get(kind, ("#f1f3f5", kind))[0]
        label = layer_label(layer, shapes.get(lid))
        cfg = layer.get("config") or {}
        extra = ""
        if kind in ("add", "concat"):
            extra = ', shape=oval, color="#ae3ec9", penwidth=1.5'
        elif roles.get(lid) == "skip":
            extra = ', color="#ae3ec9", style="rounded,filled,dashed"'
        if kind in ("add", "concat") and "start" in cfg and "end" in cfg:
            label += f"\nskip {cfg['start']}→{cfg['end']}"
        lines.append(f'  n{lid} [label="{_dot_escape(label)}", fillcolor="{fill}"{extra}];')
    for layer in layers:
        lid = int(layer["id"])
        for src in layer.get("inputs", []):
            src = int(src)
            skip = roles.get(lid) == "skip" or roles.get(src, "main") == "skip"
            style = ' [style=dashed, color="#ae3ec9"]' if skip else ""
            lines.append(f"  n{src} -> n{lid}{style};")
    lines.append("}")
    return "\n".join(lines)


def skip_edges(dot: str) -> list[tuple[int, int]]:
    """The dashed (skip) edges of a DOT string from :func:`network_dot`, as (from, to) layer ids."""
    out = []
    for line in dot.splitlines():
        line = line.strip()
        if "->" in line and "dashed" in line:
            a, b = line.split("->")
            out.append((int(a.strip()[1:]), int(b.split("[")[0].strip().rstrip(";")[1:])))
    return out


def fmt_duration(seconds: float | None) -> str:
    """``75`` -> ``1 min 15 s``."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"
