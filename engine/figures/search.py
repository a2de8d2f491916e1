"""How the search is going: the edit distances between networks (heatmap and MDS map),
accuracy per epoch, the best accuracy over time, and the Gaussian process's predictions
against reality."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from engine.figures.style import (ACCURACY_SCALE, DARK_GREEN, GREEN, GREY, GRID, INK, LEAF, accuracy_axis,
                                  accuracy_range, apply_layout, empty_figure, ok_trials, scale_colour, trial_hover)

MAX_CURVES = 60           # curves drawn in the per-epoch chart (the best ones, plus the highlighted)


# ----- edit distances ------------------------------------------------------------------
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
    return apply_layout(fig, height=height)


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
    lo, hi = accuracy_range(known)
    best = str((snapshot.get("best") or {}).get("trial_id"))
    fig = go.Figure(go.Scatter(
        x=xy[:, 0], y=xy[:, 1], mode="markers+text", text=[f"#{i}" for i in ids], textposition="top center",
        customdata=[[i] for i in ids],
        hovertext=[trial_hover(trials[i]) if i in trials else f"#{i}" for i in ids],
        hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(size=[22 if i == best else 16 for i in ids],
                    symbol=["star" if i == best else "circle" for i in ids],
                    color=[a if a is not None else lo for a in accs], colorscale=ACCURACY_SCALE, cmin=lo, cmax=hi,
                    showscale=True, colorbar=dict(title=dict(text="val acc"), tickformat=".0%", thickness=12),
                    line=dict(width=[4 if i == selected else 1.5 for i in ids],
                              color=[INK if i == selected else "white" for i in ids]))))
    fig.update_xaxes(showticklabels=False, zeroline=False, gridcolor=GRID, title="")
    fig.update_yaxes(showticklabels=False, zeroline=False, gridcolor=GRID, title="", scaleanchor="x")
    return apply_layout(fig, height=height, uirevision="mds", clickmode="event+select", hovermode="closest")


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
    lo, hi = accuracy_range(accs)
    fig = go.Figure()
    for t in trials:
        tid = str(t["id"])
        val = t["history"]["val_accuracy"]
        strong = tid == str(highlight)
        colour = scale_colour(t.get("val_accuracy"), lo, hi) if t.get("status") == "ok" else GREY
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
    shown = [v for t in trials for v in t["history"]["val_accuracy"]]
    shown += [v for t in trials if str(t["id"]) == str(highlight) for v in t["history"].get("accuracy") or []]
    fig.update_yaxes(title="validation accuracy", tickformat=".0%", gridcolor=GRID, range=accuracy_axis(shown))
    return apply_layout(fig, height=height, showlegend=len(trials) <= 12, uirevision="curves",
                   legend=dict(orientation="h", y=-0.25))


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
    fig.update_yaxes(title="validation accuracy", tickformat=".0%", gridcolor=GRID, range=accuracy_axis(accs))
    return apply_layout(fig, height=height, legend=dict(orientation="h", y=-0.3), uirevision="progress")


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
    return apply_layout(fig, height=height, showlegend=False)
