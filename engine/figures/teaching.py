"""Figures for teaching: how the Gaussian process's predictions improved over a run, and two
networks side by side with the edits between them marked."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.figures.network import network_dot
from engine.figures.style import AMBER, CORAL, GREEN, GREY, GRID, INK, LEAF, apply_layout, empty_figure
from engine.nas.edits import ADD, ADD_SKIP, CHANGE, CHANGE_SKIP, REMOVE, REMOVE_SKIP, Edit

EDIT_COLOURS = {REMOVE: CORAL, REMOVE_SKIP: CORAL, ADD: GREEN, ADD_SKIP: GREEN, CHANGE: AMBER, CHANGE_SKIP: AMBER}


def prediction_rows(snapshot: dict) -> list[dict]:
    """One row per trained network the searcher predicted, in the order they finished:
    ``id``, ``mean``, ``sigma``, ``ucb``, ``beta``, ``real`` (its validation accuracy) and
    ``error`` (|real - mean|). ``beta`` is the recorded one, or for runs that did not record it
    (ucb - mean) / sigma, since ucb = mean + beta * sigma."""
    rows = []
    for t in snapshot.get("trials", []):
        pred = t.get("prediction") or {}
        if t.get("status") != "ok" or t.get("val_accuracy") is None or pred.get("mean") is None:
            continue
        mean, sigma, ucb = float(pred["mean"]), float(pred.get("sigma") or 0.0), pred.get("ucb")
        beta = pred.get("beta")
        if beta is None and ucb is not None and sigma > 0:
            beta = (float(ucb) - mean) / sigma
        real = float(t["val_accuracy"])
        rows.append({"id": str(t["id"]), "mean": mean, "sigma": sigma, "ucb": None if ucb is None else float(ucb),
                     "beta": None if beta is None else float(beta), "real": real, "error": abs(real - mean)})
    return rows


def running_mean(values: list[float]) -> list[float]:
    """The mean of the first k values, for every k."""
    out, total = [], 0.0
    for k, v in enumerate(values, 1):
        total += v
        out.append(total / k)
    return out


def _ucb_hover(r: dict) -> str:
    head = f"<b>#{r['id']}</b> predicted {r['mean']:.1%} ± {2 * r['sigma']:.1%} (2σ)"
    if r["ucb"] is None or r["beta"] is None:
        return head
    return (f"{head}<br>UCB score {r['ucb']:.3f} = mean {r['mean']:.3f} + β·σ {r['beta'] * r['sigma']:.3f}"
            f"<br>(β = {r['beta']:.2f}, σ = {r['sigma']:.3f})<br>it then reached {r['real']:.1%}")


def gp_learning_figure(snapshot: dict, height: int = 520) -> go.Figure:
    """Top: for each proposed network (in order), the predicted accuracy as mean ± 2σ and the
    accuracy it then reached; hovering a prediction shows its UCB score as mean + β·σ.
    Bottom: the prediction's absolute error per network and its running mean."""
    rows = prediction_rows(snapshot)
    if not rows:
        return empty_figure("The model's predictions appear once it has proposed a network.", height)
    x = [f"#{r['id']}" for r in rows]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.08)
    fig.add_trace(go.Scatter(
        x=x, y=[r["mean"] for r in rows], mode="markers", name="predicted (± 2σ)",
        error_y=dict(type="data", array=[2 * r["sigma"] for r in rows], color=LEAF, thickness=2, width=6),
        marker=dict(size=11, color="white", line=dict(color=GREEN, width=2.5)),
        hovertext=[_ucb_hover(r) for r in rows], hovertemplate="%{hovertext}<extra></extra>",
        customdata=[[r["id"], r["mean"], r["beta"], r["sigma"], r["ucb"]] for r in rows]), row=1, col=1)
    fig.add_trace(go.Scatter(
        x=x, y=[r["real"] for r in rows], mode="markers", name="reached",
        marker=dict(size=11, color=INK, symbol="diamond"),
        hovertemplate="%{x} reached %{y:.1%}<extra></extra>"), row=1, col=1)
    errors = [r["error"] for r in rows]
    fig.add_trace(go.Bar(x=x, y=errors, name="error of the prediction", marker_color=GREY,
                         hovertemplate="%{x}: off by %{y:.1%}<extra></extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=running_mean(errors), mode="lines+markers", name="average error so far",
                             line=dict(color=CORAL, width=2.5), marker=dict(size=5),
                             hovertemplate="%{x}: average error %{y:.1%}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(title="accuracy", tickformat=".0%", gridcolor=GRID, row=1, col=1)
    fig.update_yaxes(title="|reached − predicted|", tickformat=".0%", gridcolor=GRID, rangemode="tozero",
                     row=2, col=1)
    fig.update_xaxes(type="category", gridcolor=GRID)
    fig.update_xaxes(title="networks, in the order they were trained", row=2, col=1)
    return apply_layout(fig, height=height, legend=dict(orientation="h", y=-0.18), hovermode="closest")


def edit_marks(found: list[Edit]) -> tuple[dict[int, str], dict[int, str]]:
    """Layer id -> colour for network A and for network B: removed in A coral, added in B green,
    changed amber in both (a skip is marked on its merge layer)."""
    marks_a: dict[int, str] = {}
    marks_b: dict[int, str] = {}
    for e in found:
        colour = EDIT_COLOURS.get(e.kind, AMBER)
        if e.a is not None:
            marks_a[e.a] = colour
        if e.b is not None:
            marks_b[e.b] = colour
    return marks_a, marks_b


def marked_pair(arch_a: dict, arch_b: dict, found: list[Edit], names: tuple[str, str] = ("A", "B")) -> tuple[str, str]:
    """Graphviz DOT of both networks (``Architecture.to_dict()``) with the layers the edits
    touch outlined in their colours (:func:`edit_marks`)."""
    marks_a, marks_b = edit_marks(found)
    return (network_dot(arch_a, title=names[0], marks=marks_a), network_dot(arch_b, title=names[1], marks=marks_b))
