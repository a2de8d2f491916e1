"""The look shared by every figure: one palette, the common Plotly layout, the blank
"appears here" chart, and small helpers on trials, accuracies and durations used by several modules
(public, since the other figure modules use them)."""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

import plotly.graph_objects as go

from engine.nas.operations import describe_all
from engine.nas.proposals import fraction_text

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
def apply_layout(fig: go.Figure, height: int = 380, **kwargs: Any) -> go.Figure:
    """``fig`` with Sprout's common layout (font, margins, transparent background) and
    ``kwargs`` on top; returns the same figure."""
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


def pct(x: float | None) -> str:
    """``0.834`` -> ``83.4%``; a dash for None."""
    return "–" if x is None else f"{100 * x:.1f}%"


def ok_trials(snapshot: dict) -> list[dict]:
    """The trials that trained successfully and have a validation accuracy."""
    return [t for t in snapshot.get("trials", []) if t.get("status") == "ok" and t.get("val_accuracy") is not None]


def trial_by_id(snapshot: dict, trial_id: str | None) -> dict | None:
    """The trial with this id (compared as strings), or None."""
    for t in snapshot.get("trials", []):
        if str(t.get("id")) == str(trial_id):
            return t
    return None


def accuracy_range(values: Sequence[float]) -> tuple[float, float]:
    """The (low, high) of a colour scale for these accuracies: at least 10 points wide."""
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo < 0.02:  # all about the same: do not exaggerate tiny differences
        mid = (lo + hi) / 2
        lo, hi = max(0.0, mid - 0.05), min(1.0, mid + 0.05)
    return lo, hi


def accuracy_axis(values: Sequence[float]) -> list[float]:
    """The value axis of an accuracy chart: the values with a small margin, at least 10 points
    wide, never outside 0-102%. Plotly's own autorange spreads a single value (one network, or
    all alike) over -50% to 150%."""
    lo, hi = accuracy_range([v for v in values if v is not None])
    pad = 0.05 * (hi - lo) + 0.005
    return [max(0.0, lo - pad), min(1.02, hi + pad)]


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A blank chart that says what will appear there."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#868e96"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return apply_layout(fig, height=height)


def scale_colour(value: float | None, lo: float, hi: float) -> str:
    """The colour of ``value`` on :data:`ACCURACY_SCALE` stretched over (lo, hi); grey for None."""
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


def trial_hover(t: dict) -> str:
    """The hover text (Plotly HTML) of a trial: its score or error, summary, origin and costs."""
    head = f"<b>Trial #{t['id']}</b>"
    if t.get("status") == "ok":
        head += f" · {pct(t.get('val_accuracy'))} val accuracy"
    else:
        head += f" · {t.get('status', '?')}" + (f": {html.escape(str(t['error']))}" if t.get("error") else "")
    lines = [head]
    if t.get("summary"):
        lines.append(html.escape(str(t["summary"])))
    if t.get("promoted_from") is not None:
        lines.append(f"#{t['promoted_from']} promoted: trained further on more of the images")
    elif t.get("parent_id") is not None:
        lines.append(f"from #{t['parent_id']}: {html.escape(describe_all(t.get('operations'), none='changed'))}")
    else:
        lines.append("a starting network")
    if float(t.get("fidelity") or 1.0) < 1.0:
        lines.append(f"trained on {fraction_text(float(t['fidelity']))} of the images")
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
