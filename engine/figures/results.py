"""Pictures of the results and the data: the confusion matrix, precision and recall per class,
images per class, and the top predictions for one image."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from engine.figures.style import AMBER, DARK_GREEN, GREEN, GRID, LEAF, apply_layout, empty_figure


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                     height: int | None = None) -> go.Figure:
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
    return apply_layout(fig, height=height or max(320, 40 * len(names) + 120))


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
    return apply_layout(fig, height=height, barmode="group", legend=dict(orientation="h", y=1.12))


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
    return apply_layout(fig, height=height, showlegend=False)


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
    return apply_layout(fig, height=height or 60 + 44 * len(vals), showlegend=False)
