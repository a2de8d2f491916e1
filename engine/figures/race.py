"""A race of two searchers (engine/search/race.py) on one chart: the best validation accuracy
so far of each, over the minutes of the search."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from engine.figures.style import AMBER, GREEN, GREY, GRID, accuracy_range, apply_layout, empty_figure, ok_trials

RACE_COLOURS = (GREEN, AMBER)  # the first runner (the smart searcher), then its rival


def best_so_far(snapshot: dict) -> tuple[list[float], list[float], list[str]]:
    """(minutes, best validation accuracy so far, trial id) at each network that finished, in
    the order they finished."""
    done = sorted((t for t in ok_trials(snapshot) if t.get("finished_s") is not None), key=lambda t: t["finished_s"])
    minutes = [t["finished_s"] / 60 for t in done]
    best = [float(v) for v in np.maximum.accumulate([t["val_accuracy"] for t in done])] if done else []
    return minutes, best, [str(t["id"]) for t in done]


def race_figure(first: dict, second: dict, height: int = 340) -> go.Figure:
    """Best validation accuracy so far of both runs of a race, on the same axes: a step line
    each, from its first network to its time now (or its end), in the race's two colours."""
    curves = [best_so_far(s) for s in (first, second)]
    if not any(minutes for minutes, _, _ in curves):
        return empty_figure("The best accuracy of each searcher is drawn here as their networks finish.", height)
    fig = go.Figure()
    for snap, (minutes, best, ids), colour in zip((first, second), curves, RACE_COLOURS):
        if not minutes:
            continue
        name = str(snap.get("searcher") or snap.get("run_id"))
        end = max(minutes[-1], (snap.get("elapsed_s") or 0) / 60)
        fig.add_trace(go.Scatter(
            x=minutes + [end], y=best + [best[-1]], mode="lines+markers", name=name,
            line=dict(color=colour, width=3, shape="hv"), marker=dict(size=[8] * len(minutes) + [0], color=colour),
            customdata=[[i] for i in ids] + [[ids[-1]]],
            hovertemplate=name + "<br>best so far %{y:.1%} after %{x:.1f} min (#%{customdata[0]})<extra></extra>"))
    budget = max(float(s.get("budget_s") or 0) for s in (first, second))
    if budget:
        fig.add_vline(x=budget / 60, line=dict(color=GREY, dash="dot"), annotation_text="budget",
                      annotation_position="top left")
    fig.update_xaxes(title="minutes since start", gridcolor=GRID, rangemode="tozero")
    lo, hi = accuracy_range([v for _, best, _ in curves for v in best])
    fig.update_yaxes(title="best validation accuracy so far", tickformat=".0%", gridcolor=GRID,
                     range=[max(0.0, lo - 0.05), min(1.02, hi + 0.05)])
    return apply_layout(fig, height=height, legend=dict(orientation="h", y=-0.3), uirevision="race")
