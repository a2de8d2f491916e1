"""The search tree: trials as a networkx tree under a virtual root, its layout, and the
clickable Plotly figure of it (trial ids in ``customdata``, read back by :func:`selected_trial`)."""

from __future__ import annotations

import html
from typing import Any, Sequence

import networkx as nx
import plotly.graph_objects as go

from engine.figures.style import (ACCURACY_SCALE, AMBER, GREY, INK, accuracy_range, apply_layout, empty_figure, pct,
                                  trial_hover)
from engine.nas.operations import describe_all, kind_word
from engine.nas.proposals import fraction_text

ROOT = "__root__"
FINAL = "final"           # the in-flight id of the last fine-tune (not a node of the tree)
MAX_EDGE_LABELS = 40      # above this many edges the tree shows morphisms on hover only


def short_label(operations: Sequence[dict] | None, max_len: int = 22) -> str:
    """A few words for an edge of the tree, one per kind of morphism in ``operations``:
    ``"wider + skip"`` (:func:`engine.nas.operations.kind_word`)."""
    verbs = list(dict.fromkeys(kind_word(op) for op in operations or []))
    text = " + ".join(verbs)
    return text if len(text) <= max_len else text[: max_len - 1].rstrip() + "…"


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


def tree_graph(snapshot: dict) -> nx.DiGraph:
    """Trials, the trials in flight and (step mode) the network that waits for Continue, as a
    directed tree under a virtual root.

    Node attributes: ``trial`` (the trial dict, or None for one not trained yet), ``in_flight``
    (not trained yet: in training, or waiting), ``waiting`` and, for those not trained yet,
    ``flight`` (its snapshot entry, with its proposal); edge attribute: ``operations`` (the
    recorded morphisms that made the child).
    """
    g = nx.DiGraph()
    g.add_node(ROOT, trial=None, in_flight=False, waiting=False)
    trials = snapshot.get("trials", [])
    ids = {str(t["id"]) for t in trials}
    for t in trials:
        g.add_node(str(t["id"]), trial=t, in_flight=False, waiting=False)
    for t in trials:
        parent = t.get("parent_id")
        parent = str(parent) if parent is not None and str(parent) in ids else ROOT
        g.add_edge(parent, str(t["id"]), operations=t.get("operations") or [])
    # every network in training at once (``flying``; older snapshots hold ``in_flight`` only)
    flights = snapshot.get("flying") or ([snapshot["in_flight"]] if snapshot.get("in_flight") else [])
    for flight in flights:
        _add_untrained(g, ids, flight, waiting=False)
    if snapshot.get("waiting"):  # step mode: the network chosen next, before Continue
        _add_untrained(g, ids, snapshot["waiting"], waiting=True)
    return g


def _add_untrained(g: nx.DiGraph, ids: set[str], entry: dict, waiting: bool) -> None:
    """A node for a network not trained yet (``entry``: a snapshot's ``flying`` or ``waiting``
    entry), with an edge from its parent; none for the final fine-tune or an id already drawn."""
    if entry.get("trial_id") in (None, FINAL) or str(entry["trial_id"]) in g:
        return
    node = str(entry["trial_id"])
    parent = entry.get("parent_id")
    parent = str(parent) if parent is not None and str(parent) in ids else ROOT
    proposal = entry.get("proposal") or {}
    g.add_node(node, trial=None, in_flight=True, waiting=waiting, flight=entry)
    g.add_edge(parent, node, operations=proposal.get("operations") or entry.get("operations") or [])


def _untrained_hover(node: str, entry: dict, waiting: bool) -> str:
    """The hover of a network not trained yet: what it waits for, and the GP's prediction."""
    prop = entry.get("proposal") or {}
    hover = f"<b>Trial #{node} · {'waits for Continue' if waiting else 'training now'}</b>"
    if prop.get("mean") is not None:
        hover += f"<br>predicted {pct(prop.get('mean'))} ± {pct(prop.get('sigma'))}"
    if float(prop.get("fidelity") or 1.0) < 1.0:
        hover += f"<br>on {fraction_text(float(prop['fidelity']))} of the images"
    if waiting and prop.get("reason"):
        hover += f"<br>{html.escape(str(prop['reason']))}"
    return hover


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
    as a hollow amber node (step mode: the one waiting for Continue as an amber hourglass), the
    best trial as a star. ``customdata`` holds trial ids."""
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
        mid_text.append(short_label(d["operations"]))
        what = describe_all(d["operations"], none="promoted: trained on more of the images")  # issue 22
        mid_hover.append(f"<b>#{u} → #{v}</b><br>{html.escape(what)}")
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
           and (g.nodes[n]["trial"] or {}).get("status") == "ok"
           and g.nodes[n]["trial"].get("val_accuracy") is not None]
    bad = [n for n in g.nodes if n != ROOT and not g.nodes[n]["in_flight"] and n not in oks]
    accs = [g.nodes[n]["trial"]["val_accuracy"] for n in oks]
    lo, hi = accuracy_range(accs)
    if oks:
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in oks], y=[pos[n][1] for n in oks], mode="markers+text",
            text=[f"#{n}" for n in oks], textposition="top center", textfont=dict(size=11),
            customdata=[[n] for n in oks],
            hovertext=[trial_hover(g.nodes[n]["trial"]) for n in oks],
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
            hovertext=[trial_hover(g.nodes[n]["trial"]) for n in bad],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=16, symbol="x", color=GREY, line=dict(width=1, color="white")),
            name="failed", showlegend=False))
    flying = [n for n in g.nodes if g.nodes[n]["in_flight"] and not g.nodes[n]["waiting"]]
    if flying:
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in flying], y=[pos[n][1] for n in flying], mode="markers+text",
            text=[f"#{n} training…" for n in flying], textposition="bottom center",
            textfont=dict(size=11, color=AMBER), customdata=[[n] for n in flying],
            hovertext=[_untrained_hover(n, g.nodes[n]["flight"], False) for n in flying],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=20, color="white", line=dict(width=2.5, color=AMBER)),
            name="in flight", showlegend=False))
    waiting = [n for n in g.nodes if g.nodes[n]["waiting"]]
    if waiting:
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in waiting], y=[pos[n][1] for n in waiting], mode="markers+text",
            text=[f"#{n} waits…" for n in waiting], textposition="bottom center",
            textfont=dict(size=11, color=AMBER), customdata=[[n] for n in waiting],
            hovertext=[_untrained_hover(n, g.nodes[n]["flight"], True) for n in waiting],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=18, symbol="hourglass", color=AMBER, line=dict(width=1.5, color="white")),
            name="waiting", showlegend=False))

    ys = [p[1] for n, p in pos.items() if n != ROOT]
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, range=[min(ys) - 0.6, max(ys) + 0.5] if ys else None)
    return apply_layout(fig, height=height, uirevision="tree", clickmode="event+select", dragmode="pan",
                   hovermode="closest")
